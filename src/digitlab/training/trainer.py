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
``train.log``.
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
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from digitlab.core.errors import DigitlabError
from digitlab.core.io import atomic_write
from digitlab.training.augment import AugmentConfig, augment_batch
from digitlab.training.checkpoint import load_checkpoint, save_checkpoint
from digitlab.training.evaluate import loss_and_accuracy, predict_logits
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
            (
                self.device in ("auto", "cpu", "cuda", "mps") or self.device.startswith("cuda:"),
                f"--device must be auto, cpu, cuda or mps, got {self.device!r}",
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


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA, then MPS, then CPU; an explicit device that is absent is an error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DigitlabError("--device cuda: no CUDA GPU is available (try --device cpu)")
    if name == "mps" and not (torch.backends.mps.is_available()):
        raise DigitlabError("--device mps: Apple MPS is not available (try --device cpu)")
    return torch.device(name)


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
        return torch.optim.lr_scheduler.OneCycleLR(
            opt,
            max_lr=cfg.peak_lr,
            total_steps=total,
            pct_start=0.25,
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


def train_step(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    label_smoothing: float = 0.0,
    autocast: Any = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimisation step on a float batch; returns (loss, logits) detached."""
    with autocast if autocast is not None else contextlib.nullcontext():
        logits = model(x)
        loss = F.cross_entropy(logits, y, label_smoothing=label_smoothing)
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


def save_curves_png(path: Path, history: list[dict], title: str = "") -> None:
    """Loss, accuracy and epoch-time curves of a run, as one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [r["epoch"] for r in history]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), dpi=100)
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
    from matplotlib.ticker import MaxNLocator

    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[2].set(title="training seconds per epoch", xlabel="epoch")
    for ax in axes[:2]:
        ax.legend()
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)


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


def _evaluate_splits(model: nn.Module, s: _Splits, device: torch.device) -> dict[str, float]:
    row = {}
    for name, x, y in (("val", s.val_x, s.val_y), ("test", s.test_x, s.test_y)):
        if len(y):
            # predict_logits returns CPU logits; compare with CPU labels on any device.
            loss, acc = loss_and_accuracy(predict_logits(model, x, device=device), y.cpu())
        else:
            loss, acc = float("nan"), float("nan")
        row[f"{name}_loss"], row[f"{name}_acc"] = loss, acc
    return row


def train(
    config: TrainConfig,
    *,
    data: Any = None,
    callback: Callable[[dict], None] | None = None,
    stop_event: threading.Event | None = None,
) -> TrainResult:
    """Run (or resume) a training run; returns where its files are and its per-epoch metrics.

    ``data`` is an object with ``train_images``/``train_labels``/``test_images``/``test_labels``
    arrays (default: :func:`digitlab.training.data.load_mnist`). ``callback`` receives step and
    epoch events (see module docs); ``stop_event`` stops the run cleanly with ``last.pt`` saved.
    """
    info = dist_info()
    cfg, resume_ckpt = _resolve_resume(config)
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
    file_handler = _start_run_dir(run_dir, cfg, info)
    try:
        return _run(cfg, info, device, run_dir, resume_ckpt, data, callback, stop_event)
    finally:
        if file_handler is not None:
            logging.getLogger("digitlab").removeHandler(file_handler)
            file_handler.close()


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
        for k in ("epochs", "device", "data_dir", "threads")
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


