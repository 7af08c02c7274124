"""The server's settings: one frozen dataclass, also readable from ``DIGITLAB_SERVE_<OPTION>``.

``--workers N`` starts N uvicorn processes; each rebuilds its settings from the environment
(:meth:`ServerSettings.from_env`) in the import-string factory, so the environment is the one
way settings travel to a worker.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from digitlab.core.constants import MAX_IMAGE_PIXELS
from digitlab.core.device import DEVICE_CHOICES, is_device_name
from digitlab.core.errors import DigitlabError
from digitlab.core.settings import ENV_SERVE_PREFIX, usable_cores

MEBIBYTE = 1024 * 1024
# A 12-megapixel phone JPEG is 3-6 MB and a drawing from the page is ~10 kB: 10 MiB is generous
# for real uploads and still small enough to hold in memory per request.
DEFAULT_MAX_BODY_BYTES = 10 * MEBIBYTE
# One batch request's images; 64 canvas-sized PNGs decode and predict in well under a second.
DEFAULT_MAX_BATCH = 64
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
# Model threads per server process, set once at start. Alone, a second ONNX Runtime thread
# halves a one-image pass (0.39 -> 0.21 ms on the 2-core machine), but in a server whose
# clients share the cores it did not lower one client's latency (28x28 PNG, p50 2.54 ms against
# 2.55 with one, 8 alternating rounds) and doubled the CPU a request costs (2.2 -> 4.2-5.3 ms:
# its pool spins while it waits for work). Scale with --workers instead.
DEFAULT_THREADS = 1
# Micro-batching: how long the batcher may hold a forward pass open for requests that are
# being decoded right now (it never waits when none is). 2 ms is under one forward pass.
DEFAULT_BATCH_WAIT_MS = 2.0
# Images in one micro-batched forward pass at most (the stability views of the few that need
# them follow in a second pass).
DEFAULT_BATCH_ITEMS = 64
# Slow clients: seconds an idle keep-alive connection stays open (uvicorn's
# timeout_keep_alive), and seconds a request's body may take to arrive once its headers have.
DEFAULT_KEEP_ALIVE_S = 5
DEFAULT_BODY_TIMEOUT_S = 30.0
# Server processes (--workers), by default one per usable core, at most MAX_DEFAULT_WORKERS,
# whether or not corrections are kept ("Improve" switches them all: apps.feedback.shared).
# A process is bound by its interpreter lock (HTTP parsing, preprocessing): measured with
# `benchmarks/serve_load.py --compare-workers 1 2` on the shared 2-core development machine
# (clients on the same cores, alternating windows): 32 clients, 91.8 requests/s with 1 worker,
# 139.5 with 2; after the speed-ups of issue #16, 181.8 and 261.0 (0.38x and 0.55x the bare
# reference); with small images preprocessed on the event loop (seventh session, load 1.3-1.7)
# 341.9 and 558.1 (0.54x and 0.88x: benchmarks/results/serve_load.workers.md). Each worker loads
# its own model (~160 MiB resident with ONNX Runtime), hence the cap.
MAX_DEFAULT_WORKERS = 4


def default_workers() -> int:
    """One server process per usable core, at most :data:`MAX_DEFAULT_WORKERS`."""
    return max(1, min(usable_cores(), MAX_DEFAULT_WORKERS))


MAX_PORT = 65535  # TCP ports are 16-bit; 0 asks the OS for a free one


@dataclass(frozen=True)
class ServerSettings:
    """Everything that configures a server process, in one place.

    ``model`` is a checkpoint or ``.onnx`` path chosen by whoever starts the server (``None`` =
    the bundled model); clients can never change it. ``inference_concurrency`` bounds the
    requests decoding and preprocessing in the thread pool at once (0 = one per usable core;
    small PNGs are handled one at a time on the event loop, see ``service.py``).
    """

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    model: str | None = None
    backend: str = "auto"
    device: str = "cpu"  # where PyTorch runs the network; a GPU implies backend torch
    workers: int = field(default_factory=default_workers)
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_pixels: int = MAX_IMAGE_PIXELS
    max_batch: int = DEFAULT_MAX_BATCH
    threads: int = DEFAULT_THREADS
    inference_concurrency: int = 0
    batch_wait_ms: float = DEFAULT_BATCH_WAIT_MS
    batch_items: int = DEFAULT_BATCH_ITEMS
    keep_alive_s: int = DEFAULT_KEEP_ALIVE_S
    body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S
    access_log: bool = True

    def __post_init__(self) -> None:
        """Refuse settings that cannot work, naming the field."""
        positive = (
            "workers",
            "max_body_bytes",
            "max_pixels",
            "max_batch",
            "threads",
            "batch_items",
            "keep_alive_s",
            "body_timeout_s",
        )
        for name in positive:
            if not getattr(self, name) > 0:  # also refuses NaN
                raise DigitlabError(
                    f"server setting {name} must be positive, got {getattr(self, name)}"
                )
        for name in ("inference_concurrency", "batch_wait_ms"):
            if not getattr(self, name) >= 0:  # also refuses NaN
                raise DigitlabError(
                    f"server setting {name} must be >= 0, got {getattr(self, name)}"
                )
        if not is_device_name(self.device):
            raise DigitlabError(
                f"server setting device must be {DEVICE_CHOICES}, got {self.device!r}"
            )
        if self.device != "cpu" and self.backend == "onnx":
            raise DigitlabError(
                f"server setting device {self.device!r} runs PyTorch; backend onnx runs on the "
                "CPU (use --backend torch or auto)"
            )
        if not 0 <= self.port <= MAX_PORT:
            raise DigitlabError(f"server setting port must be 0-65535, got {self.port}")

    def inference_slots(self) -> int:
        """Requests that may decode and preprocess in the thread pool at once."""
        return self.inference_concurrency or max(1, usable_cores())

    @property
    def url(self) -> str:
        """The address people open (IPv6 hosts in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def to_env(self) -> dict[str, str]:
        """These settings as ``DIGITLAB_SERVE_*`` variables (read back by :meth:`from_env`)."""
        env = {}
        for key, value in asdict(self).items():
            if value is None:
                continue
            text = str(int(value) if isinstance(value, bool) else value)
            env[ENV_SERVE_PREFIX + key.upper()] = text
        return env

    @classmethod
    def from_env(cls, environ: MutableMapping[str, str] | None = None) -> ServerSettings:
        """Settings from ``DIGITLAB_SERVE_*`` variables; missing ones keep their defaults."""
        environ = os.environ if environ is None else environ
        defaults = cls()
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = environ.get(ENV_SERVE_PREFIX + f.name.upper())
            if raw is None:
                continue
            values[f.name] = _parse_setting(f.name, raw, type(getattr(defaults, f.name)))
        return cls(**values)


def _parse_setting(name: str, raw: str, kind: type) -> Any:
    """Convert one environment value to the field's type, naming the variable on error."""
    if kind is bool:
        return raw.strip().lower() in {"1", "true", "yes", "on"}
    try:
        if kind is int:
            return int(raw)
        if kind is float:
            return float(raw)
    except ValueError:
        word = "an integer" if kind is int else "a number"
        raise DigitlabError(f"{ENV_SERVE_PREFIX}{name.upper()}={raw!r} is not {word}") from None
    return raw
