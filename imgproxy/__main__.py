"""`python -m imgproxy` -> the CLI."""

from imgproxy.server.cli import main

raise SystemExit(main())
