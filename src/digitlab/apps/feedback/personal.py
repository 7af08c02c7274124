"""The user's personal model: a fine-tuned checkpoint that predict, serve and gui prefer.

``digitlab finetune --install`` puts the new checkpoint at :func:`personal_model_path` (a
file in the user data folder, written atomically); ``--uninstall`` removes it, and every
front end is back on the bundled model. :func:`choose_model` is what a front end calls with
its ``--model`` option: an explicit model wins, else the personal model when present.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from digitlab.core.errors import CheckpointError
from digitlab.core.io import atomic_write
from digitlab.core.userdata import personal_model_path

log = logging.getLogger(__name__)

__all__ = ["choose_model", "install", "installed", "personal_model_path", "uninstall"]


def installed() -> Path | None:
    """The personal model's path when one is installed, else None."""
    path = personal_model_path()
    return path if path.is_file() else None


def install(checkpoint: str | os.PathLike) -> Path:
    """Make ``checkpoint`` the personal model (checked to load first); returns its new path.

    The copy is atomic: a model being loaded by a running server or window is never seen
    half-written. Raises CheckpointError for a file that is not a digitlab checkpoint.
    """
    from digitlab.training.checkpoint import load_checkpoint

    source = Path(checkpoint)
    load_checkpoint(source)  # a bad file fails here, naming itself
    target = personal_model_path()
    if source.resolve() == target.resolve():
        return target
    atomic_write(target, lambda tmp: shutil.copyfile(source, tmp))
    log.info("installed %s as the personal model (%s)", source, target)
    return target


def uninstall() -> bool:
    """Remove the personal model; False when there was none."""
    path = installed()
    if path is None:
        return False
    path.unlink()
    log.info("removed the personal model %s", path)
    return True


def choose_model(model: str | os.PathLike | None) -> tuple[str | None, str | None]:
    """The model a front end should load for its ``--model`` value, and a note to show.

    An explicit ``model`` is kept (no note); with none, the personal model when installed
    (the note says so and how to go back), else None (the bundled model, no note).
    """
    if model is not None:
        return str(model), None
    path = installed()
    if path is None:
        return None, None
    return str(path), (
        f"using your personal model {path} (fine-tuned on your corrections; "
        "`digitlab finetune --uninstall` goes back to the bundled model)"
    )


def check_installable(path: str | os.PathLike) -> None:
    """Raise CheckpointError unless ``path`` is a PyTorch checkpoint file."""
    if str(path).endswith(".onnx"):
        raise CheckpointError(f"{path}: only PyTorch checkpoints (.pt) can be fine-tuned")
