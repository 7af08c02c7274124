"""Where the int8 model's time goes, and what would make it faster (issue 16).

Two groups of ONNX Runtime int8 graphs at batch 256, timed side by side in one run:

* **quantisation settings** for the bundled model (no retrain): the shipped recipe
  (``digitlab export --quantize int8``: static QDQ, uint8 activations, int8 per-channel weights,
  MinMax, global max/mean as whole-map pools), the same without the pools (as exported before
  issue 16), per-tensor weights, the QOperator format, reduce_range, int8 activations, and the
  first convolution left in float; each with its MNIST test accuracy;
* **architectures** at random weights (no training; speed does not depend on the weights'
  values): DigitNet w32 d2 (the bundled model's shape) next to a stride-2 first convolution (no
  full-resolution map), 16 first-stage channels, w28 d2, w24 d2 and w32 d1, each quantised with
  the shipped recipe.

The machine is shared, so instead of wall-clock windows each graph runs single calls on ONE
thread, round-robin, and the CPU time of each call (``time.process_time``) is recorded: the
best and the median images per CPU-second, and each graph's ratio to its reference (the
shipped recipe; DigitNet w32 d2). CPU time still moves with the load (shared caches, clocks),
but far less than wall time, and round-robin hits every graph alike. Writes
``benchmarks/results/int8_variants.json`` / ``.md``.

    python benchmarks/int8_variants.py [--seconds 40]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from common import mnist_dir

RESULTS = Path(__file__).resolve().parent / "results"
BATCH = 256


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seconds", type=float, default=40.0, help="round-robin timing per group")
    p.add_argument("--data-dir", type=Path, help="MNIST folder (else $DIGITLAB_DATA)")
    p.add_argument("--out", type=Path, default=RESULTS / "int8_variants", help="results stem")
    args = p.parse_args(argv)
    args.data_dir = mnist_dir(args.data_dir)
    return args


def session(path: Path):
    """A one-thread ONNX Runtime session with every graph optimisation (as the backend)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def cpu_rates(paths: dict[str, Path], x: np.ndarray, seconds: float) -> dict[str, dict]:
    """name -> best and median images per CPU-second over round-robin single calls."""
    sessions = {name: session(path) for name, path in paths.items()}
    for s in sessions.values():
        for _ in range(3):
            s.run(None, {"image": x})
    times: dict[str, list[float]] = {name: [] for name in sessions}
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        for name, s in sessions.items():
            t0 = time.process_time()
            s.run(None, {"image": x})
            times[name].append(time.process_time() - t0)
    return {
        name: {
            "calls": len(t),
            "best": len(x) / min(t),
            "median": len(x) / statistics.median(t),
        }
        for name, t in times.items()
    }


def accuracy(path: Path, images: np.ndarray, labels: np.ndarray) -> float:
    s = session(path)
    preds = [
        s.run(None, {"image": images[i : i + 1000]})[0].argmax(1)
        for i in range(0, len(images), 1000)
    ]
    return float((np.concatenate(preds) == labels).mean())


def quantise(src: Path, out: Path, calibration: np.ndarray, **settings) -> Path:
    """Static quantisation of ``src`` with the shipped settings, overridden by ``settings``."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(
                {"image": calibration[i : i + 64]} for i in range(0, len(calibration), 64)
            )

        def get_next(self):
            return next(self.batches, None)

    options = {
        "quant_format": QuantFormat.QDQ,
        "activation_type": QuantType.QUInt8,
        "weight_type": QuantType.QInt8,
        "per_channel": True,
        "calibrate_method": CalibrationMethod.MinMax,
    }
    options.update(settings)
    quantize_static(str(src), str(out), Reader(), **options)
    return out


def settings_variants(tmp: Path, calibration: np.ndarray) -> dict[str, tuple[Path, str]]:
    """The bundled model's int8 graphs: name -> (path, what differs from the shipped recipe)."""
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from digitlab.core.resolve import BUNDLED_ONNX
    from digitlab.training.export import pools_for_int8, quantize_int8

    x = (calibration.astype(np.float32) / 255.0)[:, None]
    out = {}
    shipped = tmp / "shipped.onnx"
    quantize_int8(BUNDLED_ONNX, shipped, calibration)
    out["shipped"] = (shipped, "digitlab export --quantize int8 (reference)")
    reductions = tmp / "reductions.onnx"
    quantize_int8(BUNDLED_ONNX, reductions, calibration, pools=False)
    out["reductions"] = (reductions, "global max/mean as ReduceMax/ReduceMean (before #16)")
    graph = onnx.load(str(BUNDLED_ONNX))
    pools_for_int8(graph)
    pooled, pre = tmp / "pooled.onnx", tmp / "pre.onnx"
    onnx.save_model(graph, str(pooled))
    quant_pre_process(str(pooled), str(pre), skip_symbolic_shape=True)
    first_conv = next(n.name for n in onnx.load(str(pre)).graph.node if n.op_type == "Conv")
    for name, note, settings in (
        ("per-tensor", "per-tensor weights", {"per_channel": False}),
        ("qoperator", "QOperator format", {"quant_format": QuantFormat.QOperator}),
        ("reduce-range", "reduce_range=True (7-bit weights)", {"reduce_range": True}),
        ("int8-activations", "int8 (not uint8) activations", {"activation_type": QuantType.QInt8}),
        ("float-first-conv", "first convolution in float", {"nodes_to_exclude": [first_conv]}),
    ):
        out[name] = (quantise(pre, tmp / f"{name}.onnx", x, **settings), note)
    return out


