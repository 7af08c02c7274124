"""Accuracy of the recogniser on every kind of image users hand it, calibration, preprocessing time.

Two suites, for one model (``--model``: a checkpoint, an ``.onnx`` file, or the bundled model):

**tune** (``--suite tune``): images from ``tune_images.py`` -- the generators the engine's
constants were chosen on -- drawn from the 5,000 MNIST *validation* digits (the split carved
from the training set, ``split_indices(60000, 5000)``), since developers look at these while
tuning. Recognised with ``predict_batch``:

* canvas drawings (280x280): small, large, off-centre, thick pen, 1-2 px pen, dark on light,
  RGBA canvas export -- target >= 99% together;
* photos of ink on paper (uneven light, shadow, paper grain, blur, JPEG) -- target >= 98.5%;
* digits cropped tight (ink touching every edge, 48-240 px, either polarity), no target;
* digits rotated by up to 25 degrees -- target >= 98.5%;
* blank and noise-only images -- target >= 99% "no digit";
* multi-digit numbers (2-7 digits, 5% of neighbours written touching) -- target >= 95% read
  exactly; and cramped numbers (every neighbour touching), reported without a target;
* the UCI 8x8 handwritten digits from scikit-learn (not MNIST at all) -- target >= 95%;
* scribbles and letters: the share flagged ``uncertain`` (should be most).

**report** (``--suite report``): ``benchmarks/report_images.py``, generators written
independently of the engine, on MNIST *test* digits, the UCI digits and stroke templates, one
image at a time through ``rec.predict`` / ``rec.read_number`` (see that module for the
categories). Targets: photos of ink on paper >= 99%, notebook-paper photos >= 97%, UCI enlarged
by any filter >= 97%, RGBA canvas (thin pen, rotated) >= 99.5%, numbers read exactly: uploads
>= 98%, canvas numbers with strokes >= 99%, numbers with two-stroke 4/5/7 >= 98%; "no digit" on
blank / uniform / noise / empty paper >= 99.5%; false "no digit" on real digits <= 0.3% in
every category. Where a report category has a tune counterpart the table shows the gap (tune
minus report accuracy): a large gap means the constants fit synth's images, not users'.

Both suites (``--suite both``, the default) are followed by:

* calibration: expected calibration error (ECE, 15 bins) on the 10,000 MNIST test digits at
  temperature 1, at the checkpoint's temperature, and at a temperature fitted here on the
  validation split (the checkpoint's, else the first 5,000 of ``split_indices(60000, 5000)``);
* preprocessing time of a 280x280 canvas (target < 2 ms), single-threaded, median and p95.

Prints a table and writes ``benchmarks/results/robustness.json`` and ``robustness.md``.
``--limit N`` caps every sample at N images (for a quick check); ``--failures DIR`` saves up to
25 misread report images per category, ``--samples DIR`` a contact sheet per category.

    python benchmarks/robustness.py                           # both suites, full size
    python benchmarks/robustness.py --suite report --limit 50 # smoke run of the report suite
"""

from __future__ import annotations

import argparse
import inspect
import io
import json
import logging
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import report_images
import tune_images as synth
from common import RESULTS, machine, mnist_dir
from digitlab.api import load_model
from digitlab.engine import calibrate
from digitlab.engine.calibrate import softmax
from digitlab.engine.preprocess import to_model_input
from digitlab.engine.recognizer import Recognizer
from digitlab.training.data import split_indices

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


class Digits(NamedTuple):
    """A set of MNIST digits to draw images from."""

    images: np.ndarray
    labels: np.ndarray
    source: str


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
        "false_no_digit": float(np.mean([p.digit is None for p in preds])),
        "uncertain": float(unsure.mean()),
        "errors_flagged": float(unsure[~right].mean()) if (~right).any() else None,
    }


