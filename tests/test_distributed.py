"""DistributedDataParallel under torchrun: 2 CPU processes (gloo) on real MNIST."""

from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from digitlab.training.checkpoint import load_model_from_checkpoint

# This 2-process run measured 94.75% test accuracy after its epoch; 90% leaves margin.
TEST_ACC_FLOOR = 0.90
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]


def _torchrun(
    args: list[str], mnist_dir: Path, timeout: float = 300
) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DIGITLAB_DATA": str(mnist_dir)}
    return subprocess.run(
        [*TORCHRUN, "-m", "digitlab", "train", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_two_process_training_writes_a_normal_run_and_resumes(tmp_path: Path, mnist_dir: Path):
    run = tmp_path / "ddp"
    common = "--model digitnet_fast --train-samples 6000 --val-size 1000 --batch-size 32"
    common = [*common.split(), "--no-augment", "--run-dir", str(run)]
    proc = _torchrun([*common, "--epochs", "1", "--tensorboard"], mnist_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "effective batch 64 (32 x 2 processes)" in proc.stderr
    assert proc.stdout.count("run directory:") == 1  # rank 0 speaks for the job
    # Only rank 0 writes TensorBoard: one event file, one value per step of one rank.
    (event_file,) = run.glob("events.out.tfevents.*")
    events = EventAccumulator(str(event_file), size_guidance={"scalars": 0})
    events.Reload()
    assert [e.step for e in events.Scalars("step/loss")] == list(range(1, 95))
    assert len(events.Scalars("epoch/val_acc")) == 1
    assert proc.stderr.count("epoch 1/1  train loss") == 1  # only rank 0 reports
    for name in ("config.json", "metrics.csv", "best.pt", "last.pt", "curves.png", "train.log"):
        assert (run / name).exists(), name
    # The checkpoint loads in a single process unchanged (no "module." prefixes).
    model, ckpt = load_model_from_checkpoint(run / "best.pt")
    assert model(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    # One epoch over 6,000 images split across 2 ranks (3,000 each, 94 steps of 32).
    assert ckpt["metrics"]["test_acc"] > TEST_ACC_FLOOR

    shutil.copy(run / "last.pt", tmp_path / "epoch1.pt")
    proc = _torchrun(["--resume", str(run / "last.pt"), "--epochs", "2"], mnist_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert float(rows[1]["test_acc"]) >= float(rows[0]["test_acc"]) - 0.01


def test_a_dead_rank_ends_the_job_instead_of_hanging(tmp_path: Path, mnist_dir: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DIGITLAB_DATA": str(mnist_dir)}
    cmd = [
        *TORCHRUN,
        "-m",
        "digitlab",
        "train",
        "--model",
        "digitnet_fast",
        "--epochs",
        "50",
        "--train-samples",
        "6000",
        "--val-size",
        "500",
        "--run-dir",
        str(tmp_path / "r"),
    ]
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "r" / "last.pt").exists():  # training is under way on both ranks
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.5)
        worker = _a_worker_pid(proc.pid)
        os.kill(worker, signal.SIGKILL)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    assert "FAILED" in out or "failed" in out.lower()


def _a_worker_pid(parent: int) -> int:
    """A child of torchrun: the workers are its direct children."""
    children = Path(f"/proc/{parent}/task/{parent}/children")
    if not children.exists():
        pytest.skip("needs /proc/<pid>/task/<pid>/children (Linux)")
    pids = [int(p) for p in children.read_text().split()]
    assert pids, "torchrun has no worker processes"
    return pids[-1]
