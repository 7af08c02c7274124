"""Batched data augmentation in torch, on the training device: no per-sample Python loop.

One call transforms a whole batch ``(N, 1, H, W)`` float in [0, 1] with a random affine map per
image (rotation, scale, translation, shear) and, optionally, an elastic distortion (Simard et
al. 2003): a random displacement field smoothed by a Gaussian. Both are folded into a single
sampling grid, so the image is resampled once (one ``grid_sample``), which keeps strokes sharp
and costs about as much as one small convolution.

Randomness comes from an explicit ``torch.Generator``, so a seed gives the same batch back
(the training loop derives one generator per epoch, which makes ``--resume`` exact).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges of the random transforms (each sampled uniformly, independently per image).

    Defaults are MNIST-sized: digits in the set already vary by about +-15 degrees of slant and
    +-2 px of centring, so we stay near that and do not teach the net to accept a 6 for a 9.
    """

    rotation_deg: float = 12.0
    scale: tuple[float, float] = (0.85, 1.15)
    translate: float = 0.1  # fraction of the image size (0.1 * 28 = 2.8 px)
    shear_deg: float = 10.0
    elastic_alpha: float = 0.0  # largest displacement in pixels; 0 disables elastic
    elastic_sigma: float = 8.0  # wavelength scale of the displacement field, in pixels


def _uniform(n: int, low: float, high: float, gen: torch.Generator, device) -> torch.Tensor:
    return torch.rand(n, generator=gen, device=device) * (high - low) + low


def affine_matrices(
    n: int, cfg: AugmentConfig, gen: torch.Generator, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """``(n, 2, 3)`` random affine matrices in ``affine_grid``'s normalised coordinates."""
    rot = torch.deg2rad(_uniform(n, -cfg.rotation_deg, cfg.rotation_deg, gen, device))
    shear = torch.deg2rad(_uniform(n, -cfg.shear_deg, cfg.shear_deg, gen, device))
    # Sampling grid maps output -> input coordinates, so dividing by the scale enlarges the digit.
    inv_scale = 1.0 / _uniform(n, cfg.scale[0], cfg.scale[1], gen, device)
    # Translation in normalised units: the image spans [-1, 1], i.e. 2 units.
    tx = _uniform(n, -2 * cfg.translate, 2 * cfg.translate, gen, device)
    ty = _uniform(n, -2 * cfg.translate, 2 * cfg.translate, gen, device)
    cos, sin, tan = torch.cos(rot), torch.sin(rot), torch.tan(shear)
    # rotation @ shear(x by y), scaled
    a = (cos) * inv_scale
    b = (cos * tan - sin) * inv_scale
    c = (sin) * inv_scale
    d = (sin * tan + cos) * inv_scale
    theta = torch.stack(
        [torch.stack([a, b, tx], dim=1), torch.stack([c, d, ty], dim=1)], dim=1
    )  # (n, 2, 3)
    return theta


def elastic_field(
    n: int, size: tuple[int, int], cfg: AugmentConfig, gen: torch.Generator, device
) -> torch.Tensor:
    """``(n, H, W, 2)`` smooth random displacement, in normalised grid units.

    Simard et al. blur white noise with a Gaussian (sigma 4 px, alpha 34): blurring shrinks the
    noise to a field that varies over ~8-10 px with about 2 px amplitude. We draw that directly,
    20x cheaper: uniform noise on a coarse grid of knots ``elastic_sigma`` pixels apart (5x5 for
    28x28 and 8 px), upsampled bicubically, scaled to at most ``elastic_alpha`` pixels. Knots
    4 px apart at full amplitude wiggle strokes far more than MNIST's own variation (and cost
    accuracy), so the spacing stays at about a stroke's length.
    """
    h, w = size
    knots = (
        max(2, math.ceil(h / cfg.elastic_sigma) + 1),
        max(2, math.ceil(w / cfg.elastic_sigma) + 1),
    )
    coarse = torch.rand(n, 2, *knots, generator=gen, device=device) * 2 - 1
    field = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=True)
    field = field.permute(0, 2, 3, 1)  # (n, H, W, 2): x and y displacement
    # alpha pixels -> normalised units (the image spans 2 units over `size` pixels).
    scale = torch.tensor([2.0 / w, 2.0 / h], device=device) * cfg.elastic_alpha
    return field * scale


def augment_batch(x: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator) -> torch.Tensor:
    """Randomly transform a batch ``(N, 1, H, W)`` float in [0, 1]; returns the same shape.

    Paper stays 0 outside the image (zeros padding), which matches MNIST's black background.
    """
    n, _, h, w = x.shape
    theta = affine_matrices(n, cfg, gen, x.device).to(x.dtype)
    grid = F.affine_grid(theta, [n, 1, h, w], align_corners=False)
    if cfg.elastic_alpha > 0:
        grid = grid + elastic_field(n, (h, w), cfg, gen, x.device).to(x.dtype)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out.clamp_(0.0, 1.0)


