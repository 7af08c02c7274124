"""Kaggle "Digit Recognizer" CSV files: read (validated, with errors naming row and column)
and write (vectorised, atomic).

``train.csv`` has the header ``label,pixel0..pixel783``, ``test.csv`` ``pixel0..pixel783``; every
value is an integer (pixels 0-255, labels 0-9). MNIST itself is :mod:`digitlab.training.data`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from digitlab.core.constants import IMAGE_SIDE, NUM_CLASSES, PIXELS
from digitlab.core.errors import DataError
from digitlab.core.io import atomic_write
from digitlab.training.data import MAX_PIXEL

logger = logging.getLogger(__name__)

KAGGLE_LABEL = "label"
KAGGLE_PIXELS = tuple(f"pixel{i}" for i in range(PIXELS))
UTF8_BOM = b"\xef\xbb\xbf"
CSV_DIGITS_AND_COMMAS = b"0123456789,"
CSV_CHUNK_ROWS = 4096  # rows parsed per numpy call: bounds the int64 temporary to ~25 MB


def _kaggle_header(path: Path, line: bytes, labelled: bool | None) -> bool:
    """Validate the header; return whether the file is labelled (train.csv layout)."""
    try:
        names = [n.strip().strip('"') for n in line.decode("utf-8").strip().split(",")]
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: header is not UTF-8 text ({exc})") from exc
    has_label = names[:1] == [KAGGLE_LABEL]
    if labelled is True and not has_label:
        raise DataError(
            f"{path}: header starts with {names[0]!r}, expected {KAGGLE_LABEL!r} "
            f"(a labelled train.csv: label,pixel0..pixel{PIXELS - 1})"
        )
    if labelled is False and has_label:
        raise DataError(
            f"{path}: has a {KAGGLE_LABEL!r} column, expected an unlabelled test.csv "
            f"(pixel0..pixel{PIXELS - 1})"
        )
    expected = [KAGGLE_LABEL, *KAGGLE_PIXELS] if has_label else list(KAGGLE_PIXELS)
    layout = f"label,pixel0..pixel{PIXELS - 1}" if has_label else f"pixel0..pixel{PIXELS - 1}"
    if len(names) != len(expected):
        raise DataError(
            f"{path}: header has {len(names)} columns, expected {len(expected)} ({layout})"
        )
    for index, (got, want) in enumerate(zip(names, expected, strict=True)):
        if got != want:
            raise DataError(
                f"{path}: header column {index + 1} is {got!r}, expected {want!r} ({layout})"
            )
    return has_label


def _where(path: Path, row: int) -> str:
    """Name a data row: 1-based, header not counted; the file line (= spreadsheet row) too."""
    return f"{path}: data row {row} (line {row + 1} of the file)"


def _line_ok(line: bytes, ncols: int) -> bool:
    """Fast check that a line is exactly ``ncols`` non-empty unsigned integers."""
    return (
        line.count(b",") == ncols - 1
        and not line.translate(None, CSV_DIGITS_AND_COMMAS)
        and b",," not in line
        and not line.startswith(b",")
        and not line.endswith(b",")
    )


def _line_problem(path: Path, row: int, line: bytes, columns: Sequence[str]) -> DataError:
    """Explain why ``line`` (which failed :func:`_line_ok`) is bad, naming row and column."""
    where = _where(path, row)
    if not line.strip():
        return DataError(f"{where}: empty line")
    cells = line.decode("utf-8", errors="replace").split(",")
    if len(cells) != len(columns):
        return DataError(f"{where}: has {len(cells)} columns, expected {len(columns)}")
    for name, cell in zip(columns, cells, strict=True):
        if not cell.strip():
            return DataError(f"{where}, column {name}: missing value")
        if not (cell.isascii() and cell.isdigit()):
            return DataError(f"{where}, column {name}: {cell!r} is not an integer 0-{MAX_PIXEL}")
    return DataError(f"{where}: cannot parse the line")  # pragma: no cover - _line_ok passed


def _check_range(path: Path, values: np.ndarray, first_row: int, columns: Sequence[str]) -> None:
    """Pixels must be 0-255 and labels 0-9; name the first bad cell."""
    limits = np.full(len(columns), MAX_PIXEL, dtype=np.int64)
    if columns[0] == KAGGLE_LABEL:
        limits[0] = NUM_CLASSES - 1
    bad = values > limits
    if bad.any():
        row, col = np.unravel_index(int(np.argmax(bad)), bad.shape)
        name = columns[col]
        allowed = f"0-{limits[col]}" + (" (a digit)" if name == KAGGLE_LABEL else "")
        raise DataError(
            f"{_where(path, first_row + int(row))}, column {name}: {values[row, col]} is out "
            f"of range {allowed}"
        )


def load_kaggle_csv(
    path: str | os.PathLike, *, labelled: bool | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Read a Kaggle "Digit Recognizer" CSV: ``(images uint8 (N, 28, 28), labels int64 | None)``.

    ``train.csv`` has the header ``label,pixel0..pixel783``, ``test.csv`` ``pixel0..pixel783``;
    ``labelled=None`` decides from the header, True/False insist on one layout. Every value
    must be an integer (pixels 0-255, labels 0-9), with no missing cells. Errors name the file,
    the data row (1-based, header not counted, with the file line = spreadsheet row beside it)
    and the column.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    data = data.removeprefix(UTF8_BOM)
    if b"\r" in data:
        data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    header, _, body = data.partition(b"\n")
    if not header.strip():
        raise DataError(f"{path}: empty file, expected a header line")
    has_label = _kaggle_header(path, header, labelled)
    columns = (KAGGLE_LABEL, *KAGGLE_PIXELS) if has_label else KAGGLE_PIXELS
    lines = body.split(b"\n")
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise DataError(f"{path}: has a header but no data rows")
    out = np.empty((len(lines), len(columns)), dtype=np.uint8)
    for start in range(0, len(lines), CSV_CHUNK_ROWS):
        chunk = lines[start : start + CSV_CHUNK_ROWS]
        for offset, line in enumerate(chunk):
            if not _line_ok(line, len(columns)):
                raise _line_problem(path, start + offset + 1, line, columns)
        values = np.fromstring(b",".join(chunk), dtype=np.int64, sep=",")
        values = values.reshape(len(chunk), len(columns))
        _check_range(path, values, start + 1, columns)
        out[start : start + len(chunk)] = values
    pixels = out[:, 1:] if has_label else out
    images = np.ascontiguousarray(pixels).reshape(-1, IMAGE_SIDE, IMAGE_SIDE)
    labels = out[:, 0].astype(np.int64) if has_label else None
    logger.debug("read %d rows from %s (labelled=%s)", len(lines), path, has_label)
    return images, labels


def _csv_cell_table(terminator: bytes) -> np.ndarray:
    """(256, 4) uint8: the text of each value 0-255 plus ``terminator``, zero-padded."""
    width = len(str(MAX_PIXEL)) + 1
    table = np.zeros((MAX_PIXEL + 1, width), dtype=np.uint8)
    for value in range(MAX_PIXEL + 1):
        text = str(value).encode() + terminator
        table[value, : len(text)] = np.frombuffer(text, dtype=np.uint8)
    return table


def _csv_rows(values: np.ndarray) -> bytes:
    """Format a (rows, cols) uint8 array as CSV lines, vectorised (no per-cell Python)."""
    cells = _csv_cell_table(b",")[values]  # (rows, cols, 4), zero padding after each cell
    cells[:, -1] = _csv_cell_table(b"\n")[values[:, -1]]
    flat = cells.reshape(-1)
    return flat[flat != 0].tobytes()


def write_kaggle_csv(
    path: str | os.PathLike, images: np.ndarray, labels: np.ndarray | None = None
) -> None:
    """Write images (N, 28, 28) or (N, 784) 0-255 as a Kaggle CSV, atomically.

    With ``labels`` (N,) in 0-9 the file has train.csv's layout, without it test.csv's.
    """

    images = np.asarray(images)
    if images.ndim not in (2, 3) or images.reshape(len(images), -1).shape[1] != PIXELS:
        raise DataError(
            f"write_kaggle_csv: images must be (N, 28, 28) or (N, {PIXELS}), got {images.shape}"
        )
    flat = images.reshape(len(images), PIXELS)
    if flat.size and (flat.min() < 0 or flat.max() > MAX_PIXEL):
        raise DataError(f"write_kaggle_csv: pixel values must be 0-{MAX_PIXEL}")
    if not np.issubdtype(flat.dtype, np.integer) and not np.array_equal(flat, np.round(flat)):
        raise DataError(f"write_kaggle_csv: pixel values must be whole numbers 0-{MAX_PIXEL}")
    columns: tuple[str, ...] = KAGGLE_PIXELS
    values = flat.astype(np.uint8)
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != (len(flat),):
            raise DataError(f"write_kaggle_csv: labels must be ({len(flat)},), got {labels.shape}")
        if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
            raise DataError(f"write_kaggle_csv: labels must be 0-{NUM_CLASSES - 1}")
        values = np.concatenate([labels.astype(np.uint8)[:, None], values], axis=1)
        columns = (KAGGLE_LABEL, *KAGGLE_PIXELS)

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write((",".join(columns) + "\n").encode())
            for start in range(0, len(values), CSV_CHUNK_ROWS):
                f.write(_csv_rows(values[start : start + CSV_CHUNK_ROWS]))

    atomic_write(path, write)
