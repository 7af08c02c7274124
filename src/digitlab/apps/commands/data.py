"""``digitlab data``: find MNIST, verify every file, and summarise it.

Shows where the data was found (path, layout, how), one line per file (OK or what is wrong),
the image counts and the label histogram. Exits 2 with a message naming every place looked in
when MNIST is missing, and 2 when any file fails verification.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``data`` subcommand."""
    p = sub.add_parser(
        "data",
        help="find, verify and summarise the MNIST files",
        description=(
            "Look for MNIST in --data-dir (or $DIGITLAB_DATA), then the user cache "
            "(~/.cache/digitlab/mnist), then download it from the public mirrors "
            "($DIGITLAB_MNIST_MIRRORS overrides them); verify every file's SHA-256."
        ),
    )
    p.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="folder holding MNIST (IDX .gz or raw, torchvision MNIST/raw, or Keras mnist.npz)",
    )
    p.add_argument(
        "--no-download", action="store_true", help="never download; fail if MNIST is not on disk"
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=run)


def _histogram(labels: Any) -> list[int]:
    """Images per digit 0-9."""
    import numpy as np

    from digitlab.training.data import NUM_CLASSES

    return np.bincount(labels, minlength=NUM_CLASSES).tolist()


def _report_dict(report: Any) -> dict[str, Any]:
    loc = report.location
    result: dict[str, Any] = {
        "ok": report.ok,
        "path": str(loc.root),
        "layout": loc.layout,
        "origin": loc.origin,
        "source": loc.describe(),
        "files": [
            {
                "name": c.name,
                "path": str(c.path),
                "ok": c.ok,
                "problem": c.problem,
                "shape": list(c.shape),
            }
            for c in report.checks
        ],
    }
    if report.data is not None:
        d = report.data
        result["counts"] = {"train": len(d.train_labels), "test": len(d.test_labels)}
        result["label_histogram"] = {
            "train": _histogram(d.train_labels),
            "test": _histogram(d.test_labels),
        }
    return result


def _print_text(info: dict[str, Any]) -> None:
    print(f"MNIST: {info['source']}")
    width = max(len(f["name"]) for f in info["files"])
    for f in info["files"]:
        status = "OK  " + "x".join(map(str, f["shape"])) if f["ok"] else f"BAD {f['problem']}"
        print(f"  {f['name']:<{width}}  {status}")
    if "counts" not in info:
        return
    counts, hist = info["counts"], info["label_histogram"]
    print(f"images: {counts['train']:,} train, {counts['test']:,} test")
    print(f"  {'digit':>5}  {'train':>7}  {'test':>6}")
    for digit in range(len(hist["train"])):
        print(f"  {digit:>5}  {hist['train'][digit]:>7,}  {hist['test'][digit]:>6,}")


def run(args: argparse.Namespace) -> int:
    """Locate and verify MNIST; print the summary. Raises DataError (exit 2) on problems."""
    from digitlab.core.errors import DataError
    from digitlab.training.data import describe_failures, inspect_mnist

    try:
        report = inspect_mnist(args.data_dir, download=not args.no_download)
    except DataError as exc:
        if args.json:
            print(json.dumps({"ok": False, "error": str(exc)}, indent=2))
        raise
    info = _report_dict(report)
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        _print_text(info)
    if not report.ok:
        raise DataError(describe_failures(report.checks))
    return 0
