"""The hard cases of issue #15, on MNIST *training* digits: the development set for ink extraction.

For each kind of :data:`tune_images.HARD_KINDS` (marker pen filling a photo, digit cut by the
photo's edge, small digit on a 2000x1500 page, ruled or squared notebook paper, soft enlarged
scan, UCI-like 8x8 enlarged to 64 px, hairline 1s and 7s, any photo) it measures accuracy and the
false "no digit" rate; for :data:`tune_images.HARD_BLANK_KINDS` and the tune suite's blanks, the
share read as "no digit". The rules of ``digitlab.engine.ink`` were chosen on these images, so
they are no report of how the engine does on images nobody has seen (the report suite is).

    python benchmarks/hard_cases.py              # 120 digits per kind
    python benchmarks/hard_cases.py --n 30       # quick look

Writes ``benchmarks/results/hard_cases.json`` and ``hard_cases.md``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import tune_images as synth
from common import RESULTS, machine, mnist_dir
from digitlab.api import load_model
from digitlab.training.data import load_mnist

logger = logging.getLogger("benchmarks.hard_cases")


def run(n: int, model: str | None, data_dir: str | None) -> dict:
    """Accuracy and "no digit" per hard kind, "no digit" per blank kind."""
    rec = load_model(model)
    mnist = load_mnist(mnist_dir(data_dir), download=False)
    images, labels = mnist.train_images, mnist.train_labels
    out: dict = {}
    for k, kind in enumerate(synth.HARD_KINDS):
        rng = np.random.default_rng(1000 + k)
        pool = np.arange(len(labels))
        if kind == "thin17":
            pool = np.flatnonzero(np.isin(labels, [1, 7]))
        idx = rng.choice(pool, n, replace=False)
        start = time.perf_counter()
        preds = rec.predict_batch([synth.hard_case(images[i], kind, rng) for i in idx])
        out[kind] = {
            "n": n,
            "accuracy": float(
                np.mean([p.digit == y for p, y in zip(preds, labels[idx], strict=True)])
            ),
            "no_digit": float(np.mean([p.digit is None for p in preds])),
        }
        logger.info("%s %s (%.1f s)", kind, out[kind], time.perf_counter() - start)
    for k, kind in enumerate(synth.HARD_BLANK_KINDS + synth.BLANK_KINDS + synth.GAP_BLANK_KINDS):
        rng = np.random.default_rng(2000 + k)
        make = synth.blank_image if kind in synth.BLANK_KINDS else synth.hard_blank
        preds = rec.predict_batch([make(kind, rng) for _ in range(n // 2)])
        out["blank:" + kind] = {
            "n": n // 2,
            "no_digit": float(np.mean([p.digit is None for p in preds])),
        }
    return {"model": rec.info.to_dict(), "n": n, "machine": machine(), "results": out}


def table(report: dict) -> list[str]:
    """Markdown table lines."""
    lines = ["| kind | n | accuracy | no digit |", "|---|---:|---:|---:|"]
    for kind, r in report["results"].items():
        acc = f"{100 * r['accuracy']:.1f}%" if "accuracy" in r else ""
        lines.append(f"| {kind} | {r['n']} | {acc} | {100 * r['no_digit']:.1f}% |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=120, help="digits per kind")
    parser.add_argument("--model", default=None, help="checkpoint or .onnx (default: bundled)")
    parser.add_argument("--data-dir", default=None, help="MNIST folder")
    parser.add_argument("--out", default=str(RESULTS), help="folder for the result files")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    report = run(args.n, args.model, args.data_dir)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "hard_cases.json").write_text(json.dumps(report, indent=2))
    lines = [
        "# Hard cases of issue #15 (development set, MNIST training digits)",
        "",
        f"`python benchmarks/hard_cases.py --n {args.n}`, the bundled model unless `--model`. "
        "The engine's rules were chosen on these images: this is no report (see "
        "robustness.md's report suite). The kinds of `tune_images.GAP_BLANK_KINDS` "
        f"({', '.join(synth.GAP_BLANK_KINDS)}) are known gaps that no test holds.",
        "",
        *table(report),
    ]
    (out / "hard_cases.md").write_text("\n".join(lines) + "\n")
    print("\n".join(table(report)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
