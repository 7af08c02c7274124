"""Two or more models reading the same hard-case images, made from MNIST *validation* digits.

    python benchmarks/paired_models.py default new=runs/candidate/best.pt --kinds uci64 --n 600

For each kind of ``tune_images.HARD_KINDS`` asked for, ``--n`` validation digits (never seen in
training, unlike ``hard_cases.py``'s training digits) are rendered once, with a seed of the
kind's own, and every model reads the same images through the whole engine. Per kind: accuracy,
"no digit", and against the first model the images only the other reads right (+) and only
the first does (-): a paired comparison, far more sensitive than two accuracies.

These are development images (the tune side): choosing between models on them is allowed; the
report suite (``robustness.py --suite report``) says how the choice does on images made by
other code. Writes ``paired_models.json`` and ``.md`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import zlib
from pathlib import Path

import numpy as np

import digitlab
import tune_images
from common import RESULTS, machine, mnist_dir
from digitlab.training.data import load_mnist, split_indices

DEFAULT_KINDS = ("uci64", "lowres", "marker", "soft", "photo_any", "notebook", "edge", "small")


def read(recognizer, images: list) -> np.ndarray:
    """The digit each image is read as (-1 for "no digit")."""
    return np.array(
        [-1 if (p := recognizer.predict(im)).digit is None else p.digit for im in images]
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "models", nargs="+", help="bundled names, checkpoints or .onnx files; LABEL=PATH names one"
    )
    p.add_argument(
        "--kinds", nargs="+", default=list(DEFAULT_KINDS), choices=tune_images.HARD_KINDS
    )
    p.add_argument("--n", type=int, default=400, help="validation digits per kind")
    p.add_argument("--data-dir", help="MNIST folder")
    p.add_argument("--out", default=str(RESULTS), help="folder for the result files")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    data = load_mnist(mnist_dir(args.data_dir), download=False)
    _, val = split_indices(len(data.train_labels), 5000, 0)  # the trainer's validation split
    paths = dict(m.split("=", 1) if "=" in m else (m, m) for m in args.models)
    recognizers = {label: digitlab.load_model(path) for label, path in paths.items()}
    names = list(paths)
    rows = []
    for kind in args.kinds:
        rng = np.random.default_rng(zlib.crc32(kind.encode()))
        idx = rng.choice(val, args.n, replace=False)
        images = [tune_images.hard_case(data.train_images[i], kind, rng) for i in idx]
        labels = data.train_labels[idx]
        right = {}
        for name, rec in recognizers.items():
            got = read(rec, images)
            right[name] = got == labels
            first = right[names[0]]
            rows.append(
                {
                    "kind": kind,
                    "model": name,
                    "n": args.n,
                    "accuracy": float(right[name].mean()),
                    "no_digit": float((got == -1).mean()),
                    "only_this": int((right[name] & ~first).sum()),
                    "only_first": int((~right[name] & first).sum()),
                }
            )
            r = rows[-1]
            print(
                f"{kind:10s} {name[-40:]:40s} {r['accuracy']:7.2%}  no digit {r['no_digit']:6.2%}"
                f"  +{r['only_this']} -{r['only_first']}",
                flush=True,
            )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = {"models": paths, "n": args.n, "rows": rows, "machine": machine()}
    (out / "paired_models.json").write_text(json.dumps(report, indent=2))
    lines = [
        "# Models read the same images (MNIST validation digits, tune_images hard cases)",
        "",
        f"`python benchmarks/paired_models.py {' '.join(args.models)} --kinds "
        f"{' '.join(args.kinds)} --n {args.n}`; +a -b: images only this model reads right / only "
        f"the first ({names[0]}) does. Development images: see the script's docstring.",
        "",
        "| kind | model | n | accuracy | no digit | +only this | -only the first |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['kind']} | `{r['model']}` | {r['n']} | {r['accuracy']:.2%} | "
            f"{r['no_digit']:.2%} | {r['only_this']} | {r['only_first']} |"
        )
    lines += ["", f"_{report['machine'].get('date', '')}_"]
    (out / "paired_models.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
