"""'Improve from N corrections': fine-tuning in the background, then an atomic model switch.

:class:`Improver` is shared by the server (``POST /api/feedback/improve``) and the desktop
app. ``start()`` snapshots the corrections, then a daemon thread fine-tunes the model answering
now (``digitlab.training.finetune``, one torch thread: the server keeps serving), installs the
result as the personal model, loads it, and only then calls ``set_recognizer(new)`` -- a single
reference swap, so no request ever sees a half-loaded model and none fails during the switch.
A refused model (MNIST validation dropped) changes nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from digitlab.core.errors import DigitlabError

log = logging.getLogger(__name__)

# Fine-tuning threads while the server keeps serving on the other cores.
BACKGROUND_THREADS = 1


@dataclass
class ImproveStatus:
    """Where the job is: idle, running, done, refused or failed."""

    state: str = "idle"
    progress: float = 0.0
    message: str = "not started"
    corrections: int = 0
    result: dict[str, Any] | None = None
    started: float | None = None
    history: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (the fields ImproveOut shows)."""
        return {
            "state": self.state,
            "progress": round(self.progress, 3),
            "message": self.message,
            "corrections": self.corrections,
            "result": self.result,
        }


class Improver:
    """One background fine-tuning job at a time for a :class:`FeedbackContext`-like object
    (``store``, ``get_recognizer()``, ``set_recognizer(rec)``; ``extra["finetune"]`` may hold
    :class:`~digitlab.training.finetune.FinetuneConfig` overrides)."""

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx
        self._lock = threading.Lock()
        self._status = ImproveStatus()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        """Whether a job is in progress."""
        return self._status.state == "running"

    def status(self) -> dict[str, Any]:
        """The job's state as a dict."""
        with self._lock:
            return self._status.to_dict()

    def _set(self, **changes: Any) -> None:
        with self._lock:
            for key, value in changes.items():
                setattr(self._status, key, value)

    def start(self) -> None:
        """Snapshot the corrections and start fine-tuning; DigitlabError when a job is already
        running or there is nothing to learn from."""
        from digitlab.training.finetune import corrections_to_arrays

        with self._lock:
            if self._status.state == "running":
                raise DigitlabError("the model is already being improved; wait for it to finish")
            self._status = ImproveStatus(state="running", message="starting", started=time.time())
        try:
            images, labels, groups, skipped = corrections_to_arrays(self.ctx.store)
            if len(labels) == 0:
                raise DigitlabError("no usable corrections to learn from yet")
            base = self._base_checkpoint()
        except BaseException as exc:
            self._set(state="idle", message=str(exc))
            raise
        count = len(set(groups.tolist()))
        self._set(corrections=count, message=f"improving from {count} corrections")
        self._thread = threading.Thread(
            target=self._run,
            args=(images, labels, groups, skipped, base),
            name="digitlab-improve",
            daemon=True,
        )
        self._thread.start()

    def wait(self, timeout: float | None = None) -> dict[str, Any]:
        """Block until the job ends (tests, the CLI); returns the status."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self.status()

    def _base_checkpoint(self) -> str:
        """The checkpoint of the model answering now (an ONNX one: the bundled checkpoint)."""
        info = self.ctx.get_recognizer().info
        source = str(getattr(info, "source", "") or "")
        if getattr(info, "backend", "") == "torch" and source.endswith(".pt"):
            return source
        return "default"

    def _run(self, images: Any, labels: Any, groups: Any, skipped: int, base: str | None) -> None:
        from digitlab.api import load_model
        from digitlab.apps.feedback import personal
        from digitlab.core.userdata import user_data_dir
        from digitlab.training.finetune import FinetuneConfig, FinetuneRefusedError, finetune

        overrides = dict((getattr(self.ctx, "extra", None) or {}).get("finetune", {}))
        run_dir = user_data_dir() / "runs" / f"{datetime.now():%Y%m%d-%H%M%S}-finetune"
        cfg = FinetuneConfig(base=base, threads=BACKGROUND_THREADS, run_dir=str(run_dir))
        for key, value in overrides.items():
            setattr(cfg, key, value)

        def progress(fraction: float, message: str) -> None:
            self._set(progress=0.95 * fraction, message=message)

        try:
            report = finetune(images, labels, groups, cfg, progress=progress, skipped=skipped)
            self._set(progress=0.96, message="switching to the new model")
            path = personal.install(Path(report.checkpoint))
            # on the device the answering model runs on (a server started with --device cuda)
            device = str(getattr(self.ctx.get_recognizer().info, "device", "cpu") or "cpu")
            new = load_model(str(path), device=device)
            self.ctx.set_recognizer(new)  # one reference swap: requests never see a gap
            self._set(
                state="done",
                progress=1.0,
                message=f"now using your personal model ({report.summary().splitlines()[1]})",
                result=report.to_dict(),
            )
            log.info("switched to the personal model %s", path)
        except FinetuneRefusedError as exc:
            self._set(state="refused", progress=1.0, message=str(exc), result=exc.report.to_dict())
        except Exception as exc:  # shown to the user; the old model keeps answering
            log.exception("improving the model failed")
            self._set(state="failed", progress=1.0, message=f"improving failed: {exc}")
