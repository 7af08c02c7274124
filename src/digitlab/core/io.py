"""Atomic file writes: a crash or an error mid-write never leaves a partial file.

Every file digitlab writes that a user keeps -- checkpoints, run files, downloaded MNIST,
submissions, exports -- goes through :func:`atomic_write`: the data goes to a temporary file in
the destination folder, is flushed to disk, gets the rights an ordinary file would get, and is
renamed over the destination (a rename is atomic within one filesystem). No torch here, so
writing a CSV never imports it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def _read_umask() -> int:
    mask = os.umask(0)  # the only way to read it is to set it; done once, at import
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def atomic_write(path: str | os.PathLike, write: Callable[[str], object]) -> None:
    """Write ``path`` atomically: ``write(tmp_path)`` fills a temp file, then it is renamed.

    The temp file is removed if ``write`` fails (or is interrupted), so the previous content of
    ``path``, if any, stays as it was. The result has normal rights (0666 minus the umask), not
    the 0600 that temporary files get.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
