"""Export a checkpoint to ONNX, verify it against PyTorch, and optionally quantise it to int8.

The exported file is what a deployment needs and nothing more: one self-contained ``.onnx``
file (weights inside, no external-data side file) with

* input ``image``: ``(N, 1, 28, 28)`` float32 in [0, 1], ink = 1.0, paper = 0.0 (MNIST
  polarity, pixel / 255), dynamic batch dimension ``N``; the normalisation
  ``(x - 0.1307) / 0.3081`` is part of the graph, exactly as in the PyTorch model;
* output ``logits``: ``(N, 10)``; the softmax temperature is stored in the metadata and applied
  by the recogniser, the same for every backend;
* ``metadata_props``: model name and config, classes, the input contract, temperature, energy
  reference, validation/test accuracy, digitlab and torch versions, exporter, source checkpoint
  and its SHA-256, and (for int8 models) how it was quantised. :mod:`digitlab.engine.backends.onnx`
  reads them.

Verification (:func:`verify_parity`) runs ONNX Runtime and PyTorch on the 10,000 real MNIST test
images and requires the same argmax on every image and probabilities within
:data:`PARITY_PROB_TOLERANCE`. :func:`export_onnx` writes to a temporary file and moves it into
place only once the checker and the parity check pass, so a failed export leaves nothing
behind.

Int8 (:func:`quantize_int8`) is ONNX Runtime's static QDQ quantisation, calibrated on a few
hundred images from the *training* file (the validation split when the checkpoint has one) —
never the test set, which stays the yardstick for the accuracy it reports. Before quantising,
global max and mean over a feature map (``ReduceMax`` / ``ReduceMean`` over H and W) become
``MaxPool`` / ``AveragePool`` over the whole map (:func:`pools_for_int8`: the same values),
which ONNX Runtime runs on the int8 channels-last maps directly, instead of converting the
last map back to float32 channels-first for the reductions.

One module (~750 lines) because the ONNX export, its metadata, the int8 quantisation and
the parity check against PyTorch are one operation with one report: each needs the others.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from digitlab.core.constants import IMAGE_SHAPE, MNIST_MEAN, MNIST_STD
from digitlab.core.errors import DataError, DigitlabError
from digitlab.core.record import ModelRecord
from digitlab.engine.calibrate import softmax

logger = logging.getLogger(__name__)

# --- the file's contract ------------------------------------------------------------------------

INPUT_NAME = "image"
OUTPUT_NAME = "logits"
BATCH_DIM = "N"
ONNX_FORMAT = "digitlab-onnx"
ONNX_FORMAT_VERSION = 1
CLASSES = [str(d) for d in range(10)]
# 18 is the oldest opset the torch.export-based exporter emits natively (older ones go through
# the ONNX version converter); ONNX Runtime >= 1.14 runs it.
DEFAULT_OPSET = 18
MIN_DYNAMO_OPSET = 18
EXPORTERS = ("auto", "dynamo", "torchscript")
# Example batch traced at export; any size >= 2 keeps the batch dimension symbolic.
EXAMPLE_BATCH = 2

# --- verification ---------------------------------------------------------------------------------

# Float32 ONNX Runtime and PyTorch kernels differ only in summation order (~1e-6 on these
# nets); 1e-4 is two orders of magnitude above that and far below any decision that matters.
PARITY_PROB_TOLERANCE = 1e-4
VERIFY_BATCH = 1000  # images per forward pass during verification (memory ~ 3 MB input)

# --- int8 -----------------------------------------------------------------------------------------

CALIBRATION_IMAGES = 512  # "a few hundred": enough for stable min/max ranges on MNIST
CALIBRATION_BATCH = 64
CALIBRATION_SEED = 0
# An int8 model may lose at most half a percentage point of test accuracy (typical: < 0.1).
MAX_INT8_ACCURACY_DROP = 0.005
QUANTIZATION_DESCRIPTION = (
    "int8 static QDQ (onnxruntime.quantization): uint8 activations, int8 per-channel weights, "
    "MinMax calibration; global max/mean as whole-map pools"
)

# --- speed report ---------------------------------------------------------------------------------

SPEED_BATCH = 256
SPEED_MIN_SECONDS = 0.5  # per throughput measurement; the export report is indicative only
SPEED_SINGLE_RUNS = 200


# Libraries that log routine progress at INFO/WARNING during export and quantisation.
CHATTY_LOGGERS = ("torch.onnx", "onnxscript", "onnx_ir", "onnxruntime", "root.quantization")


class ExportError(DigitlabError):
    """The model could not be exported (exporter failure, unsupported opset)."""


class ExportVerificationError(ExportError):
    """The exported model does not reproduce the PyTorch model (or int8 lost too much)."""


# --- results -------------------------------------------------------------------------------------


@dataclass
class ParityReport:
    """ONNX Runtime vs PyTorch on the same images (probabilities use the model temperature)."""

    images: int
    argmax_equal: int
    max_prob_diff: float
    max_logit_diff: float
    onnx_accuracy: float
    torch_accuracy: float
    tolerance: float = PARITY_PROB_TOLERANCE

    @property
    def ok(self) -> bool:
        """Same argmax on every image and probabilities within tolerance."""
        return self.argmax_equal == self.images and self.max_prob_diff <= self.tolerance


@dataclass
class SpeedReport:
    """Indicative ONNX Runtime speed of one model file on this machine."""

    batch_images_per_s: float
    single_p50_ms: float
    batch_size: int = SPEED_BATCH


@dataclass
class QuantizationReport:
    """An int8 model next to the float model it came from, on the same test images."""

    calibration: str
    float_accuracy: float
    int8_accuracy: float
    agreement: float
    float_size: int
    int8_size: int
    float_speed: SpeedReport | None = None
    int8_speed: SpeedReport | None = None
    max_drop: float = MAX_INT8_ACCURACY_DROP

    @property
    def ok(self) -> bool:
        """The int8 model lost at most ``max_drop`` of test accuracy."""
        return self.float_accuracy - self.int8_accuracy <= self.max_drop


@dataclass
class ExportResult:
    """What :func:`export_onnx` wrote and how it was checked."""

    path: Path
    size: int
    model_name: str
    parameters: int
    opset: int
    exporter: str
    metadata: dict[str, str]
    checked: bool = False
    parity: ParityReport | None = None
    verify_skipped: str | None = None  # why parity was not checked (None = it was)
    quantization: QuantizationReport | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        out = asdict(self)
        out["path"] = str(self.path)
        return out


# --- helpers --------------------------------------------------------------------------------------


def _require_onnx() -> None:
    """Fail with an installable hint when torch or the ONNX extras are missing."""
    for module, hint in (
        ("torch", "pip install torch (exporting needs the PyTorch model; running it does not)"),
        ("onnx", "pip install 'digitlab[onnx]'"),
        ("onnxruntime", "pip install 'digitlab[onnx]'"),
    ):
        try:
            __import__(module)
        except ImportError:
            raise DigitlabError(f"ONNX export needs the '{module}' package: {hint}") from None


def _sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file, streamed."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def to_model_input(images: np.ndarray) -> np.ndarray:
    """uint8 ``(N, 28, 28)`` MNIST images, ink = 255 -> float32 ``(N, 1, 28, 28)`` in [0, 1]."""
    return (np.asarray(images, dtype=np.float32) / 255.0)[:, None, :, :]


def _batched(fn: Callable[[np.ndarray], np.ndarray], x: np.ndarray, batch: int) -> np.ndarray:
    """Apply ``fn`` to ``x`` in slices of ``batch`` and concatenate."""
    return np.concatenate([fn(x[i : i + batch]) for i in range(0, len(x), batch)])


def build_metadata(ckpt: dict[str, Any], parameters: int, exporter: str) -> dict[str, str]:
    """The ``metadata_props`` of an exported model (all values are strings, JSON where nested)."""
    import torch

    from digitlab import __version__

    record = ModelRecord.from_checkpoint(ckpt, parameters)
    source = record.source
    shape = [BATCH_DIM, *IMAGE_SHAPE]
    input_doc = {
        "name": INPUT_NAME,
        "shape": shape,
        "dtype": "float32",
        "range": [0.0, 1.0],
        "polarity": "ink = 1.0, paper = 0.0 (MNIST: pixel / 255, white digit on black)",
        "normalisation": (
            f"inside the model: (x - {MNIST_MEAN}) / {MNIST_STD}; feed the plain [0, 1] image"
        ),
    }
    meta = {
        "digitlab_format": ONNX_FORMAT,
        "digitlab_format_version": str(ONNX_FORMAT_VERSION),
        **record.onnx_metadata(),
        "classes": json.dumps(CLASSES),
        "input": json.dumps(input_doc),
        "input_name": INPUT_NAME,
        "input_shape": json.dumps(shape),
        "normalisation": json.dumps({"mean": MNIST_MEAN, "std": MNIST_STD}),
        "output": json.dumps(
            {
                "name": OUTPUT_NAME,
                "shape": [BATCH_DIM, len(CLASSES)],
                "meaning": "logits; probabilities = softmax(logits / temperature)",
            }
        ),
        "digitlab_version": __version__,
        "torch_version": torch.__version__,
        "exporter": exporter,
        "source_checkpoint": str(source),
        "source_sha256": _sha256(source) if source and Path(source).is_file() else "",
    }
    return meta


def set_metadata(model: Any, metadata: dict[str, str]) -> None:
    """Replace an ``onnx.ModelProto``'s ``metadata_props`` with ``metadata`` (in place)."""
    del model.metadata_props[:]
    for key, value in metadata.items():
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value


