"""Fine-tuning on a user's corrections without forgetting MNIST (issue #17).

``finetune(images, labels, groups, FinetuneConfig(...))`` starts from a trained checkpoint
and trains on the corrections mixed with *replay* of MNIST training digits (every step is half
corrections, half MNIST, both augmented), so the network learns the user's hand without
drifting away from everyone else's.

Honest numbers:

* a seeded slice of the corrections (``holdout``, whole corrections: a number's digits stay
  together) is never trained on; accuracy on it is reported before and after;
* MNIST validation (the base model's own split: ``val_size``/``split_seed`` from its
  ``train_config``) is measured before and after, and decides: a model that loses more than
  ``max_mnist_drop`` (0.1 points) there is refused -- :class:`FinetuneRefusedError`, nothing
  written. The test set is only reported.

BatchNorm statistics stay frozen (the running means are MNIST's; a few hundred corrections
must not move them), the loss is the base model's own (its ``label_smoothing``: a model trained
with smoothed targets and fine-tuned on hard ones drifts, 0.14-0.18 validation points in 120
steps for one such model, against 0.00-0.04 with its own smoothing), and the softmax
temperature is refitted on MNIST validation afterwards.
The result is a normal run directory (``config.json``, ``finetune.json``, ``best.pt``,
``train.log``) written atomically: a temporary folder renamed into place once complete.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from digitlab.core.errors import DigitlabError
from digitlab.training.augment import AugmentConfig, augment_batch
from digitlab.training.checkpoint import build_model, load_checkpoint, save_checkpoint
from digitlab.training.evaluate import predict_logits

log = logging.getLogger(__name__)

# Refuse a model that loses more than this much MNIST validation accuracy (0.1 points).
MAX_MNIST_DROP = 0.001
# The base model's validation split when its checkpoint does not record one.
DEFAULT_VAL_SIZE = 5000
DEFAULT_SPLIT_SEED = 0
# Fewer corrections than this are all trained on (a holdout of one or two says nothing).
MIN_FOR_HOLDOUT = 10
ProgressFn = Callable[[float, str], None]


class FinetuneRefusedError(DigitlabError):
    """The fine-tuned model forgot too much MNIST; nothing was written."""

    def __init__(self, message: str, report: FinetuneReport) -> None:
        super().__init__(message)
        self.report = report


@dataclass
class FinetuneConfig:
    """Every option of a fine-tuning run (``config.json`` of its run directory)."""

    base: str | None = None  # checkpoint to start from (None: what load_checkpoint(None) means)
    steps: int = 120
    batch_size: int = 32  # corrections per step (drawn with replacement, augmented)
    replay: int = 32  # MNIST training digits per step
    lr: float = 5e-4
    # None: the base model's training label smoothing (its train_config), 0 if it has none
    label_smoothing: float | None = None
    weight_decay: float = 0.01
    holdout: float = 0.2  # share of corrections kept out of training, for before/after
    seed: int = 0
    max_mnist_drop: float = MAX_MNIST_DROP
    threads: int | None = None
    eval_test: bool = True  # also report MNIST test before/after (never decides)
    data_dir: str | None = None
    run_dir: str | None = None  # None = runs/<time>-finetune

    def validate(self) -> None:
        """Raise DigitlabError naming the first bad option."""
        checks = [
            (self.steps >= 1, f"--steps must be at least 1, got {self.steps}"),
            (self.batch_size >= 1, f"--batch-size must be at least 1, got {self.batch_size}"),
            (self.replay >= 0, f"--replay must be 0 or more, got {self.replay}"),
            (self.lr > 0, f"--lr must be positive, got {self.lr}"),
            (
                self.label_smoothing is None or 0 <= self.label_smoothing < 1,
                f"--label-smoothing must be in [0, 1), got {self.label_smoothing}",
            ),
            (0 <= self.holdout < 1, f"--holdout must be in [0, 1), got {self.holdout}"),
            (self.max_mnist_drop >= 0, "--max-mnist-drop must be 0 or more"),
        ]
        for ok, msg in checks:
            if not ok:
                raise DigitlabError(msg)


@dataclass
class FinetuneReport:
    """Before/after accuracies and what the run did (``finetune.json``)."""

    base: str
    corrections: int  # trainable corrections used (train + holdout)
    train_digits: int
    holdout_digits: int
    skipped: int = 0  # corrections that could not be used (digit count != label length)
    holdout_before: float | None = None
    holdout_after: float | None = None
    mnist_val_before: float = float("nan")
    mnist_val_after: float = float("nan")
    mnist_test_before: float | None = None
    mnist_test_after: float | None = None
    train_seconds: float = 0.0  # the fine-tuning itself
    total_seconds: float = 0.0  # with data loading and evaluation
    threads: int = 1
    label_smoothing: float = 0.0  # of the loss (the base model's own unless configured)
    accepted: bool = False
    run_dir: str | None = None
    checkpoint: str | None = None
    message: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return dataclasses.asdict(self)

    def summary(self) -> str:
        """A few lines for people."""

        def pct(x: float | None) -> str:
            return "n/a" if x is None or x != x else f"{x:.2%}"

        lines = [
            f"corrections: {self.corrections} ({self.train_digits} digits trained on, "
            f"{self.holdout_digits} held out"
            + (f", {self.skipped} unusable" if self.skipped else "")
            + ")",
            f"held-out corrections: {pct(self.holdout_before)} -> {pct(self.holdout_after)}",
            f"MNIST validation:     {pct(self.mnist_val_before)} -> {pct(self.mnist_val_after)}",
        ]
        if self.mnist_test_before is not None:
            lines.append(
                f"MNIST test (report):  {pct(self.mnist_test_before)} -> "
                f"{pct(self.mnist_test_after)}"
            )
        lines.append(
            f"fine-tuning {self.train_seconds:.1f} s ({self.threads} thread(s)), "
            f"{self.total_seconds:.1f} s in all"
        )
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Corrections -> training digits
# --------------------------------------------------------------------------------------------


def corrections_to_arrays(store: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Every usable correction in a feedback store as (images (N, 28, 28) uint8, labels (N,),
    groups (N,) = the correction id of each digit, skipped count). A number contributes one
    digit per tile when its segmentation found as many digits as its label has."""
    images, labels, groups = [], [], []
    skipped = 0
    for row in store.iter_all(images=True):
        pairs = row.digit_tiles()
        if pairs is None:
            skipped += 1
            continue
        for tile, ch in pairs:
            images.append(tile)
            labels.append(int(ch))
            groups.append(row.id)
    if not images:
        return (
            np.zeros((0, 28, 28), np.uint8),
            np.zeros(0, np.int64),
            np.zeros(0, np.int64),
            skipped,
        )
    return np.stack(images), np.asarray(labels, np.int64), np.asarray(groups, np.int64), skipped