def _run(cfg, info, device, run_dir, resume_ckpt, data, callback, stop_event) -> TrainResult:
    splits = prepare_splits(cfg, data, device)
    torch.manual_seed(cfg.seed)  # model initialisation
    mcfg = model_config(cfg.model, **cfg.model_config)
    model = create_model(cfg.model, **mcfg).to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    n_train = len(splits.train_y)
    shard = n_train // info.world_size  # equal shards: every rank takes the same number of steps
    steps = math.ceil(shard / cfg.batch_size)
    opt = make_optimizer(model.parameters(), cfg)
    sched = make_scheduler(opt, cfg, steps)
    history: list[dict] = []
    start_epoch, best_acc, since_best = 1, -1.0, 0
    if resume_ckpt:
        model.load_state_dict(resume_ckpt["state_dict"])
        opt.load_state_dict(resume_ckpt["optimizer_state"])
        if sched is not None and "scheduler_state" in resume_ckpt:
            _load_scheduler(sched, resume_ckpt["scheduler_state"], cfg)
        history = list(resume_ckpt.get("history", []))
        start_epoch = int(resume_ckpt["epoch"]) + 1
        best_acc = float(resume_ckpt.get("best_val_acc", -1.0))
        since_best = int(resume_ckpt.get("since_best", 0))
        log.info("resuming %s from epoch %d", resume_ckpt["path"], start_epoch - 1)
    train_model: nn.Module = model
    if info.enabled:
        train_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    autocast = make_autocast(device, cfg.precision)
    if info.is_main:
        log.info(
            "training %s (%s parameters) on %s: %d train / %d val / %d test images from %s; "
            "effective batch %d (%d x %d processes), peak lr %g; run dir %s",
            cfg.model,
            f"{count_parameters(model):,}",
            device,
            n_train,
            len(splits.val_y),
            len(splits.test_y),
            splits.source,
            cfg.batch_size * info.world_size,
            cfg.batch_size,
            info.world_size,
            cfg.peak_lr,
            run_dir,
        )
    loop = _Loop(train_model, opt, sched, splits, cfg, mcfg, steps, shard, info, device, autocast)
    best_path, last_path = run_dir / "best.pt", run_dir / "last.pt"
    interrupted = False
    epoch = start_epoch - 1
    for epoch in range(start_epoch, cfg.epochs + 1):
        t0 = time.perf_counter()
        stats = _train_epoch(loop, epoch, callback, stop_event)
        seconds = time.perf_counter() - t0
        if stats is None:  # stopped mid-epoch
            interrupted = True
            epoch -= 1
            break
        row = {
            "epoch": epoch,
            **stats,
            **_evaluate_splits(model, splits, device),
            "lr": opt.param_groups[0]["lr"],
            "seconds": seconds,
        }
        history.append(row)
        if sched is not None and cfg.scheduler == "step":
            sched.step()
        elif sched is not None and cfg.scheduler == "plateau":
            sched.step(row["val_acc"] if not math.isnan(row["val_acc"]) else row["train_acc"])
        score = selection_score(row)
        improved = score > best_acc
        best_acc, since_best = (score, 0) if improved else (best_acc, since_best + 1)
        if info.is_main:
            _log_epoch(row, cfg.epochs)
            extra = {"history": history, "best_val_acc": best_acc, "since_best": since_best}
            if improved:
                _save(best_path, loop, epoch, row, extra)
            _save(last_path, loop, epoch, row, extra, with_optimizer=True)
            _write_metrics_csv(run_dir / "metrics.csv", history)
            save_curves_png(run_dir / "curves.png", history, f"{cfg.model} — {run_dir.name}")
        if callback:
            callback({"kind": "epoch", **row})
        if cfg.early_stopping and since_best >= cfg.early_stopping:
            log.info("early stopping: no better validation accuracy for %d epochs", since_best)
            break
        if stop_event is not None and stop_event.is_set():
            interrupted = True
            break
    if info.is_main:
        if interrupted and not last_path.exists():
            # Stopped inside the first epoch: keep what we have, marked as epoch 0.
            _save(last_path, loop, 0, {}, {"history": [], "partial": True}, with_optimizer=True)
        if history and not interrupted and best_path.exists():
            _calibrate(best_path, splits, device)
        log.info("run directory: %s%s", run_dir, " (stopped early)" if interrupted else "")
    if info.enabled:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()
    return TrainResult(run_dir, best_path, last_path, history, interrupted)


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


