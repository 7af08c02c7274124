"""PyTorch backend: runs a network (built from a checkpoint by ``digitlab.training``) on the CPU.

The engine never builds networks itself (that is training's model zoo): the caller hands in
the ``nn.Module`` and its :class:`ModelRecord` (``digitlab.api.load_model`` does).

Threads: ``torch.set_num_threads`` is process-wide, so it is set once per process, by the
application (:func:`set_inference_threads`: the CLI, the server and the desktop app call it at
start-up), never around each forward pass: a lock held across the pass would let concurrent
callers run one pass at a time.
"""

from __future__ import annotations

import copy
import logging
import warnings
from collections.abc import Sequence

import numpy as np
import torch

from digitlab.core.constants import IMAGE_SHAPE
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
    """An ``nn.Module`` run by PyTorch on the CPU, in inference mode."""

    backend = "torch"

    def __init__(self, model: torch.nn.Module, record: ModelRecord) -> None:
        self.model = model.eval()
        self.record = record
        self.record.backend = "torch"
        self.traced: torch.jit.ScriptModule | None = None  # see trace()

    def trace(self) -> bool:
        """Run :meth:`logits` through a frozen TorchScript trace of the network, channels-last
        (for a server: ~1.4x less CPU for a request's five images than eager on one thread;
        tracing takes about a second). Checked against the eager network on random images at
        several batch sizes (logits within :data:`TRACE_TOLERANCE`, same argmax); if tracing
        fails or the check does not pass, the eager network stays and this returns False.
        Heat-map gradients always use the eager network."""
        rng = np.random.default_rng(0)
        try:
            example = torch.rand(5, *IMAGE_SHAPE).contiguous(memory_format=torch.channels_last)
            with torch.inference_mode():
                layout = copy.deepcopy(self.model).to(memory_format=torch.channels_last)
                with warnings.catch_warnings():  # torch 2.13 calls jit.trace deprecated
                    warnings.simplefilter("ignore", DeprecationWarning)
                    traced = torch.jit.freeze(torch.jit.trace(layout, example).eval())
                for n in TRACE_CHECK_SIZES:
                    x = torch.from_numpy(rng.random((n, *IMAGE_SHAPE), dtype=np.float32))
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
        )
        with torch.inference_mode():
            if self.traced is not None:
                return self.traced(x.contiguous(memory_format=torch.channels_last)).float().numpy()
            return self.model(x).float().numpy()

    def input_gradient(self, batch: np.ndarray, target: Sequence[int]) -> np.ndarray:
        """d logit[target] / d input for each image: (N, 1, 28, 28) float32 (for saliency)."""
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).requires_grad_(True)
        out = self.model(x)
        picked = out.gather(1, torch.as_tensor(list(target)).view(-1, 1)).sum()
        (grad,) = torch.autograd.grad(picked, x)
        return grad.numpy()

    def __repr__(self) -> str:
        return f"TorchBackend({self.record.source!r}, name={self.record.name!r})"
