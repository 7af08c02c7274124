"""Personalisation and feedback-store reliability (issue #17).

**Personalisation.** A simulated writer whose style MNIST lacks: the UCI 8x8 handwritten digits
from scikit-learn, enlarged and put through the engine's preprocessing (the 28x28 the model
sees), as one user's handwriting. A seeded permutation splits them into a pool of 200
"corrections" (labelled digits the user gave through Right / Wrong -- it's a ...) and the rest,
unseen. For 20, 50, 100 and 200 corrections the bundled model is fine-tuned
(``digitlab.training.finetune``: corrections + MNIST replay, no holdout: the unseen digits are
the honest test) and measured on the writer's unseen digits and on MNIST validation and test.
Targets: >= 99% on the unseen digits after 200 corrections, MNIST validation loses <= 0.1
points, fine-tuning <= 60 s on 2 cores (run here with 1 thread: the machine is shared).

**Reliability.** 32 clients post corrections to a real server on loopback (the feedback router
on uvicorn, SQLite store) for 30 s: every acknowledged correction must be stored (counts
match) and no request may fail with "database is locked". Then a writer process is killed with
SIGKILL in the middle of its writes: the database must pass ``PRAGMA integrity_check`` and
hold every row it acknowledged.

    python benchmarks/personalize.py                      # both, full size
    python benchmarks/personalize.py --only reliability --seconds 5

Writes ``benchmarks/results/personalize.json`` and ``personalize.md``.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, machine, mnist_dir

SRC = Path(__file__).resolve().parents[1] / "src"
COUNTS = (20, 50, 100, 200)
CLIENTS = 32


def writer_digits(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The UCI digits as the model sees them: (N, 28, 28) uint8 tiles and labels."""
    from digitlab.engine.preprocess import to_model_input
    from tune_images import uci_digits

    images, labels = uci_digits()
    return np.stack([to_model_input(im).image for im in images]), labels


def accuracy(model, tiles: np.ndarray, labels: np.ndarray) -> float:
    from digitlab.training.evaluate import predict_logits

    logits = predict_logits(model, torch.from_numpy(np.ascontiguousarray(tiles)))
    return float((logits.argmax(1).numpy() == labels).mean())


def bench_personalize(data_dir: str | None, seed: int, steps: int | None) -> dict:
    from digitlab.training.checkpoint import load_model_from_checkpoint
    from digitlab.training.data import load_mnist
    from digitlab.training.finetune import FinetuneConfig, FinetuneRefusedError, finetune

    data = load_mnist(data_dir)
    tiles, labels = writer_digits()
    order = np.random.default_rng(seed).permutation(len(labels))
    pool, unseen = order[: max(COUNTS)], order[max(COUNTS) :]
    base, _ = load_model_from_checkpoint("default")  # the bundled model, by name
    before = accuracy(base, tiles[unseen], labels[unseen])
    rows = []
    for n in COUNTS:
        cfg = FinetuneConfig(base="default", holdout=0.0, threads=1, seed=seed)
        if steps:
            cfg.steps = steps
        idx = pool[:n]
        load_before = os.getloadavg()[0]  # the machine is shared: say how busy it was
        try:
            report = finetune(tiles[idx], labels[idx], None, cfg, data=data, write=False)
            refused = False
        except FinetuneRefusedError as exc:
            report, refused = exc.report, True
        model = report.model  # the fine-tuned network (set on the report, not written)
        row = {
            "corrections": n,
            "writer_unseen_before": before,
            "writer_unseen_after": accuracy(model, tiles[unseen], labels[unseen]),
            "mnist_val_before": report.mnist_val_before,
            "mnist_val_after": report.mnist_val_after,
            "mnist_test_before": report.mnist_test_before,
            "mnist_test_after": report.mnist_test_after,
            "finetune_seconds": report.train_seconds,
            "total_seconds": report.total_seconds,
            "threads": report.threads,
            "steps": cfg.steps,
            "refused": refused,
            "load_average_1min": [round(load_before, 1), round(os.getloadavg()[0], 1)],
        }
        rows.append(row)
        print(
            f"{n:>4} corrections: writer {before:.2%} -> {row['writer_unseen_after']:.2%}, "
            f"MNIST val {row['mnist_val_before']:.2%} -> {row['mnist_val_after']:.2%}, "
            f"test {row['mnist_test_before']:.2%} -> {row['mnist_test_after']:.2%}, "
            f"fine-tune {row['finetune_seconds']:.1f} s" + ("  REFUSED" if refused else ""),
            flush=True,
        )
    return {"unseen_digits": len(unseen), "pool": len(pool), "rows": rows}