@dataclass
class _Loop:
    """What every epoch of a run needs, built once by ``_run``."""

    model: nn.Module  # what is trained: the network, DDP-wrapped under torchrun
    opt: torch.optim.Optimizer
    sched: Any
    splits: _Splits
    cfg: TrainConfig
    mcfg: dict  # the model's full constructor config (stored in checkpoints)
    steps: int  # optimizer steps per epoch on this rank
    shard: int  # training images per epoch on this rank
    info: DistInfo
    device: torch.device
    autocast: Any


def _train_epoch(
    loop: _Loop,
    epoch: int,
    callback: Callable[[dict], None] | None,
    stop_event: threading.Event | None,
) -> dict | None:
    """One pass over this rank's shard; returns train loss/acc, or None if stopped."""
    model, opt, sched, s, cfg = loop.model, loop.opt, loop.sched, loop.splits, loop.cfg
    steps, shard, info, device, autocast = (
        loop.steps,
        loop.shard,
        loop.info,
        loop.device,
        loop.autocast,
    )
    gen = epoch_generator(cfg.seed, epoch, device)  # shuffling: identical on every rank
    aug_gen = epoch_generator(cfg.seed + 7919 * info.rank, epoch, device)  # augmentation: per rank
    torch.manual_seed(cfg.seed * 1_000_003 + epoch + 7919 * info.rank)  # dropout
    perm = torch.randperm(len(s.train_y), generator=gen, device=device)
    mine = perm[info.rank * shard : (info.rank + 1) * shard]  # disjoint shard per rank
    aug = augment_config(cfg)
    model.train()
    progress = _Progress(info.is_main, epoch, cfg.epochs, steps)
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen = 0
    try:
        for step in range(1, steps + 1):
            idx = mine[(step - 1) * cfg.batch_size : step * cfg.batch_size]
            x = s.train_x[idx].float().div_(255)
            if cfg.augment:
                x = augment_batch(x, aug, aug_gen)
            if cfg.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            y = s.train_y[idx]
            loss, logits = train_step(
                model, opt, x, y, label_smoothing=cfg.label_smoothing, autocast=autocast
            )
            if sched is not None and cfg.scheduler in PER_BATCH_SCHEDULERS:
                sched.step()
            loss_sum += loss * len(y)
            correct += (logits.argmax(1) == y).sum()
            seen += len(y)
            if callback or progress.enabled:
                # .item() syncs the device; only pay for it when someone is watching.
                lval, aval = loss.item(), (logits.argmax(1) == y).float().mean().item()
                progress.update(step, lval, aval)
                if callback:
                    callback(
                        {
                            "kind": "step",
                            "epoch": epoch,
                            "step": step,
                            "steps": steps,
                            "loss": lval,
                            "acc": aval,
                        }
                    )
            if stop_event is not None and stop_event.is_set() and step < steps:
                return None
    except KeyboardInterrupt:
        return None
    finally:
        progress.close()
    total_loss, total_correct, total_seen = _all_reduce_sum(
        [loss_sum.item(), float(correct.item()), float(seen)], info, device
    )
    return {"train_loss": total_loss / total_seen, "train_acc": total_correct / total_seen}


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


def _save(
    path: Path, loop: _Loop, epoch: int, row: dict, extra: dict, with_optimizer: bool = False
) -> None:
    save_checkpoint(
        path,
        model_name=loop.cfg.model,
        model_config=loop.mcfg,
        model=loop.model,  # save_checkpoint unwraps DDP's .module
        epoch=epoch,
        metrics=row,
        train_config=loop.cfg.to_dict(),
        optimizer=loop.opt if with_optimizer else None,
        scheduler=loop.sched if with_optimizer else None,
        extra=extra,
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
        "calibrated best.pt: temperature %.3f, validation ECE %.4f -> %.4f",
        record["temperature"],
        record["val_ece_before"],
        record["val_ece_after"],
    )