def _clean_graph(model: Any) -> None:
    """Drop exporter debugging info: per-node stack traces (they embed local paths) and stale
    intermediate ``value_info`` (ONNX Runtime's quantiser re-infers shapes and chokes on it)."""
    graph = model.graph
    del graph.value_info[:]
    for proto in (*graph.node, *graph.input, *graph.output, *graph.initializer):
        del proto.metadata_props[:]


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence the exporters' chatter (deprecation notices, 'torchvision not installed')."""
    loggers = [logging.getLogger(name) for name in CHATTY_LOGGERS]
    previous = [log.level for log in loggers]
    for log in loggers:
        log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=DeprecationWarning)
            warnings.simplefilter("ignore", category=FutureWarning)
            warnings.simplefilter("ignore", category=UserWarning)
            yield
    finally:
        for log, level in zip(loggers, previous, strict=True):
            log.setLevel(level)


def resolve_exporter(exporter: str, opset: int = DEFAULT_OPSET) -> str:
    """``auto`` -> ``dynamo`` when onnxscript is installed and ``opset`` >= 18, else
    ``torchscript`` (the dynamo exporter emits opset 18+ natively; below that its version
    conversion can silently keep 18, while the TorchScript exporter writes any opset 7-20)."""
    if exporter not in EXPORTERS:
        raise DigitlabError(f"exporter {exporter!r}: choose one of {', '.join(EXPORTERS)}")
    if exporter != "auto":
        return exporter
    if opset < MIN_DYNAMO_OPSET:
        return "torchscript"
    try:
        import onnxscript  # noqa: F401
    except ImportError:
        logger.info("onnxscript is not installed: using the TorchScript exporter")
        return "torchscript"
    return "dynamo"


