"""Pieces of ink that are not one whole digit, for outlier exposure (``digitlab train --outliers``).

Reading a number means choosing among pieces of ink: one digit, two digits touching, half a
digit (:mod:`digitlab.engine.segment` scores each candidate by the model's confidence and the
energy of its logits). A network trained only on whole digits is confident on many wrong
pieces: a 1 cramped against a 7 reads as one clear 4, half a 0 as a 6. Outlier exposure
(Hendrycks et al. 2019) adds such pieces to training with the uniform distribution as their
target, so the network's logits say "not one digit" for them (low energy, low confidence)
and stay sharp on digits.

The pieces are made from the training split's own digits (never validation or test), enlarged
to a working size and normalised by the engine's :func:`~digitlab.engine.normalise.normalize_digit`,
so they reach the network exactly as the segmenter's candidates do:

* **pair**: two digits side by side, a little apart to overlapping (a cramped pair read whole);
* **fragment**: a digit cut by a vertical line, one side kept (a cut in the wrong place);
* **digit and part of a neighbour**: a digit with 15-45% of the next one touching it, on
  either side (a cut one stroke too far).

Some pieces look like a digit (the right half of a 4 is a 1); the digits of the same batches
outweigh them (one piece per four digits by default, half the loss weight).
"""

from __future__ import annotations

import logging

import numpy as np
from PIL import Image

from digitlab.engine.normalise import normalize_digit

log = logging.getLogger(__name__)

SIDE = 84  # working size of one digit (px): 3x MNIST, the size the segmenter sees digits at
INK_LEVEL = 40  # uint8 level above which a column holds ink (for the cut positions)
OVERLAP = (-0.05, 0.25)  # pair: how far the right digit reaches into the left one (x SIDE)
SHIFT = 0.1  # pair: vertical offset of the right digit, at most this x SIDE either way
CUT = (0.25, 0.75)  # fragment: the cut's position across the digit's ink width
NEIGHBOUR_PART = (0.15, 0.45)  # share of the neighbour's ink width kept beside the digit
POOL = 40_000  # pieces made per run (at most one per training digit); each draw is augmented


def _big(digit: np.ndarray) -> np.ndarray:
    """(28, 28) uint8 digit -> (SIDE, SIDE), bilinear (soft edges, like a scan)."""
    return np.asarray(Image.fromarray(digit).resize((SIDE, SIDE), Image.BILINEAR))


def _ink_columns(a: np.ndarray) -> tuple[int, int]:
    """First and one-past-last column holding ink."""
    cols = np.flatnonzero(a.max(axis=0) > INK_LEVEL)
    return (int(cols[0]), int(cols[-1]) + 1) if cols.size else (0, a.shape[1])


def pair(a: np.ndarray, b: np.ndarray, rng: np.random.Generator, part: float | None = None):
    """``b`` written to the right of ``a`` (both (SIDE, SIDE)); with ``part``, only that share
    of ``b``'s ink width (its left side) is kept. Returns the ink of both."""
    ax1 = _ink_columns(a)[1]
    bx0, bx1 = _ink_columns(b)
    if part is not None:
        b = b.copy()
        b[:, bx0 + max(1, round((bx1 - bx0) * part)) :] = 0
    reach = int(rng.uniform(*OVERLAP) * SIDE)
    dy = int(rng.uniform(-SHIFT, SHIFT) * SIDE)
    margin = abs(dy) + 1
    canvas = np.zeros((SIDE + 2 * margin, 3 * SIDE), np.uint8)
    canvas[margin : margin + SIDE, SIDE : 2 * SIDE] = a
    x = min(max(0, SIDE + ax1 - bx0 - reach), 2 * SIDE)
    sub = canvas[margin + dy : margin + dy + SIDE, x : x + SIDE]
    np.maximum(sub, b, out=sub)
    return canvas


def fragment(a: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``a`` cut at a random column of its ink; the left or the right side kept."""
    x0, x1 = _ink_columns(a)
    cut = x0 + int((x1 - x0) * rng.uniform(*CUT))
    a = a.copy()
    if rng.random() < 0.5:
        a[:, cut:] = 0
    else:
        a[:, :cut] = 0
    return a


def outlier_pieces(digits: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``n`` pieces (uint8, (n, 28, 28), ink = 255) made from ``digits`` ((N, 28, 28) uint8,
    MNIST-like), the three kinds in equal shares, each normalised like a digit to read."""
    if len(digits) == 0:
        raise ValueError("outlier pieces need at least one digit")
    rng = np.random.default_rng(seed)
    out = np.zeros((n, 28, 28), np.uint8)
    made = 0
    while made < n:
        kind = int(rng.integers(0, 3))
        a = _big(digits[rng.integers(len(digits))])
        b = _big(digits[rng.integers(len(digits))])
        if kind == 0:
            ink = pair(a, b, rng)
        elif kind == 1:
            ink = fragment(a, rng)
        else:
            ink = pair(a, b, rng, part=rng.uniform(*NEIGHBOUR_PART))
            if rng.random() < 0.5:
                ink = np.ascontiguousarray(ink[:, ::-1])  # the neighbour's part on the left
        result = normalize_digit(ink)
        if result is None:  # an empty cut: draw again
            continue
        out[made] = result[0]
        made += 1
    return out
