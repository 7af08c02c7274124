"""Training digits as the engine makes them from users' images (``digitlab train --engine-views``).

The network reads what preprocessing makes of an image, not the image itself. From a clean
scan that is MNIST-like; from a small scan enlarged by some filter, a soft photo or a marker
digit it is not: the engine crops to blocky or blurred ink, restretches its levels, thins
thick strokes and fits what is left to 20x20 -- digits the network never saw, since the
on-device degradations of ``--degrade`` act on the 28x28 input *after* normalisation. Here
training digits are rendered as such images, at image scale, and passed through the engine's
own :func:`~digitlab.engine.preprocess.to_model_input`, so the network trains on exactly what
it will be given:

* **lowres**: cropped near the ink, shrunk (box filter) to 6-16 px, enlarged again by nearest,
  bilinear, bicubic or Lanczos to 24-128 px: a small scan or a thumbnail blown up;
* **soft**: enlarged to 40-160 px, blurred (1-5% of the side), low contrast, sensor noise
  and JPEG: an out-of-focus photo or a soft scan;
* **marker**: enlarged to 56-160 px, binarised, strokes grown or thinned by a square
  filter, slightly blurred: a felt-tip or a hairline pen.

Levels and polarity vary (dark ink on light paper three times in four). Only training-split
digits are used (never validation or test). A view the engine reads as blank is drawn again
(``rejected`` counts them): a false "no digit" is preprocessing's to fix, not the network's.
The ranges are the generator's own, written for this module; the report suite's images
(``benchmarks/report_images.py``) are made by other code.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageFilter

from digitlab.engine.preprocess import to_model_input

KINDS = ("lowres", "soft", "marker")
POOL = 20_000  # views made per run (at most one per training digit); each draw is augmented
DARK_ON_LIGHT = 0.75  # share of views with dark ink on light paper (the rest inverted)
LOWRES_SIDE = (6, 16)  # px: the small scan's long side
LOWRES_OUT = (24, 128)  # px: the enlarged image's long side
LOWRES_FILTERS = (Image.NEAREST, Image.BILINEAR, Image.BICUBIC, Image.LANCZOS)
SOFT_SIDE = (40, 160)  # px
SOFT_BLUR = (0.01, 0.05)  # Gaussian radius as a share of the side
SOFT_NOISE = (0.0, 12.0)  # grey levels, standard deviation
SOFT_JPEG = (20, 90)  # JPEG quality
MARKER_SIDE = (56, 160)  # px
MARKER_GROW = (0.02, 0.08)  # square filter size as a share of the side (thicker pen)
MARKER_THIN = 1 / 3  # share of marker views thinned instead (a hairline pen)
MARKER_EDGE = 0.006  # Gaussian radius of the pen's soft edge, as a share of the side


def _levels(rng: np.random.Generator, contrast: tuple[float, float]) -> tuple[float, float]:
    """(paper, ink) grey levels, ink - paper contrast drawn from ``contrast`` (0-255)."""
    c = rng.uniform(*contrast)
    if rng.random() < DARK_ON_LIGHT:
        paper = rng.uniform(c, 255.0)
        return paper, paper - c
    paper = rng.uniform(0.0, 255.0 - c)
    return paper, paper + c


def _paint(ink: np.ndarray, rng: np.random.Generator, contrast: tuple[float, float]) -> np.ndarray:
    """A float ink map in [0, 1] as grey levels on paper."""
    paper, level = _levels(rng, contrast)
    return paper + (level - paper) * ink


def _to_uint8(grey: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(np.rint(grey), 0, 255).astype(np.uint8))


def _lowres(digit: np.ndarray, rng: np.random.Generator) -> Image.Image:
    x0, y0, x1, y1 = Image.fromarray(digit).getbbox()  # the ink's box
    m = int(rng.integers(0, 4))
    crop = digit[max(0, y0 - m) : y1 + m, max(0, x0 - m) : x1 + m]
    h, w = crop.shape
    side = int(rng.integers(LOWRES_SIDE[0], LOWRES_SIDE[1] + 1))
    s = side / max(h, w)
    small = Image.fromarray(crop).resize((max(1, round(w * s)), max(1, round(h * s))), Image.BOX)
    grey = _to_uint8(_paint(np.asarray(small, np.float32) / 255.0, rng, (60.0, 255.0)))
    out = int(rng.integers(LOWRES_OUT[0], LOWRES_OUT[1] + 1))
    k = out / max(small.size)
    size = (max(1, round(small.size[0] * k)), max(1, round(small.size[1] * k)))
    return grey.resize(size, LOWRES_FILTERS[int(rng.integers(len(LOWRES_FILTERS)))])


def _big(digit: np.ndarray, side: int) -> np.ndarray:
    """The (28, 28) digit enlarged (bilinear) to ``side``, as a float ink map in [0, 1]."""
    img = Image.fromarray(digit).resize((side, side), Image.BILINEAR)
    return np.asarray(img, np.float32) / 255.0


def _soft(digit: np.ndarray, rng: np.random.Generator) -> Image.Image:
    side = int(rng.integers(SOFT_SIDE[0], SOFT_SIDE[1] + 1))
    grey = _to_uint8(_paint(_big(digit, side), rng, (35.0, 200.0)))
    grey = grey.filter(ImageFilter.GaussianBlur(side * rng.uniform(*SOFT_BLUR)))
    noisy = np.asarray(grey, np.float32) + rng.normal(0, rng.uniform(*SOFT_NOISE), (side, side))
    buf = io.BytesIO()
    _to_uint8(noisy).save(buf, format="JPEG", quality=int(rng.integers(*SOFT_JPEG)))
    buf.seek(0)
    return Image.open(buf).convert("L")


def _marker(digit: np.ndarray, rng: np.random.Generator) -> Image.Image:
    side = int(rng.integers(MARKER_SIDE[0], MARKER_SIDE[1] + 1))
    binary = Image.fromarray(((_big(digit, side) > 0.4) * 255).astype(np.uint8))
    if rng.random() < MARKER_THIN:
        binary = binary.filter(ImageFilter.MinFilter(3))
    else:
        size = 2 * max(1, round(side * rng.uniform(*MARKER_GROW) / 2)) + 1
        binary = binary.filter(ImageFilter.MaxFilter(size))
    soft = binary.filter(ImageFilter.GaussianBlur(side * MARKER_EDGE))
    return _to_uint8(_paint(np.asarray(soft, np.float32) / 255.0, rng, (120.0, 240.0)))


RENDER = {"lowres": _lowres, "soft": _soft, "marker": _marker}


def render(digit: np.ndarray, kind: str, rng: np.random.Generator) -> Image.Image:
    """One training digit ((28, 28) uint8, ink = 255) as a greyscale image of ``kind``."""
    return RENDER[kind](digit, rng)


def engine_views(
    digits: np.ndarray, labels: np.ndarray, n: int, seed: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """``n`` views (uint8 ``(n, 28, 28)``, the engine's model inputs) of ``digits`` ((N, 28, 28)
    uint8, ink = 255) and their labels; the kinds in equal shares. Returns (views, labels,
    rejected): how many rendered views the engine read as blank and were drawn again."""
    if len(digits) == 0:
        raise ValueError("engine views need at least one digit")
    rng = np.random.default_rng(seed)
    out = np.zeros((n, 28, 28), np.uint8)
    out_labels = np.zeros(n, np.int64)
    made = rejected = 0
    while made < n:
        i = int(rng.integers(len(digits)))
        kind = KINDS[made % len(KINDS)]
        pre = to_model_input(render(digits[i], kind, rng))
        if not pre.has_ink:
            rejected += 1
            if rejected > 10 * n + 100:
                raise RuntimeError("engine views: the engine reads almost every view as blank")
            continue
        out[made], out_labels[made] = pre.image, labels[i]
        made += 1
    return out, out_labels, rejected
