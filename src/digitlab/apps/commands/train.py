"""``digitlab train``: train a network from the zoo on MNIST (also under torchrun)."""

from __future__ import annotations

import argparse
import math


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a network on MNIST",
        description="Train a network from the zoo on MNIST. Every option left out takes the "
        "TrainConfig default (see README); with --resume the run's stored options are used.",
    )
    add_train_options(p)
    p.add_argument(
        "--tensorboard",
        action="store_true",
        default=None,
        help="also write TensorBoard event files (scalars per step and epoch, misclassified "
        "validation digits per epoch) into the run directory; needs digitlab[tensorboard]",
    )
    p.set_defaults(func=run)


def add_train_options(p: argparse.ArgumentParser) -> None:
    """Training options, shared with ``digitlab kaggle``. Unset options stay None."""
    g = p.add_argument_group("training")
    g.add_argument("--model", help="zoo name (see `digitlab models`); default digitnet")
    g.add_argument("--epochs", type=int)
    g.add_argument("--batch-size", type=int)
    g.add_argument("--lr", type=float, help="peak learning rate (default depends on optimizer)")
    g.add_argument("--optimizer", choices=("adam", "adamw", "sgd", "adadelta"))
    g.add_argument("--weight-decay", type=float)
    g.add_argument(
        "--betas",
        type=float,
        nargs=2,
        metavar=("B1", "B2"),
        help="Adam/AdamW moment decay rates (default 0.9 0.999)",
    )
    g.add_argument("--scheduler", choices=("onecycle", "cosine", "step", "plateau", "none"))
    g.add_argument(
        "--augment",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="random affine augmentation on the training device (default on)",
    )
    g.add_argument(
        "--elastic",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="add elastic distortion to the augmentation",
    )
    g.add_argument(
        "--rotation",
        type=float,
        dest="rotation_deg",
        metavar="DEG",
        help="largest rotation of the affine augmentation, degrees either way (default 12)",
    )
    g.add_argument(
        "--degrade",
        type=float,
        nargs="?",
        const=0.5,
        metavar="FRACTION",
        help="degrade this share of each batch (blur, low resolution, stroke width, contrast, "
        "gamma, noise, perspective/elastic warp; training.augment.DegradeConfig); bare --degrade "
        "= 0.5, default 0 (off)",
    )
    g.add_argument(
        "--outliers",
        type=float,
        nargs="?",
        const=0.25,
        metavar="FRACTION",
        help="outlier exposure: add FRACTION x batch-size pieces that are not one digit (two "
        "touching, half of one, one with part of a neighbour; training.outliers) to each batch, "
        "trained toward 'none of the ten'; they teach number reading where to cut. Bare "
        "--outliers = 0.25, default 0 (off)",
    )
    g.add_argument(
        "--engine-views",
        type=float,
        nargs="?",
        const=0.25,
        metavar="FRACTION",
        help="add FRACTION x batch-size training digits rendered as users' images (small "
        "scans enlarged, soft photos, marker pens) and preprocessed by the engine "
        "(training.engine_views) to each batch: the network trains on what it is given. Bare "
        "--engine-views = 0.25, default 0 (off)",
    )
    g.add_argument("--label-smoothing", type=float)
    g.add_argument(
        "--early-stopping",
        type=int,
        metavar="PATIENCE",
        help="stop after PATIENCE epochs without a better validation accuracy",
    )
    g.add_argument("--val-size", type=int, help="validation images carved from train (5000)")
    g.add_argument("--train-samples", type=int, metavar="N", help="use only N training images")
    g.add_argument("--seed", type=int)
    g.add_argument("--device", help="auto, cpu, cuda or mps (default auto)")
    g.add_argument("--threads", type=int, help="torch CPU threads (default: all cores)")
    g.add_argument(
        "--channels-last",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="NHWC memory layout (faster convolutions on CPU)",
    )
    g.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16"),
        help="auto: mixed precision on CUDA, fp32 on CPU (default); bf16: bfloat16 autocast "
        "on any device (faster on CPUs with AVX-512 BF16 or AMX)",
    )
    g.add_argument("--width", type=int, help="digitnet width (model config override)")
    g.add_argument("--depth", type=int, help="digitnet depth (model config override)")
    g.add_argument("--run-dir", help="where to write the run (default runs/<time>-<model>)")
    g.add_argument("--data-dir", help="folder with MNIST (else $DIGITLAB_DATA, cache, download)")
    g.add_argument("--resume", metavar="PATH", help="continue a run from its last.pt")
    g.add_argument(
        "--init",
        metavar="CKPT",
        help="start from this checkpoint's weights (a fine-tune: its network, and its batch-norm "
        "statistics kept); a path or a bundled name such as default",
    )


_MODEL_OVERRIDES = ("width", "depth")


def config_from_args(args: argparse.Namespace, **forced):
    """A TrainConfig from the options the user gave (unset ones keep their defaults)."""
    from digitlab.training.trainer import TrainConfig

    given = {
        k: v
        for k, v in vars(args).items()
        if v is not None and k in TrainConfig.__dataclass_fields__
    }
    overrides = {k: getattr(args, k) for k in _MODEL_OVERRIDES if getattr(args, k, None)}
    if overrides:
        given["model_config"] = overrides
    return TrainConfig(**{**given, **forced})


def run(args: argparse.Namespace) -> int:
    from digitlab.training.trainer import dist_info, train

    result = train(config_from_args(args))
    if not dist_info().is_main:
        return 130 if result.interrupted else 0  # under torchrun rank 0 speaks for the job
    best = result.best
    if result.interrupted:
        print(f"stopped; resume with: digitlab train --resume {result.last_path}")
    if best:
        val = (
            "no validation split"
            if math.isnan(best["val_acc"])
            else f"val acc {best['val_acc']:.2%}"
        )
        print(
            f"best epoch {best['epoch']}: {val}, test acc {best['test_acc']:.2%} "
            f"-> {result.best_path}"
        )
    print(f"run directory: {result.run_dir}")
    return 130 if result.interrupted else 0  # 130 = the shell's code for Ctrl-C
