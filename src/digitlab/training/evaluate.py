"""Evaluation: accuracy, loss, per-class precision/recall, confusion matrix and error gallery.

``predict_logits`` is the one batched inference loop over uint8 image arrays; training uses it
for its per-epoch validation and test metrics too.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from digitlab.core.constants import NUM_CLASSES

log = logging.getLogger(__name__)

EVAL_BATCH = 1000  # large batches are fastest for inference; 1000 images are 3 MB as float32


@torch.inference_mode()
def predict_logits(
    model: nn.Module,
    images: torch.Tensor | np.ndarray,
    *,
    device: torch.device | str = "cpu",
    batch_size: int = EVAL_BATCH,
) -> torch.Tensor:
    """Logits ``(N, 10)`` (float32, CPU) for uint8 images ``(N, 28, 28)`` or ``(N, 1, 28, 28)``."""
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(images)
    if images.dim() == 3:
        images = images.unsqueeze(1)
    was_training = model.training
    model.eval()
    out = []
    for start in range(0, len(images), batch_size):
        x = images[start : start + batch_size].to(device, non_blocking=True).float().div_(255)
        out.append(model(x).float().cpu())
    model.train(was_training)
    return torch.cat(out) if out else torch.empty(0, NUM_CLASSES)


def loss_and_accuracy(
    logits: torch.Tensor, labels: torch.Tensor | np.ndarray
) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``logits`` against integer ``labels``."""
    labels = torch.as_tensor(labels, dtype=torch.long)
    if len(labels) == 0:
        return float("nan"), float("nan")
    loss = F.cross_entropy(logits, labels).item()
    acc = (logits.argmax(1) == labels).float().mean().item()
    return loss, acc


@dataclass
class EvalReport:
    """Everything ``digitlab evaluate`` reports about one model on one split."""

    split: str
    n: int
    loss: float
    accuracy: float
    confusion: np.ndarray  # (10, 10): rows = true digit, columns = predicted digit
    predictions: np.ndarray  # (N,) predicted digit per image
    probabilities: np.ndarray  # (N, 10)

    def per_class(self) -> dict[str, dict[str, float | int]]:
        """Precision, recall and support per digit (keys "0".."9")."""
        cm = self.confusion
        out = {}
        for d in range(NUM_CLASSES):
            tp = int(cm[d, d])
            predicted, actual = int(cm[:, d].sum()), int(cm[d].sum())
            out[str(d)] = {
                "precision": tp / predicted if predicted else 0.0,
                "recall": tp / actual if actual else 0.0,
                "support": actual,
            }
        return out

    def to_dict(self) -> dict:
        return {
            "split": self.split,
            "n": self.n,
            "accuracy": self.accuracy,
            "loss": self.loss,
            "errors": int(self.n - round(self.accuracy * self.n)),
            "per_class": self.per_class(),
            "confusion_matrix": self.confusion.tolist(),
        }


def evaluate_model(
    model: nn.Module,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    split: str = "test",
    temperature: float = 1.0,
    device: str = "cpu",
) -> EvalReport:
    """Evaluate ``model`` on uint8 ``images (N, 28, 28)`` with integer ``labels``."""
    logits = predict_logits(model, images, device=device)
    loss, acc = loss_and_accuracy(logits, labels)
    probs = torch.softmax(logits / temperature, dim=1).numpy()
    preds = probs.argmax(1)
    cm = np.zeros((NUM_CLASSES, NUM_CLASSES), dtype=np.int64)
    np.add.at(cm, (np.asarray(labels, dtype=np.int64), preds), 1)
    return EvalReport(split, len(labels), loss, acc, cm, preds, probs)


def save_confusion_png(report: EvalReport, path: str | Path, title: str = "") -> None:
    """Confusion matrix as a PNG with counts in each cell (log-scaled colours)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = report.confusion
    fig, ax = plt.subplots(figsize=(6.5, 5.5), dpi=110)
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
    _save_fig(fig, path)


def save_error_gallery(
    report: EvalReport,
    images: np.ndarray,
    labels: np.ndarray,
    path: str | Path,
    max_images: int = 100,
) -> int:
    """A grid of misclassified digits titled "true→predicted (confidence)"; returns how many."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    wrong = np.flatnonzero(report.predictions != np.asarray(labels))
    # Most confident mistakes first: those are the interesting ones.
    conf = report.probabilities[wrong, report.predictions[wrong]]
    wrong = wrong[np.argsort(-conf)][:max_images]
    cols = 10
    rows = max(1, -(-len(wrong) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.1, rows * 1.3), dpi=100, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, wrong, strict=False):
        ax.imshow(images[i], cmap="gray_r")
        p = report.predictions[i]
        ax.set_title(f"{labels[i]}→{p} ({report.probabilities[i, p]:.0%})", fontsize=8)
    if not len(wrong):
        axes[0, 0].text(0, 0.5, "no misclassified images", fontsize=10)
    fig.suptitle(f"misclassified ({report.split}): true→predicted (confidence)", fontsize=10)
    fig.tight_layout()
    _save_fig(fig, path)
    return len(wrong)


def _save_fig(fig, path: str | Path) -> None:
    import matplotlib.pyplot as plt

    from digitlab.core.io import atomic_write

    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)
