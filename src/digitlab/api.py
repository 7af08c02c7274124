"""The public API: load a model by name or path and get a :class:`Recognizer`.

This is the one place where the two halves meet: ``core.resolve`` says which file a name
means, ``training.checkpoint`` turns a PyTorch checkpoint into a network (training owns the
model zoo), and ``engine.backends`` run it. An ``.onnx`` file (or the bundled model on a
machine without torch) never imports torch.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

from digitlab.core.constants import BACKENDS
from digitlab.core.device import DEVICE_CHOICES, is_device_name
from digitlab.core.errors import CheckpointError, DigitlabError
from digitlab.core.resolve import (
    ResolvedModel,
    is_bundled_name,
    resolve_cut_scorer,
    resolve_model,
)
from digitlab.engine.recognizer import Recognizer

log = logging.getLogger(__name__)


def torch_available() -> bool:
    """Whether torch can be imported (ONNX-only installs have no torch)."""
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def load_model(model: Any = None, backend: str = "auto", device: str = "cpu") -> Recognizer:
    """Load a recogniser.

    ``model``: None / "default" / "bundled" = the bundled model; "ensemble" = the bundled
    ensemble (more accurate, ~4x slower; PyTorch only); a path ending in ``.onnx`` runs with ONNX
    Runtime; any other path is a digitlab checkpoint run with PyTorch; a :class:`Recognizer` is
    returned as it is. ``backend``: "auto" (by the path; the bundled model uses torch when
    installed, else the bundled ``default.onnx``), "torch" or "onnx". ``device``: where PyTorch
    runs the network: "cpu" (default: fastest for one image at a time), "cuda", "cuda:N", "mps"
    or "auto" (a GPU when there is one); any other device than the CPU implies PyTorch (ONNX
    Runtime runs on the CPU here), so ``backend="onnx"`` with a GPU device is an error. Raises
    :class:`CheckpointError` with a clear message for missing, corrupt or incompatible files.
    """
    if isinstance(model, Recognizer):
        return model
    if backend not in BACKENDS:
        raise DigitlabError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if not is_device_name(device):
        raise DigitlabError(f"device must be {DEVICE_CHOICES}, got {device!r}")
    if device != "cpu":
        if backend == "onnx":
            raise DigitlabError(
                f"device {device!r} runs PyTorch; ONNX Runtime runs on the CPU here "
                "(use backend torch, or device cpu)"
            )
        if not torch_available():
            raise DigitlabError(f"device {device!r} needs PyTorch, which is not installed")
        backend = "torch"
    want_onnx = backend == "onnx" or (backend == "auto" and not torch_available())
    resolved = resolve_model(model, prefer_onnx=want_onnx and is_bundled_name(model))
    if backend == "onnx" and resolved.kind != "onnx" and not resolved.bundled:
        resolved = ResolvedModel(resolved.path, "onnx", False)
    if resolved.kind == "onnx":
        if device != "cpu":
            raise DigitlabError(f"{resolved.path}: an .onnx file runs on the CPU (device cpu)")
        return _onnx_recognizer(resolved.path, cut_scorer=_cut_scorer(onnx=True))
    return _torch_recognizer(resolved, device, cut_scorer=_cut_scorer(onnx=False))


def _cut_scorer(*, onnx: bool) -> Callable[[], Recognizer]:
    """A loader of the bundled cut scorer (``core.resolve.BUNDLED_CUT_SCORER``) for the same
    runtime as the reading model (ONNX Runtime, or PyTorch on the CPU)."""

    def load() -> Recognizer:
        resolved = resolve_cut_scorer(onnx=onnx)
        if onnx:
            return _onnx_recognizer(resolved.path)
        return _torch_recognizer(resolved)

    return load


def _onnx_recognizer(
    path: os.PathLike, *, cut_scorer: Callable[[], Recognizer] | None = None
) -> Recognizer:
    """A recogniser running an ``.onnx`` file with ONNX Runtime (imported lazily)."""
    log.debug("loading ONNX model %s", path)
    try:
        from digitlab.engine.backends.onnx import OnnxBackend
    except ImportError as exc:
        raise CheckpointError(
            f"ONNX model {path}: the ONNX backend cannot be imported ({exc}); "
            "pip install 'digitlab[onnx]'"
        ) from None
    return Recognizer(OnnxBackend(path), cut_scorer=cut_scorer)


def _torch_recognizer(
    resolved: ResolvedModel,
    device: str = "cpu",
    *,
    cut_scorer: Callable[[], Recognizer] | None = None,
) -> Recognizer:
    """A recogniser running a checkpoint with PyTorch on ``device``."""
    if not torch_available():
        where = "the bundled model" if resolved.bundled else str(resolved.path)
        raise CheckpointError(
            f"{where}: PyTorch checkpoints need torch, which is not installed; "
            "install torch or pass an exported .onnx model"
        )
    from digitlab.core.record import ModelRecord
    from digitlab.engine.backends.torch import TorchBackend, resolve_device
    from digitlab.training.checkpoint import load_model_from_checkpoint
    from digitlab.training.models import count_parameters

    where = resolve_device(device)  # an absent GPU fails here, by name
    network, ckpt = load_model_from_checkpoint(resolved.path)
    record = ModelRecord.from_checkpoint(ckpt, count_parameters(network))
    return Recognizer(TorchBackend(network, record, where), cut_scorer=cut_scorer)


def available_models() -> list[str]:
    """Names of every network in the model zoo (see ``digitlab models``)."""
    from digitlab.training.models import available_models as _available

    return _available()
