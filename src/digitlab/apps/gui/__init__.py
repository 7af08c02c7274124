"""The desktop app (``digitlab gui``): draw or open a digit and see what the model reads.

Modules: :mod:`.app` (main window), :mod:`.canvas` (drawing pad), :mod:`.results` (sidebar),
:mod:`.charts` (probability bars, training curve), :mod:`.training` ("Train…" dialog),
:mod:`.worker` (background threads).
Importing this package imports tkinter but neither torch nor the model; the model is loaded on
a worker thread once the window is up.
"""

from __future__ import annotations

import tkinter as tk
from pathlib import Path
from typing import Any

from digitlab.apps.gui.app import DigitlabApp, newest_finished_run, startup_model
from digitlab.core.errors import DigitlabError

__all__ = ["DigitlabApp", "create_app", "newest_finished_run", "run_app", "startup_model"]


def create_app(
    model: Any = None, *, cwd: Path | None = None, description: str | None = None
) -> DigitlabApp:
    """Open the main window (not yet running its event loop).

    ``model``: None (the bundled model), a name or path (see :func:`startup_model`), or a
    recogniser already loaded; ``description`` says where it came from.

    Raises :class:`DigitlabError` when no window can be opened (no X display).
    """
    try:
        root = tk.Tk(className="digitlab")
    except tk.TclError as exc:
        raise DigitlabError(
            f"cannot open a window ({exc}); the desktop app needs a display "
            "(is DISPLAY set? over SSH use `ssh -X`, or use `digitlab serve` in a browser)"
        ) from None
    return DigitlabApp(root, model=model, cwd=cwd, description=description)


def run_app(model: Any = None, *, description: str | None = None, multi: bool = False) -> int:
    """Run the desktop app until its window is closed; returns the exit status (0)."""
    app = create_app(model, description=description)
    if multi:
        app.set_multi(True)
    app.root.mainloop()
    return 0
