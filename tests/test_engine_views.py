"""Engine views (``digitlab train --engine-views``): training digits rendered as users' images
and preprocessed by the engine, on real MNIST."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from digitlab.api import load_model
from digitlab.apps.cli import main
from digitlab.training.engine_views import (
    LOWRES_OUT,
    MARKER_SIDE,
    SOFT_SIDE,
    engine_views,
    render,
)
from digitlab.training.trainer import TrainConfig, Trainer, train


def test_views_are_seeded_model_inputs_of_the_given_digits(mnist) -> None:
    digits, labels = mnist.train_images[:400], mnist.train_labels[:400]
    views, got, rejected = engine_views(digits, labels, 90, seed=3)
    assert views.shape == (90, 28, 28) and views.dtype == np.uint8 and got.shape == (90,)
    again = engine_views(digits, labels, 90, seed=3)
    assert np.array_equal(views, again[0]) and np.array_equal(got, again[1])
    assert not np.array_equal(views, engine_views(digits, labels, 90, seed=4)[0])
    # What the engine hands the network: ink at full strength, fitted into MNIST's 20x20 box.
    assert (views.reshape(90, -1).max(axis=1) > 128).all()
    rows, cols = views.max(axis=2) > 0, views.max(axis=1) > 0
    assert (rows.sum(axis=1) <= 20).all() and (cols.sum(axis=1) <= 20).all()
    assert set(got.tolist()) <= set(labels.tolist())
    assert 0 <= rejected < 90
    with pytest.raises(ValueError, match="at least one digit"):
        engine_views(digits[:0], labels[:0], 5, seed=0)


@pytest.mark.parametrize(
    ("kind", "sides"), [("lowres", LOWRES_OUT), ("soft", SOFT_SIDE), ("marker", MARKER_SIDE)]
)
def test_each_kind_is_an_image_of_a_readable_digit(kind, sides, mnist) -> None:
    """Rendered from test digits, each kind is a greyscale image of its sizes that the bundled
    model mostly reads right: the digit survives the rendering and the labels are its own.
    (Measured with the bundled model: lowres 56, soft 54, marker 59 of these 60.)"""
    rng = np.random.default_rng(11)
    recognizer = load_model()
    right = 0
    for i in range(60):
        image = render(mnist.test_images[i], kind, rng)
        assert image.mode == "L" and sides[0] - 1 <= max(image.size) <= sides[1] + 1
        right += recognizer.predict(image).digit == mnist.test_labels[i]
    assert right >= 51, right


def test_a_run_with_views_adds_them_to_every_batch(tmp_path: Path, mnist) -> None:
    cfg = TrainConfig(
        init="default",
        epochs=1,
        train_samples=600,
        val_size=500,
        batch_size=64,
        lr=1e-4,
        eval_test=False,
        engine_views=0.5,
        run_dir=str(tmp_path / "views"),
    )
    trainer = Trainer(cfg, tmp_path / "direct", data=mnist)
    assert trainer.view_pool is not None
    pool, labels = trainer.view_pool
    assert pool.shape == (600, 1, 28, 28) and labels.shape == (600,)
    result = train(cfg, data=mnist)
    assert result.history[-1]["val_acc"] > 0.98


def test_a_bad_fraction_is_a_clear_error(capsys, monkeypatch, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--engine-views", "2"]) == 2
    assert "--engine-views must be in [0, 1], got 2.0" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
