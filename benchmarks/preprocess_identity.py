"""Check that a faster preprocessing gives bit-identical model inputs: old tree vs this tree.

Speed work on ``engine/ink.py``, ``normalise.py`` and ``preprocess.py`` must not move a single
pixel. This script makes a few thousand varied images (MNIST test digits as the server gets
them, the tune suite's canvas drawings, rotated digits, photos, hard cases, blanks, UCI 8x8
digits, scribbles, letters; :mod:`tune_images`), runs :func:`digitlab.engine.preprocess.
to_model_input` on each in a subprocess for each source tree, and compares everything it
returns: the 28x28 image, ``has_ink``, box, polarity, stroke width, affine map and the photo
alternative (image, ``has_ink``). It also reports each tree's preprocessing CPU time per kind of
image: the two trees run in turn ``--rounds`` times (A B A B ...) and each image keeps its least
time, so a busy moment of the shared machine does not land on one tree only.

    git archive BASE src | tar -x -C /tmp/base          # the tree before the change
    python benchmarks/preprocess_identity.py --reference-src /tmp/base/src --reference-label BASE
    python benchmarks/preprocess_identity.py --reference-src /tmp/base/src --count 500  # quick

Writes ``benchmarks/results/preprocess_identity.{json,md}`` (``--out``); exit status 1 when any
image differs.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import pickle
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, machine, mnist_dir

REPO = Path(__file__).resolve().parents[1]
SEED = 16
# Share of --count per kind of image (photos and hard cases are slow: 0.05-0.1 s each).
MIX = {
    "mnist_png": 0.20,  # a 28x28 test digit, dark on light (the server's small payload)
    "mnist_raw": 0.05,  # the same, light on dark (MNIST's own polarity)
    "canvas": 0.30,  # tune_images.canvas, every CANVAS_KINDS kind
    "rotated": 0.08,
    "photo": 0.08,
    "hard": 0.04,
    "blank": 0.05,
    "uci": 0.08,
    "scribble": 0.04,
    "letter": 0.04,
    "number_digit": 0.04,  # a canvas holding a short number (one "digit" to the preprocessor)
}


def make_images(count: int, data_dir: str | None) -> list[tuple[str, bytes]]:
    """``count`` (kind, encoded image) pairs, reproducible (seed SEED)."""
    import tune_images as synth
    from digitlab.training.data import load_mnist

    mnist = load_mnist(data_dir, download=False)
    digits, labels = mnist.test_images, mnist.test_labels
    rng = np.random.default_rng(SEED)
    uci, _ = synth.uci_digits()
    out: list[tuple[str, bytes]] = []

    def png(img: Image.Image) -> bytes:
        buf = io.BytesIO()
        img.save(buf, "PNG")
        return buf.getvalue()

    def digit() -> np.ndarray:
        return digits[int(rng.integers(len(digits)))]

    for kind, share in MIX.items():
        for i in range(max(1, round(count * share))):
            if kind == "mnist_png":
                data = png(Image.fromarray(255 - digit()))
            elif kind == "mnist_raw":
                data = png(Image.fromarray(digit()))
            elif kind == "canvas":
                data = png(synth.canvas(digit(), synth.CANVAS_KINDS[i % 7], rng))
            elif kind == "rotated":
                data = png(synth.rotated(digit(), rng))
            elif kind == "photo":
                data = synth.photo(digit(), rng)
            elif kind == "hard":
                made = synth.hard_case(digit(), synth.HARD_KINDS[i % len(synth.HARD_KINDS)], rng)
                data = made if isinstance(made, bytes) else png(made)
            elif kind == "blank":
                made = synth.blank_image(synth.BLANK_KINDS[i % len(synth.BLANK_KINDS)], rng)
                data = made if isinstance(made, bytes) else png(made)
            elif kind == "uci":
                data = png(Image.fromarray(uci[int(rng.integers(len(uci)))]))
            elif kind == "scribble":
                data = png(synth.scribble(rng))
            elif kind == "letter":
                data = png(synth.letter("ABCEFHKLMNPRSTUVWXYZ"[i % 20], rng))
            else:
                idx = rng.integers(len(digits), size=int(rng.integers(2, 4)))
                picked = [digits[k] for k in idx]
                data = png(synth.number_strip(picked, [int(labels[k]) for k in idx], rng).image)
            out.append((kind, data))
    return out


def dump(images_file: str, out_file: str) -> None:
    """(Child process.) Preprocess every image with the ``digitlab`` on ``sys.path``."""
    from digitlab.engine.decode import decode_bytes
    from digitlab.engine.preprocess import to_model_input

    with open(images_file, "rb") as f:
        items = pickle.load(f)
    n = len(items)
    image = np.zeros((n, 28, 28), np.uint8)
    alt = np.zeros((n, 28, 28), np.uint8)
    flags = np.zeros((n, 3), bool)  # has_ink, has alternative, alternative has_ink
    meta = np.zeros((n, 11), np.float64)  # box (4), stroke width, affine (6)
    text = []
    seconds = np.zeros(n)
    for i, (_, data) in enumerate(items):
        decoded = decode_bytes(data, f"image {i}")
        start = time.process_time()
        pre = to_model_input(decoded)
        seconds[i] = time.process_time() - start
        image[i] = pre.image
        flags[i, 0] = pre.has_ink
        meta[i, :4] = pre.box or (-1, -1, -1, -1)
        meta[i, 4] = pre.stroke_width
        meta[i, 5:] = pre.affine
        text.append(f"{pre.polarity}|{pre.input_size}")
        if pre.alternative is not None:
            flags[i, 1] = True
            flags[i, 2] = pre.alternative.has_ink
            alt[i] = pre.alternative.image
    np.savez(out_file, image=image, alt=alt, flags=flags, meta=meta, text=np.array(text),
             seconds=seconds)  # fmt: skip


def run_tree(src: Path, images_file: str, out_file: str) -> dict:
    env = dict(os.environ, PYTHONPATH=str(src))
    cmd = [sys.executable, str(Path(__file__).resolve()), "--dump", images_file, out_file]
    subprocess.run(cmd, env=env, check=True)
    with np.load(out_file) as z:
        return {k: z[k] for k in z.files}


def compare(
    items: list[tuple[str, bytes]], old: dict, new: dict, old_s: np.ndarray, new_s: np.ndarray
) -> dict:
    """Identity of the two trees' outputs per kind, and their CPU seconds per image
    (``old_s``, ``new_s``: each image's least time over the rounds)."""
    kinds = np.array([k for k, _ in items])
    same = (
        (old["image"] == new["image"]).all(axis=(1, 2))
        & (old["alt"] == new["alt"]).all(axis=(1, 2))
        & (old["flags"] == new["flags"]).all(axis=1)
        & (old["meta"] == new["meta"]).all(axis=1)
        & (old["text"] == new["text"])
    )
    per_kind = {
        str(k): {
            "images": int((kinds == k).sum()),
            "differ": int((~same[kinds == k]).sum()),
            "reference_ms": round(1e3 * float(old_s[kinds == k].mean()), 3),
            "this_tree_ms": round(1e3 * float(new_s[kinds == k].mean()), 3),
        }
        for k in dict.fromkeys(kinds)
    }
    return {
        "images": len(items),
        "identical": int(same.sum()),
        "differ": int((~same).sum()),
        "first_differences": [int(i) for i in np.flatnonzero(~same)[:10]],
        "per_kind": per_kind,
        "with_ink": int(new["flags"][:, 0].sum()),
        "with_alternative": int(new["flags"][:, 1].sum()),
        "preprocess_cpu_s": {
            "reference": round(float(old_s.sum()), 3),
            "this tree": round(float(new_s.sum()), 3),
        },
    }


def markdown(report: dict) -> str:
    r = report["result"]
    lines = [
        "# Preprocessing: bit-identical to the reference tree?",
        "",
        f"Reference tree `{report['reference_src']}` vs this tree; {r['images']:,} images "
        f"(seed {SEED}), {r['with_ink']:,} with ink, {r['with_alternative']:,} photos read two "
        "ways. Compared: the 28x28 image, has_ink, box, polarity, input size, stroke width, "
        "affine map, and the alternative reading (image, has_ink).",
        "",
        "| kind | images | differ | reference CPU ms / image | this tree | ratio |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {k} | {v['images']:,} | {v['differ']} | {v['reference_ms']:.3f} | "
        f"{v['this_tree_ms']:.3f} | {v['this_tree_ms'] / max(v['reference_ms'], 1e-9):.2f} |"
        for k, v in r["per_kind"].items()
    ]
    cpu = r["preprocess_cpu_s"]
    lines += [
        "",
        f"**{r['identical']:,} of {r['images']:,} identical** ({r['differ']} differ).",
        f"Preprocessing CPU for all of them: reference {cpu['reference']} s, this tree "
        f"{cpu['this tree']} s (each image's least process time over {report['rounds']} rounds, "
        f"the trees in turn, one process each; load before {report['load_before']}, after "
        f"{report['load_after']}).",
        "",
        f"_{report['machine']['date']}_",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference-src", help="the src folder of the tree to compare with")
    parser.add_argument("--reference-label", help="how the report names that tree (a commit)")
    parser.add_argument("--count", type=int, default=3000, help="images (about)")
    parser.add_argument("--rounds", type=int, default=2, help="timing rounds (trees in turn)")
    parser.add_argument("--data-dir", default=None, help="MNIST folder")
    parser.add_argument("--out", default=str(RESULTS / "preprocess_identity"))
    parser.add_argument("--dump", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.dump:
        dump(*args.dump)
        return 0
    if not args.reference_src:
        parser.error("--reference-src is required")
    load_before = [round(x, 2) for x in os.getloadavg()]
    items = make_images(args.count, mnist_dir(args.data_dir))
    with tempfile.TemporaryDirectory() as tmp:
        images_file = str(Path(tmp) / "images.pkl")
        with open(images_file, "wb") as f:
            pickle.dump(items, f)
        trees = (Path(args.reference_src).resolve(), REPO / "src")
        runs: list[list[dict]] = [[], []]
        for _ in range(max(1, args.rounds)):
            for t, src in enumerate(trees):
                runs[t].append(run_tree(src, images_file, str(Path(tmp) / f"{t}.npz")))
    old_s, new_s = (np.min([run["seconds"] for run in r], axis=0) for r in runs)
    report = {
        "machine": machine(),
        "reference_src": args.reference_label or args.reference_src,
        "rounds": max(1, args.rounds),
        "load_before": load_before,
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "result": compare(items, runs[0][0], runs[1][0], old_s, new_s),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_name(out.name + ".json").write_text(json.dumps(report, indent=2) + "\n")
    out.with_name(out.name + ".md").write_text(markdown(report))
    print(markdown(report))
    return 0 if report["result"]["differ"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
