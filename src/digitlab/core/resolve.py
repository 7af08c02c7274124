"""Resolving a model name or path: the one place that knows the shipped models.

``resolve_model(None | "default" | "bundled" | "ensemble" | path)`` says which file a name
means and how it runs (a PyTorch checkpoint or an ONNX file), like whisper's ``load_model``.
Torch-free on purpose: the ONNX-only deployment and the CLI's argument checks use it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from digitlab.core.errors import CheckpointError

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
# The default model (MODEL_CARD.md) and its ONNX export, for deployments without torch.
BUNDLED_MODEL = WEIGHTS_DIR / "default.pt"
BUNDLED_ONNX = WEIGHTS_DIR / "default.onnx"
# The accuracy option: an ensemble of four seeds of the default model's recipe, about 4x the
# latency (MODEL_CARD.md).
BUNDLED_ENSEMBLE = WEIGHTS_DIR / "ensemble.pt"
# The cut scorer: the default model fine-tuned with outlier pieces (MODEL_CARD.md), whose
# confidence and energy say which candidate cuts of a number are whole digits. Number reading
# scores cuts with it and reads the digits it cuts out with the recogniser's own model.
BUNDLED_CUT_SCORER = WEIGHTS_DIR / "cut_scorer.pt"
BUNDLED_CUT_SCORER_ONNX = WEIGHTS_DIR / "cut_scorer.onnx"
# What ``--model`` / ``load_model()`` accept instead of a path: these names mean the default
# model (as does no model at all), this one the ensemble.
DEFAULT_MODEL_NAMES = ("default", "bundled")
ENSEMBLE_MODEL_NAME = "ensemble"
MODEL_NAMES = (*DEFAULT_MODEL_NAMES, ENSEMBLE_MODEL_NAME)
MODEL_SUFFIXES = (".pt", ".onnx")


@dataclass(frozen=True)
class ResolvedModel:
    """A model file and how it runs: ``kind`` is "torch" (a checkpoint) or "onnx"."""

    path: Path
    kind: str
    bundled: bool  # one of the shipped models (by name or no name)


def is_bundled_name(model: object) -> bool:
    """Whether ``model`` (None or a name) means the bundled default model."""
    return model is None or str(model) in DEFAULT_MODEL_NAMES


def resolve_model(model: str | os.PathLike | None, *, prefer_onnx: bool = False) -> ResolvedModel:
    """Which file ``model`` names: None / "default" / "bundled" -> the bundled model (its ONNX
    export when ``prefer_onnx``), "ensemble" -> the bundled ensemble, anything else a path
    (``.onnx`` runs with ONNX Runtime, any other file is a checkpoint).

    Raises :class:`CheckpointError` naming the problem: a shipped file missing from the
    installation, or a path that does not exist -- with the valid names when it does not look
    like a path at all (``--model resnet9000``).
    """
    if is_bundled_name(model):
        path, kind = (BUNDLED_ONNX, "onnx") if prefer_onnx else (BUNDLED_MODEL, "torch")
        return ResolvedModel(_shipped(path), kind, True)
    if str(model) == ENSEMBLE_MODEL_NAME:
        return ResolvedModel(_shipped(BUNDLED_ENSEMBLE), "torch", True)
    path = Path(model)  # type: ignore[arg-type]
    kind = "onnx" if path.suffix.lower() == ".onnx" else "torch"
    if not path.exists():
        if path.suffix.lower() not in MODEL_SUFFIXES and len(path.parts) == 1:
            raise CheckpointError(
                f"model {str(model)!r}: no such file, and not a model name; give a checkpoint "
                f"(.pt) or .onnx path, or one of: {', '.join(MODEL_NAMES)}"
            )
        what = "ONNX model" if kind == "onnx" else "checkpoint"
        raise CheckpointError(f"{what} {path}: no such file")
    return ResolvedModel(path, kind, False)


def resolve_cut_scorer(*, onnx: bool) -> ResolvedModel:
    """The bundled cut scorer: its ONNX export when ``onnx``, else its checkpoint. Raises
    :class:`CheckpointError` when the file is missing from the installation."""
    if onnx:
        return ResolvedModel(_shipped(BUNDLED_CUT_SCORER_ONNX), "onnx", True)
    return ResolvedModel(_shipped(BUNDLED_CUT_SCORER), "torch", True)


def _shipped(path: Path) -> Path:
    if not path.exists():
        raise CheckpointError(
            f"the bundled model {path} is missing from this installation; "
            "reinstall digitlab or pass a checkpoint path"
        )
    return path
