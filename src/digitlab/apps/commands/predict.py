"""``digitlab predict``: recognise the digits in image files, folders and globs.

    digitlab predict PATH... [--model M] [--backend auto|torch|onnx] [--top-k K] [--number]
                     [--format table|json|csv] [--explain DIR] [--jobs N] [--batch-size N]

Folders are searched recursively for images; globs (``"scans/**/*.png"``) are expanded by us,
so they work quoted and on every shell. Each file is decoded and preprocessed on its own (an
unreadable file becomes a row with an ``error`` and does not stop the others) and the network
runs on batches of files (the images in one pass, the stability views of the unsure ones in
one more). With many files the
work is shared by ``--jobs`` processes (default: the usable cores), each taking chunks of files
in order and doing everything for its chunk: decode, preprocess, the network. A progress bar
is shown on stderr when there are many files and stderr is a terminal. The exit status is 0
when every file was read, 1 when any failed, 2 for a usage error or a bad model.

Runtime: with ``--backend auto`` the bundled model runs with ONNX Runtime when it is installed
(the shipped ``default.onnx``: the same answers as PyTorch to ~1e-6, no torch to import at
start-up, about twice PyTorch's speed on one thread); a checkpoint (``.pt``, the personal
model, ``ensemble``) runs with PyTorch. Worker processes each open their own one-thread ONNX
Runtime session (its thread pool does not survive a fork); PyTorch models are loaded once and
inherited by the forked workers. ``benchmarks/inference.py`` measures the command end to end.

In number mode (``--number``) each row describes the number read from the file: ``number``,
the per-digit ``confidences``, the number's ``uncertain`` flag and each digit's box and
prediction; the file is not also read as one digit.
"""

from __future__ import annotations

import argparse
import csv
import glob
import importlib.util
import io
import json
import logging
import math
import multiprocessing
import os
import signal
import sys
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from digitlab.core.constants import (
    BACKENDS,
    IMAGE_FORMATS_TEXT,
    IMAGE_SUFFIXES,
    NUM_CLASSES,
    OUTPUT_FORMATS,
)
from digitlab.core.errors import DigitlabError
from digitlab.core.resolve import is_bundled_name, resolve_model
from digitlab.core.settings import ENV_ORT_THREADS, usable_cores

log = logging.getLogger(__name__)

