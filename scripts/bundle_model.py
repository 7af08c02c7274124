"""Make a training run's best checkpoint the bundled default model.

    python scripts/bundle_model.py runs/<run>      # -> src/digitlab/weights/default.pt (+ .onnx)
    python scripts/bundle_model.py runs/<full> --temperature-from runs/<val>/best.pt

Copies ``best.pt`` (already inference-only and calibrated on the validation split), records the
run's total training time, and exports ``default.onnx`` for torch-free deployments (verified
against PyTorch on the test set by ``digitlab export``).

A run on all 60,000 training images (``--val-size 0``) has no held-out images to fit its softmax
temperature on; ``--temperature-from`` takes it from the same recipe's validation run.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import torch

from digitlab.core.io import atomic_write
from digitlab.core.resolve import BUNDLED_MODEL
from digitlab.training.checkpoint import load_checkpoint
from digitlab.training.trainer import run_train_seconds


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", type=Path)
    p.add_argument("--no-onnx", action="store_true", help="skip the ONNX export")
    p.add_argument(
        "--temperature-from",
        type=Path,
        metavar="CKPT",
        help="take the calibrated temperature and energy reference (and their record) from "
        "this checkpoint",
    )
    args = p.parse_args(argv)
    ckpt = load_checkpoint(args.run_dir / "best.pt")
    if args.temperature_from:
        donor = load_checkpoint(args.temperature_from)
        if "calibration" not in donor:
            p.error(f"{args.temperature_from}: no calibrated temperature in it")
        ckpt["temperature"] = donor["temperature"]
        if "energy_reference" in donor:
            ckpt["energy_reference"] = donor["energy_reference"]
        ckpt["calibration"] = {**donor["calibration"], "source": str(args.temperature_from)}
    ckpt["train_seconds"] = run_train_seconds(args.run_dir)
    if ckpt["train_seconds"] is None:
        p.error(f"{args.run_dir}: no metrics.csv (not a training run folder)")
    ckpt["source_run"] = args.run_dir.name
    ckpt.pop("path", None)
    atomic_write(BUNDLED_MODEL, lambda tmp: torch.save(ckpt, tmp))
    size = BUNDLED_MODEL.stat().st_size
    print(
        f"{BUNDLED_MODEL}: {size / 1e6:.2f} MB, epoch {ckpt['epoch']}, "
        f"val {ckpt['metrics']['val_acc']:.4%}, test {ckpt['metrics']['test_acc']:.4%}, "
        f"temperature {ckpt.get('temperature', 1.0):.3f}"
    )
    if not args.no_onnx:
        onnx_path = BUNDLED_MODEL.with_suffix(".onnx")
        cmd = [sys.executable, "-m", "digitlab", "export", "default", "--out", str(onnx_path)]
        return subprocess.call(cmd)
    return 0


if __name__ == "__main__":
    sys.exit(main())
