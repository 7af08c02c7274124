"""Settings read from the environment, parsed in one place.

Each variable is named here with what it sets; a value that is not a positive integer is
ignored (the default applies), so a typo never stops a server from starting.
"""

from __future__ import annotations

import os

ENV_DATA = "DIGITLAB_DATA"  # folder with the MNIST files
ENV_TORCH_THREADS = "DIGITLAB_TORCH_THREADS"  # PyTorch intra-op threads for inference
ENV_ORT_THREADS = "DIGITLAB_ORT_THREADS"  # ONNX Runtime intra-op threads
ENV_SERVE_PREFIX = "DIGITLAB_SERVE_"  # DIGITLAB_SERVE_<OPTION> for every `digitlab serve` option


def positive_int_env(name: str, default: int) -> int:
    """``$name`` as a positive integer, else ``default``."""
    raw = os.environ.get(name, "").strip()
    return int(raw) if raw.isdigit() and int(raw) > 0 else default


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
