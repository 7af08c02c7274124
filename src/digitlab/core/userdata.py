"""Where digitlab keeps a user's own files: the feedback store and the personal model.

One folder per user, by the platform's convention (torch-free, so ``core.resolve`` can use it):

* Linux and other Unix: ``$XDG_DATA_HOME/digitlab`` (default ``~/.local/share/digitlab``)
* macOS: ``~/Library/Application Support/digitlab``
* Windows: ``%LOCALAPPDATA%\\digitlab``

``$DIGITLAB_HOME`` overrides all of them (tests and shared installs use it).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ENV_HOME = "DIGITLAB_HOME"  # the user data folder itself, overriding the platform default
APP_DIR = "digitlab"
# The user's fine-tuned model (``digitlab finetune --install``); predict, serve and gui use it
# when it exists.
PERSONAL_MODEL_FILE = "personal.pt"
# The default feedback store (SQLite) in that folder.
FEEDBACK_DB_FILE = "feedback.sqlite3"


def user_data_dir() -> Path:
    """The folder for this user's digitlab data (not created here)."""
    override = os.environ.get(ENV_HOME, "").strip()
    if override:
        return Path(override).expanduser()
    home = Path.home()
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA", "").strip()
        return (Path(base) if base else home / "AppData" / "Local") / APP_DIR
    if sys.platform == "darwin":
        return home / "Library" / "Application Support" / APP_DIR
    xdg = os.environ.get("XDG_DATA_HOME", "").strip()
    return (Path(xdg) if xdg and Path(xdg).is_absolute() else home / ".local" / "share") / APP_DIR


def personal_model_path() -> Path:
    """Where the user's personal model lives (it may not exist)."""
    return user_data_dir() / PERSONAL_MODEL_FILE


def default_feedback_db() -> Path:
    """The default feedback store: a SQLite file in the user data folder."""
    return user_data_dir() / FEEDBACK_DB_FILE
