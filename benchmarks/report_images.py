"""Report-suite images: what users hand the recogniser, made independently of the engine.

The engine's constants were chosen while looking at images from ``tune_images.py``; a benchmark
on those images cannot see over-fitting to them. This module is written from scratch (numpy,
Pillow, scipy's distance transform, scikit-learn's UCI digits), without reading the engine's
generators or preprocessing, so that the *report* suite measures the engine on images it was
not tuned on. Digits come from MNIST **test** images (never seen in training or validation) and
from the UCI 8x8 digits; some numbers are drawn from stroke templates written here.

Every generator takes a ``numpy.random.Generator`` and returns a :class:`Sample`; the same seed
gives the same image. Categories (``CATEGORIES``):

* ``marker``        -- an MNIST digit re-drawn with a pen from hairline (1 px) to very thick
  (a quarter of the digit's height), or its ink grown / shrunk;
* ``border``        -- digit touching, or cut by, one or two image borders;
* ``scale``         -- digit heights from 3% to 90% of the image height;
* ``photo``         -- phone photos of a pen digit on plain paper: coloured ink, tinted paper,
  light gradients, shadows, vignetting, slight perspective, blur, sensor noise, JPEG 60-90,
  some at phone resolutions (1000-3000 px wide, small digit);
* ``notebook``      -- the same, on ruled or squared notebook paper (blue / grey lines, a red
  margin line, lines through the digit);
* ``soft``          -- low contrast: ink grey 120-200 on paper 200-255, blurred;
* ``lowres``        -- UCI 8x8 digits enlarged to 16-128 px with NEAREST, BILINEAR, BICUBIC and
  LANCZOS, several contrasts, both polarities;
* ``noise``         -- digits under heavy noise as robustness tests add it: Gaussian or uniform
  noise added to the pixels (clipped to 0-255), salt and pepper, multiplicative speckle, photon
  (Poisson) noise; grey or colour, either polarity, 32-480 px (written in the eighth session,
  after the engine's impulse-noise rule, without its code: see robustness.md);
* ``canvas``        -- 280x280 browser-canvas exports: RGBA, transparent background, thin pens,
  rotated up to 25 degrees;
* ``numbers_upload``        -- numbers of 2-6 MNIST digits with ordinary gaps (pixels only);
* ``numbers_two_stroke``    -- numbers of 2-6 template-drawn digits with at least one 4, 5 or 7
  drawn as two strokes with a small gap between them (image + stroke list);
* ``numbers_canvas_strokes``-- numbers of 2-6 template-drawn digits on a canvas (image + strokes);
* ``no_digit``      -- blank, uniform, noise-only, empty paper and empty notebook photos.

The only import of the package's data loader is in :func:`load_digit_source`.
"""

# ruff: noqa: N806  (H, W: image height and width)
from __future__ import annotations

import inspect
import io
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from scipy import ndimage

Stroke = list[tuple[float, float]]


@dataclass
class Sample:
    """One generated image and what it shows."""

    image: Image.Image
    label: int | str | None  # digit, number string, or None for "no digit"
    kind: str  # sub-kind, for per-kind accuracy
    strokes: list[Stroke] | None = None  # numbers drawn from strokes: image coordinates
    meta: dict = field(default_factory=dict)


# --- where the digits come from -------------------------------------------------------------


def load_digit_source(data_dir: str | None = None):
    """MNIST as digitlab loads it (``.test_images``, ``.test_labels``, ``.train_images``, ...).

    The one place this module touches digitlab's data loader: repoint it here if it moves.
    """
    from digitlab.training.data import load_mnist

    return load_mnist(data_dir, download=False)


def uci_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 UCI 8x8 digits as float32 in [0, 1] (ink = 1) and int labels."""
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.images / 16.0).astype(np.float32), d.target.astype(np.int64)


# --- colours ----------------------------------------------------------------------------------

INKS = {
    "black": ((15, 15, 20), (70, 70, 75)),
    "blue": ((10, 25, 110), (60, 80, 190)),
    "red": ((150, 10, 15), (210, 50, 50)),
    "green": ((10, 90, 30), (50, 140, 70)),
}
PAPERS = {
    "white": ((235, 235, 235), (255, 255, 255)),
    "cream": ((235, 225, 195), (252, 245, 220)),
    "grey": ((195, 195, 195), (225, 225, 225)),
    "bluish": ((215, 225, 240), (235, 242, 255)),
    "yellow": ((240, 230, 150), (255, 248, 190)),
}


def _colour(table: dict, rng: np.random.Generator, name: str | None = None):
    name = name or list(table)[int(rng.integers(len(table)))]
    lo, hi = (np.array(v, np.float32) for v in table[name])
    return name, lo + (hi - lo) * rng.random(3, dtype=np.float32)


# --- glyphs: coverage maps in [0, 1] ----------------------------------------------------------


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    return int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1


def _crop(alpha: np.ndarray, thr: float = 0.5) -> np.ndarray:
    y0, y1, x0, x1 = _bbox(alpha > thr)
    return alpha[y0:y1, x0:x1]


def mnist_alpha(digit: np.ndarray, height: int) -> np.ndarray:
    """An MNIST digit's ink as coverage in [0, 1], cropped to its ink, ``height`` px tall."""
    d = digit.astype(np.float32) / 255.0
    y0, y1, x0, x1 = _bbox(d > 0.2)
    d = d[y0:y1, x0:x1]
    scale = height / d.shape[0]
    w = max(1, round(d.shape[1] * scale))
    im = Image.fromarray((d * 255).astype(np.uint8)).resize((w, height), Image.BICUBIC)
    a = np.asarray(im, np.float32) / 255.0
    a = np.clip((a - 0.2) / 0.45, 0.0, 1.0)  # pen ink is solid: steepen the soft edges
    return _crop(a)


def _binary(digit: np.ndarray, height: int) -> np.ndarray:
    """MNIST digit upscaled so its ink is ``height`` px tall, smoothed, thresholded, padded."""
    a = np.pad(mnist_alpha(digit, height), 4)
    a = ndimage.gaussian_filter(a, max(0.5, 0.02 * height))
    return a > 0.5


def _neighbours(sk: np.ndarray) -> np.ndarray:
    k = np.ones((3, 3), np.int32)
    k[1, 1] = 0
    return ndimage.convolve(sk.astype(np.int32), k, mode="constant") * sk


