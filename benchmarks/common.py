"""Shared helpers of the benchmark scripts: where MNIST is, and what machine ran them."""

from __future__ import annotations

import os
import platform
from datetime import datetime, timezone
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"
SHARED_MNIST = Path(__file__).resolve().parents[2] / "shared" / "mnist"


def mnist_dir(arg: str | None = None) -> str | None:
    """``--data-dir``, else ``$DIGITLAB_DATA``, else ``../shared/mnist`` beside the repo."""
    if arg:
        return arg
    if os.environ.get("DIGITLAB_DATA"):
        return os.environ["DIGITLAB_DATA"]
    return str(SHARED_MNIST) if SHARED_MNIST.is_dir() else None


def machine() -> dict:
    """What the numbers were measured on (recorded with every result file)."""
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
    }
