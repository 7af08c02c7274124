"""MNIST normalisation: an ink map in, the 28x28 the model expects out.

MNIST was made by cropping each scanned digit to its ink, scaling it to fit a 20x20 box keeping
the aspect ratio (anti-aliased), and pasting it into a 28x28 field so that its centre of mass
sits in the middle. :func:`normalize_digit` does the same to an ink map of
:mod:`digitlab.engine.ink`, after normalising the stroke width to MNIST's;
:class:`Preprocessed` is the result, with the map from input pixels to the 28x28 field.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from digitlab.core.constants import IMAGE_SIDE, MNIST_BOX
from digitlab.engine.ink import FULL, _rank_filter

# Stroke-width normalisation happens with the digit fitted to NORM_BOX px (4x the 20 px box, so
# a pen can be widened or narrowed in quarter-pixel steps of the final image). Stroke width is
# estimated as ink area / centre-line length (see stroke_width). MNIST's median stroke,
# measured the same way at this scale on the first 3,000 training digits, is
# MNIST_STROKE_WIDTH = 8.9 (5th-95th percentile 6.1-13.9, i.e. ~1.5x either way); strokes
# outside [1/STROKE_TOLERANCE, STROKE_TOLERANCE] times it are dilated or eroded towards it.
NORM_BOX = 4 * MNIST_BOX
MNIST_STROKE_WIDTH = 8.9
STROKE_TOLERANCE = 1.4
# Erosion never removes more than this fraction of a stroke's width (thin parts survive).
MAX_ERODE_FRACTION = 0.35
# A pixel of the NORM_BOX image counts as ink for the width estimate above this level.
BINARY_LEVEL = 0.5
# Soft-ink peak for re-stretching after a resize: the 95th percentile of the ink pixels.
PEAK_PCT = 95.0
# Where MNIST puts the centre of mass, measured from the field's edge with pixel i covering
# [i, i+1): 14.50 in x and 14.49 in y, the mean over the first 3,000 training digits (MNIST
# moved its digits by whole pixels so that the mass centre fell on pixel index 14).
MNIST_CENTER = 14.5
# An image already in MNIST's own format is given to the model as it is (mnist_format): 28x28
# grey, paper exactly 0 (or exactly 255 under dark ink: MNIST inverted, as a user saves it), an
# ink box whose long side is MNIST_BOX or one less (the fitted box's anti-aliased edge can round
# to 0: 3 of the 10,000 test digits), its centre of mass within MNIST_FORMAT_CENTRE px of
# MNIST_CENTER (MNIST's own lie within 0.5) and its ink at full strength (every MNIST digit,
# training and test, peaks at 250-255). Normalising such an image again only resamples it
# twice: on the 10,000 test digits as PNGs the full pipeline read 99.66% (one "no digit"), the
# images as they are read 99.70%, the test accuracy of the tensors.
MNIST_FORMAT_CENTRE = 1.0
MNIST_FORMAT_PEAK = 250

# --------------------------------------------------------------------------------------------
# MNIST-style normalisation
# --------------------------------------------------------------------------------------------

Affine = tuple[float, float, float, float, float, float]


@dataclass
class Preprocessed:
    """What the model sees, and where it came from.

    ``image`` is (28, 28) uint8 with ink = 255 (MNIST polarity). ``box`` is the digit's
    bounding box in input-image pixels (x, y, width, height), or None without ink. ``affine``
    maps input-image coordinates to 28x28 coordinates in the form Pillow's
    ``Image.transform(size, Image.AFFINE, affine)`` takes (x28 = a*x + c, y28 = e*y + f), so a
    28x28 map can be drawn back over the input image.
    """

    image: np.ndarray
    has_ink: bool
    box: tuple[int, int, int, int] | None = None
    polarity: str = "none"
    stroke_width: float = 0.0  # stroke width found before normalisation, in 28x28 pixels
    input_size: tuple[int, int] = (IMAGE_SIDE, IMAGE_SIDE)
    affine: Affine = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
    # A second reading (ink.InkImage.plain): for photos the same image thresholded without
    # flattening the light; for an image whose only ink is under MIN_DIGIT_PIXELS, that ink.
    # The recogniser keeps whichever the model finds more digit-like (an alternative to a
    # blank only if it is clearly digit-like).
    alternative: Preprocessed | None = None

    def as_float(self) -> np.ndarray:
        """The model input: (1, 28, 28) float32 in [0, 1], ink = 1."""
        return (self.image.astype(np.float32) / FULL)[None]


def blank(input_size: tuple[int, int] = (IMAGE_SIDE, IMAGE_SIDE)) -> Preprocessed:
    """The result for an image with no ink."""
    return Preprocessed(np.zeros((IMAGE_SIDE, IMAGE_SIDE), np.uint8), False, input_size=input_size)


def mnist_format(img: Image.Image) -> Preprocessed | None:
    """``img`` as the model input when it is already in MNIST's format (see
    MNIST_FORMAT_CENTRE), else None: the digit needs no normalisation (identity affine map)."""
    if img.mode != "L" or img.size != (IMAGE_SIDE, IMAGE_SIDE):
        return None
    a = np.asarray(img)
    polarity = "light-on-dark"
    if a[0, 0] == FULL:  # white paper (a digit on the corner pixel takes the full pipeline)
        a, polarity = FULL - a, "dark-on-light"
    bb = _bbox(a)
    if bb is None or not MNIST_BOX - 1 <= max(bb[2] - bb[0], bb[3] - bb[1]) <= MNIST_BOX:
        return None
    if int(a.max()) < MNIST_FORMAT_PEAK:
        return None
    cx, cy = _mass_centre(a)  # not None: the box holds ink
    if max(abs(cx - MNIST_CENTER), abs(cy - MNIST_CENTER)) > MNIST_FORMAT_CENTRE:
        return None
    x0, y0, x1, y1 = bb
    return Preprocessed(
        np.array(a),  # a copy: the caller's image stays its own
        True,
        (x0, y0, x1 - x0, y1 - y0),
        polarity,
        stroke_width(a),
        (IMAGE_SIDE, IMAGE_SIDE),
    )


def _mass_centre(a: np.ndarray) -> tuple[float, float] | None:
    """(x, y) centre of mass of a uint8 image, pixel i covering [i, i+1), in exact integer
    sums; None when it holds no ink."""
    total = int(a.sum(dtype=np.int64))
    if total <= 0:
        return None
    h, w = a.shape
    cy = int(a.sum(axis=1, dtype=np.int64) @ np.arange(h)) / total + 0.5
    cx = int(a.sum(axis=0, dtype=np.int64) @ np.arange(w)) / total + 0.5
    return cx, cy


def _fit(img: Image.Image, box: int) -> tuple[Image.Image, float, float]:
    """Resize so the long side is ``box`` px (aspect kept); returns image and x/y scales."""
    w, h = img.size
    s = box / max(w, h)
    nw, nh = max(1, round(w * s)), max(1, round(h * s))
    # Lanczos when shrinking (sharp yet anti-aliased: re-preprocessing MNIST's own test digits
    # this way keeps the model's accuracy, bilinear loses ~0.4 points), bicubic when enlarging.
    method = Image.LANCZOS if s < 1 else Image.BICUBIC
    return img.resize((nw, nh), method), nw / w, nh / h


def _restretch(a: np.ndarray) -> np.ndarray:
    """Scale soft ink (a uint8 array) so the strokes' core reaches 255 again after a resize
    thinned them."""
    counts = np.bincount(a.ravel(), minlength=FULL + 1)[1:].astype(np.float64)
    total = counts.sum()
    if total == 0:
        return a
    peak = 1 + int(np.searchsorted(np.cumsum(counts), total * PEAK_PCT / 100.0))
    if peak >= FULL:
        return a
    return np.take(_STRETCH_TABLES[peak], a)


# _STRETCH_TABLES[p] maps grey level p (and above) to 255, proportionally below.
_STRETCH_TABLES = [
    np.clip(np.rint(np.arange(256) * (FULL / max(p, 1))), 0, FULL).astype(np.uint8)
    for p in range(256)
]


def _bbox(a: np.ndarray) -> tuple[int, int, int, int] | None:
    """Bounding box (x0, y0, x1, y1) of the non-zero pixels, as ``Image.getbbox``."""
    rows = np.flatnonzero(a.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(a.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def stroke_width(img: Image.Image) -> float:
    """Stroke width in pixels: ink area / centre-line length.

    The centre-line length is half the pixels a 3x3 erosion removes from the binary strokes,
    averaged with a 4-neighbour ("plus") erosion: a square eats ~1.4 px into a diagonal edge, a
    plus ~0.7 px, their mean ~1 px in every direction.
    """
    a = np.asarray(img)
    b = a > BINARY_LEVEL * FULL
    area0 = int(np.count_nonzero(b))
    if area0 == 0:
        return 0.0
    # Pixels outside the image count as paper, so only inner pixels can survive an erosion.
    c = b[1:-1, 1:-1]
    plus = c & b[:-2, 1:-1] & b[2:, 1:-1] & b[1:-1, :-2] & b[1:-1, 2:]
    square = plus & b[:-2, :-2] & b[:-2, 2:] & b[2:, :-2] & b[2:, 2:]
    loss = 2 * area0 - int(np.count_nonzero(plus)) - int(np.count_nonzero(square))
    length = max(loss / 4.0, 1.0)
    return float(a.astype(np.float32).sum()) / FULL / length


def _normalise_width(a: np.ndarray, width: float) -> np.ndarray:
    """Dilate or erode (square kernel) so that a ``width`` px stroke lands in MNIST's range."""
    target = MNIST_STROKE_WIDTH
    if width <= 0 or target / STROKE_TOLERANCE <= width <= target * STROKE_TOLERANCE:
        return a
    if width < target:
        grow = round(target - width)
        return _rank_filter(a, 2 * (grow // 2) + 1, np.maximum) if grow >= 2 else a
    # Thin thick strokes only down to the edge of MNIST's range, and never by more than
    # MAX_ERODE_FRACTION of their width: erosion breaks a stroke's thinner parts.
    shrink = min(round(width - target * STROKE_TOLERANCE), int(width * MAX_ERODE_FRACTION))
    return _rank_filter(a, 2 * (shrink // 2) + 1, np.minimum) if shrink >= 2 else a


def normalize_digit(
    ink: np.ndarray, *, offset: tuple[float, float] = (0.0, 0.0), scale: float = 1.0
) -> tuple[np.ndarray, float, Affine] | None:
    """Crop, stroke-normalise, fit to 20x20 and centre by mass in 28x28, like MNIST.

    ``ink`` is a uint8 soft ink map (ink = 255, paper = 0). ``offset`` and ``scale`` say where
    ``ink``'s pixel (0, 0) lies in the input image and how many input pixels one of its pixels
    spans; they only serve the returned affine map. Returns the (28, 28) uint8 image, the stroke
    width found (in 28x28 pixels) and the input -> 28x28 affine map, or None if ``ink`` is
    empty.
    """
    bb = _bbox(ink)
    if bb is None:
        return None
    return _normalize(ink, bb, offset, scale)


def _normalize(
    ink: np.ndarray, bb: tuple[int, int, int, int], offset: tuple[float, float], scale: float
) -> tuple[np.ndarray, float, Affine] | None:
    """:func:`normalize_digit` for an ink map whose bounding box ``bb`` is known."""
    x0, y0 = bb[0], bb[1]
    big, sx1, sy1 = _fit(Image.fromarray(ink[bb[1] : bb[3], bb[0] : bb[2]]), NORM_BOX)
    big_a = _restretch(np.asarray(big))
    width = stroke_width(big_a)
    morphed = _normalise_width(big_a, width)
    bb2 = _bbox(morphed)
    if bb2 is None:  # eroded away: keep the strokes as they were
        morphed, bb2 = big_a, _bbox(big_a) or (0, 0, big_a.shape[1], big_a.shape[0])
    crop = Image.fromarray(morphed[bb2[1] : bb2[3], bb2[0] : bb2[2]])
    small, sx2, sy2 = _fit(crop, MNIST_BOX)
    s = _restretch(np.asarray(small))
    centre = _mass_centre(s)
    if centre is None:
        return None
    cx, cy = centre
    h, w = s.shape
    ox = min(max(round(MNIST_CENTER - cx), 0), IMAGE_SIDE - w)
    oy = min(max(round(MNIST_CENTER - cy), 0), IMAGE_SIDE - h)
    image = np.zeros((IMAGE_SIDE, IMAGE_SIDE), np.uint8)
    image[oy : oy + h, ox : ox + w] = s
    # input x -> working x (/scale, -offset) -> crop (-x0) -> big (*sx1) -> morphed crop
    # (-bb2[0]) -> small (*sx2) -> 28 field (+ox); the same for y.
    ax = sx1 * sx2 / scale
    ay = sy1 * sy2 / scale
    cx_ = (-offset[0] / scale - x0) * sx1 * sx2 - bb2[0] * sx2 + ox
    cy_ = (-offset[1] / scale - y0) * sy1 * sy2 - bb2[1] * sy2 + oy
    seen_width = width * MNIST_BOX / NORM_BOX
    return image, seen_width, (ax, 0.0, cx_, 0.0, ay, cy_)


def preprocess_ink(
    ink: np.ndarray,
    *,
    scale: float = 1.0,
    offset: tuple[int, int] = (0, 0),
    input_size: tuple[int, int] | None = None,
    polarity: str = "none",
    line_aspect: float | None = None,
) -> Preprocessed:
    """Normalise a uint8 ink map (thresholded, ink = 255) to a :class:`Preprocessed`.

    ``offset`` is the working-resolution position of ``ink``'s pixel (0, 0) when it is a crop
    of a larger map (a digit of a number); ``scale`` is input pixels per working pixel. With
    ``line_aspect``, ink at least that many times wider than tall is a line: no ink.
    """
    size = input_size or (round(ink.shape[1] * scale), round(ink.shape[0] * scale))
    work_offset = (offset[0] * scale, offset[1] * scale)
    bb = _bbox(ink)
    if (
        bb is not None
        and line_aspect is not None
        and bb[2] - bb[0] >= line_aspect * (bb[3] - bb[1])
    ):
        bb = None
    result = None if bb is None else _normalize(ink, bb, work_offset, scale)
    if result is None or bb is None:
        return blank(size)
    image, width, affine = result
    x0, y0, x1, y1 = bb
    box = (
        int((offset[0] + x0) * scale),
        int((offset[1] + y0) * scale),
        max(1, round((x1 - x0) * scale)),
        max(1, round((y1 - y0) * scale)),
    )
    return Preprocessed(image, True, box, polarity, width, size, affine)