# --------------------------------------------------------------------------------------------
# Degradations: make clean MNIST look like what real images become after preprocessing
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DegradeConfig:
    """Degradations of real 28x28 inputs (soft rescans, odd pens, faint ink, JPEG noise).

    Each range is sampled uniformly, per image; each step happens to a degraded image with its
    own probability. ``fraction`` of the batch is degraded at all; the rest stays bit-identical,
    so the net keeps seeing clean MNIST half of the time. Order is the physical one: pen, then
    paper warp, then the low-resolution capture and its enlargement, then the optics' blur,
    then the exposure (contrast, gamma), then sensor/JPEG noise.
    """

    fraction: float = 0.5  # share of the batch degraded; the rest is returned untouched
    # stroke width: 3x3 max-pool (thicker pen) or min-pool (hairline), blended with the input
    p_stroke: float = 0.4
    dilate: tuple[float, float] = (0.3, 1.0)  # blend toward the 3x3 dilation: 1 = +1 px per side
    erode: tuple[float, float] = (0.2, 0.6)  # blend toward the 3x3 erosion (full would erase 1s)
    # warp: small projective (keystone) term plus a smooth elastic field, one grid_sample
    p_warp: float = 0.4
    perspective: float = 0.08  # |projective coefficient| in normalised units: +-8% size at edges
    elastic_alpha: float = 1.0  # largest elastic displacement, pixels (augment's knot spacing)
    # low resolution: shrink to a few pixels, enlarge back (how small scans reach 28x28)
    p_resample: float = 0.4
    resample_sizes: tuple[int, ...] = (8, 10, 12, 14, 18)  # side in px after shrinking
    # (down: area or bilinear; up: bilinear or bicubic, each 50/50 per image)
    # optics / anti-aliasing: Gaussian blur
    p_blur: float = 0.4
    blur_sigma: tuple[float, float] = (0.4, 1.3)  # pixels; 1.3 px makes a 2 px stroke ~5 px soft
    # exposure: faint ink (peak scaled down) and gamma on ink levels
    p_contrast: float = 0.4
    contrast: tuple[float, float] = (0.35, 1.0)  # ink peak after scaling (paper stays 0)
    p_gamma: float = 0.3
    gamma: tuple[float, float] = (0.6, 1.7)  # x ** gamma: <1 fattens soft edges, >1 thins them
    # sensor / JPEG noise: additive Gaussian, clipped to [0, 1]
    p_noise: float = 0.3
    noise_sigma: tuple[float, float] = (0.02, 0.10)  # standard deviation, in ink units


def _chance(n: int, p: float, gen: torch.Generator, device) -> torch.Tensor:
    """``(n, 1, 1, 1)`` bool: which images take a step of probability ``p``."""
    return (torch.rand(n, generator=gen, device=device) < p).view(n, 1, 1, 1)


def _per_image(v: torch.Tensor) -> torch.Tensor:
    return v.view(-1, 1, 1, 1)


def dilate(x: torch.Tensor) -> torch.Tensor:
    """3x3 grey dilation (thicker strokes: ink = 1 on paper = 0)."""
    return F.max_pool2d(x, 3, stride=1, padding=1)


def erode(x: torch.Tensor) -> torch.Tensor:
    """3x3 grey erosion (thinner strokes)."""
    return -F.max_pool2d(-x, 3, stride=1, padding=1)


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor | float, radius: int = 4) -> torch.Tensor:
    """Separable Gaussian blur with one ``sigma`` (pixels) per image, batched as grouped convs."""
    n, c, h, w = x.shape
    sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).expand(n).clamp_min(1e-3)
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / sigma[:, None]) ** 2)
    k = (k / k.sum(1, keepdim=True)).repeat_interleave(c, 0)  # (n*c, 2r+1)
    y = x.reshape(1, n * c, h, w)
    y = F.conv2d(F.pad(y, (radius, radius, 0, 0)), k[:, None, None, :], groups=n * c)
    y = F.conv2d(F.pad(y, (0, 0, radius, radius)), k[:, None, :, None], groups=n * c)
    return y.reshape(n, c, h, w)


def resample(x: torch.Tensor, size: int, down: str = "area", up: str = "bilinear") -> torch.Tensor:
    """Shrink to ``size`` x ``size`` and enlarge back (a low-resolution capture)."""
    h, w = x.shape[-2:]
    kw = {} if down == "area" else {"align_corners": False, "antialias": False}
    small = F.interpolate(x, size=(size, size), mode=down, **kw)
    return F.interpolate(small, size=(h, w), mode=up, align_corners=False).clamp(0.0, 1.0)