def split_holdout(groups: np.ndarray, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, holdout): a seeded ``share`` of the distinct groups is held out."""
    unique = np.unique(groups)
    n_hold = round(share * len(unique)) if len(unique) >= MIN_FOR_HOLDOUT else 0
    held = set(np.random.default_rng(seed).permutation(unique)[:n_hold].tolist())
    mask = np.array([g in held for g in groups], dtype=bool)
    return np.flatnonzero(~mask), np.flatnonzero(mask)


# --------------------------------------------------------------------------------------------
# Fine-tuning
# --------------------------------------------------------------------------------------------


def _accuracy(model: nn.Module, images: np.ndarray, labels: np.ndarray) -> float | None:
    if len(labels) == 0:
        return None
    logits = predict_logits(model, torch.from_numpy(np.ascontiguousarray(images)))
    return float((logits.argmax(1).numpy() == labels).mean())


def _freeze_batchnorm(model: nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


def _replay_split(ckpt: dict[str, Any], data: Any) -> tuple[np.ndarray, np.ndarray]:
    """(train_idx, val_idx) of MNIST's training images: the base model's own split."""
    from digitlab.training.data import split_indices

    cfg = ckpt.get("train_config") or {}
    # A base trained on all 60k (val_size 0) has no held-out split: the default one is used,
    # and its "before" is then optimistic (the model saw those digits).
    val_size = int(cfg.get("val_size") or 0) or DEFAULT_VAL_SIZE
    seed = int(cfg.get("split_seed") or DEFAULT_SPLIT_SEED)
    return split_indices(len(data.train_images), val_size, seed=seed)


def finetune(
    images: np.ndarray,
    labels: np.ndarray,
    groups: np.ndarray | None = None,
    config: FinetuneConfig | None = None,
    *,
    data: Any = None,
    progress: ProgressFn | None = None,
    skipped: int = 0,
    write: bool = True,
) -> FinetuneReport:
    """Fine-tune ``config.base`` on the corrections (28x28 uint8 ``images``, ink bright, and
    their ``labels``; ``groups`` keeps a number's digits together in the holdout split).

    ``data``: MNIST arrays (loaded from ``config.data_dir`` when None). ``progress(f, msg)``
    is called with f in [0, 1]. Returns the report (``run_dir``/``checkpoint`` set when
    written); raises :class:`FinetuneRefusedError` when MNIST validation drops too much.
    """
    cfg = config or FinetuneConfig()
    cfg.validate()
    started = time.perf_counter()
    say = progress or (lambda f, msg: None)
    images = np.asarray(images, dtype=np.uint8).reshape(-1, 28, 28)
    labels = np.asarray(labels, dtype=np.int64)
    groups = np.arange(len(labels)) if groups is None else np.asarray(groups)
    if len(labels) == 0:
        raise DigitlabError("no corrections to learn from: add some first (digitlab feedback add)")
    if len(images) != len(labels) or len(groups) != len(labels):
        raise DigitlabError("images, labels and groups must have the same length")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)

    say(0.0, "loading the model and MNIST")
    ckpt = load_checkpoint(cfg.base)
    model = build_model(ckpt)
    if data is None:
        from digitlab.training.data import load_mnist

        data = load_mnist(cfg.data_dir)
    train_idx, val_idx = _replay_split(ckpt, data)
    val_x, val_y = data.train_images[val_idx], data.train_labels[val_idx]
    tr, ho = split_holdout(groups, cfg.holdout, cfg.seed)
    report = FinetuneReport(
        base=str(ckpt.get("path", cfg.base)),
        corrections=len(np.unique(groups)),
        train_digits=len(tr),
        holdout_digits=len(ho),
        skipped=skipped,
        threads=torch.get_num_threads(),
    )

    say(0.05, "measuring the model before")
    report.holdout_before = _accuracy(model, images[ho], labels[ho])
    report.mnist_val_before = _accuracy(model, val_x, val_y)
    if cfg.eval_test:
        report.mnist_test_before = _accuracy(model, data.test_images, data.test_labels)

    say(0.2, f"fine-tuning on {len(tr)} digits with MNIST replay")
    t0 = time.perf_counter()
    replay_x, replay_y = data.train_images[train_idx], data.train_labels[train_idx]
    smoothing = cfg.label_smoothing
    if smoothing is None:
        smoothing = float((ckpt.get("train_config") or {}).get("label_smoothing") or 0.0)
    report.label_smoothing = smoothing
    _train(model, images[tr], labels[tr], replay_x, replay_y, cfg, smoothing,
           lambda f: say(0.2 + 0.6 * f, "fine-tuning"))  # fmt: skip
    report.train_seconds = time.perf_counter() - t0

    say(0.8, "measuring the model after")
    model.eval()
    report.holdout_after = _accuracy(model, images[ho], labels[ho])
    val_logits = predict_logits(model, torch.from_numpy(np.ascontiguousarray(val_x))).numpy()
    report.mnist_val_after = float((val_logits.argmax(1) == val_y).mean())
    if cfg.eval_test:
        report.mnist_test_after = _accuracy(model, data.test_images, data.test_labels)
    report.total_seconds = time.perf_counter() - started
    report.model = model  # not a field (not in to_dict): for callers that measure it further

    drop = report.mnist_val_before - report.mnist_val_after
    if drop > cfg.max_mnist_drop + 1e-12:
        report.message = (
            f"refused: MNIST validation accuracy fell {drop * 100:.2f} points "
            f"({report.mnist_val_before:.2%} -> {report.mnist_val_after:.2%}), more than the "
            f"{cfg.max_mnist_drop * 100:.2f} allowed; nothing was written"
        )
        raise FinetuneRefusedError(report.message, report)
    report.accepted = True
    report.message = "accepted"
    if write:
        say(0.9, "writing the run directory")
        _write_run(model, ckpt, cfg, report, val_logits, val_y)
    report.total_seconds = time.perf_counter() - started
    say(1.0, "done")
    return report


def _train(
    model: nn.Module,
    x_fix: np.ndarray,
    y_fix: np.ndarray,
    x_replay: np.ndarray,
    y_replay: np.ndarray,
    cfg: FinetuneConfig,
    label_smoothing: float,
    tick: Callable[[float], None],
) -> None:
    """The optimisation loop: each step a batch of corrections plus a batch of MNIST."""
    gen = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)  # dropout
    fix_x = torch.from_numpy(np.ascontiguousarray(x_fix)).unsqueeze(1)
    fix_y = torch.from_numpy(y_fix)
    rep_x = torch.from_numpy(np.ascontiguousarray(x_replay)).unsqueeze(1)
    rep_y = torch.from_numpy(np.asarray(y_replay, dtype=np.int64))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=cfg.lr, total_steps=cfg.steps, pct_start=0.15
    )
    aug = AugmentConfig()
    model.train()
    _freeze_batchnorm(model)
    every = max(1, cfg.steps // 20)
    for step in range(cfg.steps):
        parts_x, parts_y = [], []
        if len(fix_y):
            i = torch.randint(len(fix_y), (cfg.batch_size,), generator=gen)
            parts_x.append(fix_x[i])
            parts_y.append(fix_y[i])
        if cfg.replay:
            j = torch.randint(len(rep_y), (cfg.replay,), generator=gen)
            parts_x.append(rep_x[j])
            parts_y.append(rep_y[j])
        x = augment_batch(torch.cat(parts_x).float().div_(255), aug, gen)
        loss = F.cross_entropy(model(x), torch.cat(parts_y), label_smoothing=label_smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % every == 0:
            tick(step / cfg.steps)
    model.eval()


def default_run_dir() -> Path:
    """``runs/<time>-finetune`` in the working directory."""
    return Path("runs") / f"{datetime.now():%Y%m%d-%H%M%S}-finetune"


def _write_run(
    model: nn.Module,
    ckpt: dict[str, Any],
    cfg: FinetuneConfig,
    report: FinetuneReport,
    val_logits: np.ndarray,
    val_y: np.ndarray,
) -> None:
    """best.pt (temperature refitted on MNIST validation), config.json, finetune.json and
    train.log, in a temporary folder renamed to the run directory once all are written."""
    from digitlab.engine.calibrate import calibration_record

    run_dir = Path(cfg.run_dir) if cfg.run_dir else default_run_dir()
    if run_dir.exists() and any(run_dir.iterdir()):
        raise DigitlabError(f"run directory {run_dir} exists and is not empty; choose another")
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{run_dir.name}.", dir=run_dir.parent))
    try:
        record = calibration_record(val_logits, val_y)
        report.run_dir = str(run_dir)
        report.checkpoint = str(run_dir / "best.pt")
        metrics = {
            "val_acc": report.mnist_val_after,
            "test_acc": report.mnist_test_after,
            "holdout_acc": report.holdout_after,
        }
        save_checkpoint(
            tmp / "best.pt",
            model_name=ckpt["model_name"],
            model_config=ckpt["model_config"],
            model=model,
            epoch=int(ckpt.get("epoch") or 0),
            metrics={k: v for k, v in metrics.items() if v is not None},
            train_config=ckpt.get("train_config") or {},
            temperature=record["temperature"],
            extra={
                "energy_reference": record["energy_reference"],
                "calibration": record,
                "finetune": report.to_dict(),
                "base_model": report.base,
            },
        )
        (tmp / "config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=2) + "\n")
        (tmp / "finetune.json").write_text(json.dumps(report.to_dict(), indent=2) + "\n")
        (tmp / "train.log").write_text(report.summary() + "\n")
        if run_dir.exists():
            run_dir.rmdir()  # empty (checked above)
        tmp.rename(run_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        report.run_dir = report.checkpoint = None
        raise
    log.info("fine-tuned model written to %s", run_dir / "best.pt")
