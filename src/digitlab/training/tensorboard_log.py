"""``digitlab train --tensorboard``: TensorBoard event files in the run directory.

Per optimisation step: ``step/loss``, ``step/accuracy`` (the batch's) and ``step/lr``, at the
run's global step. Per epoch (at the epoch number): ``epoch/train_loss``, ``epoch/train_acc``,
``epoch/val_loss``, ``epoch/val_acc``, ``epoch/test_loss``, ``epoch/test_acc`` (absent splits
skipped), ``epoch/lr`` and ``epoch/seconds``, and the image ``val/misclassified``: a grid of the
validation digits the model gets wrong, most confident mistakes first. Only rank 0 of a torchrun
job writes (the trainer makes no writer on the others). View with
``tensorboard --logdir runs``. Needs the optional extra: ``pip install 'digitlab[tensorboard]'``.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING

import torch

from digitlab.core.errors import DigitlabError
from digitlab.training.events import EpochEvent, StepEvent, TrainEvent

if TYPE_CHECKING:
    from digitlab.training.trainer import Trainer

log = logging.getLogger(__name__)

MISSING_MESSAGE = "--tensorboard needs the tensorboard package: pip install 'digitlab[tensorboard]'"
GALLERY_IMAGES = 40  # misclassified digits per epoch image (4 rows of 10)
EPOCH_SCALARS = (
    ("train_loss", "epoch/train_loss"),
    ("train_acc", "epoch/train_acc"),
    ("val_loss", "epoch/val_loss"),
    ("val_acc", "epoch/val_acc"),
    ("test_loss", "epoch/test_loss"),
    ("test_acc", "epoch/test_acc"),
    ("lr", "epoch/lr"),
    ("seconds", "epoch/seconds"),
)


def tensorboard_available() -> bool:
    """Whether the ``tensorboard`` package (which torch's SummaryWriter needs) imports."""
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return False
    return True


def require_tensorboard() -> None:
    """Raise :class:`DigitlabError` with the install command when tensorboard is missing."""
    if not tensorboard_available():
        raise DigitlabError(MISSING_MESSAGE)


class TensorBoardLog:
    """A training callback that writes a :class:`Trainer`'s events into its run directory."""

    def __init__(self, trainer: Trainer) -> None:
        require_tensorboard()
        from torch.utils.tensorboard import SummaryWriter

        self.trainer = trainer
        self.writer = SummaryWriter(log_dir=str(trainer.run_dir))
        log.info("TensorBoard: event files in %s", trainer.run_dir)

    def __call__(self, event: TrainEvent) -> None:
        if isinstance(event, StepEvent):
            step = event.global_step
            self.writer.add_scalar("step/loss", event.loss, step)
            self.writer.add_scalar("step/accuracy", event.acc, step)
            self.writer.add_scalar("step/lr", event.lr, step)
        elif isinstance(event, EpochEvent):
            for key, tag in EPOCH_SCALARS:
                value = getattr(event, key)
                if not math.isnan(value):
                    self.writer.add_scalar(tag, value, event.epoch)
            self._misclassified(event.epoch)
            self.writer.flush()

    def _misclassified(self, epoch: int) -> None:
        logits = self.trainer.val_logits
        if logits is None:  # no validation split
            return
        from digitlab.training.plots import figure_to_rgb, gallery_figure

        splits = self.trainer.splits
        images = splits.val_x[:, 0].cpu().numpy()
        labels = splits.val_y.cpu().numpy()
        probabilities = torch.softmax(logits, dim=1).numpy()
        fig, _shown = gallery_figure(images, labels, probabilities, "validation", GALLERY_IMAGES)
        self.writer.add_image("val/misclassified", figure_to_rgb(fig), epoch, dataformats="HWC")

    def close(self) -> None:
        """Flush and close the event file."""
        self.writer.close()
