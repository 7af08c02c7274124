"""Subcommands of the ``digitlab`` CLI, one module each (see :mod:`digitlab.apps.cli`)."""
