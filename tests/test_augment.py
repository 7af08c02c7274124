"""Batched augmentation and degradation: shapes, value range, determinism, and that each
transform really does what it says (blur softens, dilation thickens, clean rows stay clean)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from digitlab.training.augment import (
    AugmentConfig,
    DegradeConfig,
    augment_batch,
    degrade_batch,
    dilate,
    erode,
    gaussian_blur,
    resample,
)


def _digits(mnist, n: int = 64) -> torch.Tensor:
    return torch.from_numpy(mnist.train_images[:n]).unsqueeze(1).float() / 255


def test_shape_and_range(mnist) -> None:
    x = _digits(mnist)
    for cfg in (AugmentConfig(), AugmentConfig(elastic_alpha=2.0)):
        y = augment_batch(x, cfg, torch.Generator().manual_seed(0))
        assert y.shape == x.shape and y.dtype == x.dtype
        assert y.min() >= 0 and y.max() <= 1


def test_same_seed_same_batch_other_seed_differs(mnist) -> None:
    x = _digits(mnist)
    cfg = AugmentConfig(elastic_alpha=2.0)
    a = augment_batch(x, cfg, torch.Generator().manual_seed(1))
    b = augment_batch(x, cfg, torch.Generator().manual_seed(1))
    c = augment_batch(x, cfg, torch.Generator().manual_seed(2))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_zero_ranges_are_identity(mnist) -> None:
    x = _digits(mnist)
    cfg = AugmentConfig(rotation_deg=0, scale=(1, 1), translate=0, shear_deg=0)
    y = augment_batch(x, cfg, torch.Generator().manual_seed(0))
    torch.testing.assert_close(y, x, atol=1e-5, rtol=0)


def test_transforms_move_ink_but_keep_most_of_it(mnist) -> None:
    x = _digits(mnist)
    y = augment_batch(x, AugmentConfig(), torch.Generator().manual_seed(0))
    changed = (y - x).abs().flatten(1).sum(1) > 1.0
    assert changed.float().mean() > 0.9  # nearly every image is actually transformed
    ratio = y.flatten(1).sum(1) / x.flatten(1).sum(1)  # ink mass ~ scale^2, within 0.85..1.15
    assert ratio.min() > 0.6 and ratio.max() < 1.5


def test_translation_only_shifts_the_centre_of_mass(mnist) -> None:
    x = _digits(mnist, 32)
    cfg = AugmentConfig(rotation_deg=0, scale=(1, 1), translate=0.1, shear_deg=0)
    y = augment_batch(x, cfg, torch.Generator().manual_seed(3))
    cols = torch.arange(28.0)

    def com_x(t: torch.Tensor) -> torch.Tensor:
        w = t.squeeze(1).sum(1)  # (N, 28) column mass
        return (w * cols).sum(1) / w.sum(1)

    shift = (com_x(y) - com_x(x)).abs()
    assert shift.max() <= 0.1 * 28 + 1.0  # at most 2.8 px (+ resampling slack)
    assert shift.mean() > 0.3  # and it does move


# -- degradations ------------------------------------------------------------------------------

_ALL_OFF = dict(p_stroke=0, p_warp=0, p_resample=0, p_blur=0, p_contrast=0, p_gamma=0, p_noise=0)


def _only(**kw) -> DegradeConfig:
    """A config that degrades every image with just the steps named in ``kw``."""
    return DegradeConfig(**{**_ALL_OFF, "fraction": 1.0, **kw})


def _rows_equal(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a == b).flatten(1).all(1)


def test_degrade_shape_range_dtype(mnist) -> None:
    x = _digits(mnist, 128)
    for cfg in (DegradeConfig(), DegradeConfig(fraction=1.0), _only(p_noise=1.0)):
        y = degrade_batch(x, cfg, torch.Generator().manual_seed(0))
        assert y.shape == x.shape and y.dtype == x.dtype
        assert y.min() >= 0 and y.max() <= 1
        assert torch.isfinite(y).all()


def test_degrade_same_seed_same_batch_other_seed_differs(mnist) -> None:
    x = _digits(mnist, 128)
    cfg = DegradeConfig()
    a = degrade_batch(x, cfg, torch.Generator().manual_seed(1))
    b = degrade_batch(x, cfg, torch.Generator().manual_seed(1))
    c = degrade_batch(x, cfg, torch.Generator().manual_seed(2))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_degrade_draws_do_not_depend_on_the_data(mnist) -> None:
    # Same generator state after two different batches: resume replays the same stream.
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    degrade_batch(_digits(mnist, 64), DegradeConfig(), g1)
    degrade_batch(torch.zeros(64, 1, 28, 28), DegradeConfig(), g2)
    assert torch.equal(torch.rand(8, generator=g1), torch.rand(8, generator=g2))


def test_clean_fraction_stays_bit_identical(mnist) -> None:
    x = _digits(mnist, 512)
    y = degrade_batch(x, DegradeConfig(fraction=0.5), torch.Generator().manual_seed(0))
    same = _rows_equal(x, y)
    assert 0.4 < same.float().mean() < 0.65  # ~half clean (plus degraded rows that drew no step)
    assert torch.equal(degrade_batch(x, DegradeConfig(fraction=0.0), torch.Generator()), x)
    # every row of a fully degraded batch whose every step is certain is changed
    z = degrade_batch(x, _only(p_blur=1.0), torch.Generator().manual_seed(0))
    assert not _rows_equal(x, z).any()


def test_blur_lowers_the_peak_and_spreads_the_ink(mnist) -> None:
    x = _digits(mnist)
    y = gaussian_blur(x, 1.2)
    peak_x, peak_y = x.flatten(1).amax(1), y.flatten(1).amax(1)
    assert (peak_y < peak_x).all()
    assert ((y > 0.05).flatten(1).sum(1) > (x > 0.05).flatten(1).sum(1)).all()
    # a normalised kernel keeps the ink mass (but for what spills past a border-touching digit)
    torch.testing.assert_close(y.sum((1, 2, 3)), x.sum((1, 2, 3)), rtol=1e-2, atol=0)
    # one sigma per image: a tiny sigma leaves its image (almost) alone
    z = gaussian_blur(x[:2], torch.tensor([1e-3, 1.5]))
    torch.testing.assert_close(z[0], x[0], atol=1e-5, rtol=0)
    assert z[1].amax() < x[1].amax()
    # and through degrade_batch
    d = degrade_batch(x, _only(p_blur=1.0, blur_sigma=(1.0, 1.0)), torch.Generator())
    torch.testing.assert_close(d, gaussian_blur(x, 1.0).clamp(0, 1))


def test_dilation_thickens_and_erosion_thins(mnist) -> None:
    x = _digits(mnist)
    thick, thin = dilate(x), erode(x)
    assert (thick >= x).all() and (thin <= x).all()
    ink = lambda t: (t > 0.5).flatten(1).sum(1)  # noqa: E731
    assert (ink(thick) > ink(x)).all() and (ink(thin) < ink(x)).all()
    # degrade_batch: each image is either thickened or thinned, both kinds occur
    cfg = _only(p_stroke=1.0, dilate=(1.0, 1.0), erode=(0.5, 0.5))
    y = degrade_batch(x, cfg, torch.Generator().manual_seed(0))
    up = (y >= x).flatten(1).all(1)
    down = (y <= x).flatten(1).all(1)
    assert (up | down).all() and up.any() and down.any()
    torch.testing.assert_close(y[up], thick[up])
    torch.testing.assert_close(y[~up], (x + 0.5 * (thin - x))[~up])


def test_low_resolution_softens(mnist) -> None:
    x = _digits(mnist)

    def grey(t: torch.Tensor) -> torch.Tensor:
        return ((t > 0.1) & (t < 0.9)).flatten(1).sum(1) / (t > 0.1).flatten(1).sum(1)

    for down in ("area", "bilinear"):
        for up in ("bilinear", "bicubic"):
            y = resample(x, 10, down, up)
            assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1
            # softer: more of the ink is grey edge rather than full stroke or paper
            assert (grey(y) > grey(x)).float().mean() > 0.9
            assert ((y - x).abs().flatten(1).mean(1) > 0.02).all()
    y = degrade_batch(x, _only(p_resample=1.0), torch.Generator().manual_seed(0))
    assert not _rows_equal(x, y).any()


def test_contrast_gamma_noise_and_warp(mnist) -> None:
    x = _digits(mnist)
    y = degrade_batch(x, _only(p_contrast=1.0, contrast=(0.4, 0.4)), torch.Generator())
    torch.testing.assert_close(y, x * 0.4)  # paper stays 0, ink peaks at 0.4
    y = degrade_batch(x, _only(p_gamma=1.0, gamma=(2.0, 2.0)), torch.Generator())
    torch.testing.assert_close(y, x**2)
    y = degrade_batch(x, _only(p_noise=1.0), torch.Generator().manual_seed(0))
    assert ((y - x).abs().flatten(1).mean(1) > 0.005).all()
    assert (y - x).mean().abs() < 0.05  # noise, not a shift (clipping at 0 lifts it slightly)
    # a warp moves ink around but keeps most of it
    y = degrade_batch(x, _only(p_warp=1.0), torch.Generator().manual_seed(0))
    assert not _rows_equal(x, y).any()
    ratio = y.sum((1, 2, 3)) / x.sum((1, 2, 3))
    assert ratio.min() > 0.7 and ratio.max() < 1.3


def test_zero_warp_is_identity(mnist) -> None:
    x = _digits(mnist)
    cfg = _only(p_warp=1.0, perspective=0.0, elastic_alpha=0.0)
    y = degrade_batch(x, cfg, torch.Generator())
    torch.testing.assert_close(y, x, atol=1e-5, rtol=0)


def test_degrade_option_reaches_the_train_config() -> None:
    from digitlab.apps.cli import build_parser
    from digitlab.apps.commands.train import config_from_args
    from digitlab.core.errors import DigitlabError
    from digitlab.training.trainer import TrainConfig, degrade_config

    parse = build_parser().parse_args
    assert config_from_args(parse(["train"])).degrade == 0.0
    assert degrade_config(config_from_args(parse(["train"]))) is None
    cfg = config_from_args(parse(["train", "--degrade"]))
    assert cfg.degrade == 0.5 and degrade_config(cfg) == DegradeConfig(fraction=0.5)
    cfg = config_from_args(parse(["train", "--degrade", "0.3"]))
    assert cfg.to_dict()["degrade"] == 0.3  # recorded in config.json
    assert TrainConfig.from_dict(cfg.to_dict()).degrade == 0.3
    with pytest.raises(DigitlabError, match="--degrade"):
        TrainConfig(degrade=1.5)
    assert dataclasses.fields(DegradeConfig)  # frozen dataclass, hashable ranges
