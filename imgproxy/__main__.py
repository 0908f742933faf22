"""`python -m imgproxy` -> the CLI."""

from imgproxy.cli import main

raise SystemExit(main())
