"""``digitlab kaggle``: the Kaggle Digit Recognizer workflow.

Three modes:

* ``digitlab kaggle --train train.csv --test test.csv --out submission.csv [training options]``
  validates both CSVs, trains (the recipe in :data:`digitlab.training.kaggle.BEST_RECIPE`
  unless options say otherwise), reports validation accuracy and writes the submission; with
  ``--checkpoint PATH`` it only predicts.
* ``digitlab kaggle --make-csv DIR`` writes a Kaggle-style competition made from MNIST.
* ``digitlab kaggle --score submission.csv --answers answers.csv`` checks and scores a submission.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
from datetime import datetime
from pathlib import Path

from digitlab.apps.commands.train import add_train_options, config_from_args

log = logging.getLogger(__name__)

DEFAULT_OUT = "submission.csv"
WRONG_IDS_SHOWN = 20  # enough to look a few up, short enough for one terminal line or two
RUN_FILES = ("best.pt", "last.pt", "metrics.csv", "curves.png", "config.json", "train.log")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "kaggle",
        help="Kaggle Digit Recognizer: train on its CSVs and write submission.csv",
        description="Train on Kaggle's train.csv and write submission.csv for test.csv "
        "(both files are validated before training starts); or --make-csv to build Kaggle-style "
        "CSVs from MNIST; or --score to check a submission against an answer key.",
        epilog="Training options left out take the Kaggle recipe "
        "(digitlab.training.kaggle.BEST_RECIPE). "
        "The run directory (best.pt, metrics.csv, curves.png, ...) is kept as with "
        "`digitlab train`, with a copy of the submission and kaggle.json.",
    )
    g = p.add_argument_group("competition")
    g.add_argument("--train", metavar="CSV", help="Kaggle train.csv (label,pixel0..pixel783)")
    g.add_argument("--test", metavar="CSV", help="Kaggle test.csv (pixel0..pixel783)")
    g.add_argument(
        "--out", metavar="CSV", help=f"where to write the submission (default {DEFAULT_OUT})"
    )
    g.add_argument(
        "--checkpoint",
        metavar="PATH",
        help="predict with this checkpoint ('default' = bundled model) instead of training",
    )
    m = p.add_argument_group("offline competition from MNIST")
    m.add_argument(
        "--make-csv",
        metavar="DIR",
        help="write train.csv, test.csv, answers.csv and sources.csv made from MNIST into DIR",
    )
    m.add_argument("--train-rows", type=int, metavar="N", help="rows of train.csv (default 42,000)")
    m.add_argument(
        "--test-rows",
        type=int,
        metavar="N",
        help="rows of test.csv, from MNIST test (default: all of it)",
    )
    s = p.add_argument_group("scoring")
    s.add_argument("--score", metavar="CSV", help="check and score this submission")
    s.add_argument("--answers", metavar="CSV", help="answer key (ImageId,Label) for --score")
    add_train_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from digitlab.core.errors import DigitlabError

    modes = [
        name
        for name, given in (
            ("--make-csv", args.make_csv),
            ("--score", args.score),
            ("--test", args.test),
        )
        if given
    ]
    if len(modes) != 1:
        raise DigitlabError(
            "give exactly one of --test (with --train or --checkpoint), --make-csv DIR, or "
            f"--score SUBMISSION --answers KEY; got {' and '.join(modes) or 'none'}"
        )
    _check_mode_options(args)
    if args.make_csv:
        return _make_csv(args)
    if args.score:
        return _score(args)
    return _submit(args)


def _check_mode_options(args: argparse.Namespace) -> None:
    """Options that belong to another mode are an error, not silently ignored."""
    from digitlab.core.errors import DigitlabError

    belongs = {
        "--train-rows": (args.train_rows, args.make_csv, "--make-csv"),
        "--test-rows": (args.test_rows, args.make_csv, "--make-csv"),
        "--answers": (args.answers, args.score, "--score"),
        "--train": (args.train, args.test, "--test"),
        "--checkpoint": (args.checkpoint, args.test, "--test"),
        "--out": (args.out, args.test, "--test"),
    }
    for option, (value, mode_given, mode) in belongs.items():
        if value is not None and not mode_given:
            raise DigitlabError(f"{option} only applies with {mode}")


# ---------------------------------------------------------------------------------------------
# --make-csv
# ---------------------------------------------------------------------------------------------


def _make_csv(args: argparse.Namespace) -> int:
    from digitlab.training.data import load_mnist
    from digitlab.training.kaggle import (
        KAGGLE_TRAIN_ROWS,
        MAKE_CSV_TEST_ROWS,
        make_competition_csvs,
    )

    train_rows = args.train_rows if args.train_rows is not None else KAGGLE_TRAIN_ROWS
    test_rows = args.test_rows if args.test_rows is not None else MAKE_CSV_TEST_ROWS
    mnist = load_mnist(args.data_dir)
    files = make_competition_csvs(args.make_csv, mnist, train_rows=train_rows, test_rows=test_rows)
    print(f"{files.train_csv}: {files.train_rows:,} labelled rows (from MNIST train)")
    print(f"{files.test_csv}: {files.test_rows:,} rows to predict (from MNIST test)")
    print(f"{files.answers_csv}: the answer key for test.csv (ImageId,Label)")
    print(f"{files.sources_csv}: the MNIST image behind every row")
    print(
        f"try: digitlab kaggle --train {files.train_csv} --test {files.test_csv} "
        f"--out submission.csv && digitlab kaggle --score submission.csv "
        f"--answers {files.answers_csv}"
    )
    return 0


# ---------------------------------------------------------------------------------------------
# --score
# ---------------------------------------------------------------------------------------------


def _score(args: argparse.Namespace) -> int:
    from digitlab.core.errors import DigitlabError
    from digitlab.training.kaggle import score_submission

    if not args.answers:
        raise DigitlabError("--score needs --answers KEY.csv (ImageId,Label)")
    score = score_submission(args.score, args.answers)
    print(
        f"{args.score}: accuracy {score.accuracy:.4%} "
        f"({score.correct:,} of {score.total:,} correct, {len(score.wrong_ids):,} wrong)"
    )
    if score.wrong_ids:
        shown = ", ".join(map(str, score.wrong_ids[:WRONG_IDS_SHOWN]))
        more = ", ..." if len(score.wrong_ids) > WRONG_IDS_SHOWN else ""
        print(f"wrong ImageIds: {shown}{more}")
    return 0


# ---------------------------------------------------------------------------------------------
# --train/--test: train (or load --checkpoint) and write the submission
# ---------------------------------------------------------------------------------------------


def _submit(args: argparse.Namespace) -> int:
    from digitlab.core.errors import DigitlabError
    from digitlab.training.kaggle import load_competition

    if bool(args.train) == bool(args.checkpoint):
        raise DigitlabError(
            "--test needs --train CSV (to train a model) or --checkpoint PATH (to only predict)"
            if not args.train
            else "--train and --checkpoint exclude each other: train a model, or predict "
            "with an existing one"
        )
    out = Path(args.out or DEFAULT_OUT)
    _check_out(out, [args.train, args.test])
    data = load_competition(args.train, args.test)  # both validated before any training
    if args.checkpoint:
        return _predict_only(args, data, out)
    return _train_and_predict(args, data, out)


def _check_out(out: Path, inputs: list[str | None]) -> None:
    from digitlab.core.errors import DigitlabError

    if out.is_dir():
        raise DigitlabError(f"--out {out}: is a directory; give a file name like {DEFAULT_OUT}")
    for given in inputs:
        if given and Path(given).exists() and out.exists() and out.samefile(given):
            raise DigitlabError(f"--out {out} would overwrite the input {given}")


def _predict_only(args: argparse.Namespace, data, out: Path) -> int:
    from digitlab.engine.backends.torch import resolve_device
    from digitlab.training.checkpoint import load_model_from_checkpoint
    from digitlab.training.kaggle import predict_labels, write_submission

    ignored = _given_train_options(args) - {"--device", "--threads"}
    if ignored:
        log.warning("--checkpoint: ignoring training options %s", ", ".join(sorted(ignored)))
    model, ckpt = load_model_from_checkpoint(args.checkpoint)
    device = resolve_device(args.device or "auto")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    model = model.to(device)
    stored_val = ckpt.get("metrics", {}).get("val_acc")
    print(f"model: {ckpt['model_name']} from {ckpt['path']}")
    if _is_number(stored_val):
        print(f"validation accuracy recorded in the checkpoint: {stored_val:.2%}")
    labels = predict_labels(model, data.test_images, device=device)
    write_submission(out, labels)
    print(f"submission: {out} ({len(labels):,} rows)")
    return 0


def _given_train_options(args: argparse.Namespace) -> set[str]:
    """The training options (as ``--name``) the user gave on the command line."""
    probe = argparse.ArgumentParser(add_help=False)
    add_train_options(probe)
    names = vars(probe.parse_args([]))
    return {f"--{k.replace('_', '-')}" for k in names if getattr(args, k, None) is not None}


def _train_and_predict(args: argparse.Namespace, data, out: Path) -> int:
    from digitlab.engine.backends.torch import resolve_device
    from digitlab.training.checkpoint import load_model_from_checkpoint
    from digitlab.training.kaggle import predict_labels, write_submission
    from digitlab.training.trainer import train

    config = kaggle_config(args)
    result = train(config, data=data)
    if result.interrupted or not result.best_path.exists():
        print(
            f"training stopped before it finished; no submission written. Resume with "
            f"`digitlab kaggle --train {args.train} --test {args.test} --resume "
            f"{result.last_path}`"
        )
        return 130
    model, ckpt = load_model_from_checkpoint(result.best_path)
    device = resolve_device(config.device)
    labels = predict_labels(model.to(device), data.test_images, device=device)
    write_submission(out, labels)
    write_submission(result.run_dir / "submission.csv", labels)
    best = result.best
    _write_summary(result, args, config, out, best, len(labels))
    _print_report(result, config, data, out, best, len(labels), ckpt)
    return 0


def kaggle_config(args: argparse.Namespace):
    """The TrainConfig for a Kaggle run: :data:`BEST_RECIPE` under the options the user gave.

    With ``--resume`` the stored run's options are used (as with ``digitlab train``).
    Test metrics are off (Kaggle's test rows have no labels).
    """
    from digitlab.training.kaggle import recipe_for

    if args.resume:
        return config_from_args(args, eval_test=False)
    recipe = recipe_for(args.model)
    filled = argparse.Namespace(**vars(args))
    for key, value in recipe.items():
        if key != "model_config" and getattr(filled, key, None) is None:
            setattr(filled, key, value)
    run_dir = args.run_dir or str(
        Path("runs") / f"{datetime.now():%Y%m%d-%H%M%S}-kaggle-{recipe['model']}"
    )
    config = config_from_args(filled, eval_test=False, run_dir=run_dir)
    # --width/--depth (config.model_config) refine the recipe's model config.
    return dataclasses.replace(
        config, model_config={**recipe["model_config"], **config.model_config}
    )


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not math.isnan(value)


def _write_summary(result, args, config, out: Path, best: dict, rows: int) -> None:
    from digitlab.core.io import atomic_write

    summary = {
        "train_csv": str(Path(args.train).resolve()),
        "test_csv": str(Path(args.test).resolve()),
        "submission": str(out.resolve()),
        "submission_rows": rows,
        "model": config.model,
        "best_epoch": best.get("epoch"),
        "val_acc": best.get("val_acc") if _is_number(best.get("val_acc")) else None,
        "val_size": config.val_size,
        "best_path": str(result.best_path),
    }
    text = json.dumps(summary, indent=2) + "\n"
    atomic_write(result.run_dir / "kaggle.json", lambda tmp: Path(tmp).write_text(text))


def _print_report(result, config, data, out: Path, best: dict, rows: int, ckpt: dict) -> None:
    n_val = min(config.val_size, len(data.train_labels))
    n_train = len(data.train_labels) - n_val
    if config.train_samples is not None:
        n_train = min(n_train, config.train_samples)
    val_acc = best.get("val_acc")
    if _is_number(val_acc):
        print(
            f"best epoch {best['epoch']}: validation accuracy {val_acc:.2%} on {n_val:,} "
            f"rows held out of {len(data.train_labels):,} (trained on {n_train:,})"
        )
    else:
        print("no validation rows (--val-size 0): validation accuracy not measured")
    print(f"model: {config.model}, softmax temperature {float(ckpt.get('temperature', 1.0)):.3f}")
    print(f"submission: {out} ({rows:,} rows)")
    kept = [
        f for f in (*RUN_FILES, "submission.csv", "kaggle.json") if (result.run_dir / f).exists()
    ]
    print(f"run directory: {result.run_dir} ({', '.join(kept)})")