def prune(skeleton: np.ndarray, length: int) -> np.ndarray:
    """Remove side branches (spurs) shorter than ``length`` px that end at a junction."""
    sk = skeleton.copy()
    nb = _neighbours(sk)
    h, w = sk.shape
    for y, x in zip(*np.nonzero(nb == 1), strict=True):
        path, prev, cur = [(y, x)], None, (y, x)
        while len(path) <= length:
            cy, cx = cur
            nxt = [
                (cy + dy, cx + dx)
                for dy in (-1, 0, 1)
                for dx in (-1, 0, 1)
                if (dy or dx)
                and 0 <= cy + dy < h
                and 0 <= cx + dx < w
                and sk[cy + dy, cx + dx]
                and (cy + dy, cx + dx) != prev
                and (cy + dy, cx + dx) not in path
            ]
            if len(nxt) != 1 or nb[nxt[0]] >= 3:
                if len(nxt) >= 1 and len(path) < length:  # reached a junction: a spur
                    for p in path:
                        sk[p] = False
                break
            prev, cur = cur, nxt[0]
            path.append(cur)
    return sk


def skeleton(mask: np.ndarray) -> np.ndarray:
    """The digit's centre line, spurs removed."""
    sk = thin(mask)
    half = float(ndimage.distance_transform_edt(mask)[sk].mean()) if sk.any() else 1.0
    return prune(sk, int(2.5 * half) + 2)


def thin(mask: np.ndarray) -> np.ndarray:
    """Zhang-Suen thinning: a one-pixel-wide skeleton of a binary mask."""
    img = np.pad(mask.astype(np.uint8), 1)
    while True:
        changed = False
        for step in (0, 1):
            p2, p3, p4 = img[:-2, 1:-1], img[:-2, 2:], img[1:-1, 2:]
            p5, p6, p7 = img[2:, 2:], img[2:, 1:-1], img[2:, :-2]
            p8, p9 = img[1:-1, :-2], img[:-2, :-2]
            ring = (p2, p3, p4, p5, p6, p7, p8, p9, p2)
            b = sum(p.astype(np.int8) for p in ring[:8])
            a = sum(((ring[i] == 0) & (ring[i + 1] == 1)).astype(np.int8) for i in range(8))
            if step == 0:
                c = (p2 * p4 * p6 == 0) & (p4 * p6 * p8 == 0)
            else:
                c = (p2 * p4 * p8 == 0) & (p2 * p6 * p8 == 0)
            remove = (img[1:-1, 1:-1] == 1) & (b >= 2) & (b <= 6) & (a == 1) & c
            if remove.any():
                img[1:-1, 1:-1][remove] = 0
                changed = True
        if not changed:
            return img[1:-1, 1:-1].astype(bool)


def pen(skeleton: np.ndarray, width: float) -> np.ndarray:
    """Coverage of a round pen of ``width`` px run along a skeleton (anti-aliased)."""
    pad = math.ceil(width) + 2
    sk = np.pad(skeleton, pad)
    dist = ndimage.distance_transform_edt(~sk)
    return np.clip(width / 2.0 + 0.5 - dist, 0.0, 1.0).astype(np.float32)


def grow(mask: np.ndarray, radius: float) -> np.ndarray:
    """Ink grown (radius > 0) or shrunk (radius < 0) by ``radius`` px, anti-aliased."""
    pad = math.ceil(abs(radius)) + 2
    m = np.pad(mask, pad)
    inside = ndimage.distance_transform_edt(m)
    outside = ndimage.distance_transform_edt(~m)
    signed = np.where(m, inside - 0.5, 0.5 - outside)  # > 0 inside the ink
    return np.clip(signed + radius + 0.5, 0.0, 1.0).astype(np.float32)


def marker_alpha(
    digit: np.ndarray, height: int, rng: np.random.Generator, min_frac: float = 0.004
) -> tuple:
    """An MNIST digit re-drawn: skeleton + pen of random width, or ink grown / shrunk.

    Pen widths are log-uniform from ``min_frac`` to 22% of the height (at least 1 px)."""
    mask = _binary(digit, height)
    if rng.random() < 0.6:
        frac = math.exp(rng.uniform(math.log(min_frac), math.log(0.22)))
        width = max(1.0, frac * height)
        a = pen(skeleton(mask), width)
        kind = "hairline" if width <= 2.0 else ("thin" if frac < 0.06 else "thick pen")
        kind = kind if frac < 0.14 else "very thick pen"
    else:
        r = rng.uniform(-0.025, 0.08) * height
        a = grow(mask, r)
        if a.max() < 0.5:  # shrunk to nothing: keep the skeleton
            a = pen(skeleton(mask), 1.0)
        kind = "eroded" if r < 0 else ("dilated" if r < 0.04 * height else "very dilated")
        width = r
    return _crop(a), kind, float(width)


# --- compositing -------------------------------------------------------------------------------


def _paste_max(canvas: np.ndarray, glyph: np.ndarray, top: int, left: int) -> None:
    """Max-combine ``glyph`` into ``canvas`` at (top, left), clipped to the canvas."""
    h, w = glyph.shape
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + h, canvas.shape[0]), min(left + w, canvas.shape[1])
    if y1 <= y0 or x1 <= x0:
        return
    region = canvas[y0:y1, x0:x1]
    np.maximum(region, glyph[y0 - top : y1 - top, x0 - left : x1 - left], out=region)


def _blend(base: np.ndarray, alpha: np.ndarray, colour) -> np.ndarray:
    """Lay ``colour`` over an RGB float image with coverage ``alpha``."""
    a = alpha[..., None]
    return base * (1.0 - a) + np.asarray(colour, np.float32) * a


def _to_image(rgb: np.ndarray, mode: str = "RGB") -> Image.Image:
    im = Image.fromarray(np.clip(rgb + 0.5, 0, 255).astype(np.uint8), "RGB")
    return im.convert(mode) if mode != "RGB" else im


