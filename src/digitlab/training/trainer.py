"""Training: ``train(TrainConfig(...))`` runs one reproducible, resumable training run.

The whole dataset lives on the training device as one uint8 tensor ``(N, 1, 28, 28)`` (47 MB
for MNIST's 60k); each step indexes a batch out of it, converts to float and augments the whole
batch with :mod:`digitlab.training.augment` — no DataLoader workers, no per-sample Python.

Reproducibility: every epoch derives its shuffling/augmentation generator and the global torch
seed (dropout) from ``(seed, epoch)``, so resuming from ``last.pt`` after epoch k replays epochs
k+1.. exactly as an uninterrupted run would.

Distributed: under ``torchrun`` (``WORLD_SIZE`` > 1) the same code runs DistributedDataParallel
(gloo on CPU, nccl on CUDA); each rank takes a disjoint shard of each epoch's permutation, and
only rank 0 writes the run directory.

A run directory holds ``config.json``, ``metrics.csv`` (a row per epoch), ``best.pt`` (best
validation accuracy, with a calibrated softmax temperature), ``last.pt``, ``curves.png`` and
``train.log`` (and with ``--tensorboard`` TensorBoard event files, see
:mod:`digitlab.training.tensorboard_log`).

The loop itself is :class:`Trainer`; :func:`train` sets up the process (device, torchrun, run
directory, log file) around it. Progress reaches callbacks as typed events
(:mod:`digitlab.training.events`).

One module (~1,000 lines) because the Trainer, its config, the schedule and the run directory
are one life cycle (start, resume, epoch, checkpoint, calibrate); events, plots, augmentation,
evaluation and checkpoints are their own modules.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import dataclasses
import io
import json
import logging
import math
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from digitlab.core.device import DEVICE_CHOICES, is_device_name
from digitlab.core.errors import DigitlabError
from digitlab.core.io import atomic_write
from digitlab.engine.backends.torch import resolve_device
from digitlab.training.augment import AugmentConfig, DegradeConfig, augment_batch, degrade_batch
from digitlab.training.checkpoint import load_checkpoint, save_checkpoint
from digitlab.training.evaluate import loss_and_accuracy, predict_logits
from digitlab.training.events import (
    METRIC_COLUMNS,
    EpochEvent,
    StepEvent,
    TrainCallback,
    TrainEvent,
)
from digitlab.training.models import count_parameters, create_model, model_config

log = logging.getLogger(__name__)

OPTIMIZERS = ("adam", "adamw", "sgd", "adadelta")
SCHEDULERS = ("onecycle", "cosine", "step", "plateau", "none")
# auto: bf16/fp16 autocast on CUDA, fp32 elsewhere; bf16: autocast to bfloat16 on any device
# (on a CPU with AVX-512 BF16 it cuts a FastNet epoch by about a quarter: see README "Speed").
PRECISIONS = ("auto", "fp32", "bf16")
# Peak learning rates that work out of the box for each optimizer with batch size ~128.
DEFAULT_LR = {"adam": 3e-3, "adamw": 3e-3, "sgd": 0.1, "adadelta": 1.0}
# L2 penalty for adam/sgd; decoupled decay (multiplied by the lr) for adamw, hence larger.
DEFAULT_WEIGHT_DECAY = {"adam": 0.0, "adamw": 0.01, "sgd": 5e-4, "adadelta": 0.0}
PER_BATCH_SCHEDULERS = ("onecycle", "cosine")
ONECYCLE_WARMUP = 0.25  # fraction of the run spent warming up to the peak learning rate
# --outliers: weight of the outlier pieces' loss (cross-entropy to the uniform distribution)
# against the digits' (Hendrycks et al. 2019 use 0.5; not tuned here).
OUTLIER_WEIGHT = 0.5
DEFAULT_DIST_TIMEOUT_S = 300  # a dead rank ends the job after this long instead of hanging


@dataclass
class TrainConfig:
    """Every option of a training run; ``config.json`` in the run directory is this, resolved."""

    model: str = "digitnet"
    model_config: dict = field(default_factory=dict)  # overrides of the zoo defaults
    epochs: int = 10
    batch_size: int = 128
    lr: float | None = None  # None = DEFAULT_LR[optimizer]
    optimizer: str = "adamw"
    weight_decay: float | None = None  # None = DEFAULT_WEIGHT_DECAY[optimizer]
    betas: tuple[float, float] = (0.9, 0.999)  # Adam/AdamW moment decay rates
    scheduler: str = "onecycle"
    augment: bool = True
    elastic: bool = False
    rotation_deg: float = AugmentConfig.rotation_deg
    degrade: float = 0.0  # share of each batch degraded (DegradeConfig); 0 = MNIST-clean only
    # Outlier exposure: pieces that are not one whole digit (training.outliers) added to each
    # batch, this many per digit, with the uniform distribution as their target; 0 = off.
    outliers: float = 0.0
    # Engine views: training digits rendered as users' images (low resolution, soft, marker)
    # and preprocessed by the engine (training.engine_views), this many per digit; 0 = off.
    engine_views: float = 0.0
    init: str | None = None  # start from this checkpoint's weights (a fine-tune)
    label_smoothing: float = 0.0
    early_stopping: int | None = None  # patience in epochs without a better val accuracy
    val_size: int = 5000
    split_seed: int = 0  # fixed, so every run validates on the same 5000 images
    train_samples: int | None = None
    seed: int = 0
    device: str = "auto"
    threads: int | None = None
    channels_last: bool = False
    precision: str = "auto"  # one of PRECISIONS
    eval_test: bool = True  # test metrics per epoch, for reporting only (never for choices)
    run_dir: str | None = None
    data_dir: str | None = None
    resume: str | None = None
    dist_timeout_s: int = DEFAULT_DIST_TIMEOUT_S
    tensorboard: bool = False  # TensorBoard event files in the run directory (rank 0)

    def __post_init__(self) -> None:
        self.betas = tuple(self.betas)  # JSON gives a list back
        self.validate()

    def validate(self) -> None:
        """Raise :class:`DigitlabError` naming the first bad option."""
        from digitlab.training.models import get_spec

        get_spec(self.model)  # unknown model -> error listing valid names
        checks = [
            (self.optimizer in OPTIMIZERS, f"--optimizer must be one of {', '.join(OPTIMIZERS)}"),
            (self.scheduler in SCHEDULERS, f"--scheduler must be one of {', '.join(SCHEDULERS)}"),
            (self.precision in PRECISIONS, f"--precision must be one of {', '.join(PRECISIONS)}"),
            (self.epochs >= 1, f"--epochs must be at least 1, got {self.epochs}"),
            (self.batch_size >= 1, f"--batch-size must be at least 1, got {self.batch_size}"),
            (self.lr is None or self.lr > 0, f"--lr must be positive, got {self.lr}"),
            (self.val_size >= 0, f"--val-size must be >= 0, got {self.val_size}"),
            (
                self.train_samples is None or self.train_samples >= 1,
                f"--train-samples must be at least 1, got {self.train_samples}",
            ),
            (
                self.early_stopping is None or self.early_stopping >= 1,
                f"--early-stopping must be at least 1 epoch, got {self.early_stopping}",
            ),
            (0 <= self.label_smoothing < 1, "--label-smoothing must be in [0, 1)"),
            (0 <= self.degrade <= 1, f"--degrade must be in [0, 1], got {self.degrade}"),
            (0 <= self.outliers <= 1, f"--outliers must be in [0, 1], got {self.outliers}"),
            (
                0 <= self.engine_views <= 1,
                f"--engine-views must be in [0, 1], got {self.engine_views}",
            ),
            (
                is_device_name(self.device),
                f"--device must be {DEVICE_CHOICES}, got {self.device!r}",
            ),
        ]
        for ok, msg in checks:
            if not ok:
                raise DigitlabError(msg)

    @property
    def peak_lr(self) -> float:
        return self.lr if self.lr is not None else DEFAULT_LR[self.optimizer]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def selection_score(row: dict) -> float:
    """What chooses best.pt among epochs: validation accuracy, or training accuracy in a run
    without a validation split (whose validation metrics are NaN)."""
    return row["train_acc"] if math.isnan(row["val_acc"]) else row["val_acc"]


@dataclass
class TrainResult:
    """What a finished (or stopped) run produced."""

    run_dir: Path
    best_path: Path
    last_path: Path
    history: list[dict]
    interrupted: bool = False

    @property
    def best(self) -> dict:
        """The metrics row of the epoch best.pt holds: the best validation accuracy, or the
        best training accuracy for a run without a validation split (``--val-size 0``)."""
        return max(self.history, key=selection_score) if self.history else {}


# ---------------------------------------------------------------------------------------------
# Building blocks (also used by benchmarks/time_to_accuracy.py)
# ---------------------------------------------------------------------------------------------


def make_optimizer(params, cfg: TrainConfig) -> torch.optim.Optimizer:
    """The optimizer named by ``cfg.optimizer`` at ``cfg.peak_lr``."""
    lr = cfg.peak_lr
    wd = cfg.weight_decay if cfg.weight_decay is not None else DEFAULT_WEIGHT_DECAY[cfg.optimizer]
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, betas=tuple(cfg.betas), weight_decay=wd)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=tuple(cfg.betas), weight_decay=wd)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True, weight_decay=wd)
    return torch.optim.Adadelta(params, lr=lr, weight_decay=wd)


def make_scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int):
    """The LR schedule; onecycle/cosine step every batch, step/plateau every epoch."""
    total = cfg.epochs * steps_per_epoch
    if cfg.scheduler == "onecycle":
        # 25% warm-up, then cosine decay to peak/1e4: the super-convergence recipe.
        if ONECYCLE_WARMUP * total <= 1:
            # No whole warm-up step (torch divides by zero at exactly 4 steps): a run this short
            # is a smoke test; it keeps the peak learning rate.
            log.info("onecycle: %d steps are too few for a warm-up; constant learning rate", total)
            return None
        return torch.optim.lr_scheduler.OneCycleLR(
            opt,
            max_lr=cfg.peak_lr,
            total_steps=total,
            pct_start=ONECYCLE_WARMUP,
            div_factor=10.0,
            final_div_factor=1000.0,
        )
    if cfg.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)
    if cfg.scheduler == "step":
        # The PyTorch example's schedule: x0.7 per epoch.
        return torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.7)
    if cfg.scheduler == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max", factor=0.5, patience=2)
    return None


def augment_config(cfg: TrainConfig) -> AugmentConfig:
    """Augmentation ranges for a run (elastic distortion only with ``--elastic``)."""
    return AugmentConfig(rotation_deg=cfg.rotation_deg, elastic_alpha=1.5 if cfg.elastic else 0.0)


def degrade_config(cfg: TrainConfig) -> DegradeConfig | None:
    """Degradation ranges for a run (``--degrade FRACTION``), or None when it is off."""
    return DegradeConfig(fraction=cfg.degrade) if cfg.degrade > 0 else None


def train_step(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    label_smoothing: float = 0.0,
    autocast: Any = None,
    outliers: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimisation step on a float batch; returns (loss, logits) detached.

    ``outliers`` (float images, not one digit each) go through the same forward pass; their
    loss is the cross-entropy to the uniform distribution, weighted OUTLIER_WEIGHT. The
    returned logits are the digits' only.
    """
    n = len(y)
    with autocast if autocast is not None else contextlib.nullcontext():
        logits = model(x if outliers is None else torch.cat([x, outliers]))
        loss = F.cross_entropy(logits[:n], y, label_smoothing=label_smoothing)
        if outliers is not None and len(outliers):
            uniform = -F.log_softmax(logits[n:].float(), dim=1).mean()
            loss = loss + OUTLIER_WEIGHT * uniform
    logits = logits[:n]
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.detach(), logits.detach()


