"""The training and evaluation figures: run curves, confusion matrix, error gallery.

Each builder returns a :class:`matplotlib.figure.Figure` made without pyplot, so no global
figure state is touched (safe on any thread, nothing to close) and a notebook shows it inline
as it is. :func:`save_figure` is the one way they reach the disk: a PNG written atomically.
:func:`figure_to_rgb` renders one to pixels (for TensorBoard).
"""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from digitlab.core.constants import NUM_CLASSES
from digitlab.core.io import atomic_write

if TYPE_CHECKING:
    from digitlab.training.evaluate import EvalReport

GALLERY_COLUMNS = 10


def save_figure(fig: Figure, path: str | os.PathLike) -> None:
    """Write ``fig`` to ``path`` as a PNG, atomically (a reader never sees half a file)."""
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))


def figure_to_rgb(fig: Figure) -> np.ndarray:
    """``fig`` rendered to a uint8 ``(height, width, 3)`` RGB array."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def curves_figure(history: list[dict], title: str = "") -> Figure:
    """Loss, accuracy and epoch-time curves of a run (one metrics row per epoch)."""
    fig = Figure(figsize=(13, 3.6), dpi=100)
    axes = fig.subplots(1, 3)
    ep = [r["epoch"] for r in history]
    for key, label in (("train_loss", "train"), ("val_loss", "validation"), ("test_loss", "test")):
        vals = [r.get(key) for r in history]
        if any(v is not None and not math.isnan(v) for v in vals):
            axes[0].plot(ep, vals, marker="o", label=label)
    axes[0].set(title="loss", xlabel="epoch", yscale="log")
    for key, label in (("train_acc", "train"), ("val_acc", "validation"), ("test_acc", "test")):
        vals = [100 * r[key] if r.get(key) is not None else None for r in history]
        if any(v is not None and not math.isnan(v) for v in vals):
            axes[1].plot(ep, vals, marker="o", label=label)
    axes[1].set(title="accuracy (%)", xlabel="epoch")
    axes[2].bar(ep, [r["seconds"] for r in history])
    axes[2].set(title="training seconds per epoch", xlabel="epoch")
    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in axes[:2]:
        if ax.has_data():
            ax.legend()
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def confusion_figure(report: EvalReport, title: str = "") -> Figure:
    """The confusion matrix with the count in each cell (log-scaled colours)."""
    cm = report.confusion
    fig = Figure(figsize=(6.5, 5.5), dpi=110)
    ax = fig.subplots()
    ax.imshow(np.log1p(cm), cmap="Blues")
    for i in range(NUM_CLASSES):
        for j in range(NUM_CLASSES):
            if cm[i, j]:
                color = "white" if cm[i, j] > cm.max() / 4 else "black"
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7, color=color)
    ax.set_xticks(range(NUM_CLASSES))
    ax.set_yticks(range(NUM_CLASSES))
    ax.set_xlabel("predicted digit")
    ax.set_ylabel("true digit")
    ax.set_title(title or f"{report.split}: accuracy {report.accuracy:.2%} (n={report.n})")
    fig.tight_layout()
    return fig


def misclassified(
    predictions: np.ndarray, probabilities: np.ndarray, labels: np.ndarray, limit: int
) -> np.ndarray:
    """Indices of up to ``limit`` wrong predictions, the most confident mistakes first."""
    wrong = np.flatnonzero(predictions != np.asarray(labels))
    conf = probabilities[wrong, predictions[wrong]]
    return wrong[np.argsort(-conf, kind="stable")][:limit]


def gallery_figure(
    images: np.ndarray,
    labels: np.ndarray,
    probabilities: np.ndarray,
    split: str,
    max_images: int = 100,
) -> tuple[Figure, int]:
    """A grid of the misclassified digits among ``images`` (N, 28, 28), titled
    "true→predicted (confidence)", most confident mistakes first; returns the figure and how
    many digits it shows. ``probabilities`` (N, 10) are the model's."""
    labels = np.asarray(labels)
    predictions = probabilities.argmax(1)
    wrong = misclassified(predictions, probabilities, labels, max_images)
    cols = GALLERY_COLUMNS
    rows = max(1, -(-len(wrong) // cols))
    fig = Figure(figsize=(cols * 1.1, rows * 1.3), dpi=100)
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, wrong, strict=False):
        ax.imshow(images[i], cmap="gray_r")
        p = predictions[i]
        ax.set_title(f"{labels[i]}→{p} ({probabilities[i, p]:.0%})", fontsize=8)
    if not len(wrong):
        axes[0, 0].text(0, 0.5, "no misclassified images", fontsize=10)
    fig.suptitle(f"misclassified ({split}): true→predicted (confidence)", fontsize=10)
    fig.tight_layout()
    return fig, len(wrong)


def error_gallery_figure(
    report: EvalReport, images: np.ndarray, labels: np.ndarray, max_images: int = 100
) -> tuple[Figure, int]:
    """:func:`gallery_figure` of an evaluation report's mistakes."""
    return gallery_figure(images, labels, report.probabilities, report.split, max_images)