def _opset_of(model: Any) -> int:
    """The default-domain opset an ``onnx.ModelProto`` declares."""
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), -1)


def _torch_export(model: Any, path: str, opset: int, exporter: str) -> None:
    """Run torch.onnx.export with the chosen exporter into ``path`` (one file, weights inside).

    Both exporters give a clean single file for these nets (batch norm folded into the convs,
    the Normalize layer as Sub/Div). We default to the torch.export-based ("dynamo") exporter:
    it is torch's default since 2.9 and the maintained one, while the TorchScript exporter is
    deprecated and scheduled for removal. ``external_data=False`` keeps the weights inside the
    file (the dynamo exporter otherwise may write a ``.data`` side file); the TorchScript one is
    the fallback when onnxscript is missing (it is part of the ``onnx`` extra).
    """
    import torch

    example = torch.rand(EXAMPLE_BATCH, 1, 28, 28)
    common = {
        "input_names": [INPUT_NAME],
        "output_names": [OUTPUT_NAME],
        "opset_version": opset,
    }
    with _quiet_exporter(), torch.inference_mode(False), torch.no_grad():
        if exporter == "dynamo":
            batch = torch.export.Dim(BATCH_DIM, min=1)
            program = torch.onnx.export(
                model,
                (example,),
                dynamo=True,
                dynamic_shapes=({0: batch},),
                external_data=False,
                verbose=False,
                **common,
            )
            program.save(path, external_data=False)
        else:
            torch.onnx.export(
                model,
                (example,),
                path,
                dynamo=False,
                dynamic_axes={INPUT_NAME: {0: BATCH_DIM}, OUTPUT_NAME: {0: BATCH_DIM}},
                do_constant_folding=True,
                **common,
            )