def epoch_generator(seed: int, epoch: int, device: torch.device) -> torch.Generator:
    """Per-epoch RNG: the same (seed, epoch) always shuffles and augments the same way."""
    gen = torch.Generator(device=device)
    gen.manual_seed(seed * 1_000_003 + epoch)
    return gen


# ---------------------------------------------------------------------------------------------
# Distributed helpers
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def dist_info() -> DistInfo:
    """Rank and world size from torchrun's environment (1 process when not under torchrun)."""
    return DistInfo(
        int(os.environ.get("RANK", 0)),
        int(os.environ.get("WORLD_SIZE", 1)),
        int(os.environ.get("LOCAL_RANK", 0)),
    )


def _init_distributed(info: DistInfo, device: torch.device, timeout_s: int) -> None:
    import torch.distributed as dist

    if not info.enabled or dist.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s))
    log.info("distributed: rank %d/%d, backend %s", info.rank, info.world_size, backend)


def _all_reduce_sum(values: list[float], info: DistInfo, device: torch.device) -> list[float]:
    if not info.enabled:
        return values
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------


@dataclass
class _Splits:
    """The data on the training device: uint8 images (N, 1, 28, 28) and int64 labels."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    source: str


def prepare_splits(cfg: TrainConfig, data: Any, device: torch.device) -> _Splits:
    """Carve the validation split from the 60k training set and move everything to ``device``."""
    from digitlab.training.data import load_mnist, split_indices

    if data is None:
        data = load_mnist(cfg.data_dir)
    n = len(data.train_images)
    if cfg.val_size >= n:
        raise DigitlabError(f"--val-size {cfg.val_size} leaves no training images (of {n})")
    train_idx, val_idx = split_indices(n, cfg.val_size, seed=cfg.split_seed)
    if cfg.train_samples is not None:
        train_idx = train_idx[: cfg.train_samples]

    def put(images: np.ndarray, labels: np.ndarray | None, idx=None):
        if idx is not None:
            images, labels = images[idx], labels[idx]
        x = torch.from_numpy(np.ascontiguousarray(images)).unsqueeze(1).to(device)
        y = torch.from_numpy(np.asarray(labels, dtype=np.int64)).to(device)
        return x, y

    tx, ty = put(data.train_images, data.train_labels, train_idx)
    vx, vy = put(data.train_images, data.train_labels, val_idx)
    if data.test_labels is not None and cfg.eval_test:
        sx, sy = put(data.test_images, data.test_labels)
    else:
        sx, sy = tx[:0], ty[:0]
    return _Splits(tx, ty, vx, vy, sx, sy, getattr(data, "source", "given arrays"))


def _new_run_dir(cfg: TrainConfig) -> Path:
    if cfg.run_dir:
        return Path(cfg.run_dir)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{stamp}-{cfg.model}"


def _write_metrics_csv(path: Path, history: list[dict]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=METRIC_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for row in history:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    atomic_write(path, lambda tmp: Path(tmp).write_text(buf.getvalue()))


def run_train_seconds(run_dir: str | os.PathLike) -> float | None:
    """Training time of a run: the sum of its metrics.csv ``seconds`` column (evaluation
    excluded); None when the folder has no metrics.csv."""
    path = Path(run_dir) / "metrics.csv"
    if not path.is_file():
        return None
    with path.open() as f:
        return sum(float(row["seconds"]) for row in csv.DictReader(f))


class _Progress:
    """tqdm bar on a TTY; otherwise a plain line every quarter epoch."""

    def __init__(self, enabled: bool, epoch: int, epochs: int, steps: int) -> None:
        self.bar = None
        self.steps, self.epoch, self.epochs = steps, epoch, epochs
        self.enabled = enabled
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=steps, desc=f"epoch {epoch}/{epochs}", leave=False, unit="step")

    def update(self, step: int, loss: float, acc: float) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{loss:.4f}", acc=f"{acc:.2%}", refresh=False)
        elif step % max(1, self.steps // 4) == 0 and step < self.steps:
            log.info(
                "epoch %d/%d step %d/%d loss %.4f acc %.2f%%",
                self.epoch,
                self.epochs,
                step,
                self.steps,
                loss,
                100 * acc,
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def train(
    config: TrainConfig,
    *,
    data: Any = None,
    callback: TrainCallback | None = None,
    stop_event: threading.Event | None = None,
) -> TrainResult:
    """Run (or resume) a training run; returns where its files are and its per-epoch metrics.

    ``data`` is an object with ``train_images``/``train_labels``/``test_images``/``test_labels``
    arrays (default: :func:`digitlab.training.data.load_mnist`). ``callback`` receives a
    :class:`~digitlab.training.events.StepEvent` per optimisation step and an
    :class:`~digitlab.training.events.EpochEvent` per epoch; ``stop_event`` stops the run
    cleanly with ``last.pt`` saved. With ``config.tensorboard`` (rank 0 of) the run also writes
    TensorBoard event files into its run directory.
    """
    info = dist_info()
    cfg, resume_ckpt = _resolve_resume(config)
    if cfg.tensorboard:  # checked on every rank, so that all of them stop alike
        from digitlab.training.tensorboard_log import require_tensorboard

        require_tensorboard()  # before anything is written
    device = resolve_device(cfg.device)
    if info.enabled and device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if not info.is_main:
        logging.getLogger("digitlab").setLevel(logging.WARNING)  # one rank reports
    _init_distributed(info, device, cfg.dist_timeout_s)

    run_dir = Path(resume_ckpt["run_dir"]) if resume_ckpt else _new_run_dir(cfg)
    file_handler = None
    try:
        # A bad --init or bad data: an error before any file exists.
        init_ckpt = _load_init(cfg) if cfg.init and resume_ckpt is None else None
        splits = prepare_splits(cfg, data, device)
        file_handler = _start_run_dir(run_dir, cfg, info)
        trainer = Trainer(
            cfg,
            run_dir,
            splits=splits,
            device=device,
            info=info,
            resume=resume_ckpt,
            init=init_ckpt,
            callbacks=[callback] if callback else [],
        )
        return trainer.fit(stop_event)
    finally:
        if file_handler is not None:
            logging.getLogger("digitlab").removeHandler(file_handler)
            file_handler.close()
        if info.enabled:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()


def _load_init(cfg: TrainConfig) -> dict:
    """The ``--init`` checkpoint, checked against the run's model; the run takes its
    architecture (``cfg.model_config`` is set to the checkpoint's, and so recorded)."""
    ckpt = load_checkpoint(cfg.init)
    if ckpt["model_name"] != cfg.model:
        raise DigitlabError(
            f"--init {cfg.init}: a {ckpt['model_name']} checkpoint, but --model is {cfg.model}"
        )
    stored = dict(ckpt["model_config"])
    clash = {k: v for k, v in cfg.model_config.items() if stored.get(k, v) != v}
    if clash:
        raise DigitlabError(
            f"--init {cfg.init}: the checkpoint's network has "
            + ", ".join(f"{k}={stored[k]}" for k in clash)
            + ", not "
            + ", ".join(f"{k}={v}" for k, v in clash.items())
        )
    cfg.model_config = stored
    return ckpt


def _freeze_batchnorm(model: nn.Module) -> None:
    """Batch-norm layers to eval mode: their running statistics stay as they are."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


def _outlier_pool(cfg: TrainConfig, s: _Splits, device: torch.device) -> torch.Tensor | None:
    """With ``--outliers``: the run's outlier pieces (uint8, (POOL, 1, 28, 28), on ``device``),
    made from its training split, the same on every rank and on resume (seeded)."""
    if cfg.outliers <= 0:
        return None
    from digitlab.training.outliers import POOL, outlier_pieces

    start = time.perf_counter()
    n = min(POOL, len(s.train_y))  # no more pieces than digits: each draw is augmented anyway
    pieces = outlier_pieces(s.train_x[:, 0].cpu().numpy(), n, seed=cfg.seed)
    log.info("made %d outlier pieces in %.1f s", n, time.perf_counter() - start)
    return torch.from_numpy(pieces).unsqueeze(1).to(device)


def _view_pool(
    cfg: TrainConfig, s: _Splits, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """With ``--engine-views``: the run's engine views (uint8 ``(POOL, 1, 28, 28)``) and their
    labels, on ``device``, made from its training split; the same on every rank and on resume
    (seeded)."""
    if cfg.engine_views <= 0:
        return None
    from digitlab.training.engine_views import POOL, engine_views

    start = time.perf_counter()
    n = min(POOL, len(s.train_y))
    digits = s.train_x[:, 0].cpu().numpy()
    views, labels, rejected = engine_views(digits, s.train_y.cpu().numpy(), n, seed=cfg.seed)
    log.info(
        "made %d engine views in %.1f s (%d read as blank, drawn again)",
        n,
        time.perf_counter() - start,
        rejected,
    )
    return torch.from_numpy(views).unsqueeze(1).to(device), torch.from_numpy(labels).to(device)


def _resolve_resume(config: TrainConfig) -> tuple[TrainConfig, dict | None]:
    """With ``--resume``: the stored config (epochs/device may be changed) and the checkpoint."""
    if not config.resume:
        return config, None
    ckpt = load_checkpoint(config.resume)
    stored = ckpt.get("train_config")
    if not stored or "optimizer_state" not in ckpt:
        raise DigitlabError(
            f"--resume {config.resume}: not a resumable checkpoint (use a run's last.pt)"
        )
    # Options that may differ on resume (more epochs, another machine); a value equal to the
    # default counts as "not given", since TrainConfig cannot tell the two apart.
    defaults = TrainConfig.__dataclass_fields__
    changed = {
        k: getattr(config, k)
        for k in ("epochs", "device", "data_dir", "threads", "tensorboard")
        if getattr(config, k) != defaults[k].default
    }
    merged = {
        **stored,
        **changed,
        "resume": config.resume,
        "run_dir": str(Path(config.resume).parent),
    }
    ckpt["run_dir"] = str(Path(config.resume).resolve().parent)
    return TrainConfig.from_dict(merged), ckpt


def _start_run_dir(run_dir: Path, cfg: TrainConfig, info: DistInfo) -> logging.Handler | None:
    if not info.is_main:
        return None
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(
        run_dir / "config.json",
        lambda tmp: Path(tmp).write_text(json.dumps(cfg.to_dict(), indent=2) + "\n"),
    )
    handler = logging.FileHandler(run_dir / "train.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logging.getLogger("digitlab").addHandler(handler)
    if logging.getLogger("digitlab").getEffectiveLevel() > logging.INFO:
        logging.getLogger("digitlab").setLevel(logging.INFO)
    return handler


class Trainer:
    """One training run on this process: model, optimizer, schedule, data and progress.

    :func:`train` builds one and calls :meth:`fit`, which loops :meth:`train_epoch`,
    :meth:`evaluate` and :meth:`end_epoch` (checkpoints, metrics.csv, curves, events), then
    :meth:`calibrate`. The images are ``splits`` (else ``data``, else MNIST); ``resume`` is a
    ``last.pt`` checkpoint dict to continue from; ``init`` the ``--init`` checkpoint dict to
    start from (loaded from ``cfg.init`` when not given). Under torchrun the network is wrapped
    in DistributedDataParallel and only rank 0 writes files.
    """

    def __init__(
        self,
        cfg: TrainConfig,
        run_dir: str | os.PathLike,
        *,
        data: Any = None,
        splits: _Splits | None = None,
        device: torch.device | None = None,
        info: DistInfo | None = None,
        resume: dict | None = None,
        init: dict | None = None,
        callbacks: list[TrainCallback] | None = None,
    ) -> None:
        self.cfg = cfg
        self.info = info or dist_info()
        self.device = device or resolve_device(cfg.device)
        self.run_dir = Path(run_dir)
        self.best_path, self.last_path = self.run_dir / "best.pt", self.run_dir / "last.pt"
        self.callbacks: list[TrainCallback] = list(callbacks or [])
        self.splits = splits if splits is not None else prepare_splits(cfg, data, self.device)
        if init is None and cfg.init and resume is None:
            init = _load_init(cfg)  # train() passes it loaded: a bad --init fails first there
        torch.manual_seed(cfg.seed)  # model initialisation
        self.model_config = model_config(cfg.model, **cfg.model_config)
        self.model: nn.Module = create_model(cfg.model, **self.model_config).to(self.device)
        if init is not None:
            self.model.load_state_dict(init["state_dict"])
            log.info("starting from the weights of %s", cfg.init)
        if cfg.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.outlier_pool = _outlier_pool(cfg, self.splits, self.device)
        self.view_pool = _view_pool(cfg, self.splits, self.device)
        # Equal shards: every rank takes the same number of steps.
        self.shard = len(self.splits.train_y) // self.info.world_size
        self.steps = math.ceil(self.shard / cfg.batch_size)
        self.opt = make_optimizer(self.model.parameters(), cfg)
        self.sched = make_scheduler(self.opt, cfg, self.steps)
        self.history: list[dict] = []
        self.epoch = 0  # the last finished epoch
        self.best_score, self.since_best = -1.0, 0
        if resume:
            self._restore(resume)
        # What is trained: the network itself, DDP-wrapped under torchrun.
        self.train_model: nn.Module = self.model
        if self.info.enabled:
            self.train_model = nn.parallel.DistributedDataParallel(
                self.model,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
            )
        self.autocast = make_autocast(self.device, cfg.precision)
        self.val_logits: torch.Tensor | None = None  # CPU logits of the last evaluate()

    def _restore(self, ckpt: dict) -> None:
        self.model.load_state_dict(ckpt["state_dict"])
        self.opt.load_state_dict(ckpt["optimizer_state"])
        if self.sched is not None and "scheduler_state" in ckpt:
            _load_scheduler(self.sched, ckpt["scheduler_state"], self.cfg)
        self.history = list(ckpt.get("history", []))
        self.epoch = int(ckpt["epoch"])
        self.best_score = float(ckpt.get("best_val_acc", -1.0))
        self.since_best = int(ckpt.get("since_best", 0))
        log.info("resuming %s from epoch %d", ckpt["path"], self.epoch)

    def emit(self, event: TrainEvent) -> None:
        """Hand ``event`` to every callback."""
        for callback in self.callbacks:
            callback(event)

    def describe(self) -> str:
        """One line: model, device, data sizes, batch and learning rate, run directory."""
        cfg, info = self.cfg, self.info
        return (
            f"training {cfg.model} ({count_parameters(self.model):,} parameters) on "
            f"{self.device}: {len(self.splits.train_y)} train / {len(self.splits.val_y)} val / "
            f"{len(self.splits.test_y)} test images from {self.splits.source}; effective batch "
            f"{cfg.batch_size * info.world_size} ({cfg.batch_size} x {info.world_size} "
            f"processes), peak lr {cfg.peak_lr:g}; run dir {self.run_dir}"
        )

    def train_epoch(self, epoch: int, stop_event: threading.Event | None = None) -> dict | None:
        """One pass over this rank's shard; returns train loss/acc, or None if stopped."""
        cfg, s, info, device = self.cfg, self.splits, self.info, self.device
        gen = epoch_generator(cfg.seed, epoch, device)  # shuffling: identical on every rank
        aug_gen = epoch_generator(cfg.seed + 7919 * info.rank, epoch, device)  # per rank
        torch.manual_seed(cfg.seed * 1_000_003 + epoch + 7919 * info.rank)  # dropout
        perm = torch.randperm(len(s.train_y), generator=gen, device=device)
        mine = perm[info.rank * self.shard : (info.rank + 1) * self.shard]  # disjoint shards
        aug = augment_config(cfg)
        deg = degrade_config(cfg)
        # A generator of its own: --degrade leaves a run's shuffling and affine draws as they were.
        deg_gen = epoch_generator(cfg.seed + 104_729 + 7919 * info.rank, epoch, device)
        out_gen = epoch_generator(cfg.seed + 15_485_863 + 7919 * info.rank, epoch, device)
        n_out = round(cfg.outliers * cfg.batch_size) if self.outlier_pool is not None else 0
        view_gen = epoch_generator(cfg.seed + 32_452_843 + 7919 * info.rank, epoch, device)
        n_view = round(cfg.engine_views * cfg.batch_size) if self.view_pool is not None else 0
        self.train_model.train()
        if cfg.init:
            # A fine-tune keeps the initial network's normalisation statistics: a few epochs
            # of batches holding outlier pieces would otherwise shift them under the digits.
            _freeze_batchnorm(self.model)
        progress = _Progress(info.is_main, epoch, cfg.epochs, self.steps)
        watched = bool(self.callbacks) or progress.enabled
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        seen = 0
        try:
            for step in range(1, self.steps + 1):
                idx = mine[(step - 1) * cfg.batch_size : step * cfg.batch_size]
                x = self._as_input(s.train_x[idx], aug, deg, aug_gen, deg_gen)
                y = s.train_y[idx]
                if n_view:
                    views, view_y = self._views(n_view, aug, view_gen)
                    x, y = torch.cat([x, views]), torch.cat([y, view_y])
                outliers = self._outliers(n_out, aug, deg, out_gen) if n_out else None
                lr = self.opt.param_groups[0]["lr"]
                loss, logits = train_step(
                    self.train_model,
                    self.opt,
                    x,
                    y,
                    label_smoothing=cfg.label_smoothing,
                    autocast=self.autocast,
                    outliers=outliers,
                )
                if self.sched is not None and cfg.scheduler in PER_BATCH_SCHEDULERS:
                    self.sched.step()
                hits = (logits.argmax(1) == y).sum()
                loss_sum += loss * len(y)
                correct += hits
                seen += len(y)
                if watched:
                    # .item() syncs the device; only pay for it when someone is watching.
                    lval, aval = loss.item(), hits.item() / len(y)
                    progress.update(step, lval, aval)
                    self.emit(StepEvent(epoch, cfg.epochs, step, self.steps, lval, aval, lr))
                if stop_event is not None and stop_event.is_set() and step < self.steps:
                    return None
        except KeyboardInterrupt:
            return None
        finally:
            progress.close()
        total_loss, total_correct, total_seen = _all_reduce_sum(
            [loss_sum.item(), float(correct.item()), float(seen)], info, device
        )
        return {"train_loss": total_loss / total_seen, "train_acc": total_correct / total_seen}

    def _as_input(
        self,
        images: torch.Tensor,
        aug: AugmentConfig,
        deg: DegradeConfig | None,
        aug_gen: torch.Generator,
        deg_gen: torch.Generator,
    ) -> torch.Tensor:
        """uint8 ``(n, 1, 28, 28)`` images as the network trains on them: float in [0, 1],
        augmented (with ``cfg.augment``), degraded (with ``deg``), channels-last (with
        ``cfg.channels_last``)."""
        x = images.float().div_(255)
        if self.cfg.augment:
            x = augment_batch(x, aug, aug_gen)
        if deg is not None:
            x = degrade_batch(x, deg, deg_gen)
        if self.cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def _outliers(
        self, n: int, aug: AugmentConfig, deg: DegradeConfig | None, gen: torch.Generator
    ) -> torch.Tensor:
        """``n`` outlier pieces drawn from the pool, augmented and degraded like the digits."""
        assert self.outlier_pool is not None
        pick = torch.randint(len(self.outlier_pool), (n,), generator=gen, device=self.device)
        return self._as_input(self.outlier_pool[pick], aug, deg, gen, gen)

    def _views(
        self, n: int, aug: AugmentConfig, gen: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` engine views drawn from the pool and their labels, augmented (affine) like the
        digits; not degraded: they are already what the engine makes of degraded images."""
        assert self.view_pool is not None
        pool, labels = self.view_pool
        pick = torch.randint(len(pool), (n,), generator=gen, device=self.device)
        return self._as_input(pool[pick], aug, None, gen, gen), labels[pick]

    def evaluate(self) -> dict[str, float]:
        """Validation and test loss/accuracy (NaN for an absent split); keeps the validation
        logits in :attr:`val_logits`."""
        row = {}
        s, device = self.splits, self.device
        self.val_logits = None
        for name, x, y in (("val", s.val_x, s.val_y), ("test", s.test_x, s.test_y)):
            if len(y):
                # predict_logits returns CPU logits; compare with CPU labels on any device.
                logits = predict_logits(self.model, x, device=device)
                loss, acc = loss_and_accuracy(logits, y.cpu())
                if name == "val":
                    self.val_logits = logits
            else:
                loss, acc = float("nan"), float("nan")
            row[f"{name}_loss"], row[f"{name}_acc"] = loss, acc
        return row

    def save(
        self, path: Path, epoch: int, row: dict, extra: dict, *, with_optimizer: bool = False
    ) -> None:
        """Write a checkpoint of the network (with the optimizer and schedule for resuming)."""
        save_checkpoint(
            path,
            model_name=self.cfg.model,
            model_config=self.model_config,
            model=self.model,
            epoch=epoch,
            metrics=row,
            train_config=self.cfg.to_dict(),
            optimizer=self.opt if with_optimizer else None,
            scheduler=self.sched if with_optimizer else None,
            extra=extra,
        )

    def end_epoch(self, epoch: int, train_stats: dict, seconds: float) -> EpochEvent:
        """Evaluate a finished epoch, step per-epoch schedules, keep the best, write the run
        directory (rank 0) and report the epoch to the callbacks."""
        cfg = self.cfg
        row = {
            "epoch": epoch,
            **train_stats,
            **self.evaluate(),
            "lr": self.opt.param_groups[0]["lr"],
            "seconds": seconds,
        }
        self.history.append(row)
        self.epoch = epoch
        if self.sched is not None and cfg.scheduler == "step":
            self.sched.step()
        elif self.sched is not None and cfg.scheduler == "plateau":
            self.sched.step(selection_score(row))
        score = selection_score(row)
        improved = score > self.best_score
        if improved:
            self.best_score, self.since_best = score, 0
        else:
            self.since_best += 1
        if self.info.is_main:
            _log_epoch(row, cfg.epochs)
            extra = {
                "history": self.history,
                "best_val_acc": self.best_score,
                "since_best": self.since_best,
            }
            if improved:
                self.save(self.best_path, epoch, row, extra)
            self.save(self.last_path, epoch, row, extra, with_optimizer=True)
            _write_metrics_csv(self.run_dir / "metrics.csv", self.history)
            from digitlab.training.plots import curves_figure, save_figure

            title = f"{cfg.model} — {self.run_dir.name}"
            save_figure(curves_figure(self.history, title), self.run_dir / "curves.png")
        event = EpochEvent.from_row(row, epochs=cfg.epochs, improved=improved)
        self.emit(event)
        return event

    def calibrate(self) -> None:
        """Fit and store best.pt's softmax temperature on the validation split."""
        _calibrate(self.best_path, self.splits, self.device)

    def fit(self, stop_event: threading.Event | None = None) -> TrainResult:
        """Train the remaining epochs (early stopping, stop_event and Ctrl-C end it sooner);
        calibrate best.pt when the run completes."""
        cfg, info = self.cfg, self.info
        if info.is_main:
            log.info("%s", self.describe())
        board = None
        if cfg.tensorboard and info.is_main:
            from digitlab.training.tensorboard_log import TensorBoardLog

            board = TensorBoardLog(self)
            self.callbacks.append(board)
        interrupted = False
        try:
            for epoch in range(self.epoch + 1, cfg.epochs + 1):
                t0 = time.perf_counter()
                stats = self.train_epoch(epoch, stop_event)
                if stats is None:  # stopped mid-epoch
                    interrupted = True
                    break
                self.end_epoch(epoch, stats, time.perf_counter() - t0)
                if cfg.early_stopping and self.since_best >= cfg.early_stopping:
                    log.info(
                        "early stopping: no better validation accuracy for %d epochs",
                        self.since_best,
                    )
                    break
                if stop_event is not None and stop_event.is_set():
                    interrupted = True
                    break
        finally:
            if board is not None:
                board.close()
                self.callbacks.remove(board)
        if info.is_main:
            if interrupted and not self.last_path.exists():
                # Stopped inside the first epoch: keep what we have, marked as epoch 0.
                partial = {"history": [], "partial": True}
                self.save(self.last_path, 0, {}, partial, with_optimizer=True)
            if self.history and not interrupted and self.best_path.exists():
                self.calibrate()
            if interrupted:
                log.info("stopped after epoch %d; last.pt kept for --resume", self.epoch)
        if info.enabled:
            import torch.distributed as dist

            dist.barrier()
        return TrainResult(self.run_dir, self.best_path, self.last_path, self.history, interrupted)


def _load_scheduler(sched: Any, state: dict, cfg: TrainConfig) -> None:
    """Restore a scheduler; if --epochs changed on resume, keep the new run length.

    A scheduler's state includes the length it was planned for, so loading it as-is would fail
    past the old end (OneCycleLR) or restart (cosine). We keep the step count from the state and
    the plan (phase ends, T_max) built for the new --epochs: for the extra epochs the learning
    rate rises again on the longer curve, a warm restart.
    """
    plan_keys = ("total_steps", "_schedule_phases", "T_max")
    plan = {k: copy.deepcopy(getattr(sched, k)) for k in plan_keys if hasattr(sched, k)}
    sched.load_state_dict(state)
    changed = {k: v for k, v in plan.items() if getattr(sched, k) != v}
    if changed:
        log.info("learning-rate schedule re-planned for --epochs %d", cfg.epochs)
        for k, v in changed.items():
            setattr(sched, k, v)


def make_autocast(device: torch.device, precision: str = "auto"):
    """The autocast context for ``precision`` on ``device``, or None for plain fp32.

    ``auto`` uses mixed precision on CUDA only (bf16 where supported, which needs no loss
    scaling); ``bf16`` asks for bfloat16 autocast on any device. Weights, optimizer state and
    the loss stay fp32 either way; only convolutions and matrix products run in bf16.
    """
    if precision == "fp32" or (precision == "auto" and device.type != "cuda"):
        return None
    if device.type == "cuda":
        bf16 = precision == "bf16" or torch.cuda.is_bf16_supported()
        return torch.autocast("cuda", dtype=torch.bfloat16 if bf16 else torch.float16)
    if device.type == "cpu" and not torch.backends.mkldnn.is_available():
        log.warning("--precision bf16: this torch build has no oneDNN; bf16 will be slow here")
    return torch.autocast(device.type, dtype=torch.bfloat16)


def _log_epoch(row: dict, epochs: int) -> None:
    log.info(
        "epoch %d/%d  train loss %.4f acc %.2f%%  val loss %.4f acc %.2f%%  "
        "test acc %.2f%%  lr %.2e  %.1fs",
        row["epoch"],
        epochs,
        row["train_loss"],
        100 * row["train_acc"],
        row["val_loss"],
        100 * row["val_acc"],
        100 * row["test_acc"],
        row["lr"],
        row["seconds"],
    )


def _calibrate(best_path: Path, s: _Splits, device: torch.device) -> None:
    """Fit the softmax temperature of best.pt on the validation split and store it."""
    if not len(s.val_y):
        log.info("no validation split: temperature left at 1.0")
        return
    from digitlab.engine.calibrate import calibration_record
    from digitlab.training.checkpoint import build_model

    ckpt = load_checkpoint(best_path)
    model = build_model(ckpt).to(device)
    logits = predict_logits(model, s.val_x, device=device).numpy()
    labels = s.val_y.cpu().numpy()
    record = calibration_record(logits, labels)
    ckpt["temperature"] = record["temperature"]
    ckpt["energy_reference"] = record["energy_reference"]
    ckpt["calibration"] = record
    ckpt.pop("path", None)
    atomic_write(best_path, lambda tmp: torch.save(ckpt, tmp))
    log.info(
        "calibrated best.pt: temperature %.3f%s, validation NLL %.4f -> %.4f, ECE %.4f -> %.4f",
        record["temperature"],
        "" if record["temperature_kept"] else " (the fitted one did not lower the NLL)",
        record["val_nll_before"],
        record["val_nll_after"],
        record["val_ece_before"],
        record["val_ece_after"],
    )