def bench_canvas(rec: Recognizer, digits: Digits, limit: int | None, seed: int) -> dict:
    """Every canvas kind, and all together."""
    rng = np.random.default_rng(seed)
    per_kind = {}
    for k, kind in enumerate(synth.CANVAS_KINDS):
        idx = _indices(_size("canvas_per_kind", limit), seed + k, len(digits.images))
        imgs = [synth.canvas(digits.images[i], kind, rng) for i in idx]
        per_kind[kind] = _digit_accuracy(rec, imgs, digits.labels[idx])
    total = sum(r["n"] for r in per_kind.values())
    accuracy = sum(r["accuracy"] * r["n"] for r in per_kind.values()) / total
    no_digit = sum(r["false_no_digit"] * r["n"] for r in per_kind.values()) / total
    return {"n": total, "accuracy": accuracy, "false_no_digit": no_digit, "kinds": per_kind}


def bench_simple(rec: Recognizer, digits: Digits, n: int, seed: int, make: Callable) -> dict:
    rng = np.random.default_rng(seed)
    idx = _indices(n, seed, len(digits.images))
    return _digit_accuracy(rec, [make(digits.images[i], rng) for i in idx], digits.labels[idx])


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


def bench_numbers(rec: Recognizer, digits: Digits, n: int, seed: int, touch: float) -> dict:
    rng = np.random.default_rng(seed)
    exact, right_length, empty, count = [], [], [], 0
    start = time.perf_counter()
    for _ in range(n):
        idx = rng.integers(0, len(digits.images), int(rng.integers(2, 8)))
        strip = synth.number_strip(
            digits.images[idx], digits.labels[idx], rng, touch_probability=touch
        )
        read = rec.read_number(strip.image).number
        exact.append(read == strip.number)
        right_length.append(len(read) == len(strip.number))
        empty.append(read == "")
        count += len(strip.number)
    return {
        "n": n,
        "accuracy": float(np.mean(exact)),
        "false_no_digit": float(np.mean(empty)),
        "digit_count_right": float(np.mean(right_length)),
        "mean_digits": count / n,
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


def bench_timing(digits: Digits, limit: int | None, seed: int) -> dict:
    """Milliseconds per 280x280 canvas, single thread: in-memory L, RGBA, and PNG bytes."""
    rng = np.random.default_rng(seed)
    idx = _indices(_size("timing", limit), seed, len(digits.images))
    drawings = [synth.canvas(digits.images[i], "inverted", rng) for i in idx]
    rgba = [synth.canvas(digits.images[i], "rgba", rng) for i in idx]
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


def tune_digits(mnist, ckpt_meta: dict) -> Digits:
    """The validation digits (carved from the training set): what developers may look at."""
    val_size = int(ckpt_meta.get("val_size") or 0) or DEFAULT_VAL_SIZE
    seed = int(ckpt_meta.get("split_seed") or 0)
    _, val = split_indices(len(mnist.train_images), val_size, seed)
    return Digits(
        mnist.train_images[val], mnist.train_labels[val], f"MNIST validation ({val_size})"
    )


def tune_steps(rec: Recognizer, digits: Digits, limit: int | None, seed: int) -> list:
    """The tune suite: ``tune_images.py`` images of validation digits."""
    return [
        ("canvas", lambda: bench_canvas(rec, digits, limit, seed)),
        ("photo", lambda: bench_simple(rec, digits, _size("photo", limit), seed + 10, synth.photo)),
        (
            "tight",
            lambda: bench_simple(rec, digits, _size("tight", limit), seed + 15, _tight_crop),
        ),
        (
            "rotated",
            lambda: bench_simple(
                rec,
                digits,
                _size("rotated", limit),
                seed + 20,
                lambda d, r: synth.rotated(d, r, max_angle=25.0),
            ),
        ),
        ("blank", lambda: bench_blank(rec, limit, seed + 30)),
        ("numbers", lambda: bench_numbers(rec, digits, _size("numbers", limit), seed + 40, 0.05)),
        (
            "numbers_cramped",
            lambda: bench_numbers(rec, digits, _size("numbers_cramped", limit), seed + 50, 1.0),
        ),
        ("uci", lambda: bench_uci(rec, limit, seed + 60)),
        ("not_digits", lambda: bench_not_digits(rec, limit, seed + 70)),
    ]


# --- the report suite: independent generators (benchmarks/report_images.py) -------------------

# Full-size samples per report category (no_digit: per kind, 8 kinds).
REPORT_SIZES = {
    "marker": 600,
    "border": 600,
    "scale": 600,
    "photo": 500,
    "notebook": 500,
    "soft": 600,
    "noise": 500,
    "lowres": 1000,
    "canvas": 600,
    "numbers_upload": 400,
    "numbers_two_stroke": 400,
    "numbers_canvas_strokes": 400,
    "no_digit": 100,
}
REPORT_TARGETS = {
    "photo": 0.99,
    "notebook": 0.97,
    "lowres": 0.97,
    "canvas": 0.995,
    "numbers_upload": 0.98,
    "numbers_two_stroke": 0.98,
    "numbers_canvas_strokes": 0.99,
    "no_digit": 0.995,
}
FALSE_NO_DIGIT_TARGET = 0.003
REPORT_LABELS = {
    "marker": "marker strokes, hairline to very thick",
    "border": "digit touching / cut by the border",
    "scale": "digit 3-90% of the image height",
    "photo": "photos of ink on paper",
    "notebook": "notebook paper photos (ruled / squared)",
    "soft": "soft, low contrast (ink 120-200 on 200-255)",
    "noise": "heavy noise: Gaussian, uniform, salt and pepper, speckle, photon",
    "lowres": "UCI 8x8 enlarged 16-128 px, 4 filters",
    "canvas": "canvas RGBA, thin pen, rotated <= 25 deg",
    "numbers_upload": "numbers (uploads, 2-6 digits) read exactly",
    "numbers_two_stroke": "numbers with two-stroke 4/5/7 read exactly",
    "numbers_canvas_strokes": "canvas numbers with strokes read exactly",
    "no_digit": "blank / uniform / noise / empty paper: no digit",
}
# Report category -> the tune category that measures the same kind of image.
TUNE_COUNTERPART = {
    "photo": "photo",
    "notebook": "photo",
    "canvas": "canvas",
    "border": "tight",
    "lowres": "uci",
    "numbers_upload": "numbers",
    "no_digit": "blank",
}
MAX_FAILURES_SAVED = 25
SAMPLES_PER_SHEET = 24


def _save_image(sample: report_images.Sample, folder: Path, name: str) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    sample.image.save(path)
    return str(path)


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)[:40]


