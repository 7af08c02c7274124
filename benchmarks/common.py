"""Shared helpers of the benchmark scripts and the tests: where MNIST is, what machine ran them.

Where a development checkout finds MNIST is decided here only (the tests' conftest imports it):
``--data-dir``, else ``$DIGITLAB_DATA``, else ``../shared/mnist`` beside the repository. (The
library itself looks in ``--data-dir``/``$DIGITLAB_DATA``, its cache, then downloads:
``digitlab.training.data.locate_mnist``.)
"""

from __future__ import annotations

import os
import platform
from datetime import datetime, timezone
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
SHARED_MNIST = Path(__file__).resolve().parents[2] / "shared" / "mnist"


def mnist_dir(arg: str | None = None) -> str | None:
    """``--data-dir``, else ``$DIGITLAB_DATA``, else ``../shared/mnist`` beside the repo (when it
    holds IDX files); None when none of them does."""
    from digitlab.core.settings import ENV_DATA

    if arg:
        return arg
    for candidate in (os.environ.get(ENV_DATA), SHARED_MNIST):
        if candidate and Path(candidate).is_dir() and any(Path(candidate).glob("*idx*")):
            return str(candidate)
    return None


def machine() -> dict:
    """What the numbers were measured on (recorded with every result file)."""
    import torch

    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
    }