def _png(k: int) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(k)
    a = np.full((64, 64), 255, np.uint8)
    y = int(rng.integers(10, 40))
    a[y : y + 14, 28:36] = 0
    a[10:54, 30:34] = 0
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue() + k.to_bytes(8, "little")  # distinct bytes (trailing data is ignored)


def bench_clients(seconds: float, db: Path) -> dict:
    import httpx
    import uvicorn
    from fastapi import FastAPI

    from digitlab.api import load_model
    from digitlab.apps.feedback.options import FeedbackSettings
    from digitlab.apps.feedback.routes import FeedbackContext, router
    from digitlab.apps.feedback.security import HostCheckMiddleware

    settings = FeedbackSettings(db=str(db))
    app = FastAPI()
    app.add_middleware(HostCheckMiddleware, allowed_hosts=settings.allowed_hosts)
    app.include_router(router)
    rec = load_model(None)
    app.state.feedback = FeedbackContext.open(settings, lambda: rec)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", ws="none")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    url = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    stop = time.monotonic() + seconds
    acked: list[int] = []
    failures: list[str] = []
    lock = threading.Lock()

    def client(c: int) -> None:
        k = 0
        with httpx.Client(timeout=60) as http:
            while time.monotonic() < stop:
                payload = _png(c * 1_000_000 + k)
                k += 1
                r = http.post(
                    f"{url}/api/feedback",
                    files={"file": ("d.png", payload)},
                    data={"label": str(k % 10)},
                )
                with lock:
                    if r.status_code == 201:
                        acked.append(r.json()["id"])
                    else:
                        failures.append(f"{r.status_code} {r.text[:200]}")

    started = time.monotonic()
    with ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(client, range(CLIENTS)))
    elapsed = time.monotonic() - started
    store = app.state.feedback.store
    stored = {r.id for r in store.list()}
    result = {
        "clients": CLIENTS,
        "seconds": round(elapsed, 1),
        "acknowledged": len(acked),
        "stored": len(stored),
        "all_acknowledged_stored": set(acked) <= stored and len(stored) == len(acked),
        "failed_requests": len(failures),
        "database_is_locked": sum("locked" in f for f in failures),
        "first_failures": failures[:3],
        "integrity_check": store.integrity_check(),
        "requests_per_second": round(len(acked) / elapsed, 1),
    }
    server.should_exit = True
    thread.join(timeout=30)
    app.state.feedback.close()
    return result


WRITER = """
import sys
import numpy as np
from digitlab.apps.feedback.store import FeedbackStore, NewCorrection
store = FeedbackStore(sys.argv[1])
run = sys.argv[2]
tiles = np.zeros((1, 28, 28), np.uint8)
for i in range(10**9):
    new = NewCorrection(image=f"{run}-img{i}".encode(), label=str(i % 10), model_input=tiles,
                        source="cli")
    r = store.add(new)
    print(r.id, flush=True)
"""