class _Tally:
    """Right / wrong / no-digit counts per category and per sub-kind, and saved failures."""

    def __init__(self, name: str, failures: Path | None, samples: Path | None) -> None:
        self.name, self.failures, self.samples = name, failures, samples
        self.rows: list[tuple[str, bool, bool, bool]] = []
        self.saved: list[str] = []
        self.sheet: list[report_images.Sample] = []

    def add(self, i: int, sample, right: bool, empty: bool, unsure: bool, got) -> None:
        self.rows.append((sample.kind, right, empty, unsure))
        if self.samples is not None and len(self.sheet) < SAMPLES_PER_SHEET:
            self.sheet.append(sample)
        if not right and self.failures is not None and len(self.saved) < MAX_FAILURES_SAVED:
            name = f"{i:04d}_true{sample.label}_got{got}_{_safe(sample.kind)}.png"
            self.saved.append(_save_image(sample, self.failures / self.name, name))

    def result(self, seconds: float, digits: bool = True) -> dict:
        kinds: dict[str, dict] = {}
        for kind in sorted({r[0] for r in self.rows}):
            rows = [r for r in self.rows if r[0] == kind]
            kinds[kind] = {
                "n": len(rows),
                "accuracy": float(np.mean([r[1] for r in rows])),
                "false_no_digit": float(np.mean([r[2] for r in rows])) if digits else None,
            }
        if self.sheet:
            self.samples.mkdir(parents=True, exist_ok=True)
            report_images.contact_sheet(self.sheet, self.samples / f"{self.name}.png")
        n = len(self.rows)
        return {
            "n": n,
            "accuracy": float(np.mean([r[1] for r in self.rows])) if n else 0.0,
            "false_no_digit": float(np.mean([r[2] for r in self.rows])) if digits and n else None,
            "uncertain": float(np.mean([r[3] for r in self.rows])) if n else 0.0,
            "target": REPORT_TARGETS.get(self.name),
            "kinds": kinds,
            "failures_saved": self.saved,
            "seconds": seconds,
        }