def _check_single_file(model: Any, where: str) -> None:
    """Fail unless every initializer is stored inside the model file."""
    from onnx import TensorProto

    external = [t.name for t in model.graph.initializer if t.data_location == TensorProto.EXTERNAL]
    if external:
        raise ExportVerificationError(
            f"{where}: {len(external)} weight tensors were stored outside the file "
            f"({', '.join(external[:3])}...); expected one self-contained file"
        )


def _check_model(model: Any, where: str) -> None:
    """``onnx.checker`` with full shape inference, as a clear error."""
    import onnx

    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ExportVerificationError(f"{where}: onnx.checker rejected the model: {exc}") from None


def _save_onnx(model: Any, path: str | os.PathLike) -> None:
    """Write an ``onnx.ModelProto`` atomically as one file."""
    import onnx

    from digitlab.core.io import atomic_write

    atomic_write(path, lambda tmp: onnx.save_model(model, tmp, save_as_external_data=False))


def _copy_atomic(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Copy a finished file into place atomically (never a half-written ``dst``)."""
    import shutil

    from digitlab.core.io import atomic_write

    atomic_write(dst, lambda tmp: shutil.copyfile(src, tmp))


def _ort_logits_fn(path: str | os.PathLike, threads: int | None = None):
    """A ``logits(batch)`` function backed by ONNX Runtime for ``path``."""
    from digitlab.engine.backends.onnx import OnnxBackend

    return OnnxBackend(path, intra_op_num_threads=threads).logits


# --- verification ---------------------------------------------------------------------------------


def verify_parity(
    onnx_path: str | os.PathLike,
    model: Any,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    temperature: float = 1.0,
    tolerance: float = PARITY_PROB_TOLERANCE,
) -> ParityReport:
    """Run ONNX Runtime and the PyTorch ``model`` on uint8 ``images`` and compare.

    Returns the report; it does not raise (see :attr:`ParityReport.ok`).
    """
    import torch

    x = to_model_input(images)
    ort_logits = _batched(_ort_logits_fn(onnx_path), x, VERIFY_BATCH)
    with torch.inference_mode():
        torch_logits = _batched(lambda b: model(torch.from_numpy(b)).numpy(), x, VERIFY_BATCH)
    ort_pred, torch_pred = ort_logits.argmax(1), torch_logits.argmax(1)
    prob_diff = np.abs(softmax(ort_logits, temperature) - softmax(torch_logits, temperature))
    return ParityReport(
        images=len(x),
        argmax_equal=int((ort_pred == torch_pred).sum()),
        max_prob_diff=float(prob_diff.max()),
        max_logit_diff=float(np.abs(ort_logits - torch_logits).max()),
        onnx_accuracy=float((ort_pred == labels).mean()),
        torch_accuracy=float((torch_pred == labels).mean()),
        tolerance=tolerance,
    )


def measure_speed(
    logits: Callable[[np.ndarray], np.ndarray],
    images: np.ndarray,
    *,
    batch_size: int = SPEED_BATCH,
    min_seconds: float = SPEED_MIN_SECONDS,
    single_runs: int = SPEED_SINGLE_RUNS,
) -> SpeedReport:
    """Throughput at ``batch_size`` (images/s) and median single-image latency (ms)."""
    x = to_model_input(images[:batch_size])
    if len(x) < batch_size:  # repeat a small sample up to a full batch
        x = np.resize(x, (batch_size, *x.shape[1:]))
    logits(x)  # warm-up: first runs allocate and pick kernels
    throughput = throughput_window(logits, x, min_seconds)
    one = np.ascontiguousarray(x[:1])
    logits(one)
    times = single_latencies(logits, one, single_runs)
    return SpeedReport(throughput, float(np.median(times)) * 1e3, batch_size)


def throughput_window(fn: Callable[[Any], object], x: Any, seconds: float) -> float:
    """Images/s of back-to-back ``fn(x)`` calls over at least ``seconds`` (at least one call)."""
    done, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds or done == 0:
        fn(x)
        done += len(x)
    return done / elapsed


def single_latencies(fn: Callable[[Any], object], one: Any, runs: int) -> list[float]:
    """Seconds per call of ``runs`` calls of ``fn(one)``."""
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn(one)
        times.append(time.perf_counter() - t0)
    return times


# --- int8 -----------------------------------------------------------------------------------------


def calibration_images(ckpt: dict[str, Any], train_images: np.ndarray) -> tuple[np.ndarray, str]:
    """A few hundred *training-file* images for int8 calibration, and where they came from.

    The checkpoint's validation split when it has one (held out from training, so
    representative), else a seeded sample of the training images. Never test images.
    """
    from digitlab.training.data import split_indices

    train_config = ckpt.get("train_config") or {}
    val_size = int(train_config.get("val_size") or 0)
    n = len(train_images)
    if 0 < val_size < n:
        _, val_idx = split_indices(n, val_size, int(train_config.get("split_seed") or 0))
        idx = val_idx[:CALIBRATION_IMAGES]
        where = f"{len(idx)} images of the validation split (val_size {val_size})"
    else:
        idx = np.random.default_rng(CALIBRATION_SEED).permutation(n)[:CALIBRATION_IMAGES]
        where = (
            f"{len(idx)} training images (seeded sample; the checkpoint has no validation split)"
        )
    return train_images[np.sort(idx)], where


def _axes_of(node: Any, initializers: dict[str, Any]) -> list[int] | None:
    """A Reduce node's axes (attribute before opset 18, constant input from 18), or None."""
    from onnx import helper, numpy_helper

    for attr in node.attribute:
        if attr.name == "axes":
            return list(helper.get_attribute_value(attr))
    if len(node.input) > 1 and node.input[1] in initializers:
        return [int(a) for a in numpy_helper.to_array(initializers[node.input[1]]).ravel()]
    return None


