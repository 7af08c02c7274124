"""Subcommands of the ``digitlab`` CLI, one module each (see :mod:`digitlab.cli`)."""
