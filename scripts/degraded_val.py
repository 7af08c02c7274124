"""Accuracy of checkpoints on degraded copies of the MNIST validation split (fixed, seeded).

The validation split is the one every training run holds out (``split_indices(60000, 5000)``,
seed 0), so these numbers may choose between candidates; ``--split test`` gives the same table
on the 10,000 test images, for reporting only. Each condition is one fixed degradation of
all images (not a random mix), some inside the ranges ``--degrade`` trains on, some beyond them
(``blur 1.5``, ``low-res 7``, ``gamma 2``) or of a kind it never trains on (``jpeg q25``).

    python scripts/degraded_val.py src/digitlab/weights/default.pt runs/x/best.pt \\
        [--split val|test] [--json out.json]
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from digitlab.training.augment import dilate, erode, gaussian_blur, resample
from digitlab.training.checkpoint import load_model_from_checkpoint
from digitlab.training.data import load_mnist, split_indices
from digitlab.training.evaluate import predict_logits


def _jpeg(x: torch.Tensor, quality: int) -> torch.Tensor:
    out = []
    for img in (x[:, 0] * 255).round().to(torch.uint8).numpy():
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="JPEG", quality=quality)
        out.append(np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("L")))
    return torch.from_numpy(np.stack(out)).float().div(255).unsqueeze(1)


def _noise(x: torch.Tensor, sigma: float, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (x + torch.randn(x.shape, generator=g) * sigma).clamp(0, 1)


def _soft_scan(x: torch.Tensor) -> torch.Tensor:
    y = resample(x, 12, "area", "bicubic")
    y = gaussian_blur(y, 0.7).clamp(0, 1) * 0.6
    return _noise(y, 0.04, seed=1)


CONDITIONS = {
    "clean": lambda x: x,
    "blur 1.0": lambda x: gaussian_blur(x, 1.0).clamp(0, 1),
    "blur 1.5": lambda x: gaussian_blur(x, 1.5).clamp(0, 1),
    "low-res 10 (area, bilinear)": lambda x: resample(x, 10, "area", "bilinear"),
    "low-res 7 (area, bicubic)": lambda x: resample(x, 7, "area", "bicubic"),
    "thick (3x3 dilation)": dilate,
    "thin (half 3x3 erosion)": lambda x: x + 0.5 * (erode(x) - x),
    "faint (contrast 0.4)": lambda x: x * 0.4,
    "gamma 2": lambda x: x**2,
    "noise 0.1": lambda x: _noise(x, 0.1),
    "jpeg q25": lambda x: _jpeg(x, 25),
    "soft scan (12 px, blur 0.7, contrast 0.6, noise 0.04)": _soft_scan,
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoints", nargs="+")
    p.add_argument("--split", choices=("val", "test"), default="val")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--json", default=None, help="write the table here")
    args = p.parse_args(argv)
    torch.set_num_threads(1)

    data = load_mnist(args.data_dir, download=False)
    if args.split == "val":
        _, idx = split_indices(len(data.train_images), 5000, seed=0)
        images, labels = data.train_images[idx], data.train_labels[idx]
    else:
        images, labels = data.test_images, data.test_labels
    x = torch.from_numpy(np.ascontiguousarray(images)).float().div(255).unsqueeze(1)
    y = torch.from_numpy(np.asarray(labels, dtype=np.int64))

    models = {c: load_model_from_checkpoint(c)[0] for c in args.checkpoints}
    table: dict[str, dict[str, float]] = {}
    for name, fn in CONDITIONS.items():
        xd = fn(x)
        assert xd.shape == x.shape and xd.min() >= 0 and xd.max() <= 1, name
        table[name] = {}
        for c, m in models.items():
            logits = predict_logits(m, xd * 255)
            table[name][c] = (logits.argmax(1) == y).float().mean().item()
    degraded = [k for k in table if k != "clean"]
    table["mean of degraded"] = {
        c: float(np.mean([table[k][c] for k in degraded])) for c in args.checkpoints
    }

    names = [Path(c).parent.name or c for c in args.checkpoints]
    print(f"split: {args.split} ({len(y)} images)")
    print("| condition | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for k, row in table.items():
        print(f"| {k} | " + " | ".join(f"{row[c]:.2%}" for c in args.checkpoints) + " |")
    if args.json:
        Path(args.json).write_text(json.dumps({"split": args.split, "table": table}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
