"""Evaluation: accuracy, loss, per-class precision/recall, confusion matrix and error gallery
(the figures themselves are :mod:`digitlab.training.plots`).

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
    from digitlab.training.plots import confusion_figure, save_figure

    save_figure(confusion_figure(report, title), path)


def save_error_gallery(
    report: EvalReport,
    images: np.ndarray,
    labels: np.ndarray,
    path: str | Path,
    max_images: int = 100,
) -> int:
    """A PNG grid of misclassified digits titled "true→predicted (confidence)"; returns how many."""
    from digitlab.training.plots import error_gallery_figure, save_figure

    fig, shown = error_gallery_figure(report, images, labels, max_images)
    save_figure(fig, path)
    return shown
