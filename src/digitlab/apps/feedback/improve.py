"""'Improve from N corrections': fine-tuning in the background, then an atomic model switch.

:class:`Improver` is shared by the server (``POST /api/feedback/improve``) and the desktop
app. ``start()`` snapshots the corrections, then a daemon thread fine-tunes the model answering
now (``digitlab.training.finetune``, one torch thread: the server keeps serving), installs the
result as the personal model, loads it, and only then calls ``set_recognizer(new)`` -- a single
reference swap, so no request ever sees a half-loaded model and none fails during the switch.
A refused model (MNIST validation dropped) changes nothing.

In a server of several worker processes the job is shared (:mod:`.shared`): one job at a time
across them, every process reports it, and every process follows the model it installs
(:meth:`Improver.follow`, called by :class:`FollowImprovements` before each request).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from digitlab.apps.feedback.shared import SharedJob
from digitlab.core.errors import DigitlabError

log = logging.getLogger(__name__)

# Fine-tuning threads while the server keeps serving on the other cores.
BACKGROUND_THREADS = 1
# Seconds between two publications of a shared job's progress (state changes go at once).
SHARE_PROGRESS_S = 0.25


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
    (``store``, ``get_recognizer()``, ``set_recognizer(rec)``, optionally ``load_model(path)``;
    ``extra["finetune"]`` may hold :class:`~digitlab.training.finetune.FinetuneConfig`
    overrides).

    With ``shared`` (the worker processes of one server), the job is one across them: see
    :mod:`digitlab.apps.feedback.shared`."""

    def __init__(self, ctx: Any, shared: SharedJob | None = None) -> None:
        self.ctx = ctx
        self.shared = shared
        self._lock = threading.Lock()
        self._status = ImproveStatus()
        self._thread: threading.Thread | None = None
        self._published = 0.0  # when the shared status was last written
        self._generation = 0  # the shared model generation this process answers with
        self._follow_lock = threading.Lock()

    @property
    def running(self) -> bool:
        """Whether a job is in progress (in this process or, when shared, in another)."""
        if self._status.state == "running":
            return True
        return self.shared is not None and self.shared.locked()

    def status(self) -> dict[str, Any]:
        """The job's state as a dict (when shared and the job ran in another process, as that
        process published it)."""
        with self._lock:
            local = self._status.to_dict()
        if self.shared is None or local["state"] == "running":
            return local
        published = self.shared.read_status()
        if published is None:
            return local
        if published.get("state") == "running" and not self.shared.locked():
            published = {
                **published,
                "state": "failed",
                "message": "improving failed: the server process running it stopped",
            }
        return published

    def _set(self, **changes: Any) -> None:
        with self._lock:
            for key, value in changes.items():
                setattr(self._status, key, value)
            if self.shared is None:
                return
            now = time.monotonic()
            if "state" not in changes and now - self._published < SHARE_PROGRESS_S:
                return
            self._published = now
            status = self._status.to_dict()
        self.shared.write_status(status)

    def start(self) -> None:
        """Snapshot the corrections and start fine-tuning; DigitlabError when a job is already
        running or there is nothing to learn from."""
        from digitlab.training.finetune import corrections_to_arrays

        busy = DigitlabError("the model is already being improved; wait for it to finish")
        with self._lock:
            if self._status.state == "running":
                raise busy
            if self.shared is not None and not self.shared.acquire():
                raise busy  # by another worker process of this server
            self._status = ImproveStatus(state="running", message="starting", started=time.time())
        try:
            images, labels, groups, skipped = corrections_to_arrays(self.ctx.store)
            if len(labels) == 0:
                raise DigitlabError("no usable corrections to learn from yet")
            base = self._base_checkpoint()
        except BaseException as exc:
            self._set(state="idle", message=str(exc))
            self._release()
            raise
        count = len(set(groups.tolist()))
        # with "state", published at once: the other processes now report the job
        self._set(state="running", corrections=count, message=f"improving from {count} corrections")
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

    def _load(self, path: str) -> Any:
        """The model at ``path``, loaded as the app loads models (``ctx.load_model``), else on
        the device the answering model runs on (a server started with --device cuda)."""
        load = getattr(self.ctx, "load_model", None)
        if load is not None:
            return load(path)
        from digitlab.api import load_model

        device = str(getattr(self.ctx.get_recognizer().info, "device", "cpu") or "cpu")
        return load_model(path, device=device)

    def _run(self, images: Any, labels: Any, groups: Any, skipped: int, base: str | None) -> None:
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
            new = self._load(str(path))
            if self.shared is not None:  # before the switch and "done": see .shared
                self._generation = self.shared.publish_model(str(path))
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
        finally:
            self._release()

    def _release(self) -> None:
        if self.shared is not None:
            self.shared.release()

    def follow(self) -> bool:
        """Switch to the model another process's job installed, when it is newer than the
        one answering here (blocking: call it off the event loop). True when it switched."""
        assert self.shared is not None, "only a shared job has models to follow"
        with self._follow_lock:
            record = self.shared.read_model()
            if record is None or int(record.get("generation", 0)) <= self._generation:
                return False
            generation, path = int(record["generation"]), str(record.get("model"))
            try:
                new = self._load(path)
            except Exception:  # a damaged file: keep answering with the model loaded
                log.exception("cannot load the improved model %s; keeping the current one", path)
                self._generation = generation
                return False
            self.ctx.set_recognizer(new)
            self._generation = generation
            log.info("switched to the improved model %s (generation %d)", path, generation)
            return True


class FollowImprovements:
    """ASGI middleware: before each HTTP request, switch to the model a job in another worker
    process installed (see :mod:`.shared`). Requests that arrive while the model loads wait
    for it, so none after the job's "done" is answered by the old model."""

    def __init__(self, app: Any, improver: Improver) -> None:
        assert improver.shared is not None
        self.app = app
        self.improver = improver
        self.shared = improver.shared
        self._pending: asyncio.Future | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            if self.shared.model_changed():
                loop = asyncio.get_running_loop()
                self._pending = loop.run_in_executor(None, self.improver.follow)
            if self._pending is not None and not self._pending.done():
                await asyncio.shield(self._pending)
        await self.app(scope, receive, send)
