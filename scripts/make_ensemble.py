"""Combine trained checkpoints into one ensemble checkpoint (the accuracy option).

    python scripts/make_ensemble.py OUT.pt runs/a/best.pt runs/b/best.pt [--data-dir DIR]

The members must share the validation split (same ``val_size`` and ``split_seed``). The
ensemble's own temperature is fitted on that validation split; validation and test accuracy are
measured and stored in the checkpoint. The result loads like any checkpoint
(``digitlab.load_model("OUT.pt")``, ``digitlab evaluate OUT.pt``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from digitlab.core.errors import DigitlabError
from digitlab.engine.calibrate import calibration_record
from digitlab.training.checkpoint import build_model, load_checkpoint, save_checkpoint
from digitlab.training.data import load_mnist, split_indices
from digitlab.training.evaluate import loss_and_accuracy, predict_logits
from digitlab.training.models import create_model
from digitlab.training.trainer import run_train_seconds


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out")
    p.add_argument("members", nargs="+")
    p.add_argument("--data-dir")
    args = p.parse_args(argv)
    ckpts = [load_checkpoint(m) for m in args.members]
    splits = {
        (c["train_config"].get("val_size"), c["train_config"].get("split_seed")) for c in ckpts
    }
    if len(splits) != 1:
        raise DigitlabError(f"members use different validation splits: {sorted(splits)}")
    val_size, split_seed = splits.pop()
    members = [
        {"name": c["model_name"], "config": c["model_config"], "temperature": c["temperature"]}
        for c in ckpts
    ]
    model = create_model("ensemble", members=members)
    for sub, c in zip(model.members, ckpts, strict=True):
        sub.load_state_dict(build_model(c).state_dict())
    model.eval()
    data = load_mnist(args.data_dir)
    _, val_idx = split_indices(len(data.train_images), val_size, seed=split_seed)
    val_logits = predict_logits(model, data.train_images[val_idx])
    val_labels = data.train_labels[val_idx]
    test_logits = predict_logits(model, data.test_images)
    val_acc = loss_and_accuracy(val_logits, val_labels)[1]
    test_acc = loss_and_accuracy(test_logits, data.test_labels)[1]
    record = calibration_record(val_logits.numpy(), np.asarray(val_labels))
    t = record["temperature"]
    train_config = {
        "val_size": val_size,
        "split_seed": split_seed,
        "members": [str(m) for m in args.members],
    }
    # Each member's training time, from its run's metrics.csv when the checkpoint sits in its run.
    seconds = [run_train_seconds(Path(m).parent) for m in args.members]
    save_checkpoint(
        args.out,
        model_name="ensemble",
        model_config={"members": members},
        model=model,
        metrics={"val_acc": val_acc, "test_acc": test_acc},
        train_config=train_config,
        temperature=t,
        extra={
            "train_seconds": sum(seconds) if None not in seconds else None,
            "energy_reference": record["energy_reference"],
            "calibration": record,
        },
    )
    for path, c in zip(args.members, ckpts, strict=True):
        print(
            f"member {path}: val {c['metrics']['val_acc']:.4%} test {c['metrics']['test_acc']:.4%}"
        )
    print(f"ensemble -> {args.out}: val {val_acc:.4%} test {test_acc:.4%} temperature {t:.3f}")
    return 0


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    sys.exit(main())
