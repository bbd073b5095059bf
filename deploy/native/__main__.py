"""Entry point: ``python -m deploy.native up|status|down`` (see cli.py)."""

from .cli import main

raise SystemExit(main())