def report_digit_category(rec, name, gen, images, labels, n, seed, failures, samples) -> dict:
    """One single-digit category: generate and recognise one image at a time (some are big)."""
    rng = np.random.default_rng(seed)
    idx = _indices(n, seed, len(images))
    tally = _Tally(name, failures, samples)
    start = time.perf_counter()
    for i in idx:
        sample = gen(images[i], int(labels[i]), rng)
        p = rec.predict(sample.image)
        tally.add(int(i), sample, p.digit == sample.label, p.digit is None, p.uncertain, p.digit)
    return tally.result(time.perf_counter() - start)


def report_numbers(rec, name, make, n, seed, failures, samples, hook: bool) -> dict:
    rng = np.random.default_rng(seed)
    tally = _Tally(name, failures, samples)
    start = time.perf_counter()
    for i in range(n):
        sample = make(rng)
        if hook:
            read = report_images.read_number_with_strokes(rec, sample.image, sample.strokes)
        else:
            read = rec.read_number(sample.image)
        got = read.number or "none"
        tally.add(i, sample, read.number == sample.label, read.number == "", read.uncertain, got)
    out = tally.result(time.perf_counter() - start)
    out["strokes_used"] = hook and "strokes" in inspect.signature(rec.read_number).parameters
    return out


def report_no_digit(rec, per_kind: int, seed: int, failures, samples) -> dict:
    rng = np.random.default_rng(seed)
    tally = _Tally("no_digit", failures, samples)
    start = time.perf_counter()
    for k, kind in enumerate(report_images.NO_DIGIT_KINDS):
        for j in range(per_kind):
            sample = report_images.gen_no_digit(kind, rng)
            p = rec.predict(sample.image)
            tally.add(k * 1000 + j, sample, p.digit is None, False, p.uncertain, p.digit)
    return tally.result(time.perf_counter() - start, digits=False)


def report_steps(rec, mnist, args) -> list:
    """The report suite: report_images generators on MNIST *test* digits and UCI."""
    limit, seed = args.limit, args.seed + 1000
    failures = Path(args.failures) if args.failures else None
    samples = Path(args.samples) if args.samples else None

    def size(key: str) -> int:
        return min(REPORT_SIZES[key], limit) if limit else REPORT_SIZES[key]

    def digit_step(k: int, name: str, gen) -> tuple:
        return name, lambda: report_digit_category(
            rec,
            name,
            gen,
            mnist.test_images,
            mnist.test_labels,
            size(name),
            seed + k,
            failures,
            samples,
        )

    def upload(rng: np.random.Generator) -> report_images.Sample:
        idx = rng.integers(0, len(mnist.test_images), int(rng.integers(2, 7)))
        return report_images.gen_number_upload(mnist.test_images[idx], mnist.test_labels[idx], rng)

    def lowres() -> dict:
        images, labels = report_images.uci_digits()
        return report_digit_category(
            rec,
            "lowres",
            report_images.gen_lowres,
            images,
            labels,
            size("lowres"),
            seed + 20,
            failures,
            samples,
        )

    steps = [
        digit_step(k, name, gen)
        for k, name, gen in (
            (1, "marker", report_images.gen_marker),
            (2, "border", report_images.gen_border),
            (3, "scale", report_images.gen_scale),
            (4, "photo", report_images.gen_photo),
            (5, "notebook", report_images.gen_notebook),
            (6, "soft", report_images.gen_soft),
            (7, "canvas", report_images.gen_canvas),
            (8, "noise", report_images.gen_noise),
        )
    ]
    steps += [
        ("lowres", lowres),
        (
            "numbers_upload",
            lambda: report_numbers(
                rec,
                "numbers_upload",
                upload,
                size("numbers_upload"),
                seed + 30,
                failures,
                samples,
                hook=False,
            ),
        ),
        (
            "numbers_two_stroke",
            lambda: report_numbers(
                rec,
                "numbers_two_stroke",
                report_images.gen_number_two_stroke,
                size("numbers_two_stroke"),
                seed + 40,
                failures,
                samples,
                hook=True,
            ),
        ),
        (
            "numbers_canvas_strokes",
            lambda: report_numbers(
                rec,
                "numbers_canvas_strokes",
                report_images.gen_number_canvas_strokes,
                size("numbers_canvas_strokes"),
                seed + 50,
                failures,
                samples,
                hook=True,
            ),
        ),
        ("no_digit", lambda: report_no_digit(rec, size("no_digit"), seed + 60, failures, samples)),
    ]
    return steps


