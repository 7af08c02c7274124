"""Accuracy of the recogniser on every kind of image users hand it, calibration, preprocessing time.

For one model (``--model``: a checkpoint, an ``.onnx`` file, or the bundled model) it measures,
on images made from real MNIST *test* digits (``tune_images``):

* canvas drawings (280x280): small, large, off-centre, thick pen, 1-2 px pen, dark on light,
  RGBA canvas export -- target >= 99% together;
* photos of ink on paper (uneven light, shadow, paper grain, blur, JPEG) -- target >= 98.5%;
* digits cropped tight (ink touching every edge, 48-240 px, either polarity), no target;
* digits rotated by up to 25 degrees -- target >= 98.5%;
* blank and noise-only images -- target >= 99% "no digit";
* multi-digit numbers (2-7 digits, 5% of neighbours written touching) -- target >= 95% read
  exactly; and cramped numbers (every neighbour touching), reported without a target;
* the UCI 8x8 handwritten digits from scikit-learn (not MNIST at all) -- target >= 95%;
* scribbles and letters: the share flagged ``uncertain`` (should be most);
* calibration: expected calibration error (ECE, 15 bins) on the 10,000 MNIST test digits at
  temperature 1, at the checkpoint's temperature, and at a temperature fitted here on the
  validation split (the checkpoint's, else the first 5,000 of ``split_indices(60000, 5000)``);
* preprocessing time of a 280x280 canvas (target < 2 ms), single-threaded, median and p95.

Prints a table and writes ``benchmarks/results/robustness.json`` and ``robustness.md``.
``--limit N`` caps every sample at N images (for a quick check).

    python benchmarks/robustness.py                 # full size
    python benchmarks/robustness.py --limit 50      # smoke run
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import tune_images as synth
from common import RESULTS, machine, mnist_dir
from digitlab.api import load_model
from digitlab.engine import calibrate
from digitlab.engine.calibrate import softmax
from digitlab.engine.preprocess import to_model_input
from digitlab.engine.recognizer import Recognizer
from digitlab.training.data import load_mnist, split_indices

logger = logging.getLogger("benchmarks.robustness")

# Full-size samples per kind.
SIZES = {
    "canvas_per_kind": 1000,
    "photo": 1000,
    "tight": 1000,
    "rotated": 2000,
    "blank_per_kind": 200,
    "numbers": 1000,
    "numbers_cramped": 300,
    "uci": 1797,
    "not_digits": 300,
    "timing": 300,
}
TARGETS = {
    "canvas": 0.99,
    "photo": 0.985,
    "rotated": 0.985,
    "blank": 0.99,
    "numbers": 0.95,
    "uci": 0.95,
}
DEFAULT_VAL_SIZE = 5000
TIMING_TARGET_MS = 2.0
ECE_BINS = 15


def _size(key: str, limit: int | None) -> int:
    return min(SIZES[key], limit) if limit else SIZES[key]


def _indices(n: int, seed: int, total: int = 10_000) -> np.ndarray:
    return np.random.default_rng(seed).choice(total, size=min(n, total), replace=False)


def _digit_accuracy(rec: Recognizer, images: list, labels) -> dict:
    preds = rec.predict_batch(images)
    right = np.array([p.digit == int(y) for p, y in zip(preds, labels, strict=True)])
    unsure = np.array([p.uncertain for p in preds])
    return {
        "n": len(right),
        "accuracy": float(right.mean()),
        "uncertain": float(unsure.mean()),
        "errors_flagged": float(unsure[~right].mean()) if (~right).any() else None,
    }


def bench_canvas(rec: Recognizer, mnist, limit: int | None, seed: int) -> dict:
    """Every canvas kind, and all together."""
    rng = np.random.default_rng(seed)
    per_kind, images, labels = {}, [], []
    for k, kind in enumerate(synth.CANVAS_KINDS):
        idx = _indices(_size("canvas_per_kind", limit), seed + k)
        imgs = [synth.canvas(mnist.test_images[i], kind, rng) for i in idx]
        per_kind[kind] = _digit_accuracy(rec, imgs, mnist.test_labels[idx])
        images += imgs
        labels += list(mnist.test_labels[idx])
    total = sum(r["n"] for r in per_kind.values())
    accuracy = sum(r["accuracy"] * r["n"] for r in per_kind.values()) / total
    return {"n": total, "accuracy": accuracy, "kinds": per_kind}


def bench_simple(rec: Recognizer, mnist, n: int, seed: int, make: Callable) -> dict:
    rng = np.random.default_rng(seed)
    idx = _indices(n, seed)
    return _digit_accuracy(
        rec, [make(mnist.test_images[i], rng) for i in idx], mnist.test_labels[idx]
    )


def _tight_crop(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A digit cropped tight: 48-240 px tall, either polarity."""
    return synth.cropped_tight(digit, int(rng.integers(48, 241)), bool(rng.integers(0, 2)))


