from imgproxy.cli import main

raise SystemExit(main())