def _run_steps(steps: list, only: list | None, suite: str) -> dict:
    results: dict = {}
    for name, step in steps:
        if only and name not in only:
            continue
        start = time.perf_counter()
        results[name] = step()
        logger.info("%s/%s done in %.1f s", suite, name, time.perf_counter() - start)
    return results


def gaps(tune: dict, report: dict) -> dict:
    """Tune accuracy minus report accuracy, where a report category has a tune counterpart."""
    out = {}
    for name, counterpart in TUNE_COUNTERPART.items():
        if name in report and counterpart in tune:
            out[name] = {
                "tune_category": counterpart,
                "tune": tune[counterpart]["accuracy"],
                "report": report[name]["accuracy"],
                "gap": tune[counterpart]["accuracy"] - report[name]["accuracy"],
            }
    return out


def run(args: argparse.Namespace) -> dict:
    rec = load_model(args.model, backend=args.backend)
    meta: dict = {}
    if rec.info.backend == "torch":
        from digitlab.training.checkpoint import load_checkpoint

        meta = load_checkpoint(args.model).get("train_config") or {}
    mnist = report_images.load_digit_source(mnist_dir(args.data_dir))
    limit, seed = args.limit, args.seed
    results: dict = {}
    if args.suite in ("tune", "both"):
        digits = tune_digits(mnist, meta)
        tune_limit = args.tune_limit if args.tune_limit is not None else limit
        results["tune"] = _run_steps(tune_steps(rec, digits, tune_limit, seed), args.only, "tune")
        results["tune_digits"] = digits.source
    if args.suite in ("report", "both"):
        results["report"] = _run_steps(report_steps(rec, mnist, args), args.only, "report")
    if "tune" in results and "report" in results:
        results["gaps"] = gaps(results["tune"], results["report"])
    extras = [
        ("calibration", lambda: bench_calibration(rec, mnist, meta)),
        (
            "preprocess_timing",
            lambda: bench_timing(
                Digits(mnist.test_images, mnist.test_labels, "MNIST test"), limit, seed + 80
            ),
        ),
    ]
    if not args.no_extras:
        results.update(_run_steps(extras, args.only, "extras"))
    return {
        "model": rec.info.to_dict(),
        "suite": args.suite,
        "limit": limit,
        "tune_limit": args.tune_limit if args.tune_limit is not None else limit,
        "seed": seed,
        "machine": machine(),
        "targets": {"tune": TARGETS, "report": REPORT_TARGETS},
        "false_no_digit_target": FALSE_NO_DIGIT_TARGET,
        "timing_target_ms": TIMING_TARGET_MS,
        "results": results,
    }


def _pct(v: float | None, digits: int = 2) -> str:
    return "" if v is None else f"{v:.{digits}%}"


def tune_table(res: dict) -> list[str]:
    """Markdown lines of the tune suite."""
    lines = [
        "## Tune suite (tune_images.py on MNIST validation digits)",
        "",
        "| kind | n | accuracy | false no-digit | target | met |",
        "|---|---:|---:|---:|---:|:-:|",
    ]

    def row(name: str, r: dict, target: float | None, label: str = "") -> None:
        met = "" if target is None else ("yes" if r["accuracy"] >= target else "NO")
        t = "" if target is None else f"{target:.1%}"
        fnd = _pct(r.get("false_no_digit"))
        lines.append(f"| {label or name} | {r['n']} | {r['accuracy']:.2%} | {fnd} | {t} | {met} |")

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
            lines.append(f"| {name}: flagged uncertain | {r['n']} | {r['uncertain']:.1%} | | | |")
    return lines


