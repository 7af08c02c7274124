"""Decoding: any image source in, a fully loaded PIL image out -- the one decoder.

Every front end decodes through here: the engine (paths, bytes, file objects, PIL images,
numpy arrays), the server's uploads and data URLs, the CLI and the desktop app. Failures are
typed (``core.errors``): :class:`ImageTooLargeError` for more pixels than
:data:`~digitlab.core.constants.MAX_IMAGE_PIXELS` (checked from the header, before the pixels
are decoded, so a decompression bomb costs nothing), :class:`UnsupportedImageError` for data
that is not an image in one of :data:`~digitlab.core.constants.IMAGE_FORMATS`, and
:class:`ImageError` for anything empty, truncated or corrupt. The message always names the
source. The server maps the three to 413, 415 and 422.
"""

from __future__ import annotations

import base64
import binascii
import io
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from digitlab.core.constants import IMAGE_FORMATS_TEXT, MAX_IMAGE_PIXELS, PILLOW_FORMATS
from digitlab.core.errors import ImageError, ImageTooLargeError, UnsupportedImageError

EXIF_ORIENTATION = 0x0112  # the EXIF tag saying how the camera was held


def describe(source: Any) -> str:
    """Short name of an image source for error messages."""
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"image data ({len(source)} bytes)"
    return type(source).__name__


def check_pixels(width: int, height: int, what: str, limit: int = MAX_IMAGE_PIXELS) -> None:
    """Refuse empty images and images above ``limit`` pixels, naming the limit."""
    if width <= 0 or height <= 0:
        raise ImageError(f"{what}: empty image ({width}x{height})")
    if width * height > limit:
        raise ImageTooLargeError(
            f"{what}: {width}x{height} = {width * height:,} pixels exceeds the limit of "
            f"{_limit_text(limit)}"
        )


def _limit_text(limit: int) -> str:
    """The pixel limit in words, naming the constant when it is the default one."""
    return f"{limit:,} pixels" + (" (MAX_IMAGE_PIXELS)" if limit == MAX_IMAGE_PIXELS else "")


def _array_to_image(array: np.ndarray, what: str, limit: int) -> Image.Image:
    """A numpy image (H,W), (H,W,1|3|4) as a PIL image.

    uint8 is taken as 0-255, uint16 as 0-65535, bool as ink/no-ink, floats as [0, 1] when their
    maximum is at most 1 and as 0-255 otherwise. Leading singleton axes ((1, 28, 28)) are
    dropped.
    """
    a = np.asarray(array)
    while a.ndim > 2 and a.shape[0] == 1 and not (a.ndim == 3 and a.shape[2] in (3, 4)):
        a = a[0]
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)):
        raise ImageError(
            f"{what}: array of shape {a.shape} is not an image; expected (H, W), (H, W, 3) "
            "or (H, W, 4)"
        )
    check_pixels(a.shape[1], a.shape[0], what, limit)
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    elif a.dtype == np.uint16 and a.ndim == 2:
        return Image.fromarray(np.ascontiguousarray(a))  # mode I;16
    elif a.dtype != np.uint8:
        if not np.issubdtype(a.dtype, np.number):
            raise ImageError(f"{what}: array of dtype {a.dtype} is not an image")
        f = a.astype(np.float64)
        if not np.isfinite(f).all():
            raise ImageError(f"{what}: array contains NaN or infinite values")
        if np.issubdtype(a.dtype, np.integer) and f.max(initial=0) > 255:
            f = f / 65535.0 * 255.0
        elif f.max(initial=0) <= 1.0:
            f = f * 255.0
        a = np.clip(np.rint(f), 0, 255).astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(a))