def pools_for_int8(model: Any) -> int:
    """Rewrite, in place, ``ReduceMax`` / ``ReduceMean`` over the spatial axes of an
    ``(N, C, H, W)`` map (``keepdims=0``) as ``MaxPool`` / ``AveragePool`` with an ``H x W``
    kernel and a ``Flatten``: the same values (a max or mean over the whole map), but ops that
    ONNX Runtime's int8 graph keeps in uint8 channels-last (NhwcMaxPool, QLinearAveragePool)
    -- the reductions made it transpose the last map back to channels-first and dequantise it
    (~5% of the int8 model's time at batch 256, DigitNet). Returns the nodes rewritten; other
    reductions are left alone."""
    import onnx
    from onnx import helper

    inferred = onnx.shape_inference.infer_shapes(model)
    shapes = {
        v.name: [
            d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim
        ]
        for v in [*inferred.graph.value_info, *inferred.graph.input]
    }
    initializers = {t.name: t for t in model.graph.initializer}
    nodes, rewritten = [], 0
    for node in model.graph.node:
        keep = next((a.i for a in node.attribute if a.name == "keepdims"), 1)
        shape = shapes.get(node.input[0]) if node.input else None
        axes = _axes_of(node, initializers) if node.op_type in ("ReduceMax", "ReduceMean") else None
        spatial = shape is not None and len(shape) == 4 and None not in shape[2:]
        if axes is None or keep != 0 or not spatial or sorted(a % 4 for a in axes) != [2, 3]:
            nodes.append(node)
            continue
        pool = "MaxPool" if node.op_type == "ReduceMax" else "AveragePool"
        pooled, base = f"{node.output[0]}_pooled", node.name or node.output[0]
        nodes.append(
            helper.make_node(
                pool, [node.input[0]], [pooled], name=f"{base}_pool", kernel_shape=shape[2:]
            )
        )
        nodes.append(
            helper.make_node("Flatten", [pooled], [node.output[0]], name=f"{base}_flat", axis=1)
        )
        rewritten += 1
    if rewritten:
        del model.graph.node[:]
        model.graph.node.extend(nodes)
        used = {name for node in nodes for name in node.input}
        unused = [t for t in model.graph.initializer if t.name not in used]
        for tensor in unused:  # the reductions' axes
            model.graph.initializer.remove(tensor)
    return rewritten


