"""Batched augmentation: shapes, value range, determinism, and that it really transforms."""

from __future__ import annotations

import torch

from digitlab.training.augment import AugmentConfig, augment_batch


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
