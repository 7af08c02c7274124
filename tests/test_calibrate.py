"""Calibration's promise: a kept temperature lowers the held-out NLL (engine/calibrate.py)."""

from __future__ import annotations

import numpy as np

from digitlab.engine import calibrate


def _overconfident(n: int = 2000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logits of a model that is right ~90% of the time but claims ~100%."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    predicted = np.where(rng.random(n) < 0.9, labels, rng.integers(0, 10, n))
    logits = rng.normal(0, 1, (n, 10))
    logits[np.arange(n), predicted] += 12.0
    return logits, labels


def test_fitted_temperature_lowers_validation_nll_and_is_kept():
    logits, labels = _overconfident()
    record = calibrate.calibration_record(logits, labels)
    assert record["temperature_kept"] == 1.0
    assert record["temperature"] > 1.5  # an over-confident model is softened
    assert record["val_nll_after"] < record["val_nll_before"]
    assert record["val_nll_after"] == calibrate.nll(logits, labels, record["temperature"])


def test_a_temperature_that_does_not_lower_nll_is_not_kept(monkeypatch):
    logits, labels = _overconfident()
    # A fit that went wrong (T far too small: even more confident) must not be stored.
    monkeypatch.setattr(calibrate, "fit_temperature", lambda x, y: 0.1)
    record = calibrate.calibration_record(logits, labels)
    assert record["temperature_kept"] == 0.0 and record["temperature"] == 1.0
    assert record["val_nll_after"] == record["val_nll_before"]
    assert record["energy_reference"] == calibrate.energy_reference(logits, 1.0)
