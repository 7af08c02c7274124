"""``digitlab gui``: the desktop app (Tkinter)."""

from __future__ import annotations

import argparse

from digitlab.core.errors import DigitlabError


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``gui`` subcommand."""
    p = sub.add_parser(
        "gui",
        help="desktop app: draw or open a digit and see the prediction",
        description="Open the desktop app with the bundled model, or with --model: a checkpoint "
        "(.pt) or ONNX file, 'ensemble', or 'newest' for the newest finished training run in "
        "./runs (a cancelled or unfinished run is never used).",
    )
    p.add_argument(
        "--model",
        metavar="M",
        help="checkpoint (.pt) or ONNX model, 'ensemble', or 'newest' (default: the bundled model)",
    )
    p.add_argument("--multi", action="store_true", help="start in multi-digit mode")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Check and load the model, then run the window until it is closed."""
    try:
        from digitlab.apps.gui import run_app, startup_model
    except ImportError as exc:
        if "tkinter" not in str(exc):
            raise
        raise DigitlabError(
            f"the desktop app needs Tk, which this Python lacks ({exc}); on Debian/Ubuntu "
            "install python3-tk, or use `digitlab serve` and a browser"
        ) from None
    model, description = startup_model(args.model)
    if model is not None:
        # A model the user named is loaded before any window opens, so a bad one ends the
        # command with exit status 2 and the same one-line message as predict / serve / export.
        from digitlab.api import load_model

        model = load_model(model)
    return run_app(model, description=description, multi=args.multi)
