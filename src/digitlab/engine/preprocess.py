"""Any image in, the 28x28 the model expects out.

MNIST was made by cropping each scanned digit to its ink, scaling it to fit a 20x20 box keeping
the aspect ratio (anti-aliased), and pasting it into a 28x28 field so that its centre of mass
sits in the middle. A model trained on MNIST only reads digits that look like that, so every
image we are given goes through the same steps first:

1. **Decode** (:func:`digitlab.engine.decode.load_image`): a path, bytes, file object, PIL
   image or numpy array in any supported format and mode, EXIF orientation applied, with a
   pixel limit against decompression bombs.
2. **Ink map** (:func:`extract_ink`, :mod:`digitlab.engine.ink`): an image where ink = 255
   and paper = 0 (an exact nearest-neighbour enlargement read at its original size), with
   polarity, uneven light and printed ruled or squared lines taken out, and only the digit's
   ink kept (the tallest solid writing and what lies beside it: a digit
   touching the edge or small on a large page stays, the frame and specks go). An image whose
   ink does not stand out clearly has no ink: blank, uniform, noise or empty paper give
   "no digit", never a guess; so does ink three times wider than tall (a line, not a digit:
   :data:`BAR_ASPECT`).
3. **Normalise** (:func:`normalize_digit`): crop to the ink, normalise the stroke width to
   MNIST's, fit the long side to 20 px (anti-aliased, aspect kept: a "1" stays thin) and
   centre by centre of mass in 28x28.

An image that is already what these steps make -- 28x28 grey, paper exactly black (or white
under dark ink), the ink fitted to 20 px, centred by mass, at full strength: an MNIST digit
saved as it is -- skips steps 2-3 (:func:`~digitlab.engine.normalise.mnist_format`): they
would only resample it twice (0.3 ms of a request's 0.7 ms) and cost the model a little
accuracy on MNIST's own test digits.

The steps live in :mod:`digitlab.engine.ink` (1-2) and :mod:`digitlab.engine.normalise`
(3); this module joins them (:func:`to_model_input`) and re-exports their public names.

Only numpy and Pillow are used (no torch, no scipy), so ONNX-only installs can preprocess too.
Preprocessing a 280x280 canvas takes well under 2 ms (see ``benchmarks/robustness.py``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from digitlab.engine.decode import load_image
from digitlab.engine.ink import (
    LOW_INK,
    STRONG_INK,
    WORK_MAX_SIDE,
    Component,
    InkImage,
    components,
    extract_ink,
    flatten_background,
    ink_levels,
    label_components,
    pooled_labels,
    remove_lines,
    remove_specks,
    threshold_ink,
)
from digitlab.engine.normalise import (
    MNIST_CENTER,
    MNIST_STROKE_WIDTH,
    NORM_BOX,
    Affine,
    Preprocessed,
    _bbox,
    blank,
    mnist_format,
    normalize_digit,
    preprocess_ink,
    stroke_width,
)

__all__ = [
    "LOW_INK",
    "MNIST_CENTER",
    "MNIST_STROKE_WIDTH",
    "NORM_BOX",
    "STRONG_INK",
    "WORK_MAX_SIDE",
    "Affine",
    "Component",
    "InkImage",
    "Preprocessed",
    "blank",
    "components",
    "extract_ink",
    "flatten_background",
    "ink_levels",
    "is_texture",
    "label_components",
    "mnist_format",
    "normalize_digit",
    "pooled_labels",
    "preprocess_ink",
    "remove_lines",
    "remove_specks",
    "stroke_width",
    "threshold_ink",
    "to_model_input",
]


# Ink at least BAR_ASPECT times wider than tall is a line, not a digit (the piece of a ruled
# line left on an empty notebook page, a dash): of MNIST's 60,000 training digits 99.99% are at
# most 2.0 times wider than tall, the flattest 2.5 (a 2 and a 5 squashed into 20x8 px).
BAR_ASPECT = 3.0
# Ink spread over the frame (its box spans at least TEXTURE_SPAN of the image each way) whose
# largest 8-connected piece holds less than TEXTURE_SHARE of it is texture, not a digit: heavy
# noise clipped at black or white, or dense salt and pepper, thresholds to thousands of blobs
# spread over the whole frame. A digit is one piece or a few (a 4 or a 5 in two strokes), even
# cropped tight. Development images (tune_images on validation digits, 150 of each hard kind,
# canvas kind, photos and tight crops) whose ink spans the frame: largest piece 0.35 of the ink
# or more (a tight crop in two pieces); clipped and salt-and-pepper noise that does: 0.26 or
# less, nearly all under 0.01. The span test comes first because it is cheap: labelling a
# canvas drawing's pixels would cost more than the rest of its preprocessing. Applied to a
# single digit's readings and to each digit of a number on its own ink, never to a whole
# number's ink: its digits are pieces.
TEXTURE_SPAN = 0.9
TEXTURE_SHARE = 0.25


def is_texture(ink: np.ndarray) -> bool:
    """Whether a thresholded ink map (ink > 0) is texture, not a digit (see TEXTURE_SHARE)."""
    box = _bbox(ink)
    if box is None:
        return False
    x0, y0, x1, y1 = box
    h, w = ink.shape
    if y1 - y0 < TEXTURE_SPAN * h or x1 - x0 < TEXTURE_SPAN * w:
        return False
    labels, n = label_components(ink > 0)
    if n < 2:
        return False
    sizes = np.bincount(labels.ravel())[1:]
    return bool(sizes.max() < TEXTURE_SHARE * sizes.sum())


def to_model_input(image: Any) -> Preprocessed:
    """Any image (path, bytes, PIL image, numpy array) to the 28x28 MNIST-style model input.

    A :class:`Preprocessed` is passed through unchanged, and so is an image already in MNIST's
    format (:func:`~digitlab.engine.normalise.mnist_format`). Without ink (blank, uniform, or
    only specks of noise) ``has_ink`` is False and ``image`` is all zeros.
    """
    if isinstance(image, Preprocessed):
        return image
    image = load_image(image)
    as_is = mnist_format(image)
    if as_is is not None:
        return as_is
    ink = extract_ink(image)

    def normalised(reading: Any, polarity: str) -> Preprocessed:
        if is_texture(reading):
            return blank(ink.input_size)
        return preprocess_ink(
            reading,
            scale=ink.scale,
            input_size=ink.input_size,
            polarity=polarity,
            line_aspect=BAR_ASPECT,
        )

    pre = normalised(ink.ink, ink.polarity) if ink.has_ink else blank(ink.input_size)
    if ink.plain is not None:
        alt = normalised(ink.plain, ink.plain_polarity)
        pre.alternative = alt if alt.has_ink else None
    return pre