def bench_blank(rec: Recognizer, limit: int | None, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    per_kind = {}
    for kind in synth.BLANK_KINDS:
        imgs = [synth.blank_image(kind, rng) for _ in range(_size("blank_per_kind", limit))]
        none = [p.digit is None for p in rec.predict_batch(imgs)]
        per_kind[kind] = {"n": len(none), "no_digit": float(np.mean(none))}
    total = sum(r["n"] for r in per_kind.values())
    rate = sum(r["no_digit"] * r["n"] for r in per_kind.values()) / total
    return {"n": total, "accuracy": rate, "kinds": per_kind}


def bench_numbers(rec: Recognizer, mnist, n: int, seed: int, touch: float) -> dict:
    rng = np.random.default_rng(seed)
    exact, right_length, digits = [], [], 0
    start = time.perf_counter()
    for _ in range(n):
        idx = rng.integers(0, len(mnist.test_images), int(rng.integers(2, 8)))
        strip = synth.number_strip(
            mnist.test_images[idx], mnist.test_labels[idx], rng, touch_probability=touch
        )
        read = rec.read_number(strip.image).number
        exact.append(read == strip.number)
        right_length.append(len(read) == len(strip.number))
        digits += len(strip.number)
    return {
        "n": n,
        "accuracy": float(np.mean(exact)),
        "digit_count_right": float(np.mean(right_length)),
        "mean_digits": digits / n,
        "touch_probability": touch,
        "ms_per_number": 1000 * (time.perf_counter() - start) / n,
    }


def bench_uci(rec: Recognizer, limit: int | None, seed: int) -> dict:
    images, labels = synth.uci_digits()
    idx = _indices(_size("uci", limit), seed, total=len(images))
    return _digit_accuracy(rec, list(images[idx]), labels[idx])


def bench_not_digits(rec: Recognizer, limit: int | None, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    n = _size("not_digits", limit)
    scribbles = [synth.scribble(rng) for _ in range(n)]
    letters = "ABCDEFGHJKLMNPQRTUVWXY"
    glyphs = [synth.letter(letters[k % len(letters)], rng) for k in range(n)]
    out = {}
    for name, imgs in (("scribbles", scribbles), ("letters", glyphs)):
        out[name] = {
            "n": n,
            "uncertain": float(np.mean([p.uncertain for p in rec.predict_batch(imgs)])),
        }
    return out


def bench_calibration(rec: Recognizer, mnist, ckpt_meta: dict) -> dict:
    """ECE on the test set at T = 1, the model's T, and T fitted on the validation split."""
    val_size = int(ckpt_meta.get("val_size") or 0) or DEFAULT_VAL_SIZE
    seed = int(ckpt_meta.get("split_seed") or 0)
    _, val = split_indices(len(mnist.train_images), val_size, seed)
    fitted = calibrate.fit_temperature(rec.logits(mnist.train_images[val]), mnist.train_labels[val])
    logits = rec.logits(mnist.test_images)
    labels = mnist.test_labels
    stored = rec.info.temperature

    def ece(t: float) -> float:
        return calibrate.expected_calibration_error(softmax(logits, t), labels, ECE_BINS)

    return {
        "validation": {
            "size": val_size,
            "seed": seed,
            "from_checkpoint": bool(ckpt_meta.get("val_size")),
        },
        "temperature_stored": stored,
        "temperature_fitted": fitted,
        "test_ece_t1": ece(1.0),
        "test_ece_stored": ece(stored),
        "test_ece_fitted": ece(fitted),
        "test_nll_t1": calibrate.nll(logits, labels, 1.0),
        "test_nll_fitted": calibrate.nll(logits, labels, fitted),
        "test_accuracy": float((logits.argmax(1) == labels).mean()),
    }


def bench_timing(mnist, limit: int | None, seed: int) -> dict:
    """Milliseconds per 280x280 canvas, single thread: in-memory L, RGBA, and PNG bytes."""
    rng = np.random.default_rng(seed)
    idx = _indices(_size("timing", limit), seed)
    drawings = [synth.canvas(mnist.test_images[i], "inverted", rng) for i in idx]
    rgba = [synth.canvas(mnist.test_images[i], "rgba", rng) for i in idx]
    pngs = []
    for img in rgba:
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        pngs.append(buf.getvalue())
    out = {}
    for name, items in (("L image", drawings), ("RGBA image", rgba), ("RGBA PNG bytes", pngs)):
        for item in items[:10]:  # warm-up
            to_model_input(item)
        times = []
        for item in items:
            start = time.perf_counter()
            to_model_input(item)
            times.append(1000 * (time.perf_counter() - start))
        out[name] = {
            "n": len(times),
            "median_ms": statistics.median(times),
            "p95_ms": float(np.percentile(times, 95)),
        }
    return out


def run(args: argparse.Namespace) -> dict:
    rec = load_model(args.model, backend=args.backend)
    meta: dict = {}
    if rec.info.backend == "torch":
        from digitlab.training.checkpoint import load_checkpoint

        meta = load_checkpoint(args.model).get("train_config") or {}
    mnist = load_mnist(mnist_dir(args.data_dir), download=False)
    limit, seed = args.limit, args.seed
    steps: list[tuple[str, Callable[[], dict]]] = [
        ("canvas", lambda: bench_canvas(rec, mnist, limit, seed)),
        ("photo", lambda: bench_simple(rec, mnist, _size("photo", limit), seed + 10, synth.photo)),
        (
            "tight",
            lambda: bench_simple(
                rec,
                mnist,
                _size("tight", limit),
                seed + 15,
                lambda d, r: synth.cropped_tight(
                    d, int(r.integers(48, 241)), bool(r.integers(0, 2))
                ),
            ),
        ),
        (
            "rotated",
            lambda: bench_simple(
                rec,
                mnist,
                _size("rotated", limit),
                seed + 20,
                lambda d, r: synth.rotated(d, r, max_angle=25.0),
            ),
        ),
        ("blank", lambda: bench_blank(rec, limit, seed + 30)),
        ("numbers", lambda: bench_numbers(rec, mnist, _size("numbers", limit), seed + 40, 0.05)),
        (
            "numbers_cramped",
            lambda: bench_numbers(rec, mnist, _size("numbers_cramped", limit), seed + 50, 1.0),
        ),
        ("uci", lambda: bench_uci(rec, limit, seed + 60)),
        ("not_digits", lambda: bench_not_digits(rec, limit, seed + 70)),
        ("calibration", lambda: bench_calibration(rec, mnist, meta)),
        ("preprocess_timing", lambda: bench_timing(mnist, limit, seed + 80)),
    ]
    results: dict = {}
    for name, step in steps:
        if args.only and name not in args.only:
            continue
        start = time.perf_counter()
        results[name] = step()
        logger.info("%s done in %.1f s", name, time.perf_counter() - start)
    return {
        "model": rec.info.to_dict(),
        "limit": limit,
        "seed": seed,
        "machine": machine(),
        "targets": TARGETS,
        "timing_target_ms": TIMING_TARGET_MS,
        "results": results,
    }


def table(report: dict) -> list[str]:
    """Markdown table lines of the report."""
    res = report["results"]
    lines = ["| kind | n | accuracy | target | met |", "|---|---:|---:|---:|:-:|"]

    def row(name: str, r: dict, target: float | None, label: str = "") -> None:
        met = "" if target is None else ("yes" if r["accuracy"] >= target else "NO")
        t = "" if target is None else f"{target:.1%}"
        lines.append(f"| {label or name} | {r['n']} | {r['accuracy']:.2%} | {t} | {met} |")

    if "canvas" in res:
        row("canvas", res["canvas"], TARGETS["canvas"], "canvas drawings (all)")
        for kind, r in res["canvas"]["kinds"].items():
            row(kind, r, None, f"&nbsp;&nbsp;canvas: {kind}")
    for key, label in (
        ("photo", "photos of ink on paper"),
        ("tight", "digits cropped tight (48-240 px, either polarity)"),
        ("rotated", "rotated up to 25 degrees"),
        ("blank", "blank / noise: no digit"),
        ("numbers", "numbers read exactly"),
        ("numbers_cramped", "cramped numbers read exactly"),
        ("uci", "UCI 8x8 digits (not MNIST)"),
    ):
        if key in res:
            row(key, res[key], TARGETS.get(key), label)
    if "not_digits" in res:
        for name, r in res["not_digits"].items():
            lines.append(f"| {name}: flagged uncertain | {r['n']} | {r['uncertain']:.1%} | | |")
    if "calibration" in res:
        c = res["calibration"]
        lines += [
            "",
            "| calibration (MNIST test) | temperature | ECE |",
            "|---|---:|---:|",
            f"| before (T = 1) | 1.000 | {c['test_ece_t1']:.4f} |",
            f"| checkpoint's T | {c['temperature_stored']:.3f} | {c['test_ece_stored']:.4f} |",
            f"| fitted on validation | {c['temperature_fitted']:.3f} "
            f"| {c['test_ece_fitted']:.4f} |",
        ]
    if "preprocess_timing" in res:
        lines += [
            "",
            "| preprocess 280x280 canvas | n | median ms | p95 ms |",
            "|---|---:|---:|---:|",
        ]
        for name, r in res["preprocess_timing"].items():
            lines.append(f"| {name} | {r['n']} | {r['median_ms']:.2f} | {r['p95_ms']:.2f} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="checkpoint or .onnx (default: bundled)")
    parser.add_argument("--backend", choices=("auto", "torch", "onnx"), default="auto")
    parser.add_argument("--limit", type=int, default=None, help="cap every sample at N images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", default=None, help="MNIST folder")
    parser.add_argument("--only", nargs="*", default=None, help="run only these parts")
    parser.add_argument("--out", default=str(RESULTS), help="folder for the result files")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    report = run(args)
    lines = table(report)
    print("\n".join(lines))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "robustness.json").write_text(json.dumps(report, indent=2))
    header = [
        "# Recogniser robustness",
        "",
        f"Model: `{report['model']['name']}` ({report['model']['backend']}, "
        f"{report['model']['source']}); limit {report['limit']}; seed {report['seed']}; "
        f"{report['machine']['date']}, {report['machine']['processor']}, "
        f"{report['machine']['cpu_count']} CPUs.",
        "",
    ]
    (out / "robustness.md").write_text("\n".join(header + lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
