"""Inference speed on this CPU: PyTorch (eager and tuned) vs ONNX Runtime (float and int8).

For one model (``--model``: a checkpoint path or ``default`` = the bundled model) it measures,
side by side in one run and with the same thread count:

* single-image latency: median (p50) and p90 of ``--single-runs`` calls with one image;
* batch throughput: images/s at ``--batch`` (256), the median of ``--repeats`` timed windows of
  at least ``--min-seconds`` each (the best window is recorded too: the machine may be shared);
  backends are timed round-robin, one window each per round, so load from elsewhere hits all
  of them alike;
* test accuracy of each backend on the 10,000 MNIST test images (when MNIST is available), so
  a fast-but-wrong variant cannot hide.

Backends: ``torch-eager`` (``no_grad``, as a user would write it), the tuned torch variants
(``inference_mode`` + channels-last, TorchScript trace + freeze, ``torch.compile`` — each
measured, the fastest is marked ``torch-best``), ``ort-float`` and ``ort-int8`` (the files
``digitlab export`` writes). Prints a table and writes ``benchmarks/results/inference.json`` and
``.md``. Targets (issue 7): the fastest backend >= 20,000 images/s at batch 256 and < 1 ms per
single image on 2 cores.

    python benchmarks/inference.py --model default --threads 2
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from common import mnist_dir
from digitlab.training.export import single_latencies, throughput_window

RESULTS = Path(__file__).resolve().parent / "results"
TARGET_IMAGES_PER_S = 20_000  # batch 256, fastest backend, 2 cores
TARGET_SINGLE_MS = 1.0  # one image, fastest backend
WARMUP_CALLS = 5
LATENCY_PERCENTILES = (50, 90)

logger = logging.getLogger("benchmarks.inference")


@dataclass
class Row:
    """One backend's numbers."""

    backend: str
    description: str
    images_per_s: float  # median window
    images_per_s_best: float
    single_p50_ms: float
    single_p90_ms: float
    test_accuracy: float | None
    setup_s: float  # export / trace / compile time
    note: str = ""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default="default", help="checkpoint path or 'default' (bundled)")
    p.add_argument("--threads", type=int, default=2, help="threads for torch and ONNX Runtime")
    p.add_argument("--batch", type=int, default=256, help="batch size for throughput")
    p.add_argument("--min-seconds", type=float, default=1.0, help="length of one timed window")
    p.add_argument("--repeats", type=int, default=5, help="timed windows per backend")
    p.add_argument(
        "--single-runs", type=int, default=1000, help="single-image calls per backend for latency"
    )
    p.add_argument("--no-compile", action="store_true", help="skip torch.compile (slow to build)")
    p.add_argument("--data-dir", type=Path, help="MNIST folder (else $DIGITLAB_DATA)")
    p.add_argument("--out", type=Path, default=RESULTS / "inference", help="results path stem")
    args = p.parse_args(argv)
    args.data_dir = mnist_dir(args.data_dir)  # --data-dir, $DIGITLAB_DATA or ../shared/mnist
    return args


# --- timing ---------------------------------------------------------------------------------------


