"""Every registered network trained with the same recipe: parameters, time, accuracy, latency.

Each model is trained by the real pipeline (``digitlab.training.trainer.train``) on the 55,000-image
training split, the checkpoint with the best validation accuracy is kept, and its test accuracy
is reported (test is never used for choices). Single-image latency is the median of repeated
``model(x)`` calls on one ``(1, 1, 28, 28)`` image under ``torch.inference_mode`` after warm-up.

    python benchmarks/model_zoo.py                      # every model, 3 epochs each
    python benchmarks/model_zoo.py --model cnn3 --epochs 5

Writes ``benchmarks/results/model_zoo.json`` and ``.md`` (the README table comes from there).
The bundled models' rows (the default and the ensemble) come from their own longer recipes
(see MODEL_CARD.md) and are added from their checkpoints' recorded metrics, marked as such.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
from pathlib import Path

import torch

from common import RESULTS, machine, mnist_dir
from digitlab.core.errors import CheckpointError
from digitlab.training.checkpoint import load_model_from_checkpoint
from digitlab.training.data import load_mnist
from digitlab.training.export import single_latencies
from digitlab.training.models import available_models, count_parameters
from digitlab.training.trainer import TrainConfig, train

LATENCY_RUNS = 300


@torch.inference_mode()
def single_image_latency_ms(model: torch.nn.Module, runs: int = LATENCY_RUNS) -> float:
    """Median wall time of one forward pass on one image, in milliseconds."""
    model.eval()
    x = torch.rand(1, 1, 28, 28)
    for _ in range(20):
        model(x)
    return 1000 * statistics.median(single_latencies(model, x, runs))


def bench_model(name: str, epochs: int, data, workdir: Path) -> dict:
    cfg = TrainConfig(
        model=name,
        epochs=epochs,
        batch_size=128,
        optimizer="adamw",
        scheduler="onecycle",
        augment=True,
        run_dir=str(workdir / name),
    )
    result = train(cfg, data=data)
    model, ckpt = load_model_from_checkpoint(result.best_path)
    return {
        "model": name,
        "parameters": count_parameters(model),
        "epochs": epochs,
        "train_seconds": sum(r["seconds"] for r in result.history),
        "best_epoch": ckpt["epoch"],
        "val_acc": ckpt["metrics"]["val_acc"],
        "test_acc": ckpt["metrics"]["test_acc"],
        "latency_ms": single_image_latency_ms(model),
        "recipe": f"{epochs} epochs, AdamW one-cycle, batch 128, affine augmentation",
    }


def bundled_row(name: str = "default") -> dict | None:
    """A bundled model (``default`` or ``ensemble``), from the metrics its making recorded
    (not retrained here)."""
    try:
        model, ckpt = load_model_from_checkpoint(name)  # one read of the file
    except CheckpointError:  # not installed (or unreadable): no row
        return None
    tc = ckpt.get("train_config", {})
    return {
        "model": f"{name} (bundled {ckpt['model_name']})",
        "parameters": count_parameters(model),
        "epochs": tc.get("epochs"),
        "train_seconds": ckpt.get("train_seconds"),
        "best_epoch": ckpt.get("epoch"),
        "val_acc": _finite(ckpt["metrics"].get("val_acc")),  # NaN: trained on all 60k
        "test_acc": _finite(ckpt["metrics"].get("test_acc")),
        "latency_ms": single_image_latency_ms(model),
        "recipe": "MODEL_CARD.md recipe" + (f" ({tc['epochs']} epochs)" if "epochs" in tc else ""),
    }


def _finite(v) -> float | None:
    return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None


def _cell(v, fmt: str) -> str:
    return "—" if v is None else format(v, fmt)


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:.2f}%"


def render(rows: list[dict]) -> str:
    lines = [
        "| model | parameters | epochs | CPU training time | val acc | test acc | "
        "1-image latency |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['parameters']:,} | {_cell(r['epochs'], 'd')} | "
            f"{_cell(r['train_seconds'], '.0f')} s | {_pct(r['val_acc'])} | "
            f"{_pct(r['test_acc'])} | {r['latency_ms']:.2f} ms |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", action="append", help="only this model (repeatable)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--data-dir", help="MNIST folder (default $DIGITLAB_DATA, ../shared/mnist)")
    p.add_argument("--out", default=str(RESULTS / "model_zoo.json"))
    args = p.parse_args(argv)
    data = load_mnist(mnist_dir(args.data_dir), download=False)
    # The ensemble is assembled from trained members (scripts/make_ensemble.py), not trained.
    names = args.model or [n for n in available_models() if n != "ensemble"]
    rows = []
    with tempfile.TemporaryDirectory(prefix="digitlab-zoo-") as tmp:
        for name in names:
            row = bench_model(name, args.epochs, data, Path(tmp))
            print(json.dumps(row), flush=True)
            rows.append(row)
    rows += [row for row in (bundled_row("default"), bundled_row("ensemble")) if row]
    table = render(rows)
    info = machine()
    print(table)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": info, "rows": rows}, indent=2) + "\n")
    out.with_suffix(".md").write_text(f"# Model zoo\n\n{info}\n\n{table}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