def bench_sigkill(db: Path, rounds: int = 5) -> dict:
    from digitlab.apps.feedback.store import FeedbackStore

    FeedbackStore(db).close()
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    acked: list[int] = []
    for r in range(rounds):
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(db), str(r)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        got = 0
        while got < 50 + 37 * r:  # kill at a different point each round
            line = proc.stdout.readline()
            if not line:
                break
            acked.append(int(line))
            got += 1
        os.kill(proc.pid, signal.SIGKILL)
        rest, _ = proc.communicate()
        acked += [int(x) for x in rest.split()]
    with FeedbackStore(db) as store:
        stored = {row.id for row in store.list()}
        return {
            "kills": rounds,
            "acknowledged": len(acked),
            "stored": len(stored),
            "all_acknowledged_stored": set(acked) <= stored,
            "integrity_check": store.integrity_check(),
        }


def write_markdown(out: dict, path: Path) -> None:
    lines = ["# Personalisation and feedback-store reliability", ""]
    lines.append(f"Measured {out['machine']['date']} on {out['machine']['platform']}, "
                 f"torch {out['machine']['torch']}.")  # fmt: skip
    p = out.get("personalize")
    if p:
        lines += [
            "",
            f"UCI 8x8 digits as one writer: a pool of {p['pool']} corrections, "
            f"{p['unseen_digits']} unseen digits; bundled model fine-tuned with 1 thread, "
            f"{p['rows'][0]['steps']} steps for every count (the same work: differences in "
            "time are the shared machine's load, its 1-minute load average before-after on "
            f"{out['machine']['cpu_count']} cores in the table).",
            "",
            "| corrections | writer unseen before | after | MNIST val before | after | "
            "MNIST test before | after | fine-tune s | load avg | refused |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
        ]
        for r in p["rows"]:
            lines.append(
                f"| {r['corrections']} | {r['writer_unseen_before']:.2%} | "
                f"{r['writer_unseen_after']:.2%} | {r['mnist_val_before']:.2%} | "
                f"{r['mnist_val_after']:.2%} | {r['mnist_test_before']:.2%} | "
                f"{r['mnist_test_after']:.2%} | {r['finetune_seconds']:.1f} | "
                f"{r['load_average_1min'][0]}-{r['load_average_1min'][1]} | "
                f"{'yes' if r['refused'] else 'no'} |"
            )
    c = out.get("clients")
    if c:
        lines += [
            "",
            f"{c['clients']} clients posting for {c['seconds']} s: {c['acknowledged']} "
            f"acknowledged, {c['stored']} stored (all stored: {c['all_acknowledged_stored']}), "
            f"{c['failed_requests']} failed requests, {c['database_is_locked']} 'database is "
            f"locked', integrity_check {c['integrity_check']}, {c['requests_per_second']} "
            "corrections/s.",
        ]
    k = out.get("sigkill")
    if k:
        lines += [
            "",
            f"Writer killed with SIGKILL {k['kills']} times mid-write: {k['acknowledged']} rows "
            f"acknowledged, {k['stored']} stored, all acknowledged stored: "
            f"{k['all_acknowledged_stored']}, integrity_check {k['integrity_check']}.",
        ]
    path.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=("personalize", "reliability"))
    parser.add_argument("--seconds", type=float, default=30.0, help="client test length")
    parser.add_argument("--steps", type=int, help="fine-tuning steps (default: finetune's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir")
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)
    out: dict = {"machine": machine()}
    if args.only in (None, "personalize"):
        out["personalize"] = bench_personalize(mnist_dir(args.data_dir), args.seed, args.steps)
    if args.only in (None, "reliability"):
        with tempfile.TemporaryDirectory() as tmp:
            out["clients"] = bench_clients(args.seconds, Path(tmp) / "clients.sqlite3")
            print(json.dumps(out["clients"]), flush=True)
            out["sigkill"] = bench_sigkill(Path(tmp) / "kill.sqlite3")
            print(json.dumps(out["sigkill"]), flush=True)
    if not args.no_save:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "personalize.json").write_text(json.dumps(out, indent=2) + "\n")
        write_markdown(out, RESULTS / "personalize.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
