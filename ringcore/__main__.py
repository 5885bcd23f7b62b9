"""``python -m ringcore``: the ringcore command line."""

from ringcore.cli import main

raise SystemExit(main())
