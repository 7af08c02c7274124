"""``python -m digitlab`` runs the CLI."""

from digitlab.apps.cli import main

raise SystemExit(main())