def load_image(
    source: Any, *, max_pixels: int = MAX_IMAGE_PIXELS, name: str | None = None
) -> Image.Image:
    """Decode an image from a path, bytes, a binary file object, a PIL image or a numpy array.

    The result has EXIF orientation applied, is the first frame of an animation, and is fully
    loaded. Its mode is kept (alpha matters: transparent pixels are paper). ``name`` is what
    error messages call the source (default: the path, or "image data (N bytes)"). Raises the
    typed errors of the module docstring.
    """
    what = name or describe(source)
    if isinstance(source, np.ndarray):
        return _array_to_image(source, what, max_pixels)
    if isinstance(source, Image.Image):
        check_pixels(source.width, source.height, what, max_pixels)
        return _finish(source, what, max_pixels)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise ImageError(f"{path}: no such file")
        if path.is_dir():
            raise ImageError(f"{path}: is a directory, not an image")
        try:
            with open(path, "rb") as fh:
                data = fh.read()
        except OSError as exc:
            raise ImageError(f"{path}: cannot be read: {exc.strerror or exc}") from None
        return decode_bytes(data, what, max_pixels)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return decode_bytes(bytes(source), what, max_pixels)
    if hasattr(source, "read"):
        return decode_bytes(source.read(), what, max_pixels)
    raise ImageError(
        f"cannot read an image from a {type(source).__name__}; pass a path, bytes, "
        "a PIL image or a numpy array"
    )


def decode_bytes(data: bytes, what: str, max_pixels: int = MAX_IMAGE_PIXELS) -> Image.Image:
    """Open encoded bytes, checking format and pixel count from the header before decoding."""
    if not data:
        raise ImageError(f"{what}: empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            # Pillow warns (and errors at twice its own limit) about decompression bombs in its
            # own words; our limit, checked below from the header, is the one that counts.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            previous, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
            try:
                img = Image.open(io.BytesIO(data), formats=PILLOW_FORMATS)
            finally:
                Image.MAX_IMAGE_PIXELS = previous
    except UnidentifiedImageError:
        raise UnsupportedImageError(
            f"{what}: not a recognised image (supported: {IMAGE_FORMATS_TEXT})"
        ) from None
    except Exception as exc:  # Pillow raises many types for a corrupt header
        raise ImageError(f"{what}: a damaged image: its header cannot be read ({exc})") from None
    check_pixels(img.width, img.height, what, max_pixels)
    return _finish(img, what, max_pixels)


def header_info(data: bytes) -> tuple[str, int] | None:
    """The format and width x height read from the header of encoded image bytes (nothing is
    decoded), or None when the header cannot be read: :func:`decode_bytes` then says why."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=PILLOW_FORMATS) as img:
                return str(img.format), img.width * img.height
    except Exception:  # not an image, a damaged header, a decompression bomb: any
        return None


def _finish(img: Image.Image, what: str, max_pixels: int) -> Image.Image:
    """First frame, fully loaded, EXIF orientation applied."""
    try:
        if getattr(img, "n_frames", 1) > 1:
            img.seek(0)
        img.load()  # truncated files fail here (unless the app set LOAD_TRUNCATED_IMAGES)
        if img.getexif().get(EXIF_ORIENTATION, 1) != 1:
            img = ImageOps.exif_transpose(img) or img
    except Image.DecompressionBombError:
        raise ImageTooLargeError(
            f"{what}: {img.width}x{img.height} pixels exceeds the limit of "
            f"{_limit_text(max_pixels)}"
        ) from None
    except Exception as exc:  # truncated or corrupt data: OSError, SyntaxError, struct.error...
        raise ImageError(f"{what}: cannot be decoded ({img.format}): {exc}") from None
    return img


def decode_data_url(text: str, what: str = "the image") -> bytes:
    """The bytes of a ``data:image/...;base64,...`` URL (or of bare base64 text)."""
    payload = text.strip()
    if payload.startswith("data:"):
        header, sep, payload = payload.partition(",")
        if not sep:
            raise ImageError(f"{what}: data URL has no ',' before its data")
        media_type, *params = header[len("data:") :].split(";")
        if "base64" not in params:
            raise ImageError(f"{what}: data URL must be base64-encoded (';base64,')")
        if media_type and not (
            media_type.startswith("image/") or media_type == "application/octet-stream"
        ):
            raise UnsupportedImageError(
                f"{what}: data URL type {media_type!r} is not an image type"
            )
    try:
        return base64.b64decode("".join(payload.split()), validate=True)
    except (binascii.Error, ValueError):
        raise ImageError(
            f"{what} is not valid base64 (expected a data:image/...;base64 URL)"
        ) from None