GLOB_CHARS = "*?["
DEFAULT_BATCH = 64
# Show a progress bar from this many files on (on a terminal only).
PROGRESS_MIN_FILES = 20
# Share the work among processes from this many files on: below it, starting the processes
# costs more than it saves.
PARALLEL_MIN_FILES = 32
# Chunks of files per worker process: enough that the workers finish together.
CHUNKS_PER_JOB = 4


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``predict`` subcommand."""
    p = sub.add_parser(
        "predict",
        help="recognise digits (or numbers) in image files, folders and globs",
        description=f"Recognise the digit in each image ({IMAGE_FORMATS_TEXT}). "
        "Folders are searched recursively; quote globs such as 'scans/**/*.png'.",
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="image file, folder or glob")
    p.add_argument(
        "--model",
        default=None,
        help="checkpoint (.pt) or ONNX (.onnx) file, 'default' or 'ensemble' (default: your "
        "personal model when installed by `digitlab finetune --install`, else the bundled one)",
    )
    p.add_argument("--backend", choices=BACKENDS, default="auto")
    p.add_argument(
        "--top-k", type=int, default=3, metavar="K", help=f"top digits to list (1-{NUM_CLASSES})"
    )
    p.add_argument("--number", action="store_true", help="read a multi-digit number in each image")
    p.add_argument("--format", choices=OUTPUT_FORMATS, default="table", help="output format")
    p.add_argument(
        "--explain", metavar="DIR", default=None, help="write heat-map overlays (PNG) into DIR"
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=None,
        metavar="N",
        help="processes sharing the files (default: the usable cores; 1 = this process only)",
    )
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH, help=argparse.SUPPRESS)
    p.set_defaults(func=run)


# ---------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------


def _images_in(folder: Path) -> list[Path]:
    """Image files under ``folder``, recursively, sorted."""
    found = [
        Path(root) / name
        for root, _dirs, names in os.walk(folder)
        for name in names
        if name.lower().endswith(IMAGE_SUFFIXES)
    ]
    return sorted(found)


def expand_inputs(paths: list[str]) -> list[tuple[str, str | None]]:
    """(path, problem) pairs: files as given, folders and globs expanded, duplicates dropped.

    ``problem`` is None for a path to read, or why nothing could be read (a glob that matches
    nothing, an empty folder); such entries become error rows.
    """
    out: list[tuple[str, str | None]] = []
    seen: set[str] = set()

    def add(path: str, problem: str | None = None) -> None:
        if path not in seen:
            seen.add(path)
            out.append((path, problem))

    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            files = _images_in(p)
            if not files:
                add(raw, f"no images ({', '.join(IMAGE_SUFFIXES)}) in folder")
            for f in files:
                add(str(f))
        elif not p.exists() and any(c in raw for c in GLOB_CHARS):
            matches = sorted(glob.glob(raw, recursive=True))
            files = [m for m in matches if Path(m).is_file()]
            for m in matches:
                if Path(m).is_dir():
                    files += [str(f) for f in _images_in(Path(m))]
            if not files:
                add(raw, "no files match this pattern")
            for f in files:
                add(str(f))
        else:
            add(raw)
    return out


# ---------------------------------------------------------------------------------------------
# Recognition
# ---------------------------------------------------------------------------------------------


def _row(path: str, number: bool, error: str | None = None) -> dict[str, Any]:
    """An empty row: what a file that could not be read reports."""
    if number:
        return {
            "path": path,
            "number": "",
            "confidences": [],
            "uncertain": True,
            "digits": [],
            "error": error,
        }
    return {
        "path": path,
        "digit": None,
        "confidence": 0.0,
        "probabilities": [0.0] * NUM_CLASSES,
        "top": [],
        "uncertain": True,
        "error": error,
    }


def _progress(total: int):
    """A tqdm bar on stderr for many files on a terminal, else None."""
    if total < PROGRESS_MIN_FILES or not sys.stderr.isatty():
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit="img", file=sys.stderr, desc="predict")


def _read_error(path: str, exc: DigitlabError | OSError) -> str:
    """The one-line message for a file that could not be read."""
    if isinstance(exc, DigitlabError):
        return str(exc)
    return f"{path}: {exc.strerror or exc}"  # e.g. a file vanishing between listing and reading


def _heatmap_targets(paths: list[str], out_dir: Path) -> list[Path]:
    """A distinct ``<stem>.heatmap[-n].png`` in ``out_dir`` for each path, chosen up front so
    that processes writing in parallel never pick the same name."""
    taken: set[Path] = set()
    out = []
    for path in paths:
        stem = Path(path).stem
        target = out_dir / f"{stem}.heatmap.png"
        n = 1
        while target in taken or target.exists():
            n += 1
            target = out_dir / f"{stem}.heatmap-{n}.png"
        taken.add(target)
        out.append(target)
    return out


@dataclass
class Job:
    """What every chunk of files is read with (handed to worker processes)."""

    number: bool
    top_k: int
    explain: bool


@dataclass(frozen=True)
class ModelSpec:
    """The model to load and the runtime to load it with (``digitlab.api.load_model``'s
    arguments): what each worker process loads for itself when it cannot inherit it."""

    model: str | None
    backend: str  # "auto", "torch" or "onnx"

    @property
    def onnx(self) -> bool:
        """Whether the model runs with ONNX Runtime."""
        return self.backend == "onnx" or str(self.model or "").lower().endswith(".onnx")


def choose_backend(model: str | None, backend: str) -> str:
    """The runtime for ``--backend``: with ``auto`` the bundled model runs with ONNX Runtime
    (its shipped ``default.onnx`` export, the same answers) when ONNX Runtime is installed --
    no torch to import at start-up, and faster small batches; any other model as
    ``load_model`` decides (a ``.pt`` with PyTorch)."""
    if backend != "auto" or not is_bundled_name(model):
        return backend
    return "onnx" if importlib.util.find_spec("onnxruntime") is not None else backend


def load_recognizer(spec: ModelSpec) -> Any:
    """The recogniser for ``spec``, with PyTorch's threads set for inference."""
    from digitlab.api import load_model

    rec = load_model(spec.model, backend=spec.backend)
    if rec.info.backend == "torch":
        from digitlab.engine.backends.torch import set_inference_threads

        set_inference_threads()  # once, before any pass (and before worker processes fork)
    return rec


