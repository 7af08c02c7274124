"""Outlier exposure (``digitlab train --outliers``, ``--init``): the pieces, and what a
fine-tune with them does to a network, on real MNIST."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from digitlab.apps.cli import main
from digitlab.core.errors import DigitlabError
from digitlab.engine.calibrate import logsumexp
from digitlab.training.checkpoint import build_model, load_checkpoint
from digitlab.training.evaluate import predict_logits
from digitlab.training.outliers import (
    SIDE,
    _big,
    _ink_columns,
    fragment,
    outlier_pieces,
    pair,
)
from digitlab.training.trainer import TrainConfig, train


def _ink_width(a: np.ndarray) -> int:
    x0, x1 = _ink_columns(a)
    return x1 - x0


def test_pieces_are_two_digits_or_part_of_one(mnist) -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        a, b = (_big(mnist.train_images[i]) for i in rng.integers(0, 60000, 2))
        both = pair(a, b, rng)
        # Both digits' ink is there, side by side, overlapping by at most a quarter of a digit
        # (a narrow 1 may then lie within its neighbour's columns).
        assert both.sum() >= max(a.sum(), b.sum())
        assert _ink_width(both) >= max(_ink_width(a), _ink_width(b))
        assert _ink_width(both) >= _ink_width(a) + _ink_width(b) - 0.25 * SIDE - 2
        part = fragment(a, rng)
        assert 0 <= part.sum() < a.sum() and _ink_width(part) < _ink_width(a)


def test_outlier_pieces_are_seeded_28x28_digit_sized_images(mnist) -> None:
    digits = mnist.train_images[:500]
    pieces = outlier_pieces(digits, 300, seed=3)
    assert pieces.shape == (300, 28, 28) and pieces.dtype == np.uint8
    assert np.array_equal(pieces, outlier_pieces(digits, 300, seed=3))
    assert not np.array_equal(pieces, outlier_pieces(digits, 300, seed=4))
    # Normalised like a digit to read: ink inside MNIST's 20x20 box, never empty.
    assert (pieces.reshape(300, -1).max(axis=1) > 128).all()
    rows = pieces.max(axis=2) > 0
    cols = pieces.max(axis=1) > 0
    assert (rows.sum(axis=1) <= 20).all() and (cols.sum(axis=1) <= 20).all()
    with pytest.raises(ValueError, match="at least one digit"):
        outlier_pieces(digits[:0], 5, seed=0)


def _auroc(high: np.ndarray, low: np.ndarray) -> float:
    """Probability that a value of ``high`` exceeds one of ``low`` (ties count half)."""
    above = (high[:, None] > low[None, :]).mean()
    return float(above + 0.5 * (high[:, None] == low[None, :]).mean())


def _energies(ckpt_path: Path, images: np.ndarray) -> np.ndarray:
    """logsumexp of the raw logits (temperature 1: each run calibrates its own)."""
    return logsumexp(predict_logits(build_model(load_checkpoint(ckpt_path)), images).numpy())


def test_fine_tune_with_outliers_tells_pieces_from_digits(tmp_path: Path, mnist) -> None:
    """From the bundled model, one short epoch with outlier pieces vs the same without: the
    energy of the logits separates whole digits from pieces better, the digits stay read, and
    --init keeps the batch-norm statistics."""
    base = dict(
        epochs=1,
        train_samples=3000,
        val_size=1000,
        batch_size=64,
        lr=1e-3,
        eval_test=False,
        init="default",
    )
    with_oe = train(TrainConfig(**base, outliers=0.5, run_dir=str(tmp_path / "oe")), data=mnist)
    without = train(TrainConfig(**base, run_dir=str(tmp_path / "plain")), data=mnist)
    assert with_oe.history[-1]["val_acc"] > 0.98 and without.history[-1]["val_acc"] > 0.98
    # Held-out pieces (another seed, test digits) against whole test digits.
    pieces = outlier_pieces(mnist.test_images[:2000], 400, seed=123)
    digits = mnist.test_images[:400]
    auc = {
        name: _auroc(_energies(r.best_path, digits), _energies(r.best_path, pieces))
        for name, r in (("oe", with_oe), ("plain", without))
    }
    # Measured: 0.956 with the pieces, 0.905 without.
    assert auc["oe"] > auc["plain"] + 0.025, auc
    init = load_checkpoint("default")["state_dict"]
    tuned = load_checkpoint(with_oe.best_path)["state_dict"]
    stats = [k for k in init if k.endswith(("running_mean", "running_var"))]
    assert stats and all(torch.equal(init[k], tuned[k]) for k in stats)
    assert not torch.equal(init["fc.weight"], tuned["fc.weight"])


def test_init_must_match_the_model(tmp_path: Path) -> None:
    with pytest.raises(DigitlabError, match="a digitnet checkpoint, but --model is mlp_small"):
        train(TrainConfig(model="mlp_small", init="default", run_dir=str(tmp_path / "r")))
    with pytest.raises(DigitlabError, match="the checkpoint's network has width=32, not width=16"):
        train(TrainConfig(init="default", model_config={"width": 16}, run_dir=str(tmp_path / "r")))
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--init", "missing.pt"], "missing.pt: no such file"),
        (["train", "--outliers", "2"], "--outliers must be in [0, 1], got 2.0"),
    ],
)
def test_bad_outlier_options_are_clear_errors(argv, message, capsys, monkeypatch, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_a_trainer_built_directly_starts_from_init(tmp_path: Path, mnist) -> None:
    from digitlab.training.trainer import Trainer

    cfg = TrainConfig(init="default", train_samples=200, val_size=100, eval_test=False)
    trainer = Trainer(cfg, tmp_path / "run", data=mnist)
    init = load_checkpoint("default")["state_dict"]
    assert torch.equal(trainer.model.state_dict()["fc.weight"], init["fc.weight"])
    assert cfg.model_config == load_checkpoint("default")["model_config"]
