"""ONNX Runtime backend for the recogniser: runs an exported ``.onnx`` model without torch.

This module imports only numpy and onnxruntime (lazily, in :class:`OnnxBackend`), never torch,
so a deployment can install ``digitlab`` without torch and still predict, serve and run the GUI
from an ONNX file (see the README's "Deploy without PyTorch").

The backend follows the engine's backend protocol: ``logits(batch)`` maps float32
``(N, 1, 28, 28)`` images in [0, 1] (ink = 1.0) to ``(N, 10)`` logits, and ``record`` (a
:class:`~digitlab.core.record.ModelRecord`, read from the ``metadata_props`` that the export
writes) describes the model. An ONNX file from elsewhere works too if its input and output
fit, with the file name as model name and temperature 1.0.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from digitlab.core.constants import IMAGE_SHAPE, NUM_CLASSES
from digitlab.core.errors import CheckpointError
from digitlab.core.record import ModelRecord
from digitlab.core.settings import ENV_ORT_THREADS, positive_int_env, usable_cores

logger = logging.getLogger(__name__)

# ONNX Runtime's intra-op pool size when not given: one thread per usable core, capped because
# these nets are small (a 256-image batch is a few ms of work) and more threads only add sync.
MAX_DEFAULT_THREADS = 4


def default_threads() -> int:
    """``$DIGITLAB_ORT_THREADS`` or the usable cores, capped at :data:`MAX_DEFAULT_THREADS`."""
    return positive_int_env(ENV_ORT_THREADS, max(1, min(usable_cores(), MAX_DEFAULT_THREADS)))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _dims_fit(shape: list[Any], expected: tuple[int, ...]) -> bool:
    """``shape`` (batch dim first, symbolic or fixed) matches ``(batch, *expected)``."""
    if len(shape) != 1 + len(expected):
        return False
    return all(not isinstance(d, int) or d == e for d, e in zip(shape[1:], expected, strict=True))


class OnnxBackend:
    """An ONNX model run by ONNX Runtime on the CPU.

    ``path`` is the ``.onnx`` file; ``intra_op_num_threads`` sizes ONNX Runtime's thread pool
    (default :func:`default_threads`: 2 on a 2-core machine). Raises :class:`CheckpointError`
    naming the file when it is missing, not ONNX, corrupt, or does not take 28x28 images.
    """

    backend = "onnx"

    def __init__(self, path: str | os.PathLike, *, intra_op_num_threads: int | None = None) -> None:
        self.path = Path(path)
        self.source = str(self.path)
        self.session = self._open_session(self.path, intra_op_num_threads or default_threads())
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        self._check_io(inputs, outputs)
        self.input_name = inputs[0].name
        self.output_name = outputs[0].name
        meta = self.session.get_modelmeta()
        self.metadata: dict[str, str] = dict(meta.custom_metadata_map or {})
        md = self.metadata
        self.record = ModelRecord.from_onnx_metadata(md, source=self.source, stem=self.path.stem)
        if "digitlab_format" not in md:
            logger.warning(
                "%s: no digitlab metadata; assuming a (N,1,28,28) [0,1] ink=1 input and "
                "temperature 1.0",
                self.path,
            )

    @staticmethod
    def _open_session(path: Path, threads: int):
        """An ``InferenceSession`` for ``path``, every failure as a CheckpointError."""
        if not path.exists():
            raise CheckpointError(f"ONNX model {path}: no such file")
        if path.is_dir():
            raise CheckpointError(f"ONNX model {path}: is a directory, expected a .onnx file")
        try:
            import onnxruntime as ort
        except ImportError:
            raise CheckpointError(
                f"ONNX model {path}: onnxruntime is not installed; pip install onnxruntime"
            ) from None
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1  # a chain of layers: nothing to run side by side
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only: no optimiser chatter on stderr
        try:
            return ort.InferenceSession(
                str(path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own types (InvalidProtobuf, Fail...)
            raise CheckpointError(
                f"ONNX model {path}: cannot be loaded by ONNX Runtime (not an ONNX model, "
                f"or corrupt): {_first_line(exc)}"
            ) from None

    def _check_io(self, inputs: list, outputs: list) -> None:
        """One float image input ``(N, 1, 28, 28)`` and a ``(N, 10)`` first output."""
        if len(inputs) != 1:
            raise CheckpointError(
                f"ONNX model {self.path}: has {len(inputs)} inputs, expected one image input"
            )
        tensor, out = inputs[0], outputs[0]
        if tensor.type != "tensor(float)" or not _dims_fit(tensor.shape, IMAGE_SHAPE):
            raise CheckpointError(
                f"ONNX model {self.path}: input {tensor.name!r} is {tensor.type} {tensor.shape}, "
                f"expected float32 (N, {', '.join(map(str, IMAGE_SHAPE))})"
            )
        if not _dims_fit(out.shape, (NUM_CLASSES,)):
            raise CheckpointError(
                f"ONNX model {self.path}: output {out.name!r} has shape {out.shape}, "
                f"expected (N, {NUM_CLASSES}) logits"
            )

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """float32 ``(N, 1, 28, 28)`` in [0, 1] (ink = 1) -> float32 ``(N, 10)`` logits."""
        x = np.ascontiguousarray(batch, dtype=np.float32)
        if x.ndim != 1 + len(IMAGE_SHAPE) or x.shape[1:] != IMAGE_SHAPE:
            raise ValueError(f"expected a batch of shape (N, 1, 28, 28), got {x.shape}")
        if len(x) == 0:
            return np.zeros((0, NUM_CLASSES), dtype=np.float32)
        return self.session.run([self.output_name], {self.input_name: x})[0]

    def __repr__(self) -> str:
        return (
            f"OnnxBackend({self.source!r}, name={self.record.name!r}, "
            f"quantization={self.record.quantization!r})"
        )
