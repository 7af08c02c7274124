"""The "Improve" job shared by the worker processes of one server (apps/feedback/shared.py).

``digitlab serve --workers N`` keeps corrections in every process; "Improve" runs in one of them
and must be reported by all, and switch all. Two real servers on loopback sharing one folder
and one store stand for two worker processes (the lock is per open file, so two openers in one
process exclude each other as two processes do); the lock's release when a process dies is
tested with a real process.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import torch

pytest.importorskip("sqlalchemy")

from digitlab.apps.feedback.improve import Improver
from digitlab.apps.feedback.options import FeedbackSettings
from digitlab.apps.feedback.shared import SharedJob
from test_feedback_api import digit_png

CUDA = torch.cuda.is_available()

HOLD_LOCK = (
    "import sys, time\n"
    "from digitlab.apps.feedback.shared import SharedJob\n"
    "job = SharedJob(sys.argv[1])\n"
    "assert job.acquire()\n"
    "job.write_status({'state': 'running', 'progress': 0.1, 'message': 'x', 'corrections': 3,"
    " 'result': None})\n"
    "print('held', flush=True)\n"
    "time.sleep(120)\n"
)


def hold_lock_in_a_process(folder: Path) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(folder)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_one_job_lock_across_openers_and_processes(tmp_path):
    a, b = SharedJob(tmp_path), SharedJob(tmp_path)
    assert not a.locked() and a.acquire()
    assert a.locked() and b.locked() and not b.acquire()
    a.release()
    assert not b.locked() and b.acquire()
    b.release()
    proc = hold_lock_in_a_process(tmp_path)
    try:
        assert a.locked() and not a.acquire()
    finally:
        proc.kill()
        proc.wait()
    assert not a.locked()  # the kernel released a dead process's lock


def test_a_job_whose_process_died_is_reported_failed(tmp_path):
    class Ctx:  # what Improver needs of a FeedbackContext for status()
        store = None

    improver = Improver(Ctx(), SharedJob(tmp_path))
    assert improver.status()["state"] == "idle"
    proc = hold_lock_in_a_process(tmp_path)
    try:
        status = improver.status()
        assert status["state"] == "running" and status["corrections"] == 3
        assert improver.running
    finally:
        proc.kill()
        proc.wait()
    status = improver.status()
    assert status["state"] == "failed" and "stopped" in status["message"], status
    assert not improver.running


@pytest.mark.parametrize(
    ("backend", "device"),
    [
        ("auto", "cpu"),
        ("onnx", "cpu"),
        pytest.param(
            "auto",
            "cuda",
            marks=pytest.mark.skipif(not CUDA, reason="no CUDA GPU on this machine"),
        ),
    ],
)
def test_two_workers_report_one_job_and_both_switch_to_its_model(
    recognizer, tmp_path, monkeypatch, mnist, backend, device
):
    """A job started in one server is reported (and refused a second time) by the other; once
    either says "done", both answer with the improved model, loaded as each loads its models at
    start (on the server's device), and no request failed meanwhile. With --backend onnx (which
    names the bundled model's file) the improved checkpoint still loads."""
    import digitlab.training.finetune as finetune_module
    from digitlab.apps.server import ServerSettings, create_app
    from digitlab.core.resolve import BUNDLED_MODEL
    from server_harness import BackgroundServer

    monkeypatch.setenv("DIGITLAB_HOME", str(tmp_path / "home"))
    release = threading.Event()

    def quick_finetune(images, labels, groups, cfg, progress=None, skipped=0):
        """The training is not under test here (test_feedback_api's slow test runs it): a
        real checkpoint comes back once the test lets it."""
        if progress is not None:
            progress(0.5, "training")
        assert release.wait(60)
        tuned = tmp_path / "tuned.pt"
        shutil.copyfile(BUNDLED_MODEL, tuned)
        return finetune_module.FinetuneReport(
            base=str(cfg.base),
            corrections=len(set(groups.tolist())),
            train_digits=len(labels),
            holdout_digits=0,
            accepted=True,
            checkpoint=str(tuned),
        )

    monkeypatch.setattr(finetune_module, "finetune", quick_finetune)
    shared = tmp_path / "shared"
    shared.mkdir()
    feedback = FeedbackSettings(db=str(tmp_path / "fb.sqlite3"), shared_dir=str(shared))
    settings = ServerSettings(access_log=False, backend=backend, device=device)
    apps = [create_app(settings, recognizer=recognizer, feedback=feedback) for _ in range(2)]
    first = digit_png(mnist.test_images[0], scale=4)
    with BackgroundServer(apps[0]) as a, BackgroundServer(apps[1]) as b:
        for i in range(12):
            r = httpx.post(
                f"{(a, b)[i % 2]}/api/feedback",
                files={"file": ("d.png", digit_png(mnist.test_images[i], scale=4))},
                data={"label": str(mnist.test_labels[i])},
            )
            assert r.status_code == 201, r.text
        assert httpx.get(f"{a}/api/feedback/improve").json()["state"] == "idle"
        started = httpx.post(f"{b}/api/feedback/improve")
        assert started.status_code == 202, started.text
        elsewhere = httpx.get(f"{a}/api/feedback/improve").json()
        assert elsewhere["state"] == "running" and elsewhere["corrections"] == 12, elsewhere
        again = httpx.post(f"{a}/api/feedback/improve")
        assert again.status_code == 409 and "already being improved" in again.text
        assert Path(httpx.get(f"{a}/api/model").json()["source"]).stem == "default"
        release.set()
        deadline = time.monotonic() + 60
        while (status := httpx.get(f"{a}/api/feedback/improve").json())["state"] == "running":
            assert time.monotonic() < deadline, status
            r = httpx.post(
                f"{a}/api/predict",
                files={"file": ("d.png", first)},
            )
            assert r.status_code == 200  # no request fails while the job runs or switches
            time.sleep(0.05)
        assert status["state"] == "done" and status["result"]["accepted"], status
        # the first request after "done", in either process, is answered by the new model
        for url in (a, b):
            model = httpx.get(f"{url}/api/model").json()
            assert model["source"].endswith("personal.pt") and model["backend"] == "torch"
            assert model["device"].startswith(device), model
            r = httpx.post(
                f"{url}/api/predict",
                files={"file": ("d.png", first)},
            )
            assert r.status_code == 200 and r.json()["digit"] == int(mnist.test_labels[0])
        assert httpx.get(f"{b}/api/feedback/improve").json() == status
    for app in apps:  # loaded as the server loads models: traced on a CPU (not on a GPU); the
        # cut scorer runs PyTorch on the CPU whatever the reading model's device, traced
        rec = app.state.service.recognizer
        traced = (rec.backend.traced is not None, rec.cut_scorer().backend.traced is not None)
        assert traced == (device == "cpu", True), traced
        app.state.feedback.close()