def _jpeg(im: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    out = Image.open(buf)
    out.load()
    return out


def _perspective_coeffs(src: list, dst: list) -> list[float]:
    """PIL PERSPECTIVE coefficients mapping output points ``dst`` to input points ``src``."""
    rows, rhs = [], []
    for (x, y), (u, v) in zip(dst, src, strict=True):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        rhs += [u, v]
    return list(np.linalg.solve(np.array(rows, float), np.array(rhs, float)))


def perspective(im: Image.Image, rng: np.random.Generator, strength: float, fill) -> Image.Image:
    """A slight perspective: each corner moved by up to ``strength`` of the image size."""
    w, h = im.size
    corners = [(0, 0), (w, 0), (w, h), (0, h)]
    moved = [
        (x + rng.uniform(-strength, strength) * w, y + rng.uniform(-strength, strength) * h)
        for x, y in corners
    ]
    coeffs = _perspective_coeffs(moved, corners)
    return im.transform((w, h), Image.PERSPECTIVE, coeffs, Image.BICUBIC, fillcolor=fill)


def _light_field(h: int, w: int, rng: np.random.Generator) -> tuple[np.ndarray, list[str]]:
    """Multiplicative light: gradient, maybe a soft shadow, maybe vignetting."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    yy /= max(h - 1, 1)
    xx /= max(w - 1, 1)
    what = []
    theta = rng.uniform(0, 2 * math.pi)
    ramp = math.cos(theta) * xx + math.sin(theta) * yy
    ramp = (ramp - ramp.min()) / max(float(ramp.max() - ramp.min()), 1e-6)
    field = 1.0 - rng.uniform(0.0, 0.3) * ramp
    if rng.random() < 0.5:  # a soft-edged shadow (a hand or a phone) over part of the page
        phi = rng.uniform(0, 2 * math.pi)
        d = math.cos(phi) * (xx - rng.uniform(0.2, 0.8)) + math.sin(phi) * (
            yy - rng.uniform(0.2, 0.8)
        )
        soft = rng.uniform(0.01, 0.15)
        depth = rng.uniform(0.15, 0.45)
        field *= 1.0 - depth / (1.0 + np.exp(np.clip(-d / soft, -60.0, 60.0)))
        what.append("shadow")
    if rng.random() < 0.6:
        r2 = (xx - 0.5) ** 2 + (yy - 0.5) ** 2
        field *= 1.0 - rng.uniform(0.1, 0.5) * r2 / 0.5
        what.append("vignette")
    return field.astype(np.float32), what


def photo_finish(
    rgb: np.ndarray, rng: np.random.Generator, paper, *, tilt: float = 0.05
) -> tuple[Image.Image, list[str]]:
    """Turn a flat page (float RGB) into a phone photo: perspective, light, blur, noise, JPEG."""
    h, w, _ = rgb.shape
    im = _to_image(rgb)
    what = []
    if rng.random() < 0.8:
        fill = tuple(int(c) for c in np.asarray(paper))
        im = perspective(im, rng, rng.uniform(0.0, tilt), fill)
        what.append("perspective")
    arr = np.asarray(im, np.float32)
    field, lit = _light_field(h, w, rng)
    arr = arr * field[..., None]
    what += lit
    scale = max(w, h) / 600.0
    blur = rng.uniform(0.0, 1.2) * max(scale, 1.0)
    if blur > 0.3:
        arr = np.asarray(_to_image(arr).filter(ImageFilter.GaussianBlur(blur)), np.float32)
        what.append("blur")
    sigma = rng.uniform(1.0, 9.0)
    noise = rng.standard_normal((h, w, 1), dtype=np.float32) * sigma
    noise = noise + rng.standard_normal((h, w, 3), dtype=np.float32) * (sigma * 0.4)
    arr = arr + noise
    q = int(rng.integers(60, 91))
    what.append(f"jpeg{q}")
    return _jpeg(_to_image(arr), q), what


# --- single-digit generators (digit: a 28x28 uint8 MNIST image, ink = 255) --------------------


def gen_marker(digit: np.ndarray, label: int, rng: np.random.Generator) -> Sample:
    """Marker / pen strokes from hairline to very thick, dark ink on light paper."""
    height = int(rng.integers(60, 260))
    a, kind, width = marker_alpha(digit, height, rng)
    gh, gw = a.shape
    H = int(gh / rng.uniform(0.45, 0.85))
    W = max(int(gw / 0.9) + 2, int(H * rng.uniform(0.8, 1.25)))
    canvas = np.zeros((H, W), np.float32)
    _paste_max(canvas, a, int(rng.integers(0, H - gh + 1)), int(rng.integers(0, W - gw + 1)))
    _, paper = _colour(PAPERS, rng, "white" if rng.random() < 0.7 else None)
    ink_name, ink = _colour(INKS, rng, "black" if rng.random() < 0.6 else None)
    rgb = _blend(np.broadcast_to(paper, (H, W, 3)).copy(), canvas, ink)
    mode = "L" if rng.random() < 0.5 else "RGB"
    return Sample(_to_image(rgb, mode), label, kind, meta={"pen": width, "ink": ink_name})


def gen_border(digit: np.ndarray, label: int, rng: np.random.Generator) -> Sample:
    """Digit touching one or two image borders, or cut by them (up to 12% of its extent)."""
    height = int(rng.integers(28, 200))
    a = mnist_alpha(digit, height)
    gh, gw = a.shape
    H = max(gh, int(gh / rng.uniform(0.55, 1.0)))
    W = max(gw + 2, int(H * rng.uniform(0.7, 1.3)))
    top = int(rng.integers(0, H - gh + 1))
    left = int(rng.integers(0, W - gw + 1))
    sides = list(rng.permutation(["top", "bottom", "left", "right"]))
    n = 1 if rng.random() < 0.5 else 2
    chosen = [sides[0]]
    if n == 2:  # a corner: one horizontal and one vertical side
        chosen.append(
            next(
                s for s in sides[1:] if (s in ("top", "bottom")) != (sides[0] in ("top", "bottom"))
            )
        )
    cut = rng.random() < 0.5
    touched = {}
    for side in chosen:
        extent = gh if side in ("top", "bottom") else gw
        c = round(rng.uniform(0.02, 0.12) * extent) if cut else 0
        touched[side] = c
        if side == "top":
            top = -c
        elif side == "bottom":
            top = H - gh + c
        elif side == "left":
            left = -c
        else:
            left = W - gw + c
    canvas = np.zeros((H, W), np.float32)
    _paste_max(canvas, a, top, left)
    dark_on_light = rng.random() < 0.7
    ink, paper = (rng.uniform(0, 60), rng.uniform(200, 255))
    if not dark_on_light:
        ink, paper = 255 - ink, 255 - paper
    grey = paper + (ink - paper) * canvas + rng.normal(0, 2.0, canvas.shape)
    im = Image.fromarray(np.clip(grey + 0.5, 0, 255).astype(np.uint8), "L")
    kind = ("cut " if cut else "touching ") + "+".join(sorted(touched))
    return Sample(im, label, kind, meta={"sides": touched, "dark_on_light": dark_on_light})


def gen_scale(digit: np.ndarray, label: int, rng: np.random.Generator) -> Sample:
    """Digit height from 3% to 90% of the image height (log-uniform)."""
    frac = math.exp(rng.uniform(math.log(0.03), math.log(0.9)))
    height = int(rng.integers(14, 48)) if frac < 0.1 else int(rng.integers(20, 220))
    H = min(1600, max(height + 2, round(height / frac)))
    a = mnist_alpha(digit, height)
    gh, gw = a.shape
    W = max(gw + 2, int(H * rng.uniform(0.75, 1.4)))
    canvas = np.zeros((H, W), np.float32)
    _paste_max(canvas, a, int(rng.integers(0, H - gh + 1)), int(rng.integers(0, W - gw + 1)))
    ink, paper = rng.uniform(0, 70), rng.uniform(200, 255)
    grey = paper + (ink - paper) * canvas + rng.normal(0, 2.5, canvas.shape)
    im = Image.fromarray(np.clip(grey + 0.5, 0, 255).astype(np.uint8), "L")
    kind = "3-10%" if frac < 0.1 else ("10-30%" if frac < 0.3 else "30-90%")
    return Sample(im, label, kind, meta={"height_fraction": gh / H})


def _page_size(rng: np.random.Generator, phone: bool) -> tuple[int, int]:
    if phone:
        W = int(rng.integers(1000, 3001))
        return int(W * rng.choice([0.75, 1.333, 0.5625, 1.0])), W
    W = int(rng.integers(300, 1000))
    return int(W * rng.uniform(0.7, 1.4)), W


def _photo_digit(
    digit: np.ndarray, label: int, rng: np.random.Generator, notebook: bool, phone: bool | None
) -> Sample:
    drawn = rng.random() < 0.3  # 30% at phone resolution (drawn even when forced: same stream)
    phone = drawn if phone is None else phone
    H, W = _page_size(rng, phone)
    frac = rng.uniform(0.06, 0.25) if phone else rng.uniform(0.15, 0.6)
    height = max(16, int(frac * H))
    a = mnist_alpha(digit, height)
    if rng.random() < 0.5:  # a ballpoint / fine-liner rather than MNIST's own stroke
        a, _, _ = marker_alpha(digit, height, np.random.default_rng(rng.integers(1 << 31)), 0.04)
        a = a if a.shape[0] > 0.5 * height else mnist_alpha(digit, height)
    gh, gw = a.shape
    W = max(W, gw + 4)
    H = max(H, gh + 4)
    paper_name, paper = _colour(PAPERS, rng)
    page = np.broadcast_to(paper, (H, W, 3)).copy()
    mx, my = int(0.05 * W), int(0.05 * H)
    top = int(rng.integers(min(my, H - gh), max(H - gh - my, min(my, H - gh)) + 1))
    left = int(rng.integers(min(mx, W - gw), max(W - gw - mx, min(mx, W - gw)) + 1))
    kind = "plain"
    meta: dict = {}
    if notebook:
        page, kind, meta = _notebook_lines(page, rng, gh, (top, left, gh, gw))
    ink_name, ink = _colour(INKS, rng)
    canvas = np.zeros((H, W), np.float32)
    _paste_max(canvas, a * rng.uniform(0.8, 1.0), top, left)
    page = _blend(page, canvas, ink)
    im, what = photo_finish(page, rng, paper)
    kind = f"{kind}, {'phone' if phone else 'close-up'}"
    meta.update({"ink": ink_name, "paper": paper_name, "effects": what, "size": (W, H)})
    return Sample(im, label, kind, meta=meta)


def gen_photo(
    digit: np.ndarray, label: int, rng: np.random.Generator, *, phone: bool | None = None
) -> Sample:
    """A phone photo of a pen digit on plain (maybe tinted) paper."""
    return _photo_digit(digit, label, rng, notebook=False, phone=phone)


def gen_notebook(
    digit: np.ndarray, label: int, rng: np.random.Generator, *, phone: bool | None = None
) -> Sample:
    """A phone photo of a pen digit on ruled or squared notebook paper."""
    return _photo_digit(digit, label, rng, notebook=True, phone=phone)


LINE_COLOURS = {
    "blue": ((120, 150, 200), (175, 200, 240)),
    "grey": ((140, 140, 140), (195, 195, 195)),
}


def _notebook_lines(page: np.ndarray, rng: np.random.Generator, digit_h: int, box) -> tuple:
    """Draw ruled or squared lines (and maybe a red margin) on a float RGB page."""
    H, W, _ = page.shape
    squared = rng.random() < 0.5
    _, line_rgb = _colour(LINE_COLOURS, rng)
    if box is not None:
        top, left, gh, gw = box
    else:
        top, left, gh, gw = H // 3, W // 3, digit_h, digit_h // 2
    # squared: 2-3 squares per digit; ruled: the digit about one line high
    spacing = digit_h * (rng.uniform(0.3, 0.75) if squared else rng.uniform(0.7, 1.4))
    thick = max(1.0, spacing * rng.uniform(0.025, 0.06))
    strength = rng.uniform(0.5, 1.0)
    # horizontal lines; for ruled paper one of them near the digit's foot (written on the line)
    anchor = (
        top + gh + rng.uniform(-0.2, 0.15) * spacing if not squared else rng.uniform(0, spacing)
    )
    ys = np.arange(anchor % spacing, H, spacing)
    yy = np.arange(H, dtype=np.float32)
    xx = np.arange(W, dtype=np.float32)
    rows = np.zeros(H, np.float32)  # line coverage as a profile down the page ...
    for y in ys:
        rows = np.maximum(rows, np.clip(thick / 2 + 0.5 - np.abs(yy - y), 0, 1) * strength)
    cols = np.zeros(W, np.float32)  # ... and across it (squared paper)
    if squared:
        for x in np.arange(rng.uniform(0, spacing), W, spacing):
            cols = np.maximum(cols, np.clip(thick / 2 + 0.5 - np.abs(xx - x), 0, 1) * strength)
    cover = np.maximum(rows[:, None], cols[None, :])
    page = _blend(page, np.broadcast_to(cover, (H, W)), line_rgb)
    kind = "squared" if squared else "ruled"
    meta = {"spacing": float(spacing), "lines": "squared" if squared else "ruled"}
    if rng.random() < 0.5:  # the red margin, sometimes right through the digit
        if rng.random() < 0.4:
            mx = left + rng.uniform(0.1, 0.9) * gw
        else:
            mx = rng.uniform(0.05, 0.95) * W
        red = np.array([rng.uniform(200, 235), rng.uniform(70, 130), rng.uniform(90, 140)])
        mcover = np.clip(thick * 1.5 / 2 + 0.5 - np.abs(xx - mx), 0, 1) * strength
        page = _blend(page, np.broadcast_to(mcover[None, :], (H, W)), red)
        kind += " + margin"
        meta["margin_x"] = float(mx)
    return page, kind, meta


def gen_soft(digit: np.ndarray, label: int, rng: np.random.Generator) -> Sample:
    """Low contrast and soft: ink grey 120-200 on paper 200-255 (at least 25 apart), blurred."""
    height = int(rng.integers(24, 200))
    a = mnist_alpha(digit, height)
    gh, gw = a.shape
    H = int(gh / rng.uniform(0.35, 0.85))
    W = max(gw + 4, int(H * rng.uniform(0.8, 1.25)))
    canvas = np.zeros((H, W), np.float32)
    _paste_max(canvas, a, int(rng.integers(0, H - gh + 1)), int(rng.integers(0, W - gw + 1)))
    ink = rng.uniform(120, 200)
    paper = rng.uniform(max(200.0, ink + 25), 255.0)
    grey = paper + (ink - paper) * canvas
    radius = rng.uniform(0.5, 2.5) * gh / 60.0
    im = Image.fromarray(np.clip(grey + 0.5, 0, 255).astype(np.uint8), "L")
    im = im.filter(ImageFilter.GaussianBlur(max(radius, 0.3)))
    arr = np.asarray(im, np.float32) + rng.normal(0, 1.5, (H, W))
    im = Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8), "L")
    contrast = paper - ink
    kind = (
        "contrast 25-50"
        if contrast < 50
        else ("contrast 50-90" if contrast < 90 else "contrast 90+")
    )
    return Sample(im, label, kind, meta={"ink": ink, "paper": paper, "blur": radius})


NOISE_KINDS = ("gaussian", "uniform", "salt and pepper", "speckle", "photon")


def gen_noise(digit: np.ndarray, label: int, rng: np.random.Generator) -> Sample:
    """A digit under heavy noise of one of NOISE_KINDS, grey or colour, either polarity."""
    side = int(rng.choice([32, 48, 64, 100, 160, 240, 320, 480]))
    height = max(12, int(side * rng.uniform(0.5, 0.9)))
    a = mnist_alpha(digit, height)
    gh, gw = a.shape
    H, W = max(side, gh + 2), max(side, gw + 2)
    cover = np.zeros((H, W), np.float32)
    _paste_max(cover, a, int(rng.integers(0, H - gh + 1)), int(rng.integers(0, W - gw + 1)))
    dark_ink = rng.random() < 0.5
    paper_level = rng.uniform(200, 255) if dark_ink else rng.uniform(0, 50)
    ink_level = rng.uniform(0, 60) if dark_ink else rng.uniform(190, 255)
    channels = 3 if rng.random() < 0.4 else 1
    tint = rng.uniform(0.85, 1.0, channels)
    base = (paper_level + (ink_level - paper_level) * cover)[..., None] * tint  # (H, W, C)
    kind = NOISE_KINDS[int(rng.integers(len(NOISE_KINDS)))]
    shape = base.shape if rng.random() < 0.5 else (H, W, 1)  # colour or luminance noise
    if kind == "gaussian":
        sigma = rng.uniform(20, 110)
        noisy = base + rng.normal(0.0, sigma, shape)
        meta = {"sigma": sigma}
    elif kind == "uniform":
        half = rng.uniform(40, 170)
        noisy = base + rng.uniform(-half, half, shape)
        meta = {"half_width": half}
    elif kind == "salt and pepper":
        share = rng.uniform(0.02, 0.25)
        noisy = base.copy()
        flat = noisy.reshape(H * W, channels)
        hit = rng.choice(H * W, int(share * H * W), replace=False)
        flat[hit] = rng.choice([0.0, 255.0], size=(len(hit), 1))
        meta = {"share": share}
    elif kind == "speckle":
        spread = rng.uniform(0.2, 0.6)
        noisy = base * (1.0 + rng.normal(0.0, spread, shape))
        meta = {"spread": spread}
    else:
        photons = rng.uniform(4, 20)  # photons at full brightness
        noisy = rng.poisson(base / 255.0 * photons) * (255.0 / photons)
        meta = {"photons": photons}
    out = np.clip(noisy + 0.5, 0, 255).astype(np.uint8)
    im = Image.fromarray(out[..., 0], "L") if channels == 1 else Image.fromarray(out, "RGB")
    return Sample(im, label, kind, meta={**meta, "dark_ink": dark_ink, "side": side})


LOWRES_FILTERS = {
    "nearest": Image.NEAREST,
    "bilinear": Image.BILINEAR,
    "bicubic": Image.BICUBIC,
    "lanczos": Image.LANCZOS,
}


def gen_lowres(uci: np.ndarray, label: int, rng: np.random.Generator) -> Sample:
    """A UCI 8x8 digit enlarged to 16-128 px by one of four filters, some contrast, polarity."""
    name = list(LOWRES_FILTERS)[int(rng.integers(4))]
    size = int(rng.choice([16, 20, 24, 28, 32, 48, 64, 96, 128]))
    bg = rng.uniform(0, 60)
    fg = rng.uniform(min(bg + 100, 255), 255)
    grey = bg + (fg - bg) * uci
    dark_on_light = rng.random() < 0.5
    if dark_on_light:
        grey = 255 - grey
    small = Image.fromarray(np.clip(grey + 0.5, 0, 255).astype(np.uint8), "L")
    im = small.resize((size, size), LOWRES_FILTERS[name])
    return Sample(im, label, name, meta={"size": size, "dark_on_light": dark_on_light})


def gen_canvas(digit: np.ndarray, label: int, rng: np.random.Generator) -> Sample:
    """A 280x280 browser-canvas export: RGBA, transparent background, thin pen, rotated."""
    height = int(rng.integers(110, 240))
    width = float(rng.uniform(1.5, 9.0))
    a = pen(skeleton(_binary(digit, height)), width)
    angle = float(rng.uniform(-25, 25))
    g = Image.fromarray((a * 255).astype(np.uint8), "L").rotate(angle, Image.BICUBIC, expand=True)
    a = _crop(np.asarray(g, np.float32) / 255.0, 0.3)
    if max(a.shape) > 270:
        f = 270 / max(a.shape)
        g = Image.fromarray((a * 255).astype(np.uint8)).resize(
            (max(1, int(a.shape[1] * f)), max(1, int(a.shape[0] * f))), Image.BICUBIC
        )
        a = np.asarray(g, np.float32) / 255.0
    gh, gw = a.shape
    canvas = np.zeros((280, 280), np.float32)
    _paste_max(canvas, a, int(rng.integers(0, 281 - gh)), int(rng.integers(0, 281 - gw)))
    r = rng.random()
    colour = (
        (0, 0, 0) if r < 0.6 else ((20, 40, 200) if r < 0.8 else tuple(rng.integers(0, 256, 3)))
    )
    rgba = np.zeros((280, 280, 4), np.uint8)
    rgba[..., :3] = np.asarray(colour, np.uint8)
    rgba[..., 3] = np.clip(canvas * 255 + 0.5, 0, 255).astype(np.uint8)
    rgba[rgba[..., 3] == 0, :3] = 0  # a browser exports transparent pixels as (0, 0, 0, 0)
    kind = "pen <= 3 px" if width <= 3 else "pen 3-9 px"
    return Sample(Image.fromarray(rgba, "RGBA"), label, kind, meta={"pen": width, "angle": angle})


# --- numbers --------------------------------------------------------------------------------


def gen_number_upload(digits: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> Sample:
    """A number of MNIST digits side by side with ordinary gaps (a scan or screenshot)."""
    h = int(rng.integers(24, 120))
    glyphs = [mnist_alpha(d, max(12, int(h * rng.uniform(0.9, 1.1)))) for d in digits]
    gaps = [round(rng.uniform(0.15, 0.6) * h) for _ in glyphs[1:]]
    margin = int(rng.uniform(0.2, 1.0) * h) + 2
    W = sum(g.shape[1] for g in glyphs) + sum(gaps) + 2 * margin
    H = max(g.shape[0] for g in glyphs) + 2 * margin + int(0.2 * h)
    canvas = np.zeros((H, W), np.float32)
    x = margin
    base = margin + int(0.1 * h)
    for k, g in enumerate(glyphs):
        top = base + (h - g.shape[0]) + int(rng.normal(0, 0.05 * h))
        _paste_max(canvas, g, top, x)
        x += g.shape[1] + (gaps[k] if k < len(gaps) else 0)
    dark = rng.random() < 0.8
    ink, paper = rng.uniform(0, 60), rng.uniform(205, 255)
    if not dark:
        ink, paper = 255 - ink, 255 - paper
    grey = paper + (ink - paper) * canvas + rng.normal(0, 2.0, canvas.shape)
    im = Image.fromarray(np.clip(grey + 0.5, 0, 255).astype(np.uint8), "L")
    number = "".join(str(int(v)) for v in labels)
    return Sample(im, number, f"{len(number)} digits", meta={"gaps": gaps, "height": h})


# Stroke templates: a digit is a list of strokes, a stroke a list of pieces, a piece a list of
# control points (x right, y down; the digit spans y 0..1, x about 0..0.6). Points in a piece are
# joined by a smooth curve; pieces of one stroke meet at a corner.
TEMPLATES: dict[int, list[list[list[tuple[float, float]]]]] = {
    0: [
        [
            [
                (0.32, 0.0),
                (0.1, 0.12),
                (0.0, 0.5),
                (0.1, 0.88),
                (0.3, 1.0),
                (0.5, 0.88),
                (0.6, 0.5),
                (0.52, 0.12),
                (0.32, 0.0),
                (0.2, 0.06),
            ]
        ]
    ],
    1: [[[(0.3, 0.0), (0.29, 0.5), (0.27, 1.0)]]],
    2: [
        [
            [
                (0.04, 0.22),
                (0.18, 0.03),
                (0.4, 0.0),
                (0.56, 0.18),
                (0.5, 0.42),
                (0.26, 0.7),
                (0.0, 1.0),
            ],
            [(0.0, 1.0), (0.3, 0.99), (0.62, 0.98)],
        ]
    ],
    3: [
        [
            [(0.04, 0.12), (0.26, 0.0), (0.5, 0.06), (0.52, 0.26), (0.34, 0.44), (0.2, 0.47)],
            [(0.2, 0.47), (0.38, 0.49), (0.58, 0.64), (0.55, 0.86), (0.3, 1.0), (0.02, 0.9)],
        ]
    ],
    4: [
        [[(0.3, 0.0), (0.0, 0.64)], [(0.0, 0.64), (0.64, 0.64)]],
        [[(0.47, 0.22), (0.46, 0.6), (0.45, 1.0)]],
    ],
    5: [
        [
            [(0.56, 0.0), (0.1, 0.0)],
            [(0.1, 0.0), (0.06, 0.45)],
            [(0.06, 0.45), (0.3, 0.36), (0.54, 0.48), (0.58, 0.74), (0.36, 0.98), (0.0, 0.9)],
        ]
    ],
    6: [
        [
            [
                (0.52, 0.0),
                (0.26, 0.18),
                (0.05, 0.55),
                (0.1, 0.9),
                (0.3, 1.0),
                (0.52, 0.86),
                (0.52, 0.62),
                (0.3, 0.52),
                (0.07, 0.64),
            ]
        ]
    ],
    7: [[[(0.0, 0.02), (0.6, 0.0)], [(0.6, 0.0), (0.4, 0.45), (0.24, 1.0)]]],
    8: [
        [
            [
                (0.52, 0.1),
                (0.3, 0.0),
                (0.08, 0.1),
                (0.1, 0.33),
                (0.3, 0.49),
                (0.54, 0.68),
                (0.5, 0.92),
                (0.3, 1.0),
                (0.07, 0.9),
                (0.07, 0.68),
                (0.3, 0.49),
                (0.5, 0.3),
                (0.52, 0.1),
            ]
        ]
    ],
    9: [
        [
            [
                (0.54, 0.14),
                (0.34, 0.0),
                (0.1, 0.06),
                (0.04, 0.26),
                (0.18, 0.42),
                (0.42, 0.38),
                (0.55, 0.16),
            ],
            [(0.55, 0.16), (0.52, 0.6), (0.48, 1.0)],
        ]
    ],
}


def _two_stroke(digit: int, gap: float) -> list[list[list[tuple[float, float]]]]:
    """A 4, 5 or 7 drawn as two strokes that do not meet: ``gap`` (of the height) between."""
    if digit == 4:  # the L-shaped stroke stops short of the upright
        return [
            [[(0.3, 0.0), (0.0, 0.64)], [(0.0, 0.64), (0.46 - gap, 0.64)]],
            [[(0.47, 0.22), (0.46, 0.6), (0.45, 1.0)]],
        ]
    if digit == 5:  # the body, then the flag, which starts a gap to the right of the body's top
        return [
            [
                [(0.1, 0.02), (0.06, 0.45)],
                [(0.06, 0.45), (0.3, 0.36), (0.54, 0.48), (0.58, 0.74), (0.36, 0.98), (0.0, 0.9)],
            ],
            [[(0.1 + gap, 0.0), (0.58, -0.01)]],
        ]
    if digit == 7:  # the bar, then the down stroke starting a gap below-right of the bar's end
        return [
            [[(0.0, 0.02), (0.56, 0.0)]],
            [[(0.56 + 0.4 * gap, 0.0 + 0.9 * gap), (0.42, 0.45), (0.26, 1.0)]],
        ]
    raise ValueError(f"no two-stroke form of {digit}")


def _smooth(points: list[tuple[float, float]], per_segment: int = 10) -> list[tuple[float, float]]:
    """Catmull-Rom curve through ``points``."""
    if len(points) < 3:
        (x0, y0), (x1, y1) = points[0], points[-1]
        return [(x0 + (x1 - x0) * t, y0 + (y1 - y0) * t) for t in np.linspace(0, 1, per_segment)]
    p = [points[0], *points, points[-1]]
    out = []
    for i in range(1, len(p) - 2):
        p0, p1, p2, p3 = (np.array(q, float) for q in p[i - 1 : i + 3])
        for t in np.linspace(0, 1, per_segment, endpoint=False):
            t2, t3 = t * t, t * t * t
            q = 0.5 * (
                2 * p1
                + (-p0 + p2) * t
                + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t2
                + (-p0 + 3 * p1 - 3 * p2 + p3) * t3
            )
            out.append((float(q[0]), float(q[1])))
    out.append(tuple(map(float, points[-1])))
    return out


def template_strokes(
    digit: int, rng: np.random.Generator, *, two_stroke_gap: float | None = None
) -> list[Stroke]:
    """A hand-drawn-looking digit: template control points jittered, slanted, smoothed.

    Returns strokes in unit coordinates (height 1)."""
    tpl = _two_stroke(digit, two_stroke_gap) if two_stroke_gap else TEMPLATES[digit]
    slant = rng.uniform(-0.05, 0.3)  # right-leaning mostly
    aspect = rng.uniform(0.8, 1.2)
    angle = math.radians(rng.uniform(-6, 6))
    ca, sa = math.cos(angle), math.sin(angle)
    jit = 0.025
    strokes = []
    for stroke in tpl:
        pts: list[tuple[float, float]] = []
        shared = {}
        for piece in stroke:
            jittered = []
            for pt in piece:
                if pt not in shared:  # a corner shared by two pieces moves once
                    shared[pt] = (pt[0] + rng.normal(0, jit), pt[1] + rng.normal(0, jit))
                jittered.append(shared[pt])
            curve = _smooth(jittered)
            pts += curve if not pts else curve[1:]
        out = []
        for x, y in pts:
            x = x * aspect + slant * (0.5 - y)
            xr = 0.3 + (x - 0.3) * ca - (y - 0.5) * sa
            yr = 0.5 + (x - 0.3) * sa + (y - 0.5) * ca
            out.append((xr, yr))
        strokes.append(out)
    if two_stroke_gap:  # jitter may have closed the gap: move the second stroke clear again
        a, b = np.array(strokes[0]), np.array(strokes[1])
        d = np.linalg.norm(a[:, None, :] - b[None, :, :], axis=2)
        i, j = np.unravel_index(int(d.argmin()), d.shape)
        if d[i, j] < two_stroke_gap:
            away = b[j] - a[i]
            norm = float(np.linalg.norm(away))
            away = away / norm if norm > 1e-9 else np.array([1.0, 0.0])
            b = b + away * (two_stroke_gap - d[i, j] + 0.005)
            strokes[1] = [(float(x), float(y)) for x, y in b]
    return strokes


def render_strokes(
    strokes: list[Stroke], size: tuple[int, int], width: float, supersample: int = 4
) -> np.ndarray:
    """Coverage in [0, 1] of strokes (image coordinates) drawn with a round pen."""
    W, H = size
    s = supersample
    im = Image.new("L", (W * s, H * s), 0)
    draw = ImageDraw.Draw(im)
    w = max(1, round(width * s))
    r = w / 2.0
    for stroke in strokes:
        pts = [(x * s, y * s) for x, y in stroke]
        draw.line(pts, fill=255, width=w, joint="curve")
        for x, y in (pts[0], pts[-1]):
            draw.ellipse((x - r, y - r, x + r, y + r), fill=255)
    return np.asarray(im.resize((W, H), Image.BOX), np.float32) / 255.0


def _stroke_number(
    labels: list[int], rng: np.random.Generator, two_stroke: set[int]
) -> tuple[list[Stroke], int, int, float, list[int], list[tuple[int, int]]]:
    """Lay out template digits left to right; returns strokes in image coordinates."""
    h = float(rng.integers(40, 120))
    pen_w = max(2.0, h * rng.uniform(0.06, 0.13))
    margin = h * rng.uniform(0.3, 0.8)
    x = margin
    base = margin
    all_strokes: list[Stroke] = []
    split, ranges = [], []
    for k, d in enumerate(labels):
        # centre lines apart by the pen's width plus a visible gap of 3-8% of the height
        gap = pen_w / h + rng.uniform(0.03, 0.08) if k in two_stroke else None
        if gap:
            split.append(k)
        hk = h * rng.uniform(0.9, 1.1)
        unit = template_strokes(d, rng, two_stroke_gap=gap)
        xs = [p[0] for s in unit for p in s]
        x0, x1 = min(xs), max(xs)
        dy = rng.normal(0, 0.04 * h)
        ranges.append((len(all_strokes), len(all_strokes) + len(unit)))
        for s in unit:
            all_strokes.append(
                [((px - x0) * hk + x, (py * hk) + base + (h - hk) + dy) for px, py in s]
            )
        x += (x1 - x0) * hk + rng.uniform(0.2, 0.6) * h + pen_w
    W = int(x - rng.uniform(0.2, 0.6) * h + margin)
    H = int(h + 2 * margin)
    return all_strokes, W, H, pen_w, split, ranges


def _stroke_sample(labels: list[int], rng: np.random.Generator, two_stroke: set[int], kind: str):
    strokes, W, H, pen_w, split, ranges = _stroke_number(labels, rng, two_stroke)
    a = render_strokes(strokes, (W, H), pen_w)
    if rng.random() < 0.5:  # transparent canvas export, black ink
        rgba = np.zeros((H, W, 4), np.uint8)
        rgba[..., 3] = np.clip(a * 255 + 0.5, 0, 255).astype(np.uint8)
        im = Image.fromarray(rgba, "RGBA")
        bg = "transparent"
    else:  # white canvas, dark ink
        im = Image.fromarray(np.clip(255 - 235 * a + 0.5, 0, 255).astype(np.uint8), "L")
        bg = "white"
    number = "".join(str(d) for d in labels)
    meta = {"two_stroke_at": split, "digit_strokes": ranges, "background": bg, "pen": pen_w}
    return Sample(im, number, kind, strokes=strokes, meta=meta)


def gen_number_two_stroke(rng: np.random.Generator) -> Sample:
    """2-6 template digits, at least one a 4, 5 or 7 drawn as two strokes with a small gap."""
    n = int(rng.integers(2, 7))
    labels = [int(v) for v in rng.integers(0, 10, n)]
    k = int(rng.integers(n))
    labels[k] = int(rng.choice([4, 5, 7]))
    two = {i for i, d in enumerate(labels) if d in (4, 5, 7) and (i == k or rng.random() < 0.5)}
    kinds = "".join(sorted({str(labels[i]) for i in two}))
    return _stroke_sample(labels, rng, two, f"split {kinds}")


def gen_number_canvas_strokes(rng: np.random.Generator) -> Sample:
    """2-6 template digits on a canvas (4 and 7 are two strokes that cross, as usual)."""
    n = int(rng.integers(2, 7))
    labels = [int(v) for v in rng.integers(0, 10, n)]
    return _stroke_sample(labels, rng, set(), f"{n} digits")


def read_number_with_strokes(rec, image, strokes):
    """The "canvas with strokes" reading hook: uses ``strokes`` once the engine accepts them.

    Today ``read_number`` takes pixels only, so this reads ``image``; when
    ``rec.read_number`` gains a ``strokes=`` keyword it is passed the stroke list (each stroke a
    list of (x, y) image points, in drawing order).
    """
    try:
        params = inspect.signature(rec.read_number).parameters
    except (TypeError, ValueError):
        params = {}
    if "strokes" in params:
        return rec.read_number(image, strokes=strokes)
    return rec.read_number(image)


# --- no digit ---------------------------------------------------------------------------------

NO_DIGIT_KINDS = (
    "blank white",
    "uniform colour",
    "transparent",
    "gaussian noise",
    "uniform noise",
    "empty paper photo",
    "empty ruled photo",
    "empty squared photo",
)


def gen_no_digit(kind: str, rng: np.random.Generator, *, phone: bool | None = None) -> Sample:
    """An image with no digit in it."""
    H, W = int(rng.integers(28, 600)), int(rng.integers(28, 600))
    if kind == "blank white":
        im = Image.new("L", (W, H), 255)
    elif kind == "uniform colour":
        im = Image.new("RGB", (W, H), tuple(int(v) for v in rng.integers(0, 256, 3)))
    elif kind == "transparent":
        im = Image.new("RGBA", (280, 280), (0, 0, 0, 0))
    elif kind == "gaussian noise":
        mean, sd = rng.uniform(30, 225), rng.uniform(3, 40)
        im = Image.fromarray(np.clip(rng.normal(mean, sd, (H, W)), 0, 255).astype(np.uint8), "L")
    elif kind == "uniform noise":
        im = Image.fromarray(rng.integers(0, 256, (H, W), dtype=np.uint8), "L")
    else:
        drawn = rng.random() < 0.3
        phone = drawn if phone is None else phone
        H, W = _page_size(rng, phone)
        _, paper = _colour(PAPERS, rng)
        page = np.broadcast_to(paper, (H, W, 3)).copy()
        if kind != "empty paper photo":
            want = "squared" if kind == "empty squared photo" else "ruled"
            for _ in range(20):  # the line kind is random inside: draw until it is the one asked
                sub = np.random.default_rng(rng.integers(1 << 31))
                lined, got, _ = _notebook_lines(page, sub, int(H * rng.uniform(0.08, 0.3)), None)
                if got.startswith(want):
                    break
            page = lined
        im, _ = photo_finish(page, rng, paper)
    return Sample(im, None, kind)


# --- the registry ---------------------------------------------------------------------------

DIGIT_CATEGORIES: dict[str, Callable[[np.ndarray, int, np.random.Generator], Sample]] = {
    "marker": gen_marker,
    "border": gen_border,
    "scale": gen_scale,
    "photo": gen_photo,
    "notebook": gen_notebook,
    "soft": gen_soft,
    "noise": gen_noise,
    "canvas": gen_canvas,
}


def contact_sheet(samples: list[Sample], path, cell: int = 200, columns: int = 6) -> None:
    """Thumbnails of ``samples`` (transparency over a checkerboard) with labels, in one PNG."""
    rows = max(1, math.ceil(len(samples) / columns))
    sheet = Image.new("RGB", (columns * cell, rows * (cell + 16)), (90, 90, 90))
    draw = ImageDraw.Draw(sheet)
    for i, s in enumerate(samples):
        im = s.image
        if im.mode == "RGBA":
            checker = Image.new("RGB", im.size, (200, 200, 200))
            cd = ImageDraw.Draw(checker)
            for y in range(0, im.size[1], 16):
                for x in range((y // 16) % 2 * 16, im.size[0], 32):
                    cd.rectangle((x, y, x + 15, y + 15), fill=(150, 150, 150))
            checker.paste(im, (0, 0), im)
            im = checker
        im = im.convert("RGB")
        k = (cell - 4) // max(im.size)
        if k >= 2:  # small images (UCI at 16 px, ...) enlarged so their pixels can be seen
            im = im.resize((im.size[0] * k, im.size[1] * k), Image.NEAREST)
        im.thumbnail((cell - 4, cell - 4), Image.LANCZOS)
        x, y = (i % columns) * cell, (i // columns) * (cell + 16)
        sheet.paste(im, (x + 2, y + 2))
        text = f"{s.label} {s.kind} {s.image.size[0]}x{s.image.size[1]}"
        draw.text((x + 2, y + cell), text[:34], fill=(255, 255, 255))
    sheet.save(path)
