"""Helpers shared by the engine's tests: image files made here.

The images of MNIST digits re-drawn in many ways live in :mod:`tune_images` (the benchmark
uses them too); this module adds what only tests need: encoding images in every file format, a
crafted decompression bomb and EXIF-rotated JPEGs. The recogniser under test is the session
fixture ``recognizer`` in ``conftest.py``.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image


def sample(n: int, total: int = 10_000, seed: int = 0) -> np.ndarray:
    """``n`` distinct indices out of ``total``, reproducibly."""
    return np.random.default_rng(seed).choice(total, size=n, replace=False)


def encode(img: Image.Image, fmt: str, **options) -> bytes:
    """An image encoded as a file of format ``fmt`` (PNG, JPEG, ...)."""
    buf = io.BytesIO()
    img.save(buf, format=fmt, **options)
    return buf.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims ``width`` x ``height`` pixels but holds one row of data: a
    decompression bomb's header, without the bomb."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    idat = zlib.compress(b"\x00" + b"\x00" * min(width, 1024))
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")
    )


def jpeg_with_orientation(img: Image.Image, orientation: int) -> bytes:
    """A JPEG whose pixels are stored so that EXIF ``orientation`` turns them into ``img``.

    Orientation 6 means "rotate 90 degrees clockwise to display": the stored pixels are the
    upright image turned 90 degrees counter-clockwise, as a phone held sideways writes them.
    """
    stored = {
        1: img,
        3: img.transpose(Image.Transpose.ROTATE_180),
        6: img.transpose(Image.Transpose.ROTATE_90),
        8: img.transpose(Image.Transpose.ROTATE_270),
    }[orientation]
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(stored.convert("RGB"), "JPEG", quality=95, exif=exif.tobytes())


def ink_box(image: np.ndarray, level: int = 0) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1) exclusive of the pixels above ``level``, or None."""
    rows = np.flatnonzero((image > level).any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero((image > level).any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def centre_of_mass(image: np.ndarray) -> tuple[float, float]:
    """(x, y) centre of mass, pixel i covering [i, i+1)."""
    a = image.astype(np.float64)
    total = a.sum()
    ys, xs = np.indices(a.shape)
    return float((a * xs).sum() / total + 0.5), float((a * ys).sum() / total + 0.5)


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two images' pixels."""
    return float(np.corrcoef(a.ravel().astype(float), b.ravel().astype(float))[0, 1])