def quantize_int8(
    float_path: str | os.PathLike,
    out_path: str | os.PathLike,
    calibration: np.ndarray,
    *,
    metadata: dict[str, str] | None = None,
    pools: bool = True,
) -> None:
    """Quantise a float ONNX model to int8 (static QDQ) calibrated on uint8 ``calibration``.

    Static rather than dynamic quantisation: dynamic int8 turns convolutions into
    ConvInteger, which ONNX Runtime runs ~10x slower than the float model on CPU; static QDQ
    becomes fused QLinearConv kernels. Global max/mean reductions become whole-map pools first
    (:func:`pools_for_int8`; ``pools=False`` keeps the reductions, as before). Symbolic shape
    inference is skipped in the pre-processing step because it cannot handle opset-18
    ReduceMax (axes as an input).
    """
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    x = to_model_input(calibration)

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches = iter(
                {INPUT_NAME: x[i : i + CALIBRATION_BATCH]}
                for i in range(0, len(x), CALIBRATION_BATCH)
            )

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._batches, None)

    with tempfile.TemporaryDirectory(prefix="digitlab-quant-") as tmp:
        pre, quant = os.path.join(tmp, "pre.onnx"), os.path.join(tmp, "int8.onnx")
        pooled = os.path.join(tmp, "pooled.onnx")
        graph = onnx.load(str(float_path))
        if pools:
            logger.debug("int8: %d global reductions as whole-map pools", pools_for_int8(graph))
        onnx.save_model(graph, pooled)
        with _quiet_exporter():
            quant_pre_process(pooled, pre, skip_symbolic_shape=True)
            quantize_static(
                pre,
                quant,
                _Reader(),
                quant_format=QuantFormat.QDQ,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                per_channel=True,
                calibrate_method=CalibrationMethod.MinMax,
            )
        model = onnx.load(quant)
        if metadata is not None:
            set_metadata(model, metadata)
        _check_model(model, str(out_path))
        _save_onnx(model, out_path)


def compare_int8(
    float_path: str | os.PathLike,
    int8_path: str | os.PathLike,
    images: np.ndarray,
    labels: np.ndarray,
    calibration: str,
    *,
    speed: bool = True,
) -> QuantizationReport:
    """Test accuracy, agreement, size and (optionally) speed of int8 next to float."""
    x = to_model_input(images)
    float_fn, int8_fn = _ort_logits_fn(float_path), _ort_logits_fn(int8_path)
    float_pred = _batched(float_fn, x, VERIFY_BATCH).argmax(1)
    int8_pred = _batched(int8_fn, x, VERIFY_BATCH).argmax(1)
    report = QuantizationReport(
        calibration=calibration,
        float_accuracy=float((float_pred == labels).mean()),
        int8_accuracy=float((int8_pred == labels).mean()),
        agreement=float((float_pred == int8_pred).mean()),
        float_size=os.path.getsize(float_path),
        int8_size=os.path.getsize(int8_path),
    )
    if speed:
        report.float_speed = measure_speed(float_fn, images)
        report.int8_speed = measure_speed(int8_fn, images)
    return report


# --- the whole export -----------------------------------------------------------------------------


def _load_test_data(data_dir: str | os.PathLike | None, download: bool):
    """MNIST or the reason it is unavailable."""
    from digitlab.training.data import load_mnist

    try:
        return load_mnist(data_dir, download=download), None
    except DataError as exc:
        return None, str(exc)


def _write_float_model(
    model: Any, ckpt: dict[str, Any], path: str, *, opset: int, exporter: str, metadata: dict
) -> None:
    """Export ``model`` to ``path``: cleaned graph, metadata, one file, onnx.checker passed."""
    import onnx

    raw = f"{path}.raw"
    try:
        _torch_export(model, raw, opset, exporter)
    except Exception as exc:  # the exporters raise many types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExportError(
            f"checkpoint {ckpt['path']}: {exporter} export to ONNX opset {opset} failed: {first}"
        ) from None
    proto = onnx.load(raw)
    if _opset_of(proto) != opset:
        raise ExportError(
            f"the {exporter} exporter wrote opset {_opset_of(proto)}, not the requested "
            f"{opset}; for opsets below {MIN_DYNAMO_OPSET} use --exporter torchscript"
        )
    _clean_graph(proto)
    set_metadata(proto, metadata)
    proto.doc_string = (
        f"digitlab {ckpt['model_name']}: (N,1,28,28) float32 in [0,1], ink=1 -> (N,10) logits"
    )
    _check_single_file(proto, str(ckpt["path"]))
    _check_model(proto, str(ckpt["path"]))
    onnx.save_model(proto, path, save_as_external_data=False)


def _verify_float(
    result: ExportResult, float_path: str, model: Any, temperature: float, mnist: Any
) -> None:
    """Parity on the test set into ``result``; raises when ONNX Runtime disagrees."""
    result.parity = p = verify_parity(
        float_path, model, mnist.test_images, mnist.test_labels, temperature=temperature
    )
    if not p.ok:
        raise ExportVerificationError(
            f"{result.path}: ONNX Runtime disagrees with PyTorch: argmax equal on "
            f"{p.argmax_equal}/{p.images} test images, max probability difference "
            f"{p.max_prob_diff:.2e} (limit {p.tolerance:.0e}); nothing was written"
        )


