"""``digitlab evaluate``: accuracy, per-class precision/recall, confusion matrix, error gallery.

The report goes to stdout; the pictures (``confusion.png``, ``errors.png``) are written only
when asked, into ``--out DIR``: evaluating never leaves files behind unasked.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``evaluate`` subcommand."""
    p = sub.add_parser("evaluate", help="evaluate a checkpoint on MNIST")
    p.add_argument(
        "checkpoint",
        help="a checkpoint .pt, or 'default' / 'ensemble' for a bundled model",
    )
    p.add_argument(
        "--split",
        choices=("test", "val", "train"),
        default="test",
        help="test (default), the checkpoint's validation split, or the rest of train",
    )
    p.add_argument("--data-dir", help="folder with MNIST (else $DIGITLAB_DATA, cache, download)")
    p.add_argument(
        "--out",
        metavar="DIR",
        help="write confusion.png and errors.png into DIR (default: no files)",
    )
    p.add_argument(
        "--tta",
        action="store_true",
        help="test-time augmentation: average over shifted copies (slower)",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run)


def _split_arrays(data, ckpt: dict, split: str):
    from digitlab.training.data import split_indices

    if split == "test":
        return data.test_images, data.test_labels
    tc = ckpt.get("train_config", {})
    val_size, seed = int(tc.get("val_size", 5000)), int(tc.get("split_seed", 0))
    train_idx, val_idx = split_indices(len(data.train_images), val_size, seed=seed)
    idx = val_idx if split == "val" else train_idx
    return data.train_images[idx], data.train_labels[idx]


def run(args: argparse.Namespace) -> int:
    """Evaluate the checkpoint and print the report (and write the pictures with --out)."""
    from digitlab.core.errors import DigitlabError
    from digitlab.training.checkpoint import load_model_from_checkpoint
    from digitlab.training.data import load_mnist
    from digitlab.training.evaluate import evaluate_model, save_confusion_png, save_error_gallery

    model, ckpt = load_model_from_checkpoint(args.checkpoint)
    data = load_mnist(args.data_dir)
    images, labels = _split_arrays(data, ckpt, args.split)
    if len(labels) == 0:
        raise DigitlabError(f"split {args.split!r} of {ckpt['path']} is empty")
    if args.tta:
        from digitlab.training.tta import TTAModel

        model = TTAModel(model)
    report = evaluate_model(
        model, images, labels, split=args.split, temperature=float(ckpt.get("temperature", 1.0))
    )
    files: dict[str, str] = {}
    n_wrong = 0
    if args.out:
        out = Path(args.out)
        save_confusion_png(
            report,
            out / "confusion.png",
            f"{ckpt['model_name']} on {args.split}: {report.accuracy:.2%}",
        )
        n_wrong = save_error_gallery(report, images, labels, out / "errors.png")
        files = {"confusion": str(out / "confusion.png"), "errors": str(out / "errors.png")}
    result = {
        "model": ckpt["model_name"],
        "checkpoint": ckpt["path"],
        "tta": args.tta,
        **report.to_dict(),
        "files": files,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{ckpt['model_name']} ({ckpt['path']}) on {args.split}{' with TTA' if args.tta else ''}")
    print(
        f"accuracy {report.accuracy:.4%}  loss {report.loss:.4f}  "
        f"errors {result['errors']} of {report.n}"
    )
    print("digit  precision  recall  support")
    for d, m in result["per_class"].items():
        print(f"{d:>5}  {m['precision']:>9.4f}  {m['recall']:>6.4f}  {m['support']:>7}")
    if files:
        print(f"confusion matrix: {files['confusion']}")
        print(f"{n_wrong} misclassified shown in: {files['errors']}")
    return 0
