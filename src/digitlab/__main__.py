"""``python -m digitlab`` runs the CLI."""

from .cli import main

raise SystemExit(main())
