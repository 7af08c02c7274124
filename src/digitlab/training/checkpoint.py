"""Checkpoints: one self-describing, safe-to-load file per trained model.

A checkpoint is a plain dict of tensors and Python primitives saved with ``torch.save`` and read
with ``torch.load(..., weights_only=True)``, so loading one can never run pickled code. It carries
everything needed to rebuild and use the model without the run that made it:

    format, format_version   "digitlab-checkpoint", FORMAT_VERSION
    model_name, model_config registry name + constructor kwargs -> models.create_model
    state_dict               the weights
    temperature              softmax temperature fitted on the validation split (1.0 = none)
    energy_reference         median logsumexp(logits / temperature) of the validation digits
                             (optional; scales the recogniser's energy thresholds)
    epoch, metrics           last finished epoch and its metrics row
    train_config             the resolved training options (config.json of the run)
    optimizer_state, scheduler_state, rng_state   for an exact --resume (absent in bundled models)

Writes are atomic (:func:`digitlab.core.io.atomic_write`), so a crash mid-write leaves the
previous file intact.
"""

from __future__ import annotations

import os
import re
from typing import Any

import torch
from torch import nn

from digitlab.core.errors import CheckpointError, DigitlabError
from digitlab.core.io import atomic_write
from digitlab.core.resolve import resolve_model
from digitlab.training.models import create_model

FORMAT = "digitlab-checkpoint"
FORMAT_VERSION = 1


def _to_primitive(value: Any) -> Any:
    """Tuples -> lists, recursively, so configs survive JSON and the weights-only unpickler."""
    if isinstance(value, dict):
        return {k: _to_primitive(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_primitive(v) for v in value]
    return value


def save_checkpoint(
    path: str | os.PathLike,
    *,
    model_name: str,
    model_config: dict,
    model: nn.Module,
    epoch: int = 0,
    metrics: dict | None = None,
    train_config: dict | None = None,
    temperature: float = 1.0,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    extra: dict | None = None,
) -> None:
    """Save a model (and optionally its training state) atomically to ``path``."""
    from digitlab import __version__

    # Strip wrappers (DDP's .module, torch.compile's ._orig_mod) so the file loads anywhere.
    raw = getattr(model, "module", model)
    raw = getattr(raw, "_orig_mod", raw)
    ckpt: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "digitlab_version": __version__,
        "model_name": model_name,
        "model_config": _to_primitive(model_config),
        "state_dict": {k: v.detach().cpu() for k, v in raw.state_dict().items()},
        "temperature": float(temperature),
        "epoch": int(epoch),
        "metrics": _to_primitive(metrics or {}),
        "train_config": _to_primitive(train_config or {}),
    }
    if optimizer is not None:
        ckpt["optimizer_state"] = optimizer.state_dict()
    if scheduler is not None:
        ckpt["scheduler_state"] = scheduler.state_dict()
    if extra:
        ckpt.update(_to_primitive(extra))
    atomic_write(path, lambda tmp: torch.save(ckpt, tmp))


def load_checkpoint(path: str | os.PathLike | None) -> dict[str, Any]:
    """Read and validate a checkpoint (``None``/"default" = the bundled model).

    Raises :class:`CheckpointError` naming the file and what is wrong: missing, not a torch file,
    not a digitlab checkpoint, a newer format, or an unknown model.
    """
    path = resolve_model(path).path
    if not path.exists():
        raise CheckpointError(f"checkpoint {path}: no such file")
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path}: is a directory, expected a .pt file")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt/unsafe files
        raise CheckpointError(f"checkpoint {path}: {_load_failure(exc)}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path}: not a digitlab checkpoint (no 'format' field)")
    version = ckpt.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path}: format_version {version!r} is newer than this digitlab "
            f"understands ({FORMAT_VERSION}); upgrade digitlab"
        )
    for key in ("model_name", "model_config", "state_dict"):
        if key not in ckpt:
            raise CheckpointError(f"checkpoint {path}: missing field {key!r}")
    ckpt["path"] = str(path)
    return ckpt


def _load_failure(exc: Exception) -> str:
    """One readable sentence for why ``torch.load(weights_only=True)`` failed.

    torch's own message is a page of advice to retry with ``weights_only=False`` — exactly what
    must not be done with an untrusted file — so we keep only the reason.
    """
    text = str(exc)
    match = re.search(r"Unsupported global: GLOBAL (\S+)", text)
    if match:
        return (
            "cannot be read as a safe (weights-only) torch file: it holds Python objects "
            f"({match.group(1)}) that could run code when loaded; not a digitlab checkpoint"
        )
    return (
        "cannot be read as a safe (weights-only) torch file: corrupt, truncated, or not a "
        f"PyTorch file ({type(exc).__name__})"
    )


def build_model(ckpt: dict[str, Any]) -> nn.Module:
    """Rebuild the network a checkpoint describes, load its weights, and put it in eval mode."""
    where = ckpt.get("path", "checkpoint")
    try:
        model = create_model(ckpt["model_name"], **ckpt["model_config"])
    except DigitlabError as exc:
        raise CheckpointError(f"{where}: {exc}") from None
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as exc:
        raise CheckpointError(
            f"{where}: weights do not fit model {ckpt['model_name']!r}: {str(exc).splitlines()[0]}"
        ) from None
    return model.eval()


def load_model_from_checkpoint(path: str | os.PathLike | None) -> tuple[nn.Module, dict[str, Any]]:
    """``load_checkpoint`` + ``build_model``: the model in eval mode and the checkpoint dict."""
    ckpt = load_checkpoint(path)
    return build_model(ckpt), ckpt
