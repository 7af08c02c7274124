"""Confidence calibration: temperature scaling and expected calibration error.

A network trained with cross-entropy is usually over-confident: it says 0.99 where it is right
97% of the time. Temperature scaling (Guo et al., 2017) divides the logits by one scalar ``T``
fitted on held-out data by minimising the negative log-likelihood; the predicted digit never
changes, only how sure the model claims to be. Training fits ``T`` on the validation split and
stores it in the checkpoint's ``temperature``; the recogniser applies it.

Expected calibration error (ECE) measures the gap: predictions are put in ``n_bins`` equal-width
bins by confidence, and ECE is the average |accuracy - confidence| over the bins, weighted by
how many predictions each holds (0 = perfectly calibrated).

numpy only: no torch needed.
"""

from __future__ import annotations

import math

import numpy as np

from digitlab.core.errors import DigitlabError

# Temperatures searched: 1/20 to 20 covers every sane network (typical fits: 0.8-2.5).
MIN_TEMPERATURE = 0.05
MAX_TEMPERATURE = 20.0
# Golden-section search on 1/T (NLL is convex in 1/T) to this relative precision.
SEARCH_TOLERANCE = 1e-5
DEFAULT_BINS = 15
_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0


def _check(
    logits_or_probs: np.ndarray, labels: np.ndarray, what: str
) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(logits_or_probs, dtype=np.float64)
    y = np.asarray(labels)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] < 2:
        raise DigitlabError(f"{what} must be a non-empty (N, classes) array, got shape {x.shape}")
    if y.shape != (x.shape[0],):
        raise DigitlabError(
            f"labels must have shape ({x.shape[0]},) to match {what}, got {y.shape}"
        )
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= x.shape[1]:
        raise DigitlabError(f"labels must be integers in [0, {x.shape[1] - 1}]")
    if not np.isfinite(x).all():
        raise DigitlabError(f"{what} contain NaN or infinite values")
    return x, y.astype(np.int64)


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of ``logits / temperature`` (float64, max-subtracted for stability)."""
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    z -= z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def logsumexp(logits: np.ndarray) -> np.ndarray:
    """Row-wise log(sum(exp(logits))) (float64, max-subtracted for stability): the "energy" of
    a row of logits, large when the model sees something like what it was trained on."""
    z = np.asarray(logits, dtype=np.float64)
    top = z.max(axis=-1)
    return top + np.log(np.exp(z - top[..., None]).sum(axis=-1))


def energy_reference(logits: np.ndarray, temperature: float = 1.0) -> float:
    """Median energy (``logsumexp(logits / temperature)``) of held-out digits: the model's own
    scale of "a whole digit". Networks differ in how large their logits grow, so thresholds on
    energy (the recogniser's segmentation and photo readings) are set relative to this."""
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim != 2 or z.shape[0] == 0:
        raise DigitlabError(f"logits must be a non-empty (N, classes) array, got shape {z.shape}")
    return float(np.median(logsumexp(z / float(temperature))))


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of ``labels`` under ``softmax(logits / temperature)``."""
    x, y = _check(logits, labels, "logits")
    z = x / float(temperature)
    return float((logsumexp(z) - z[np.arange(len(y)), y]).mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature T minimising the NLL of ``softmax(logits / T)`` on (held-out) data.

    ``logits``: (N, classes) float; ``labels``: (N,) int. Golden-section search on 1/T over
    [1/MAX_TEMPERATURE, 1/MIN_TEMPERATURE] (the NLL is convex in 1/T, so the minimum found is
    the minimum). Returns a float in [MIN_TEMPERATURE, MAX_TEMPERATURE].
    """
    x, y = _check(logits, labels, "logits")
    lo, hi = 1.0 / MAX_TEMPERATURE, 1.0 / MIN_TEMPERATURE
    a = hi - _GOLDEN * (hi - lo)
    b = lo + _GOLDEN * (hi - lo)
    fa, fb = nll(x, y, 1.0 / a), nll(x, y, 1.0 / b)
    while hi - lo > SEARCH_TOLERANCE * max(1.0, hi):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - _GOLDEN * (hi - lo)
            fa = nll(x, y, 1.0 / a)
        else:
            lo, a, fa = a, b, fb
            b = lo + _GOLDEN * (hi - lo)
            fb = nll(x, y, 1.0 / b)
    return float(1.0 / ((lo + hi) / 2.0))


def reliability(
    probs: np.ndarray, labels: np.ndarray, n_bins: int = DEFAULT_BINS
) -> list[dict[str, float]]:
    """Per-bin count, mean confidence and accuracy (equal-width confidence bins, empty ones
    left out): the data of a reliability diagram."""
    p, y = _check(probs, labels, "probs")
    if n_bins < 1:
        raise DigitlabError(f"n_bins must be at least 1, got {n_bins}")
    confidence = p.max(axis=1)
    correct = p.argmax(axis=1) == y
    # Bin k holds confidences in (k/n, (k+1)/n]; confidence 0 goes to bin 0.
    bins = np.clip(np.ceil(confidence * n_bins).astype(int) - 1, 0, n_bins - 1)
    rows = []
    for k in range(n_bins):
        inside = bins == k
        if inside.any():
            rows.append(
                {
                    "low": k / n_bins,
                    "high": (k + 1) / n_bins,
                    "count": int(inside.sum()),
                    "confidence": float(confidence[inside].mean()),
                    "accuracy": float(correct[inside].mean()),
                }
            )
    return rows


def expected_calibration_error(
    probs: np.ndarray, labels: np.ndarray, n_bins: int = DEFAULT_BINS
) -> float:
    """ECE: the count-weighted mean |accuracy - confidence| over equal-width confidence bins."""
    rows = reliability(probs, labels, n_bins)
    total = sum(r["count"] for r in rows)
    return float(sum(r["count"] * abs(r["accuracy"] - r["confidence"]) for r in rows) / total)


def calibration_record(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Everything a checkpoint keeps from calibrating on held-out ``logits`` / ``labels``.

    What calibration promises: the temperature minimises the negative log-likelihood of the
    held-out labels (the criterion temperature scaling optimises; Guo et al. 2017). A fitted
    temperature is kept only when it lowers that NLL below the uncalibrated model's (T = 1);
    otherwise T = 1 is kept and ``temperature_kept`` says so. ECE is reported, before and after,
    but not promised: with few held-out errors it is a noisy 15-bin histogram statistic that a
    better NLL can raise by a few thousandths.

    Returns ``temperature``, ``energy_reference`` (at that temperature), ``val_nll_before`` /
    ``val_nll_after``, ``val_ece_before`` / ``val_ece_after`` and ``temperature_kept`` (1.0 when
    the fitted temperature was kept, 0.0 when T = 1 was).
    """
    fitted = fit_temperature(logits, labels)
    before = nll(logits, labels, 1.0)
    kept = nll(logits, labels, fitted) < before
    t = fitted if kept else 1.0
    return {
        "temperature": t,
        "energy_reference": energy_reference(logits, t),
        "val_nll_before": before,
        "val_nll_after": nll(logits, labels, t),
        "val_ece_before": expected_calibration_error(softmax(logits, 1.0), labels),
        "val_ece_after": expected_calibration_error(softmax(logits, t), labels),
        "temperature_kept": float(kept),
    }
