"""The ``digitlab`` command: one subcommand per module in :mod:`digitlab.apps.commands`.

Each command module defines ``register(subparsers)``, which adds its parser and sets
``func=run``. Command modules import heavy libraries (torch, FastAPI, Tk) inside ``run``, so
``digitlab --help`` is fast and an ONNX-only install can still run ``predict``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from digitlab import __version__
from digitlab.core.errors import DigitlabError

# Order here is the order in ``digitlab --help``.
COMMANDS = (
    "data",
    "models",
    "train",
    "evaluate",
    "predict",
    "serve",
    "gui",
    "export",
    "kaggle",
    "feedback",
    "finetune",
)


def command_in(argv: list[str]) -> str | None:
    """The subcommand ``argv`` names (its first word that is not an option), if it is one."""
    word = next((a for a in argv if not a.startswith("-")), None)
    return word if word in COMMANDS else None


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The argument parser with every subcommand that is installed; with ``command``, that
    subcommand only (what running it needs: the other commands' modules are not imported --
    ``serve``'s options import FastAPI, ~0.6 s of a ``predict`` run's start-up)."""
    parser = argparse.ArgumentParser(
        prog="digitlab",
        description="Handwritten-digit recognition: train on MNIST, recognise drawings and photos.",
    )
    parser.add_argument("--version", action="version", version=f"digitlab {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in (command,) if command in COMMANDS else COMMANDS:
        try:
            module = importlib.import_module(f".commands.{name}", __package__)
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith(f"{__package__}.commands"):
                continue  # command not part of this build
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the process exit status (0 ok, 1 some inputs failed, 2 usage/error)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(command_in(argv))
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(message)s",
        stream=sys.stderr,
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except DigitlabError as exc:
        print(f"digitlab {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"digitlab {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `digitlab predict ... | head` closed our stdout: stop quietly, as Unix tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141  # 128 + SIGPIPE