def _write_heatmap(path: str, heatmap: Any, target: Path) -> str:
    """Save a prediction's heat map over its input image; returns the file written."""
    from digitlab.engine.decode import load_image
    from digitlab.engine.explain import overlay

    overlay(load_image(path), heatmap).save(target)
    return str(target)


def _read_digits(
    rec: Any, paths: list[str], job: Job, targets: list[Path | None]
) -> list[dict[str, Any]]:
    """Decode and preprocess each file on its own (a failure becomes its row's error), then
    one batched pass of the network over the chunk; fill in the rows."""
    from digitlab.engine.preprocess import to_model_input

    items: list[Any] = []
    rows = []
    for path in paths:
        row = _row(path, job.number)
        try:
            items.append(to_model_input(path))
        except (DigitlabError, OSError) as exc:
            row["error"] = _read_error(path, exc)
            items.append(None)
        rows.append(row)
    ready = [k for k, item in enumerate(items) if item is not None]
    preds = rec.predict_preprocessed(
        [items[k] for k in ready], top_k=job.top_k, explain=job.explain
    )
    for k, pred in zip(ready, preds, strict=True):
        row = rows[k]
        row.update(pred.to_dict(images=False))
        target = targets[k]
        if target is not None and pred.heatmap is not None and pred.digit is not None:
            row["heatmap"] = _write_heatmap(row["path"], pred.heatmap, target)
    return rows


def _read_numbers(rec: Any, paths: list[str], job: Job) -> list[dict[str, Any]]:
    """Number-mode rows: each file read as a multi-digit number."""
    rows = []
    for path in paths:
        row = _row(path, True)
        try:
            result = rec.read_number(path, top_k=job.top_k)
        except (DigitlabError, OSError) as exc:
            row["error"] = _read_error(path, exc)
        else:
            row["number"] = result.number
            row["confidences"] = [float(d.prediction.confidence) for d in result.digits]
            row["uncertain"] = bool(result.uncertain)
            row["digits"] = [d.to_dict(images=False) for d in result.digits]
        rows.append(row)
    return rows


def _recognise_chunk(
    rec: Any, paths: list[str], job: Job, targets: list[Path | None]
) -> list[dict[str, Any]]:
    """Rows for one chunk of files, read in this process."""
    if job.number:
        return _read_numbers(rec, paths, job)
    return _read_digits(rec, paths, job, targets)


# A worker process's recogniser: inherited from the main process at the fork (PyTorch on one
# thread), or loaded by the worker itself from _WORKER_SPEC on its first chunk (ONNX Runtime,
# whose thread pool does not survive a fork: the main process never opens a session then).
_WORKER_RECOGNIZER: Any = None
_WORKER_SPEC: ModelSpec | None = None


def _worker_chunk(paths: list[str], job: Job, targets: list[Path | None]) -> list[dict[str, Any]]:
    """In a worker: the chunk's rows (decode, preprocess and the network, all here)."""
    global _WORKER_RECOGNIZER
    if _WORKER_RECOGNIZER is None:
        assert _WORKER_SPEC is not None
        # One process per core, so one ONNX Runtime thread each (unless the user set it).
        os.environ.setdefault(ENV_ORT_THREADS, "1")
        _WORKER_RECOGNIZER = load_recognizer(_WORKER_SPEC)
    return _recognise_chunk(_WORKER_RECOGNIZER, paths, job, targets)


