"""What a training run reports while it runs: typed events for callbacks (CLI, GUI, TensorBoard).

``train(cfg, callback=f)`` calls ``f`` with a :class:`StepEvent` after every optimisation step
and an :class:`EpochEvent` after every finished epoch (its metrics are the ``metrics.csv`` row).
No torch here, so a GUI can import these without loading the trainer.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

# The columns of a run's metrics.csv, in order: one row per epoch (an EpochEvent's metrics).
METRIC_COLUMNS = (
    "epoch",
    "train_loss",
    "train_acc",
    "val_loss",
    "val_acc",
    "test_loss",
    "test_acc",
    "lr",
    "seconds",
)


@dataclass(frozen=True)
class StepEvent:
    """One optimisation step done on this process: its batch's loss and accuracy."""

    epoch: int  # 1-based
    epochs: int  # the run's last epoch
    step: int  # 1-based within the epoch
    steps: int  # steps per epoch (on this process)
    loss: float
    acc: float
    lr: float  # the learning rate this step used

    @property
    def global_step(self) -> int:
        """Steps since the run began (1-based), across epochs."""
        return (self.epoch - 1) * self.steps + self.step

    @property
    def progress(self) -> float:
        """Fraction of the whole run done, 0..1."""
        return (self.epoch - 1 + self.step / self.steps) / self.epochs


@dataclass(frozen=True)
class EpochEvent:
    """One epoch done: its metrics (NaN where a split is absent) and whether it is the best."""

    epoch: int
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float
    test_loss: float
    test_acc: float
    lr: float
    seconds: float  # training time of the epoch (evaluation excluded)
    epochs: int
    improved: bool  # best.pt now holds this epoch

    @classmethod
    def from_row(cls, row: dict, *, epochs: int, improved: bool) -> EpochEvent:
        """The event of a metrics row (a dict with :data:`METRIC_COLUMNS`)."""
        return cls(**{k: row[k] for k in METRIC_COLUMNS}, epochs=epochs, improved=improved)

    def row(self) -> dict:
        """The metrics row, as in ``metrics.csv`` and ``TrainResult.history``."""
        return {k: getattr(self, k) for k in METRIC_COLUMNS}

    @property
    def has_validation(self) -> bool:
        """False for a run without a validation split (``--val-size 0``)."""
        return not math.isnan(self.val_acc)


TrainEvent = StepEvent | EpochEvent
TrainCallback = Callable[[TrainEvent], None]