def time_interleaved(
    fns: dict[str, Callable[[np.ndarray], object]],
    batch: np.ndarray,
    one: np.ndarray,
    *,
    min_seconds: float,
    repeats: int,
    single_runs: int,
) -> dict[str, tuple[float, float, float, float]]:
    """name -> (median img/s, best img/s, p50 ms, p90 ms), measured round-robin.

    The machine is shared, so each round times every backend once, one after the other: a
    burst of load from elsewhere hits all backends alike instead of whichever ran during it.
    """
    for fn in fns.values():
        for _ in range(WARMUP_CALLS):
            fn(batch)
            fn(one)
    rates: dict[str, list[float]] = {name: [] for name in fns}
    latencies: dict[str, list[float]] = {name: [] for name in fns}
    per_round = max(1, single_runs // repeats)
    for round_ in range(repeats):
        print(f"  round {round_ + 1}/{repeats}", flush=True)
        for name, fn in fns.items():
            rates[name].append(throughput_window(fn, batch, min_seconds))
            latencies[name] += single_latencies(fn, one, per_round)
    out = {}
    for name in fns:
        p50, p90 = (float(np.percentile(latencies[name], q)) * 1e3 for q in LATENCY_PERCENTILES)
        out[name] = (statistics.median(rates[name]), max(rates[name]), p50, p90)
    return out


def accuracy(fn: Callable[[np.ndarray], np.ndarray], x: np.ndarray, labels: np.ndarray | None):
    """Test accuracy of ``fn`` (numpy logits) in batches of 1000, or None without labels."""
    if labels is None:
        return None
    preds = np.concatenate(
        [np.asarray(fn(x[i : i + 1000])).argmax(1) for i in range(0, len(x), 1000)]
    )
    return float((preds == labels).mean())


# --- backends -------------------------------------------------------------------------------------


def torch_backends(model, threads: int, compile_: bool) -> dict[str, tuple[str, Callable, float]]:
    """name -> (description, numpy->numpy logits function, setup seconds)."""
    import copy

    import torch

    torch.set_num_threads(threads)
    example = torch.rand(8, 1, 28, 28)
    out: dict[str, tuple[str, Callable, float]] = {}

    def eager(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.from_numpy(x)).numpy()

    out["torch-eager"] = ("nn.Module under torch.no_grad()", eager, 0.0)

    cl_model = copy.deepcopy(model).to(memory_format=torch.channels_last)

    def channels_last(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            t = torch.from_numpy(x).contiguous(memory_format=torch.channels_last)
            return cl_model(t).numpy()

    out["torch-channels-last"] = (
        "inference_mode + channels_last weights and input",
        channels_last,
        0.0,
    )

    t0 = time.perf_counter()
    with torch.no_grad():
        frozen = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(model, example)))
    jit_setup = time.perf_counter() - t0

    def jit(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return frozen(torch.from_numpy(x)).numpy()

    out["torch-jit-frozen"] = (
        "jit.trace + freeze + optimize_for_inference (BN folded)",
        jit,
        jit_setup,
    )

    if compile_:
        t0 = time.perf_counter()
        compiled = torch.compile(copy.deepcopy(model), dynamic=False)

        def comp(x: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                return compiled(torch.from_numpy(x)).numpy()

        # Compile both shapes we time (batch and single) before timing.
        comp(np.zeros((256, 1, 28, 28), np.float32))
        comp(np.zeros((1, 1, 28, 28), np.float32))
        comp(np.zeros((1000, 1, 28, 28), np.float32))
        out["torch-compile"] = (
            "torch.compile (inductor), static shapes",
            comp,
            time.perf_counter() - t0,
        )
    return out


def ort_backends(
    ckpt_arg: str, tmp: Path, threads: int, data_dir
) -> dict[str, tuple[str, Callable, float]]:
    """Float and int8 ONNX exports of the model, run with ONNX Runtime."""
    from digitlab.core.errors import DigitlabError
    from digitlab.engine.backends.onnx import OnnxBackend
    from digitlab.training.export import export_onnx

    out: dict[str, tuple[str, Callable, float]] = {}
    t0 = time.perf_counter()
    float_path = tmp / "float.onnx"
    export_onnx(ckpt_arg, float_path, verify=False, speed=False)
    setup = time.perf_counter() - t0
    backend = OnnxBackend(float_path, intra_op_num_threads=threads)
    out["ort-float"] = (f"ONNX Runtime float32, {threads} intra-op threads", backend.logits, setup)
    t0 = time.perf_counter()
    int8_path = tmp / "int8.onnx"
    try:
        export_onnx(
            ckpt_arg, int8_path, quantize="int8", verify=False, speed=False, data_dir=data_dir
        )
    except DigitlabError as exc:  # int8 needs MNIST for calibration
        logger.warning("int8 export skipped: %s", exc)
        return out
    int8 = OnnxBackend(int8_path, intra_op_num_threads=threads)
    out["ort-int8"] = (
        f"ONNX Runtime int8 static QDQ, {threads} threads",
        int8.logits,
        time.perf_counter() - t0,
    )
    return out


# --- report ---------------------------------------------------------------------------------------


def machine_info(threads: int) -> dict:
    """CPU, cores, versions: what a reader needs to compare these numbers."""
    import onnxruntime
    import torch

    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {
        "cpu": cpu,
        "usable_cores": usable,
        "threads": threads,
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "load_average_at_start": list(os.getloadavg()),
    }


def render_table(rows: list[Row], best: dict[str, str]) -> str:
    """Markdown table of all rows; the fastest per metric is marked."""
    lines = [
        "| backend | images/s @ batch (median / best) | 1-image p50 ms | p90 ms | test acc "
        "| setup s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        marks = []
        if best.get("throughput") == r.backend:
            marks.append("fastest batch")
        if best.get("latency") == r.backend:
            marks.append("fastest single")
        if best.get("torch") == r.backend:
            marks.append("torch-best")
        name = r.backend + (f" ({', '.join(marks)})" if marks else "")
        acc = "n/a" if r.test_accuracy is None else f"{r.test_accuracy:.2%}"
        lines.append(
            f"| {name} | {r.images_per_s:,.0f} / {r.images_per_s_best:,.0f} "
            f"| {r.single_p50_ms:.3f} | {r.single_p90_ms:.3f} | {acc} | {r.setup_s:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch

    from digitlab.core.errors import DataError
    from digitlab.training.checkpoint import load_model_from_checkpoint
    from digitlab.training.data import load_mnist
    from digitlab.training.models import count_parameters

    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    model, ckpt = load_model_from_checkpoint(args.model)
    try:
        mnist = load_mnist(args.data_dir, download=False)
        x_all = (mnist.test_images.astype(np.float32) / 255.0)[:, None]
        labels = mnist.test_labels
        images_from = f"MNIST test set ({mnist.source})"
    except DataError as exc:
        logger.warning("MNIST not available (%s): timing random images, no accuracy", exc)
        x_all = np.random.default_rng(0).random((10_000, 1, 28, 28), dtype=np.float32)
        labels = None
        images_from = "random images (MNIST not available)"
    batch = np.ascontiguousarray(x_all[: args.batch])
    one = np.ascontiguousarray(x_all[:1])
    info = machine_info(args.threads)
    model_info = {
        "name": ckpt["model_name"],
        "config": ckpt["model_config"],
        "parameters": count_parameters(model),
        "source": ckpt["path"],
        "test_acc_in_checkpoint": (ckpt.get("metrics") or {}).get("test_acc"),
    }
    print(
        f"model {model_info['name']} {model_info['config']} ({model_info['parameters']:,} params)"
    )
    print(
        f"from {model_info['source']}; {info['cpu']}, {args.threads} threads; images: {images_from}"
    )

    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="digitlab-bench-") as tmp:
        backends = torch_backends(model, args.threads, not args.no_compile)
        backends.update(ort_backends(args.model, Path(tmp), args.threads, args.data_dir))
        timed = time_interleaved(
            {name: fn for name, (_, fn, _) in backends.items()},
            batch,
            one,
            min_seconds=args.min_seconds,
            repeats=args.repeats,
            single_runs=args.single_runs,
        )
        for name, (description, fn, setup) in backends.items():
            acc = accuracy(fn, x_all, labels)
            rows.append(Row(name, description, *timed[name], acc, setup))
    torch_rows = [r for r in rows if r.backend.startswith("torch") and r.backend != "torch-eager"]
    best = {
        "throughput": max(rows, key=lambda r: r.images_per_s).backend,
        "latency": min(rows, key=lambda r: r.single_p50_ms).backend,
        "torch": max(torch_rows, key=lambda r: r.images_per_s).backend,
    }
    fastest = max(rows, key=lambda r: r.images_per_s)
    quickest = min(rows, key=lambda r: r.single_p50_ms)
    targets = {
        "images_per_s": {
            "target": TARGET_IMAGES_PER_S,
            "backend": fastest.backend,
            "value": fastest.images_per_s,
            "met": fastest.images_per_s >= TARGET_IMAGES_PER_S,
        },
        "single_ms": {
            "target": TARGET_SINGLE_MS,
            "backend": quickest.backend,
            "value": quickest.single_p50_ms,
            "met": quickest.single_p50_ms < TARGET_SINGLE_MS,
        },
    }
    info["load_average_at_end"] = list(os.getloadavg())
    table = render_table(rows, best)
    print()
    print(table)
    print()
    for key, t in targets.items():
        unit = "images/s" if key == "images_per_s" else "ms"
        print(
            f"target {key}: {t['value']:,.3f} {unit} with {t['backend']} "
            f"(target {t['target']:,} {unit}): {'MET' if t['met'] else 'NOT MET'}"
        )
    print(f"load average start {info['load_average_at_start']}, end {info['load_average_at_end']}")

    result = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": info,
        "model": model_info,
        "images": images_from,
        "batch": args.batch,
        "settings": {k: str(v) for k, v in vars(args).items()},
        "rows": [asdict(r) for r in rows],
        "best": best,
        "targets": targets,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    md = [
        "# Inference speed",
        "",
        f"Model `{model_info['name']}` {model_info['config']} "
        f"({model_info['parameters']:,} parameters), from `{model_info['source']}`.",
        f"Machine: {info['cpu']}, {info['usable_cores']} usable cores, {args.threads} threads; "
        f"torch {info['torch']}, onnxruntime {info['onnxruntime']}, Python {info['python']}.",
        f"Batch {args.batch}; throughput = median (and best) of {args.repeats} windows of "
        f">= {args.min_seconds} s; latency over {args.single_runs} single-image calls. "
        f"Load average at start {info['load_average_at_start']}, end {info['load_average_at_end']} "
        "(the machine is shared: compare rows within one run).",
        "",
        table,
        "",
        *(
            f"- target {k}: {t['value']:,.3f} with {t['backend']} vs {t['target']:,}: "
            f"{'met' if t['met'] else 'NOT met'}"
            for k, t in targets.items()
        ),
        "",
        f"_{result['date']}_",
    ]
    args.out.with_suffix(".md").write_text("\n".join(md) + "\n")
    print(f"wrote {args.out.with_suffix('.json')} and {args.out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