def perspective_grid(
    p: torch.Tensor, coarse: torch.Tensor, elastic_alpha: float, size: tuple[int, int]
) -> torch.Tensor:
    """``(n, H, W, 2)`` sampling grid: a keystone (projective) warp plus an elastic wiggle.

    ``p`` ``(n, 2)``: projective coefficients (input = output / (1 + px*x + py*y), normalised
    coordinates); ``coarse`` ``(n, 2, kh, kw)``: elastic knot displacements in [-1, 1], scaled to
    at most ``elastic_alpha`` pixels (as in :func:`elastic_field`).
    """
    n, (h, w) = p.shape[0], size
    eye = torch.eye(2, 3, dtype=p.dtype, device=p.device).expand(n, 2, 3)
    base = F.affine_grid(eye, [n, 1, h, w], align_corners=False)  # (n, H, W, 2)
    grid = base / (1.0 + (base * p[:, None, None, :]).sum(-1, keepdim=True))
    field = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=True)
    scale = torch.tensor([2.0 / w, 2.0 / h], dtype=p.dtype, device=p.device) * elastic_alpha
    return grid + field.permute(0, 2, 3, 1) * scale


def _where(y: torch.Tensor, take: torch.Tensor, fn) -> torch.Tensor:
    """``y`` with ``fn(y[i], i)`` put in the rows ``i`` where ``take``: a step is computed only
    for the images that drew it (one that few images take costs little)."""
    idx = take.view(-1).nonzero().squeeze(1)
    if idx.numel() == 0:
        return y
    return y.index_copy(0, idx, fn(y[idx], idx).to(y.dtype))


def degrade_batch(x: torch.Tensor, cfg: DegradeConfig, gen: torch.Generator) -> torch.Tensor:
    """Degrade a random ``cfg.fraction`` of a batch ``(N, 1, H, W)`` float in [0, 1].

    All random numbers are drawn for the whole batch, in a fixed order, before they are used,
    so the draws do not depend on the data and one generator state gives one batch back. Each
    step is then computed, batched, on the images that drew it (no per-sample loop). Images
    outside the fraction come back bit-identical.
    """
    n, _, h, w = x.shape
    dev, dt = x.device, x.dtype

    def u(rng: tuple[float, float]) -> torch.Tensor:
        return _per_image(_uniform(n, rng[0], rng[1], gen, dev).to(dt))

    # -- every draw, in a fixed order --
    hit = _chance(n, cfg.fraction, gen, dev)
    do_stroke = hit & _chance(n, cfg.p_stroke, gen, dev)
    thicker = _chance(n, 0.5, gen, dev)
    t_dilate, t_erode = u(cfg.dilate), u(cfg.erode)
    do_warp = hit & _chance(n, cfg.p_warp, gen, dev)
    persp = ((torch.rand(n, 2, generator=gen, device=dev) * 2 - 1) * cfg.perspective).to(dt)
    knots = (max(2, math.ceil(h / 8.0) + 1), max(2, math.ceil(w / 8.0) + 1))
    coarse = (torch.rand(n, 2, *knots, generator=gen, device=dev) * 2 - 1).to(dt)
    do_resample = hit & _chance(n, cfg.p_resample, gen, dev)
    which = torch.randint(len(cfg.resample_sizes), (n,), generator=gen, device=dev)
    area_down = torch.rand(n, generator=gen, device=dev) < 0.5
    bilinear_up = torch.rand(n, generator=gen, device=dev) < 0.5
    do_blur = hit & _chance(n, cfg.p_blur, gen, dev)
    sigma = u(cfg.blur_sigma).view(n)
    do_gamma = hit & _chance(n, cfg.p_gamma, gen, dev)
    gamma = u(cfg.gamma)
    do_contrast = hit & _chance(n, cfg.p_contrast, gen, dev)
    contrast = u(cfg.contrast)
    do_noise = hit & _chance(n, cfg.p_noise, gen, dev)
    noise = torch.randn(x.shape, generator=gen, device=dev, dtype=dt) * u(cfg.noise_sigma)

    # -- the steps, in physical order --
    y = x

    def stroke(v: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        thick = dilate(v) - v  # >= 0
        thin = erode(v) - v  # <= 0
        return torch.where(thicker[i], v + t_dilate[i] * thick, v + t_erode[i] * thin)

    y = _where(y, do_stroke, stroke)
    y = _where(
        y,
        do_warp,
        lambda v, i: F.grid_sample(
            v,
            perspective_grid(persp[i], coarse[i], cfg.elastic_alpha, (h, w)),
            mode="bilinear",
            padding_mode="zeros",
            align_corners=False,
        ),
    )
    for k, size in enumerate(cfg.resample_sizes):
        for down in ("area", "bilinear"):
            for up in ("bilinear", "bicubic"):
                sel = (
                    do_resample.view(n)
                    & (which == k)
                    & (area_down == (down == "area"))
                    & (bilinear_up == (up == "bilinear"))
                )
                y = _where(y, sel, lambda v, i, s=size, d=down, u_=up: resample(v, s, d, u_))
    y = _where(y, do_blur, lambda v, i: gaussian_blur(v, sigma[i]))
    y = _where(y, do_gamma, lambda v, i: v.clamp(0.0, 1.0) ** gamma[i])
    y = _where(y, do_contrast, lambda v, i: v * contrast[i])
    y = _where(y, do_noise, lambda v, i: v + noise[i])
    return torch.where(hit, y.clamp(0.0, 1.0), x)
