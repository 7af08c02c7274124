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