def architecture_variants(tmp: Path, calibration: np.ndarray) -> dict[str, tuple[Path, str]]:
    """Random-weight DigitNet shapes quantised with the shipped recipe: name -> (path, what)."""
    import torch
    from torch import nn

    from digitlab.training.export import quantize_int8
    from digitlab.training.models import DigitNet, Normalize, _conv_bn

    def variant(width: int, depth: int, first: int | None = None, stride2: bool = False):
        net = DigitNet(width, depth)
        c = first or width
        if stride2:
            head = [nn.Conv2d(1, c, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c)]
            layers = [Normalize(), *head, nn.ReLU()]
        else:
            layers = [Normalize(), *_conv_bn(1, c), nn.MaxPool2d(2)]
        for _ in range(depth):
            layers += _conv_bn(c, 2 * width)
            c = 2 * width
        layers.append(nn.MaxPool2d(2))
        for _ in range(depth):
            layers += _conv_bn(c, 4 * width)
            c = 4 * width
        net.features = nn.Sequential(*layers)
        return net.eval()

    shapes = {
        "w32-d2": (variant(32, 2), "DigitNet w32 d2, the bundled model's shape (reference)"),
        "stride2-first": (variant(32, 2, stride2=True), "w32 d2, first conv stride 2, no pool"),
        "first-16": (variant(32, 2, first=16), "w32 d2 with 16 first-stage channels"),
        "w28-d2": (variant(28, 2), "DigitNet w28 d2"),
        "w24-d2": (variant(24, 2), "DigitNet w24 d2"),
        "w32-d1": (variant(32, 1), "DigitNet w32 d1"),
    }
    out = {}
    torch.manual_seed(0)
    for name, (net, note) in shapes.items():
        float_path = tmp / f"arch-{name}-float.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                net,
                torch.rand(2, 1, 28, 28),
                str(float_path),
                input_names=["image"],
                output_names=["logits"],
                dynamic_axes={"image": {0: "N"}, "logits": {0: "N"}},
                opset_version=17,
                dynamo=False,
            )
        path = tmp / f"arch-{name}.onnx"
        quantize_int8(float_path, path, calibration)
        macs = _conv_macs(net)
        out[name] = (path, f"{note}; {macs / 1e6:.1f}M conv multiply-adds an image")
    return out


def _conv_macs(net) -> float:
    """Multiply-adds of the convolutions for one 28x28 image."""
    import torch
    from torch import nn

    total = 0.0

    def hook(module, _inputs, output):
        nonlocal total
        k = module.kernel_size[0] * module.kernel_size[1] * module.in_channels
        total += output.shape[1] * output.shape[2] * output.shape[3] * k / module.groups

    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        net(torch.zeros(1, 1, 28, 28))
    for h in handles:
        h.remove()
    return total


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    from digitlab.training.checkpoint import load_checkpoint
    from digitlab.training.data import load_mnist
    from digitlab.training.export import calibration_images

    mnist = load_mnist(args.data_dir, download=False)
    calibration, where = calibration_images(load_checkpoint("default"), mnist.train_images)
    test = (mnist.test_images.astype(np.float32) / 255.0)[:, None]
    x = np.ascontiguousarray(test[:BATCH])
    load_start = list(os.getloadavg())
    groups = {}
    with tempfile.TemporaryDirectory(prefix="digitlab-int8-") as tmp:
        for group, build, reference in (
            ("settings", settings_variants, "shipped"),
            ("architectures", architecture_variants, "w32-d2"),
        ):
            variants = build(Path(tmp), calibration)
            print(f"{group}: timing {len(variants)} graphs for {args.seconds:.0f} s", flush=True)
            rates = cpu_rates({k: p for k, (p, _) in variants.items()}, x, args.seconds)
            rows = []
            for name, (path, note) in variants.items():
                r = rates[name]
                rows.append(
                    {
                        "name": name,
                        "what": note,
                        **r,
                        "ratio_best": r["best"] / rates[reference]["best"],
                        "ratio_median": r["median"] / rates[reference]["median"],
                        "test_accuracy": (
                            accuracy(path, test, mnist.test_labels) if group == "settings" else None
                        ),
                    }
                )
            groups[group] = rows
    load_end = list(os.getloadavg())
    md = [
        "# Int8 graphs: quantisation settings and architectures (ONNX Runtime, batch 256)",
        "",
        f"One thread, round-robin single calls for {args.seconds:.0f} s a group, CPU time per "
        "call; images per CPU-second (best / median) and the ratio to the group's reference. "
        f"Calibration: {where}. Load average at start {load_start}, end {load_end} (the machine "
        "is shared: compare rows within a group). Architectures have random weights (no test "
        "accuracy): only their speed is measured.",
    ]
    for group, rows in groups.items():
        md += [
            "",
            f"## {group}",
            "",
            "| graph | what | img/CPU-s best | median | ratio best | ratio median | test acc |",
            "|---|---|---:|---:|---:|---:|---:|",
        ]
        for r in rows:
            acc = "n/a" if r["test_accuracy"] is None else f"{r['test_accuracy']:.2%}"
            md.append(
                f"| {r['name']} | {r['what']} | {r['best']:,.0f} | {r['median']:,.0f} "
                f"| {r['ratio_best']:.2f} | {r['ratio_median']:.2f} | {acc} |"
            )
    md += ["", f"_{datetime.now(timezone.utc).isoformat(timespec='seconds')}_"]
    print("\n".join(md))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    result = {"load_average_at_start": load_start, "load_average_at_end": load_end, **groups}
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    args.out.with_suffix(".md").write_text("\n".join(md) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
