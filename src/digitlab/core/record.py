"""One record of what a model is: read from a checkpoint or from ONNX metadata, written to both.

A trained model carries, besides its weights, the facts every front end shows or uses: which
network it is (registry name and constructor config), its size, the softmax temperature fitted
on the validation split, the energy scale of its validation digits (the recogniser's energy
thresholds are relative to it), its accuracies and where it came from. A checkpoint stores them
as top-level fields (``model_name``, ``model_config``, ``temperature``, ``energy_reference``,
``metrics``, ``epoch``, ``digitlab_version``); an ONNX export stores them as string
``metadata_props``. :class:`ModelRecord` is the one reader and writer of both (compare
whisper's ``ModelDimensions`` stored in its checkpoint). No torch.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

# Which metrics row keys hold the accuracies (older runs wrote the long names).
_VAL_KEYS = ("val_acc", "val_accuracy")
_TEST_KEYS = ("test_acc", "test_accuracy")


def finite_float(value: Any) -> float | None:
    """``value`` as a finite float, else None (a run trained with ``--val-size 0`` records NaN
    validation metrics, which JSON cannot carry; ONNX metadata stores numbers as strings)."""
    if isinstance(value, str):
        try:
            value = float(value) if value.strip() else None
        except ValueError:
            return None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def first_metric(metrics: dict[str, Any], keys: tuple[str, ...]) -> float | None:
    """The first of ``keys`` in ``metrics`` that holds a finite number, else None."""
    for key in keys:
        number = finite_float(metrics.get(key))
        if number is not None:
            return number
    return None


def _positive(value: Any) -> float | None:
    number = finite_float(value)
    return number if number is not None and number > 0 else None


@dataclass
class ModelRecord:
    """What a model is and how well it does; every field has a safe default."""

    name: str = "model"  # registry name (``digitnet``) or, for a foreign ONNX file, its stem
    config: dict[str, Any] = field(default_factory=dict)  # constructor kwargs
    parameters: int = 0
    temperature: float = 1.0  # probabilities = softmax(logits / temperature)
    energy_reference: float | None = None  # median logsumexp(logits / T) of validation digits
    val_accuracy: float | None = None
    test_accuracy: float | None = None
    epoch: int | None = None
    source: str = ""  # the file it was loaded from
    backend: str = ""  # the runtime running it: "torch" or "onnx" (set when loaded)
    device: str = "cpu"  # where the runtime runs it: "cpu", or "cuda:0" etc. (PyTorch only)
    digitlab_version: str = ""
    quantization: str = "none (float32)"

    # ---- checkpoints ------------------------------------------------------------------------

    @classmethod
    def from_checkpoint(cls, ckpt: dict[str, Any], parameters: int = 0) -> ModelRecord:
        """The record of a checkpoint dict (``training.checkpoint`` format)."""
        metrics = ckpt.get("metrics") or {}
        epoch = ckpt.get("epoch")
        return cls(
            name=str(ckpt.get("model_name", "model")),
            config=dict(ckpt.get("model_config") or {}),
            parameters=int(parameters),
            temperature=_positive(ckpt.get("temperature")) or 1.0,
            energy_reference=_positive(ckpt.get("energy_reference")),
            val_accuracy=first_metric(metrics, _VAL_KEYS),
            test_accuracy=first_metric(metrics, _TEST_KEYS),
            epoch=int(epoch) if isinstance(epoch, int) else None,
            source=str(ckpt.get("path", "")),
            digitlab_version=str(ckpt.get("digitlab_version", "")),
            backend="torch",
        )

    def checkpoint_fields(self) -> dict[str, Any]:
        """The calibration fields a checkpoint stores at its top level."""
        fields: dict[str, Any] = {"temperature": float(self.temperature)}
        if self.energy_reference is not None:
            fields["energy_reference"] = float(self.energy_reference)
        return fields

    # ---- ONNX metadata ----------------------------------------------------------------------

    @classmethod
    def from_onnx_metadata(cls, meta: dict[str, str], *, source: str, stem: str) -> ModelRecord:
        """The record of an ONNX file's ``metadata_props`` (``stem`` names a foreign file)."""
        try:
            config = json.loads(meta.get("model_config", "{}"))
        except json.JSONDecodeError:
            config = {}
        try:
            parameters = int(meta.get("parameters", "0"))
        except ValueError:
            parameters = 0
        epoch = meta.get("epoch", "")
        return cls(
            name=meta.get("model_name") or stem,
            config=config if isinstance(config, dict) else {},
            parameters=parameters,
            temperature=_positive(meta.get("temperature")) or 1.0,
            energy_reference=_positive(meta.get("energy_reference")),
            val_accuracy=finite_float(meta.get("val_accuracy")),
            test_accuracy=finite_float(meta.get("test_accuracy")),
            epoch=int(epoch) if epoch.isdigit() else None,
            source=source,
            digitlab_version=meta.get("digitlab_version", ""),
            quantization=meta.get("quantization", "unknown"),
            backend="onnx",
        )

    def onnx_metadata(self) -> dict[str, str]:
        """This record as ONNX ``metadata_props`` (strings; JSON where nested)."""

        def number(value: float | None) -> str:
            return "" if value is None else repr(float(value))

        return {
            "model_name": self.name,
            "model_config": json.dumps(self.config, sort_keys=True),
            "parameters": str(int(self.parameters)),
            "temperature": repr(float(self.temperature)),
            "energy_reference": number(self.energy_reference),
            "val_accuracy": number(self.val_accuracy),
            "test_accuracy": number(self.test_accuracy),
            "epoch": "" if self.epoch is None else str(self.epoch),
            "digitlab_version": self.digitlab_version,
            "quantization": self.quantization,
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of every field."""
        return asdict(self)
