"""``digitlab gui``: the desktop app (Tkinter)."""

from __future__ import annotations

import argparse
from pathlib import Path

from digitlab.core.errors import DigitlabError
from digitlab.core.resolve import DEFAULT_MODEL_NAMES, ENSEMBLE_MODEL_NAME


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "gui",
        help="desktop app: draw or open a digit and see the prediction",
        description="Open the desktop app. It starts with --model, else the newest "
        "runs/*/best.pt in the current folder, else the bundled model.",
    )
    p.add_argument(
        "--model",
        metavar="PATH",
        help="checkpoint (.pt) or ONNX model to start with, or 'ensemble'",
    )
    p.add_argument("--multi", action="store_true", help="start in multi-digit mode")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    named = (*DEFAULT_MODEL_NAMES, ENSEMBLE_MODEL_NAME)
    if args.model and args.model not in named and not Path(args.model).is_file():
        raise DigitlabError(f"--model {args.model}: no such file")
    try:
        from digitlab.apps.gui import run_app
    except ImportError as exc:
        if "tkinter" not in str(exc):
            raise
        raise DigitlabError(
            f"the desktop app needs Tk, which this Python lacks ({exc}); on Debian/Ubuntu "
            "install python3-tk, or use `digitlab serve` and a browser"
        ) from None
    model = None if args.model in DEFAULT_MODEL_NAMES else args.model
    return run_app(model, multi=args.multi)
