"""The models shipped inside the package, and the names that select them.

Torch-free on purpose: the recogniser's ONNX-only path and the CLI's argument checks use these
without importing torch (which :mod:`digitlab.checkpoint` needs).
"""

from __future__ import annotations

from pathlib import Path

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
# The default model (MODEL_CARD.md) and its ONNX export, for deployments without torch.
BUNDLED_MODEL = WEIGHTS_DIR / "default.pt"
BUNDLED_ONNX = WEIGHTS_DIR / "default.onnx"
# The accuracy option: an ensemble of four seeds of the default model's recipe, about 4x the
# latency (MODEL_CARD.md).
BUNDLED_ENSEMBLE = WEIGHTS_DIR / "ensemble.pt"
# What ``--model`` / ``load_model()`` accept instead of a path: these names mean the default
# model (as does no model at all), this one the ensemble.
DEFAULT_MODEL_NAMES = ("default", "bundled")
ENSEMBLE_MODEL_NAME = "ensemble"