def report_table(res: dict, gap: dict) -> list[str]:
    """Markdown lines of the report suite, with the tune-report gap."""
    lines = [
        "## Report suite (benchmarks/report_images.py: MNIST test digits, UCI, stroke templates)",
        "",
        f"False no-digit target: <= {FALSE_NO_DIGIT_TARGET:.1%} of digit images in every category.",
        "",
        "| category | n | accuracy | false no-digit | target | met | tune | gap |",
        "|---|---:|---:|---:|---:|:-:|---:|---:|",
    ]
    for name, label in REPORT_LABELS.items():
        if name not in res:
            continue
        r = res[name]
        target = r.get("target")
        fnd = r.get("false_no_digit")
        met_acc = target is None or r["accuracy"] >= target
        met_fnd = fnd is None or fnd <= FALSE_NO_DIGIT_TARGET
        met = "yes" if met_acc and met_fnd else "NO"
        t = "" if target is None else f"{target:.1%}"
        g = gap.get(name)
        tune = "" if g is None else f"{g['tune']:.2%} ({g['tune_category']})"
        gp = "" if g is None else f"{100 * g['gap']:+.2f} pt"
        cells = [label, str(r["n"]), f"{r['accuracy']:.2%}", _pct(fnd), t, met, tune, gp]
        lines.append("| " + " | ".join(cells) + " |")
        for kind, k in r["kinds"].items():
            lines.append(
                f"| &nbsp;&nbsp;{name}: {kind} | {k['n']} | {k['accuracy']:.2%} "
                f"| {_pct(k['false_no_digit'])} | | | | |"
            )
    return lines


def table(report: dict) -> list[str]:
    """Markdown table lines of the report."""
    res = report["results"]
    lines: list[str] = []
    if "tune" in res:
        lines += [*tune_table(res["tune"]), ""]
    if "report" in res:
        lines += [*report_table(res["report"], res.get("gaps", {})), ""]
    if "calibration" in res:
        c = res["calibration"]
        lines += [
            "| calibration (MNIST test) | temperature | ECE |",
            "|---|---:|---:|",
            f"| before (T = 1) | 1.000 | {c['test_ece_t1']:.4f} |",
            f"| checkpoint's T | {c['temperature_stored']:.3f} | {c['test_ece_stored']:.4f} |",
            f"| fitted on validation | {c['temperature_fitted']:.3f} "
            f"| {c['test_ece_fitted']:.4f} |",
            "",
        ]
    if "preprocess_timing" in res:
        lines += [
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
    parser.add_argument(
        "--suite",
        choices=("tune", "report", "both"),
        default="both",
        help="tune: synth images of validation digits; report: independent generators on test "
        "digits; both (default)",
    )
    parser.add_argument("--limit", type=int, default=None, help="cap every sample at N images")
    parser.add_argument(
        "--tune-limit", type=int, default=None, help="cap the tune suite's samples (else --limit)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", default=None, help="MNIST folder")
    parser.add_argument("--only", nargs="*", default=None, help="run only these parts")
    parser.add_argument("--no-extras", action="store_true", help="skip calibration and timing")
    parser.add_argument(
        "--failures", default=None, help="save up to 25 misread report images per category here"
    )
    parser.add_argument("--samples", default=None, help="write a contact sheet per category here")
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
        f"{report['model']['source']}); suite {report['suite']}; limit {report['limit']}; "
        f"tune limit {report.get('tune_limit')}; "
        f"seed {report['seed']}; {report['machine']['date']}, {report['machine']['processor']}, "
        f"{report['machine']['cpu_count']} CPUs.",
        "",
    ]
    (out / "robustness.md").write_text("\n".join(header + lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
