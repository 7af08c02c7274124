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

**End to end** (issue 16): files in, answers out. A folder of MNIST-size PNGs (the first
``--e2e-mnist`` test digits, 28x28) and one of canvas exports (``--e2e-canvas`` test digits
drawn as 280x280 RGBA PNGs) go through the real command, ``python -m digitlab predict FOLDER
--format csv``, timed from start to exit (start-up included, as a user sees it): ``--jobs 1``
(everything in one process, as before issue 16) and ``--jobs`` the usable cores, round-robin
for ``--e2e-repeats`` rounds; images/s is the file count over the median wall time. Also
timed: the same command on one file (start-up: imports, loading the model), so the table
gives the rate after start-up too. With ``--e2e-before-src DIR`` (a ``src`` folder of an
earlier digitlab, e.g. ``git archive <commit> src | tar -x -C /tmp/before``) the same
command of that code is timed in the same rounds, as the "before" row (``--e2e-before-commit
C`` extracts commit C's ``src`` with ``git archive`` for it). Target (issue 16): ``--jobs``
cores >= 2x the before code's images/s on the MNIST folder in the same run; without a before
row, >= 2x the one-process rate the issue measured (140 images/s). CPU seconds (user + sys of
the command and its workers) are recorded too: unlike wall time they hardly depend on what
else the machine runs. Written to ``benchmarks/results/inference_end_to_end.json`` / ``.md``.

    python benchmarks/inference.py --model default --threads 2
    python benchmarks/inference.py --end-to-end-only          # just the end-to-end rows
    python benchmarks/inference.py --end-to-end-only --e2e-before-commit 50d6862
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import subprocess
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
# Issue 16: `digitlab predict` on a folder read ~140 images/s (1,000 MNIST-size PNGs in 9.3 s).
E2E_BEFORE_IMAGES_PER_S = 140.0
E2E_TARGET_SPEEDUP = 2.0

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
    p.add_argument("--no-end-to-end", action="store_true", help="skip the end-to-end rows")
    p.add_argument(
        "--end-to-end-only", action="store_true", help="only the end-to-end rows (digitlab predict)"
    )
    p.add_argument("--e2e-mnist", type=int, default=1000, help="MNIST-size PNGs (end to end)")
    p.add_argument("--e2e-canvas", type=int, default=300, help="canvas PNGs (end to end)")
    p.add_argument("--e2e-repeats", type=int, default=3, help="rounds of end-to-end runs")
    p.add_argument(
        "--e2e-before-src",
        type=Path,
        help="a src/ folder of earlier digitlab code to time as 'before' (end to end)",
    )
    p.add_argument(
        "--e2e-before-commit",
        help="a commit of this repository whose src/ is timed as 'before' (end to end; "
        "extracted with git archive into a temporary folder)",
    )
    p.add_argument(
        "--e2e-out",
        type=Path,
        default=RESULTS / "inference_end_to_end",
        help="end-to-end results path stem",
    )
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
    from digitlab.training.export import export_onnx, quantize_int8

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
    # The int8 graph as exported before issue 16 (global max/mean as reductions, which ONNX
    # Runtime runs in float32 channels-first): the same run's reference for the change.
    t0 = time.perf_counter()
    reductions_path = tmp / "int8-reductions.onnx"
    quantize_int8(float_path, reductions_path, _calibration(ckpt_arg, data_dir), pools=False)
    reductions = OnnxBackend(reductions_path, intra_op_num_threads=threads)
    out["ort-int8-reductions"] = (
        f"ONNX Runtime int8 static QDQ with ReduceMax/ReduceMean (before #16), {threads} threads",
        reductions.logits,
        time.perf_counter() - t0,
    )
    return out


def _calibration(ckpt_arg: str, data_dir) -> np.ndarray:
    """The int8 calibration images ``digitlab export`` uses for this checkpoint."""
    from digitlab.training.checkpoint import load_checkpoint
    from digitlab.training.data import load_mnist
    from digitlab.training.export import calibration_images

    images, _ = calibration_images(
        load_checkpoint(ckpt_arg), load_mnist(data_dir, download=False).train_images
    )
    return images


# --- end to end ---------------------------------------------------------------------------------


@dataclass
class EndToEndRow:
    """One folder through ``digitlab predict`` with one ``--jobs`` setting."""

    folder: str
    files: int
    code: str  # "this" (the checkout) or "before" (--e2e-before-src)
    jobs: int  # --jobs (0: the before code, which has no such option)
    wall_s: float  # median over the rounds, start-up included
    wall_s_all: list[float]
    cpu_s: float  # median CPU seconds (user + sys, all processes), start-up included
    images_per_s: float  # files / median wall
    images_per_s_after_startup: float | None  # files / (median wall - median start-up)


def _write_folders(root: Path, data_dir, n_mnist: int, n_canvas: int) -> dict[str, Path]:
    """The benchmark's image folders: MNIST-size PNGs and canvas-export PNGs."""
    from PIL import Image

    import tune_images as synth
    from digitlab.training.data import load_mnist

    mnist = load_mnist(data_dir, download=False)
    folders = {"mnist-28x28-png": root / "mnist", "canvas-280x280-rgba-png": root / "canvas"}
    for folder in folders.values():
        folder.mkdir()
    for i in range(n_mnist):
        Image.fromarray(mnist.test_images[i]).save(folders["mnist-28x28-png"] / f"{i:05d}.png")
    rng = np.random.default_rng(0)
    for i in range(n_canvas):
        img = synth.canvas(mnist.test_images[i], "rgba", rng)
        img.save(folders["canvas-280x280-rgba-png"] / f"{i:05d}.png")
    return folders


def _time_predict(
    target: Path, model: str, jobs: int, src: Path | None = None
) -> tuple[float, float]:
    """(wall, CPU) seconds of ``python -m digitlab predict TARGET --format csv --jobs N`` (the
    command's own thread settings); with ``src``, that code's command (without ``--jobs``: its
    default). CPU is user + sys of the command and its worker processes: unlike wall time, it
    hardly depends on what else the machine runs."""
    import resource

    thread_vars = ("DIGITLAB_TORCH_THREADS", "DIGITLAB_ORT_THREADS")
    env = {k: v for k, v in os.environ.items() if k not in thread_vars}
    if src is not None:
        env["PYTHONPATH"] = str(src)
    cmd = [sys.executable, "-m", "digitlab", "predict", str(target), "--format", "csv"]
    cmd += ["--model", model] + ([] if src is not None else ["--jobs", str(jobs)])
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def _before_text(args: argparse.Namespace) -> str:
    """What the before rows ran, for the report."""
    if args.e2e_before_commit:
        return f"commit {args.e2e_before_commit} (its default --jobs)"
    if args.e2e_before_src is not None:
        return f"the code in {args.e2e_before_src}"
    return "none in this run"


def _rate(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f}"


def _extract_src(commit: str, into: Path) -> Path:
    """Commit ``commit``'s ``src`` folder of this repository, extracted under ``into``."""
    import io
    import tarfile

    repo = Path(__file__).resolve().parent.parent
    tar = subprocess.run(
        ["git", "-C", str(repo), "archive", "--format=tar", commit, "src"],
        capture_output=True,
        check=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        archive.extractall(into, filter="data")
    return into / "src"


def end_to_end(args: argparse.Namespace) -> dict:
    """Time folders of PNGs through ``digitlab predict``: one process vs the usable cores."""
    from digitlab.core.settings import usable_cores

    if args.e2e_before_commit and args.e2e_before_src is None:
        before_dir = Path(tempfile.mkdtemp(prefix="digitlab-before-"))
        args.e2e_before_src = _extract_src(args.e2e_before_commit, before_dir)
    cores = usable_cores()
    settings = sorted({1, cores})
    variants = [("this", jobs) for jobs in settings]
    if args.e2e_before_src is not None:
        variants.insert(0, ("before", 0))
    rows: list[EndToEndRow] = []
    load_start = list(os.getloadavg())
    with tempfile.TemporaryDirectory(prefix="digitlab-e2e-") as tmp:
        folders = _write_folders(Path(tmp), args.data_dir, args.e2e_mnist, args.e2e_canvas)
        one_file = next(iter(sorted(next(iter(folders.values())).iterdir())))
        _time_predict(one_file, args.model, 1)  # warm the file cache and imports
        startup: list[float] = []
        walls: dict[tuple[str, str, int], list[float]] = {}
        cpus: dict[tuple[str, str, int], list[float]] = {}
        for round_ in range(args.e2e_repeats):
            print(f"  end to end, round {round_ + 1}/{args.e2e_repeats}", flush=True)
            startup.append(_time_predict(one_file, args.model, 1)[0])
            for name, folder in folders.items():
                for code, jobs in variants:
                    src = args.e2e_before_src if code == "before" else None
                    wall, cpu = _time_predict(folder, args.model, jobs, src)
                    walls.setdefault((name, code, jobs), []).append(wall)
                    cpus.setdefault((name, code, jobs), []).append(cpu)
        start_s = statistics.median(startup)
        for (name, code, jobs), times in walls.items():
            n = sum(1 for _ in folders[name].iterdir())
            wall = statistics.median(times)
            # None where the run took hardly longer than start-up (the rate would be noise).
            work = wall - start_s
            rate_after = n / work if work > 0.1 * wall else None
            cpu = statistics.median(cpus[(name, code, jobs)])
            rows.append(EndToEndRow(name, n, code, jobs, wall, times, cpu, n / wall, rate_after))
    by = {(r.folder, r.code, r.jobs): r for r in rows}
    base = ("before", 0) if args.e2e_before_src is not None else ("this", 1)
    base_text = "the before code" if args.e2e_before_src is not None else "--jobs 1"
    speedups = {
        name: by[(name, "this", cores)].images_per_s / by[(name, *base)].images_per_s
        for name in folders
    }
    cpu_ratios = {
        name: by[(name, *base)].cpu_s / by[(name, "this", cores)].cpu_s for name in folders
    }
    mnist_rate = by[("mnist-28x28-png", "this", cores)].images_per_s
    if args.e2e_before_src is not None:  # the same run's before row is the reference
        before_rate = by[("mnist-28x28-png", "before", 0)].images_per_s
        reference = "the before code in this run"
    else:
        before_rate, reference = E2E_BEFORE_IMAGES_PER_S, "the 140 measured in issue 16"
    target = {
        "reference": reference,
        "before_images_per_s": before_rate,
        "target_images_per_s": before_rate * E2E_TARGET_SPEEDUP,
        "value": mnist_rate,
        "speedup": mnist_rate / before_rate,
        "met": mnist_rate >= before_rate * E2E_TARGET_SPEEDUP,
    }
    result = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "usable_cores": cores,
            "platform": platform.platform(),
            "python": sys.version.split()[0],
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
            "load_average_at_start": load_start,
            "load_average_at_end": list(os.getloadavg()),
        },
        "model": args.model,
        "command": "python -m digitlab predict FOLDER --format csv --jobs N",
        "before_src": str(args.e2e_before_src) if args.e2e_before_src else None,
        "before_commit": args.e2e_before_commit,
        "startup_s": start_s,
        "startup_s_all": startup,
        "rows": [asdict(r) for r in rows],
        "speedup": speedups,
        "cpu_ratio": cpu_ratios,
        "target": target,
    }
    table = [
        "| folder | files | code | --jobs | wall s (median) | CPU s (median) | images/s "
        "| images/s after start-up |",
        "|---|---:|---|---:|---:|---:|---:|---:|",
        *(
            f"| {r.folder} | {r.files:,} | {r.code} | {r.jobs or '-'} | {r.wall_s:.2f} "
            f"| {r.cpu_s:.2f} | {r.images_per_s:,.0f} | {_rate(r.images_per_s_after_startup)} |"
            for r in rows
        ),
    ]
    print("\n".join(table))
    for name, x in speedups.items():
        print(f"{name}: --jobs {cores} is {x:.2f}x {base_text}")
    load_end = list(os.getloadavg())
    print(f"start-up (one file) {start_s:.2f} s; load average {load_start} -> {load_end}")
    md = [
        "# End to end: `digitlab predict` on a folder of PNGs",
        "",
        f"`{result['command']}`, model `{args.model}`, {cores} usable cores; wall time from "
        f"start to exit, median of {args.e2e_repeats} round-robin rounds. Start-up (the same "
        f"command on one file) {start_s:.2f} s. Load average at start {load_start}, end "
        f"{result['machine']['load_average_at_end']} (the machine is shared: compare rows "
        "within one run; CPU s hardly depends on the load). `this`: the bundled model with "
        "ONNX Runtime, each worker process decoding, preprocessing and running its own "
        "one-thread session; `before`: "
        f"{_before_text(args)}.",
        "",
        *table,
        "",
        *(
            f"- {name}: --jobs {cores} is {x:.2f}x {base_text} in images/s, using "
            f"{cpu_ratios[name]:.2f}x less CPU"
            for name, x in speedups.items()
        ),
        f"- target (issue 16): >= {target['target_images_per_s']:,.0f} images/s on the MNIST "
        f"folder with --jobs {cores} (2x {target['reference']}, "
        f"{before_rate:,.0f}/s): {mnist_rate:,.0f} ({target['speedup']:.2f}x), "
        f"{'met' if target['met'] else 'NOT met'}",
        "",
        f"_{result['date']}_",
    ]
    args.e2e_out.parent.mkdir(parents=True, exist_ok=True)
    args.e2e_out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    args.e2e_out.with_suffix(".md").write_text("\n".join(md) + "\n")
    print(f"wrote {args.e2e_out.with_suffix('.json')} and {args.e2e_out.with_suffix('.md')}")
    return result


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
    if args.end_to_end_only:
        end_to_end(args)
        return 0
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
    if not args.no_end_to_end:
        end_to_end(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