def _pool(jobs: int, spec: ModelSpec) -> tuple[Executor | None, Any]:
    """Worker processes forked from this one and the main process's recogniser (None when
    the workers load their own), or (None, None) where processes cannot be forked."""
    global _WORKER_RECOGNIZER, _WORKER_SPEC
    if "fork" not in multiprocessing.get_all_start_methods():
        return None, None
    rec = None if spec.onnx else load_recognizer(spec)
    # The engine (numpy, Pillow) is imported once here and shared by the forked workers
    # rather than imported by each; ONNX Runtime is not (its import starts a thread).
    import digitlab.engine.recognizer  # noqa: F401

    _WORKER_RECOGNIZER, _WORKER_SPEC = rec, spec
    pool = ProcessPoolExecutor(
        jobs, mp_context=multiprocessing.get_context("fork"), initializer=_ignore_interrupts
    )
    return pool, rec


def _ignore_interrupts() -> None:
    """In a worker: leave Ctrl-C to the main process (it stops the pool and reports once)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def recognise(
    args: argparse.Namespace, model: ModelSpec | Any, inputs: list[tuple[str, str | None]]
) -> list[dict[str, Any]]:
    """Rows for every input, in order: files read in chunks, in this process or, when there
    are many, in ``args.jobs`` worker processes that each decode, preprocess and run the
    network on their chunks (``model``: a :class:`ModelSpec`, or a loaded recogniser)."""
    rows = [_row(path, args.number, problem) for path, problem in inputs]
    explain_dir = Path(args.explain) if args.explain else None
    todo = [i for i, (_, problem) in enumerate(inputs) if problem is None]
    paths = [inputs[i][0] for i in todo]
    targets: list[Path | None] = [None] * len(todo)
    if explain_dir is not None:
        explain_dir.mkdir(parents=True, exist_ok=True)
        targets = list(_heatmap_targets(paths, explain_dir))
    job = Job(number=args.number, top_k=args.top_k, explain=explain_dir is not None)
    jobs = usable_cores() if args.jobs is None else args.jobs
    parallel = jobs > 1 and len(todo) >= PARALLEL_MIN_FILES
    size = max(1, args.batch_size)
    if parallel:
        size = max(1, min(size, math.ceil(len(todo) / (jobs * CHUNKS_PER_JOB))))
    chunks = [(a, min(a + size, len(todo))) for a in range(0, len(todo), size)]
    pool: Executor | None = None
    rec = None if isinstance(model, ModelSpec) else model
    if parallel and rec is None:
        pool, rec = _pool(jobs, model)
    elif parallel:
        log.debug("predict: a loaded recogniser runs in this process only")
    if pool is None and rec is None:
        rec = load_recognizer(model)
    bar = None
    try:
        if pool is None:
            results: Any = (_recognise_chunk(rec, paths[a:b], job, targets[a:b]) for a, b in chunks)
        else:
            log.debug("predict: %d files in %d chunks, %d processes", len(todo), len(chunks), jobs)
            results = pool.map(
                _worker_chunk,
                [paths[a:b] for a, b in chunks],
                [job] * len(chunks),
                [targets[a:b] for a, b in chunks],
            )  # the workers are forked here: before the progress bar starts its thread
        bar = _progress(len(todo))
        for (a, b), result in zip(chunks, results, strict=True):
            for i, row in zip(todo[a:b], result, strict=True):
                rows[i] = row
            if bar is not None:
                bar.update(b - a)
    finally:
        if bar is not None:
            bar.close()
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    return rows


# ---------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------


def _top_text(row: dict[str, Any]) -> str:
    return " ".join(f"{t['digit']}:{t['probability']:.2f}" for t in row["top"])


def _digits_text(row: dict[str, Any]) -> str:
    """A number's digits with their confidences: ``2:0.99 0:0.97``."""
    return " ".join(
        f"{d['prediction']['digit']}:{d['prediction']['confidence']:.2f}" for d in row["digits"]
    )


