"""Test-time augmentation: average the predictions over shifted copies of each image.

MNIST digits are centred by centre of mass, which is off by a pixel for many strokes; averaging
the softmax over the image and its four one-pixel shifts removes part of that jitter. It costs
``len(SHIFTS)`` forward passes per image (5x the latency of a plain prediction).
"""

from __future__ import annotations

import torch
from torch import nn

# (dy, dx) pixel shifts: the image itself and one pixel up, down, left, right.
SHIFTS: tuple[tuple[int, int], ...] = ((0, 0), (-1, 0), (1, 0), (0, -1), (0, 1))


class TTAModel(nn.Module):
    """Wraps a model; ``forward`` returns log of the mean probability over shifted views.

    Returning log-probabilities keeps the "logits" contract: ``softmax(out)`` is the average
    probability, and argmax / cross-entropy work unchanged.
    """

    def __init__(self, model: nn.Module, shifts: tuple[tuple[int, int], ...] = SHIFTS) -> None:
        super().__init__()
        self.model = model
        self.shifts = shifts

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (N, 1, 28, 28)
        n = x.shape[0]
        # Shifted copies padded with paper (0), stacked into one batch: (V * N, 1, 28, 28).
        views = torch.cat([_pad_shift(x, dy, dx) for dy, dx in self.shifts])
        probs = torch.softmax(self.model(views).float(), dim=1)
        return probs.view(len(self.shifts), n, -1).mean(0).clamp_min(1e-12).log()


def _pad_shift(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Shift the image content by (dy, dx) pixels, filling with 0 (no wrap-around)."""
    if dy == 0 and dx == 0:
        return x
    h, w = x.shape[-2:]
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1))
    return padded[..., 1 - dy : 1 - dy + h, 1 - dx : 1 - dx + w]
