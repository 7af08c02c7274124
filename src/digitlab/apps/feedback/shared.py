"""The improvement job shared by the worker processes of one server.

``digitlab serve --workers N`` runs N processes, each with its own model. "Improve" runs in the
one process that got the request; the others must report the same job and answer with the
improved model as soon as it is done. They share a folder, made by ``digitlab serve`` for the
run (``$DIGITLAB_SERVE_SHARED``) and removed when it stops, holding:

* ``improve.lock`` -- locked (``flock``) by the process running a job, for as long as it runs:
  one job at a time across the processes, and a job whose process died is seen as such (the
  kernel releases the lock of a dead process);
* ``improve.json`` -- the job's status (what ``GET /api/feedback/improve`` answers), written
  atomically by the process running it;
* ``model.json`` -- ``{"generation": g, "model": path}``, written when a job installs a new
  model, *before* its own process switches and before the status says "done". Every process
  looks at this file's identity (one ``stat``) before each request and loads the model when
  the generation is newer than its own, so no request that comes after "done" is answered by
  the old model.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from digitlab.core.io import atomic_write_text

try:  # POSIX
    import fcntl

    def _lock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)

except ImportError:  # Windows
    import msvcrt

    def _lock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)

    def _unlock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)


log = logging.getLogger(__name__)

ENV_SHARED = "DIGITLAB_SERVE_SHARED"
LOCK_FILE = "improve.lock"
STATUS_FILE = "improve.json"
MODEL_FILE = "model.json"


class SharedJob:
    """The shared folder of one server's worker processes (see the module docstring)."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        self._held: int | None = None  # the lock file's descriptor while this process holds it
        self._seen: tuple[int, int] | None = None  # model.json's (inode, mtime) last looked at

    # -- the job lock ----------------------------------------------------------------------

    def acquire(self) -> bool:
        """Take the job lock; False when another process (or another opener) holds it."""
        fd = os.open(self.folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            _lock(fd)
        except OSError:
            os.close(fd)
            return False
        self._held = fd
        return True

    def release(self) -> None:
        """Give the job lock back (a no-op when not held)."""
        fd, self._held = self._held, None
        if fd is not None:
            try:
                _unlock(fd)
            finally:
                os.close(fd)

    def locked(self) -> bool:
        """Whether a job holds the lock now (through this object or any other process's)."""
        if self._held is not None:
            return True
        if not self.acquire():
            return True
        self.release()
        return False

    # -- the status ------------------------------------------------------------------------

    def write_status(self, status: dict[str, Any]) -> None:
        """Publish the job's status (atomically)."""
        atomic_write_text(self.folder / STATUS_FILE, json.dumps(status))

    def read_status(self) -> dict[str, Any] | None:
        """The last status published, or None when no job has run."""
        return _read_json(self.folder / STATUS_FILE)

    # -- the model -------------------------------------------------------------------------

    def publish_model(self, model: str) -> int:
        """Record ``model`` as the one every process should answer with; returns its
        generation (one more than the last)."""
        last = _read_json(self.folder / MODEL_FILE) or {}
        generation = int(last.get("generation", 0)) + 1
        atomic_write_text(
            self.folder / MODEL_FILE, json.dumps({"generation": generation, "model": model})
        )
        return generation

    def model_changed(self) -> bool:
        """Whether ``model.json`` was replaced since the last call (one ``stat``: cheap enough
        for every request)."""
        try:
            st = os.stat(self.folder / MODEL_FILE)
        except FileNotFoundError:
            return False
        key = (st.st_ino, st.st_mtime_ns)
        if key == self._seen:
            return False
        self._seen = key
        return True

    def read_model(self) -> dict[str, Any] | None:
        """``{"generation": g, "model": path}``, or None when no job has installed a model."""
        return _read_json(self.folder / MODEL_FILE)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:  # written atomically, so this is outside damage
        log.warning("cannot read %s: %s", path, exc)
        return None
