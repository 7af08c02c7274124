"""``digitlab predict``: recognise the digits in image files, folders and globs.

    digitlab predict PATH... [--model M] [--backend auto|torch|onnx] [--top-k K] [--number]
                     [--format table|json|csv] [--explain DIR] [--batch-size N]

Folders are searched recursively for images; globs (``"scans/**/*.png"``) are expanded by us,
so they work quoted and on every shell. Images are preprocessed one by one (an unreadable file
becomes a row with an ``error`` and does not stop the others) and recognised in batches. A
progress bar is shown on stderr when there are many files and stderr is a terminal. The exit
status is 0 when every file was read, 1 when any failed, 2 for a usage error or a bad model.
"""

from __future__ import annotations

import argparse
import csv
import glob
import io
import json
import os
import sys
from pathlib import Path
from typing import Any

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
GLOB_CHARS = "*?["
FORMATS = ("table", "json", "csv")
DEFAULT_BATCH = 64
# Show a progress bar from this many files on (on a terminal only).
PROGRESS_MIN_FILES = 20


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``predict`` subcommand."""
    p = sub.add_parser(
        "predict",
        help="recognise digits (or numbers) in image files, folders and globs",
        description="Recognise the digit in each image (PNG, JPEG, BMP, GIF, WebP, TIFF). "
        "Folders are searched recursively; quote globs such as 'scans/**/*.png'.",
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="image file, folder or glob")
    p.add_argument(
        "--model",
        default=None,
        help="checkpoint (.pt) or ONNX (.onnx) file, or 'ensemble' (default: the bundled model)",
    )
    p.add_argument("--backend", choices=("auto", "torch", "onnx"), default="auto")
    p.add_argument("--top-k", type=int, default=3, metavar="K", help="top digits to list (1-10)")
    p.add_argument("--number", action="store_true", help="read a multi-digit number in each image")
    p.add_argument("--format", choices=FORMATS, default="table", help="output format")
    p.add_argument(
        "--explain", metavar="DIR", default=None, help="write heat-map overlays (PNG) into DIR"
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


def _row(path: str, error: str | None = None) -> dict[str, Any]:
    return {
        "path": path,
        "digit": None,
        "confidence": 0.0,
        "probabilities": [0.0] * 10,
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


def _write_heatmap(path: str, heatmap: Any, out_dir: Path) -> str:
    """Save a prediction's heat map over its input image; returns the file written."""
    from digitlab.engine.decode import load_image
    from digitlab.engine.explain import overlay

    target = out_dir / f"{Path(path).stem}.heatmap.png"
    n = 1
    while target.exists():
        n += 1
        target = out_dir / f"{Path(path).stem}.heatmap-{n}.png"
    overlay(load_image(path), heatmap).save(target)
    return str(target)


def recognise(
    args: argparse.Namespace, rec: Any, inputs: list[tuple[str, str | None]]
) -> list[dict[str, Any]]:
    """Rows for every input, in order: preprocess one by one, predict in batches."""
    from digitlab.core.errors import DigitlabError
    from digitlab.engine.preprocess import to_model_input

    rows = [_row(path, problem) for path, problem in inputs]
    explain_dir = Path(args.explain) if args.explain else None
    if explain_dir is not None:
        explain_dir.mkdir(parents=True, exist_ok=True)
    todo = [i for i, (_, problem) in enumerate(inputs) if problem is None]
    bar = _progress(len(todo))
    try:
        for start in range(0, len(todo), max(1, args.batch_size)):
            chunk = todo[start : start + max(1, args.batch_size)]
            ready = []
            for i in chunk:
                try:
                    ready.append((i, to_model_input(inputs[i][0])))
                except DigitlabError as exc:
                    rows[i]["error"] = str(exc)
                except OSError as exc:  # e.g. a file vanishing between listing and reading
                    rows[i]["error"] = f"{inputs[i][0]}: {exc.strerror or exc}"
            preds = rec.predict_preprocessed(
                [p for _, p in ready], top_k=args.top_k, explain=explain_dir is not None
            )
            for (i, _pre), pred in zip(ready, preds, strict=True):
                rows[i].update(pred.to_dict(images=False))
                if args.number:
                    _add_number(rec, rows[i], args.top_k)
                if explain_dir is not None and pred.heatmap is not None and pred.digit is not None:
                    rows[i]["heatmap"] = _write_heatmap(inputs[i][0], pred.heatmap, explain_dir)
            if bar is not None:
                bar.update(len(chunk))
    finally:
        if bar is not None:
            bar.close()
    return rows


def _add_number(rec: Any, row: dict[str, Any], top_k: int) -> None:
    """Read the row's file as a multi-digit number."""
    from digitlab.core.errors import DigitlabError

    try:
        result = rec.read_number(row["path"], top_k=top_k)
    except DigitlabError as exc:
        row["error"] = str(exc)
        return
    row["number"] = result.number
    row["number_uncertain"] = result.uncertain
    row["digits"] = [d.to_dict(images=False) for d in result.digits]


# ---------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------


def _top_text(row: dict[str, Any]) -> str:
    return " ".join(f"{t['digit']}:{t['probability']:.2f}" for t in row["top"])


def format_table(rows: list[dict[str, Any]], number: bool) -> str:
    """Aligned text columns: path, digit, confidence, top-k, [number], note."""
    header = ["path", "digit", "conf", "top"] + (["number"] if number else []) + ["note"]
    lines = []
    for r in rows:
        note = r["error"] or ("no digit" if r["digit"] is None else "")
        if not r["error"] and r["digit"] is not None and r["uncertain"]:
            note = "uncertain"
        cells = [
            r["path"],
            "-" if r["digit"] is None else str(r["digit"]),
            f"{r['confidence']:.3f}" if r["digit"] is not None else "-",
            _top_text(r),
        ]
        if number:
            cells.append(r.get("number", "") or "-")
        cells.append(note)
        lines.append(cells)
    widths = [max(len(h), *(len(c[k]) for c in lines)) for k, h in enumerate(header[:-1])]
    out = []
    for cells in [header, *lines]:
        fixed = [c.ljust(w) for c, w in zip(cells[:-1], widths, strict=True)]
        out.append("  ".join([*fixed, cells[-1]]).rstrip())
    return "\n".join(out)


def format_csv(rows: list[dict[str, Any]], number: bool) -> str:
    """CSV with one column per probability."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    cols = ["path", "digit", "confidence", "uncertain", "top"]
    cols += [f"p{d}" for d in range(10)] + (["number"] if number else []) + ["error"]
    writer.writerow(cols)
    for r in rows:
        line = [
            r["path"],
            "" if r["digit"] is None else r["digit"],
            f"{r['confidence']:.6f}",
            int(bool(r["uncertain"])),
            _top_text(r),
            *[f"{p:.6f}" for p in r["probabilities"]],
        ]
        if number:
            line.append(r.get("number", ""))
        line.append(r["error"] or "")
        writer.writerow(line)
    return buf.getvalue().rstrip("\n")


def run(args: argparse.Namespace) -> int:
    """Recognise every input and print the rows; 1 if any file failed."""
    from digitlab.api import load_model
    from digitlab.core.errors import DigitlabError

    if not 1 <= args.top_k <= 10:
        raise DigitlabError(f"--top-k must be from 1 to 10, got {args.top_k}")
    if args.batch_size < 1:
        raise DigitlabError(f"--batch-size must be at least 1, got {args.batch_size}")
    rec = load_model(args.model, backend=args.backend)
    rows = recognise(args, rec, expand_inputs(args.paths))
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