def _quantize_step(
    result: ExportResult,
    ckpt: dict[str, Any],
    float_path: str,
    int8_path: str,
    mnist: Any,
    *,
    verify: bool,
    speed: bool,
) -> None:
    """Quantise, compare with float on the test set, record it in ``result``."""
    calib, where = calibration_images(ckpt, mnist.train_images)
    result.metadata = {**result.metadata, "quantization": f"{QUANTIZATION_DESCRIPTION}; {where}"}
    quantize_int8(float_path, int8_path, calib, metadata=result.metadata)
    result.quantization = q = compare_int8(
        float_path, int8_path, mnist.test_images, mnist.test_labels, where, speed=speed
    )
    if verify and not q.ok:
        raise ExportVerificationError(
            f"{result.path}: int8 test accuracy {q.int8_accuracy:.2%} is more than "
            f"{q.max_drop:.1%} below the float model's {q.float_accuracy:.2%}; nothing was written"
        )


def _check_request(out: Path, quantize: str | None) -> None:
    """Validate the output path and quantisation option before any work."""
    if out.suffix.lower() != ".onnx":
        raise DigitlabError(f"output {out}: the file name must end in .onnx")
    if out.is_dir():
        raise DigitlabError(f"output {out}: is a directory, expected a file name")
    if quantize not in (None, "int8"):
        raise DigitlabError(f"--quantize {quantize!r}: only 'int8' is supported")


def export_onnx(
    checkpoint: str | os.PathLike | None,
    out: str | os.PathLike,
    *,
    opset: int = DEFAULT_OPSET,
    exporter: str = "auto",
    quantize: str | None = None,
    verify: bool = True,
    data_dir: str | os.PathLike | None = None,
    download: bool = False,
    speed: bool = True,
) -> ExportResult:
    """Export ``checkpoint`` (path, or None/"default" = bundled) to the ONNX file ``out``.

    With ``quantize="int8"`` the file written is the int8 model, compared with the float model
    on the test set (``speed``: and timed). With ``verify`` the float model must match PyTorch
    on all 10,000 MNIST test images; when MNIST cannot be found the export still happens and
    :attr:`ExportResult.verify_skipped` says why. Raises :class:`CheckpointError` for a bad
    checkpoint, :class:`ExportError` / :class:`ExportVerificationError` when the export or its
    verification fails; then nothing is written.
    """
    _require_onnx()
    from digitlab.training.checkpoint import load_model_from_checkpoint
    from digitlab.training.models import count_parameters

    out = Path(out)
    _check_request(out, quantize)
    model, ckpt = load_model_from_checkpoint(checkpoint)
    exporter = resolve_exporter(exporter, opset)
    parameters = count_parameters(model)
    result = ExportResult(
        path=out,
        size=0,
        model_name=str(ckpt["model_name"]),
        parameters=parameters,
        opset=opset,
        exporter=exporter,
        metadata=build_metadata(ckpt, parameters, exporter),
    )
    mnist, why = _load_test_data(data_dir, download) if verify else (None, "--no-verify was given")
    with tempfile.TemporaryDirectory(prefix="digitlab-export-") as tmp:
        final = float_path = os.path.join(tmp, "float.onnx")
        _write_float_model(
            model, ckpt, float_path, opset=opset, exporter=exporter, metadata=result.metadata
        )
        result.checked = True
        if mnist is not None:
            _verify_float(result, float_path, model, float(ckpt.get("temperature", 1.0)), mnist)
        else:
            result.verify_skipped = why if not verify else f"MNIST is not available: {why}"
        if quantize == "int8":
            if mnist is None:
                mnist, why = _load_test_data(data_dir, download)
            if mnist is None:
                raise DataError(
                    "int8 quantisation calibrates on MNIST training images, which are not "
                    f"available: {why}"
                )
            final = os.path.join(tmp, "int8.onnx")
            _quantize_step(result, ckpt, float_path, final, mnist, verify=verify, speed=speed)
        _copy_atomic(final, out)
    result.size = out.stat().st_size
    logger.debug("wrote %s (%d bytes)", out, result.size)
    return result
