"""PyTorch backend: runs a network (built from a checkpoint by ``digitlab.training``) on the CPU
or, with ``device``, on a GPU.

The engine never builds networks itself (that is training's model zoo): the caller hands in
the ``nn.Module`` and its :class:`ModelRecord` (``digitlab.api.load_model`` does).

Threads: ``torch.set_num_threads`` is process-wide, so it is set once per process, by the
application (:func:`set_inference_threads`: the CLI, the server and the desktop app call it at
start-up), never around each forward pass: a lock held across the pass would let concurrent
callers run one pass at a time.

Device: the CPU by default. A GPU (``device="cuda"``) pays off for large batches in Python
(the bundled model, 64 images: 0.76 ms a pass on an H200, 5.7 ms on one Xeon core); one image
costs about the same on both, and serving measured no faster on a GPU, since decoding and
preprocessing dominate a request (README "GPU"). Arrays go in and come out on the CPU.
"""

from __future__ import annotations

import copy
import logging
import warnings
from collections.abc import Sequence

import numpy as np
import torch

from digitlab.core.constants import IMAGE_SHAPE
from digitlab.core.device import DEVICE_CHOICES, is_device_name
from digitlab.core.errors import DigitlabError
from digitlab.core.record import ModelRecord
from digitlab.core.settings import ENV_TORCH_THREADS, positive_int_env

# PyTorch inference threads for the applications. These nets are small: a single thread ran a
# 256-image batch of an early 24k-parameter digitnet in ~47 ms, and a pool of threads competing
# for busy cores turned a 1-image forward pass from 1 ms into 120 ms on the 2-core development
# machine. $DIGITLAB_TORCH_THREADS overrides.
INFERENCE_THREADS = 1
# A traced network (TorchBackend.trace) must give the eager network's logits to this much
# (float32 rounding differs with the memory layout, ~1e-6) and the same argmax, or it is not used.
TRACE_TOLERANCE = 1e-4
# Batch sizes the traced network is checked at (one image, a request with its views, a batch).
TRACE_CHECK_SIZES = (1, 5, 13)

logger = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    """The ``torch.device`` for ``name``: ``auto`` picks CUDA, then MPS, then the CPU; an
    explicit device that is absent (or a name that is not one) is a :class:`DigitlabError`."""
    if not is_device_name(name):
        raise DigitlabError(f"--device must be {DEVICE_CHOICES}, got {name!r}")
    mps = getattr(torch.backends, "mps", None)
    mps_here = bool(mps and mps.is_available())
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if mps_here else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DigitlabError(f"--device {name}: no CUDA GPU is available (try --device cpu)")
        index = int(name.removeprefix("cuda:")) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise DigitlabError(
                f"--device {name}: this machine has {torch.cuda.device_count()} CUDA GPU(s)"
            )
    if name == "mps" and not mps_here:
        raise DigitlabError("--device mps: Apple MPS is not available (try --device cpu)")
    return torch.device(name)


def inference_threads() -> int:
    """``$DIGITLAB_TORCH_THREADS`` or :data:`INFERENCE_THREADS`."""
    return positive_int_env(ENV_TORCH_THREADS, INFERENCE_THREADS)


def set_inference_threads(threads: int | None = None) -> int:
    """Set PyTorch's intra-op threads for this process (default :func:`inference_threads`)."""
    n = threads or inference_threads()
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


class TorchBackend:
    """An ``nn.Module`` run by PyTorch on ``device`` (default the CPU), in inference mode."""

    backend = "torch"

    def __init__(
        self, model: torch.nn.Module, record: ModelRecord, device: str | torch.device = "cpu"
    ) -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.record = record
        self.record.backend = "torch"
        self.record.device = str(self.device)
        self.traced: torch.jit.ScriptModule | None = None  # see trace()

    def trace(self) -> bool:
        """Run :meth:`logits` through a frozen TorchScript trace of the network, channels-last
        (for a server: ~1.4x less CPU for a request's five images than eager on one thread;
        tracing takes about a second). Checked against the eager network on random images at
        several batch sizes (logits within :data:`TRACE_TOLERANCE`, same argmax); if tracing
        fails or the check does not pass, the eager network stays and this returns False.
        Heat-map gradients always use the eager network. On a GPU nothing is traced (returns
        False): there a pass is bound by kernel launches, not by the CPU work tracing saves, and
        TF32 convolutions make the traced and eager logits differ by ~1e-3 (an H200)."""
        if self.device.type != "cpu":
            logger.debug("%s: not traced on %s", self.record.name, self.device)
            return False
        rng = np.random.default_rng(0)
        try:
            example = torch.rand(5, *IMAGE_SHAPE, device=self.device).contiguous(
                memory_format=torch.channels_last
            )
            with torch.inference_mode():
                layout = copy.deepcopy(self.model).to(memory_format=torch.channels_last)
                with warnings.catch_warnings():  # torch 2.13 calls jit.trace deprecated
                    warnings.simplefilter("ignore", DeprecationWarning)
                    traced = torch.jit.freeze(torch.jit.trace(layout, example).eval())
                for n in TRACE_CHECK_SIZES:
                    x = torch.from_numpy(rng.random((n, *IMAGE_SHAPE), dtype=np.float32))
                    x = x.to(self.device)
                    want = self.model(x)
                    got = traced(x.contiguous(memory_format=torch.channels_last))
                    if got.shape != want.shape or not (
                        torch.allclose(got, want, rtol=0.0, atol=TRACE_TOLERANCE)
                        and torch.equal(got.argmax(1), want.argmax(1))
                    ):
                        raise ValueError(f"traced logits differ from eager at batch {n}")
        except Exception as exc:  # tracing is an optimisation: any failure keeps eager
            logger.warning("%s: running eager PyTorch (tracing failed: %s)", self.record.name, exc)
            self.traced = None
            return False
        self.traced = traced
        return True

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """float32 (N, 1, 28, 28) in [0, 1], ink = 1 -> float32 (N, 10) logits."""
        x = torch.from_numpy(
            np.ascontiguousarray(batch, dtype=np.float32).reshape(-1, *IMAGE_SHAPE)
        ).to(self.device)
        with torch.inference_mode():
            if self.traced is not None:
                out = self.traced(x.contiguous(memory_format=torch.channels_last))
            else:
                out = self.model(x)
            return out.float().cpu().numpy()

    def input_gradient(self, batch: np.ndarray, target: Sequence[int]) -> np.ndarray:
        """d logit[target] / d input for each image: (N, 1, 28, 28) float32 (for saliency)."""
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.device)
        x.requires_grad_(True)
        out = self.model(x)
        picked = out.gather(1, torch.as_tensor(list(target), device=self.device).view(-1, 1)).sum()
        (grad,) = torch.autograd.grad(picked, x)
        return grad.cpu().numpy()

    def __repr__(self) -> str:
        where = "" if self.device.type == "cpu" else f", device={str(self.device)!r}"
        return f"TorchBackend({self.record.source!r}, name={self.record.name!r}{where})"
