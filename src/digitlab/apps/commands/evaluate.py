"""``digitlab evaluate``: accuracy, per-class precision/recall, confusion matrix, error gallery."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
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
        help="folder for confusion.png and errors.png "
        "(default: eval-<split> next to a run's checkpoint, ./digitlab-eval otherwise)",
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


def _default_out(ckpt_path: Path, split: str) -> Path:
    from digitlab.core.resolve import BUNDLED_MODEL

    if ckpt_path.resolve() == BUNDLED_MODEL.resolve():
        return Path("digitlab-eval") / split
    if ckpt_path.resolve().parent == BUNDLED_MODEL.resolve().parent:  # never inside the package
        return Path("digitlab-eval") / f"{ckpt_path.stem}-{split}"
    return ckpt_path.parent / f"eval-{ckpt_path.stem}-{split}"


def run(args: argparse.Namespace) -> int:
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
    out = Path(args.out) if args.out else _default_out(Path(ckpt["path"]), args.split)
    save_confusion_png(
        report,
        out / "confusion.png",
        f"{ckpt['model_name']} on {args.split}: {report.accuracy:.2%}",
    )
    n_wrong = save_error_gallery(report, images, labels, out / "errors.png")
    result = {
        "model": ckpt["model_name"],
        "checkpoint": ckpt["path"],
        "tta": args.tta,
        **report.to_dict(),
        "files": {"confusion": str(out / "confusion.png"), "errors": str(out / "errors.png")},
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
    print(f"confusion matrix: {out / 'confusion.png'}")
    print(f"{n_wrong} misclassified shown in: {out / 'errors.png'}")
    return 0