def _note(row: dict[str, Any], number: bool) -> str:
    """The table's last column: the error, "no digit" or "uncertain"."""
    if row["error"]:
        return str(row["error"])
    found = row["number"] if number else row["digit"] is not None
    if not found:
        return "no digit"
    return "uncertain" if row["uncertain"] else ""


def format_table(rows: list[dict[str, Any]], number: bool) -> str:
    """Aligned text columns: path, digit, confidence, top-k, note; in number mode path,
    number, its digits with their confidences, note."""
    if number:
        header = ["path", "number", "digits", "note"]
        lines = [[r["path"], r["number"] or "-", _digits_text(r), _note(r, True)] for r in rows]
    else:
        header = ["path", "digit", "conf", "top", "note"]
        lines = [
            [
                r["path"],
                "-" if r["digit"] is None else str(r["digit"]),
                f"{r['confidence']:.3f}" if r["digit"] is not None else "-",
                _top_text(r),
                _note(r, False),
            ]
            for r in rows
        ]
    widths = [max(len(h), *(len(c[k]) for c in lines)) for k, h in enumerate(header[:-1])]
    out = []
    for cells in [header, *lines]:
        fixed = [c.ljust(w) for c, w in zip(cells[:-1], widths, strict=True)]
        out.append("  ".join([*fixed, cells[-1]]).rstrip())
    return "\n".join(out)


def format_csv(rows: list[dict[str, Any]], number: bool) -> str:
    """CSV with one column per probability; in number mode the number, its uncertain flag and
    the digits with their confidences."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    if number:
        writer.writerow(["path", "number", "uncertain", "digits", "error"])
        for r in rows:
            flag = int(bool(r["uncertain"]))
            writer.writerow([r["path"], r["number"], flag, _digits_text(r), r["error"] or ""])
        return buf.getvalue().rstrip("\n")
    cols = ["path", "digit", "confidence", "uncertain", "top"]
    writer.writerow([*cols, *(f"p{d}" for d in range(NUM_CLASSES)), "error"])
    for r in rows:
        writer.writerow(
            [
                r["path"],
                "" if r["digit"] is None else r["digit"],
                f"{r['confidence']:.6f}",
                int(bool(r["uncertain"])),
                _top_text(r),
                *[f"{p:.6f}" for p in r["probabilities"]],
                r["error"] or "",
            ]
        )
    return buf.getvalue().rstrip("\n")


def run(args: argparse.Namespace) -> int:
    """Recognise every input and print the rows; 1 if any file failed."""
    if not 1 <= args.top_k <= NUM_CLASSES:
        raise DigitlabError(f"--top-k must be from 1 to {NUM_CLASSES}, got {args.top_k}")
    if args.batch_size < 1:
        raise DigitlabError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.jobs is not None and args.jobs < 1:
        raise DigitlabError(f"--jobs must be at least 1, got {args.jobs}")
    if args.number and args.explain:
        raise DigitlabError("--explain maps single digits; it does not work with --number")
    from digitlab.apps.feedback.personal import choose_model

    model, note = choose_model(args.model)
    if note:
        log.info("%s", note)
    spec = ModelSpec(model, choose_backend(model, args.backend))
    resolve_model(spec.model, prefer_onnx=spec.backend == "onnx")  # a bad name fails here
    rows = recognise(args, spec, expand_inputs(args.paths))
    if args.format == "json":
        print(json.dumps(rows, indent=2))
    elif args.format == "csv":
        print(format_csv(rows, args.number))
    else:
        print(format_table(rows, args.number))
    failed = sum(1 for r in rows if r["error"])
    if failed:
        print(f"digitlab predict: {failed} of {len(rows)} inputs failed", file=sys.stderr)
    return 1 if failed else 0
