"""The main window: drawing pad, results sidebar, menus, shortcuts, status bar.

All recognition goes through :class:`digitlab.engine.recognizer.Recognizer` (the same engine
as the CLI and the web app), on a worker thread so the window never freezes; results come back
to the Tk thread through :class:`~digitlab.apps.gui.worker.TaskRunner`.
"""

from __future__ import annotations

import contextlib
import logging
import time
import tkinter as tk
from pathlib import Path
from tkinter import filedialog, ttk
from typing import Any

from PIL import Image

from digitlab.apps.gui.canvas import PEN_MAX, PEN_MIN, DrawingPad
from digitlab.apps.gui.results import ResultsPanel
from digitlab.apps.gui.worker import TaskRunner
from digitlab.core.errors import DigitlabError

log = logging.getLogger(__name__)

TITLE = "digitlab"
ACCENT_COLOUR = "#1f77b4"
THEME = "clam"  # ships with every Tk 8.5+; flatter and clearer than X11's "default"
# While the pen moves, predict at most every 150 ms: fast enough to feel live, slow enough that
# a CPU model (a few ms per call) never queues up. A finished stroke is predicted at once.
LIVE_PREDICT_MS = 150
INITIAL_SIZE = "940x600"
ERROR_COLOUR = "#b00020"
# The error line shows at most this many characters (about three lines at the initial width) so
# a long message never squeezes the drawing pad; the full text is in error_var and the log.
ERROR_SHOWN_CHARS = 330
IMAGE_TYPES = [
    ("Images", "*.png *.jpg *.jpeg *.bmp *.gif *.webp"),
    ("PNG", "*.png"),
    ("JPEG", "*.jpg *.jpeg"),
    ("BMP", "*.bmp"),
    ("GIF", "*.gif"),
    ("WebP", "*.webp"),
    ("All files", "*"),
]
MODEL_TYPES = [
    ("digitlab models", "*.pt *.onnx"),
    ("PyTorch checkpoint", "*.pt"),
    ("ONNX", "*.onnx"),
    ("All files", "*"),
]
BUNDLED = "bundled model"


def find_startup_model(cwd: Path | None = None) -> tuple[Path | None, str]:
    """The model to start with: the newest ``runs/*/best.pt`` under ``cwd``, else the bundled one.

    Returns ``(path or None for bundled, a description for the status bar)``.
    """
    runs = (cwd or Path.cwd()) / "runs"
    candidates = [p for p in runs.glob("*/best.pt") if p.is_file()] if runs.is_dir() else []
    if not candidates:
        return None, BUNDLED
    newest = max(candidates, key=lambda p: p.stat().st_mtime)
    return newest, f"newest run: {newest.parent.name}/best.pt"


def describe_error(exc: BaseException) -> str:
    """The text shown in the window for a failure: user errors as they are, bugs labelled."""
    if isinstance(exc, DigitlabError):
        return str(exc)
    return f"unexpected error ({type(exc).__name__}): {exc}"


def failure_message(action: str, path: Path | str, exc: BaseException) -> str:
    """``Could not <action> <path>: <why>``, without repeating the path if the error names it."""
    why = describe_error(exc)
    return f"Could not {action}: {why}" if str(path) in why else f"Could not {action} {path}: {why}"


class ModelSlot:
    """The recogniser in use. Worker jobs get this (never the app, which holds Tk objects)."""

    def __init__(self) -> None:
        self.recognizer: Any = None


class DigitlabApp:
    """The desktop app. Create with a Tk root; ``root.mainloop()`` runs it."""

    def __init__(self, root: tk.Tk, *, model: str | Path | None = None, cwd: Path | None = None):
        self.root = root
        self.cwd = cwd or Path.cwd()
        self.tasks = TaskRunner(root, report_error=self._report_bug)
        self._slot = ModelSlot()  # written by worker jobs only, in submission order
        self.model_description = ""
        self.last_result: Any = None  # the Prediction or NumberResult shown now
        self.last_image: Image.Image | None = None  # the image that result belongs to
        self.opened_image: Image.Image | None = None
        self.opened_path: Path | None = None
        self.train_dialog: Any = None
        self._generation = 0  # bumps on every request; stale results are dropped
        self._live_after: str | None = None
        self._closed = False

        self.status_var = tk.StringVar(root, "Starting…")
        self.model_var = tk.StringVar(root, "Model: loading…")
        self.error_var = tk.StringVar(root, "")
        self._error_shown = tk.StringVar(root, "")
        self.multi_var = tk.BooleanVar(root, False)
        self.pen_var = tk.DoubleVar(root, 0.0)
        self.pen_text = tk.StringVar(root, "")

        self._build_window()
        root.update_idletasks()  # the window may shrink until the toolbar or sidebar would clip
        root.minsize(root.winfo_reqwidth(), root.winfo_reqheight())
        self._bind_keys()
        root.report_callback_exception = self._on_callback_error
        self._start_model(model)

    # -- layout ---------------------------------------------------------------------------------
    def _build_window(self) -> None:
        root = self.root
        style = ttk.Style(root)
        if THEME in style.theme_names():
            style.theme_use(THEME)
        style.configure("TProgressbar", background=ACCENT_COLOUR)  # clam's is almost invisible
        root.configure(background=style.lookup("TFrame", "background"))
        root.title(TITLE)
        root.geometry(INITIAL_SIZE)
        root.protocol("WM_DELETE_WINDOW", self.close)
        root.columnconfigure(0, weight=1)
        root.rowconfigure(1, weight=1)
        self._build_menu()
        self._build_toolbar().grid(row=0, column=0, sticky="ew", padx=6, pady=(6, 2))

        main = ttk.Frame(root)
        main.grid(row=1, column=0, sticky="nsew", padx=6, pady=2)
        main.columnconfigure(0, weight=1)
        main.rowconfigure(0, weight=1)
        self.pad = DrawingPad(main, on_change=self._on_drawing_changed)
        self.pad.grid(row=0, column=0, sticky="nsew")
        self.pad.configure(background=root.cget("background"))
        self.pen_var.set(self.pad.pen_width)
        self._on_pen_changed("")
        self.results = ResultsPanel(main)
        self.results.grid(row=0, column=1, sticky="ns", padx=(8, 0))
        from digitlab.apps.gui.feedback import FeedbackPanel  # feedback (#17)

        self.feedback = FeedbackPanel(main, self)
        self.feedback.grid(row=1, column=1, sticky="new", padx=(8, 0), pady=(6, 0))
        self.pad.grid(rowspan=2)  # the pad keeps the whole height beside the sidebar

        error_row = self.error_row = ttk.Frame(root)
        error_row.grid(row=2, column=0, sticky="ew", padx=6)
        error_row.columnconfigure(0, weight=1)
        self.error_label = ttk.Label(
            error_row,
            textvariable=self._error_shown,
            foreground=ERROR_COLOUR,
            anchor="w",
            justify="left",
        )
        self.error_label.grid(row=0, column=0, sticky="ew")
        # Wrap the message at the label's current width, whatever the window size.
        self.error_label.bind(
            "<Configure>", lambda e: self.error_label.configure(wraplength=max(1, e.width - 4))
        )
        self.error_dismiss = ttk.Button(error_row, text="✕", width=2, command=self.clear_error)
        self.error_dismiss.grid(row=0, column=1, sticky="e")
        error_row.grid_remove()  # shown only while there is an error

        status = ttk.Frame(root, relief="sunken", padding=(6, 2))
        status.grid(row=3, column=0, sticky="ew")
        status.columnconfigure(0, weight=1)
        ttk.Label(status, textvariable=self.model_var, anchor="w").grid(
            row=0, column=0, sticky="ew"
        )
        ttk.Label(status, textvariable=self.status_var, anchor="e").grid(
            row=0, column=1, sticky="e"
        )

    def _build_menu(self) -> None:
        menubar = tk.Menu(self.root)
        file_menu = tk.Menu(menubar, tearoff=False)
        file_menu.add_command(
            label="Open image…", accelerator="Ctrl+O", command=self.ask_open_image
        )
        file_menu.add_command(
            label="Load model…", accelerator="Ctrl+L", command=self.ask_load_model
        )
        file_menu.add_separator()
        file_menu.add_command(label="Quit", accelerator="Ctrl+Q", command=self.close)
        edit_menu = tk.Menu(menubar, tearoff=False)
        edit_menu.add_command(label="Undo", accelerator="Ctrl+Z", command=self.undo)
        edit_menu.add_command(label="Clear", accelerator="Delete / Esc", command=self.clear)
        edit_menu.add_checkbutton(
            label="Multi-digit mode",
            accelerator="Ctrl+M",
            variable=self.multi_var,
            command=self.request_prediction,
        )
        model_menu = tk.Menu(menubar, tearoff=False)
        model_menu.add_command(label="Train…", accelerator="Ctrl+T", command=self.open_train_dialog)
        menubar.add_cascade(label="File", menu=file_menu, underline=0)
        menubar.add_cascade(label="Edit", menu=edit_menu, underline=0)
        menubar.add_cascade(label="Model", menu=model_menu, underline=0)
        self.root.configure(menu=menubar)

    def _build_toolbar(self) -> ttk.Frame:
        bar = ttk.Frame(self.root)
        ttk.Button(bar, text="Clear", command=self.clear).pack(side="left")
        ttk.Button(bar, text="Undo", command=self.undo).pack(side="left", padx=(4, 12))
        ttk.Label(bar, text="Pen").pack(side="left")
        self.pen_scale = ttk.Scale(
            bar,
            from_=PEN_MIN,
            to=PEN_MAX,
            variable=self.pen_var,
            length=120,
            command=self._on_pen_changed,
        )
        self.pen_scale.pack(side="left", padx=(4, 2))
        ttk.Label(bar, textvariable=self.pen_text, width=3).pack(side="left", padx=(0, 12))
        ttk.Checkbutton(
            bar, text="Multi-digit", variable=self.multi_var, command=self.request_prediction
        ).pack(side="left")
        ttk.Button(bar, text="Train…", command=self.open_train_dialog).pack(side="right")
        ttk.Button(bar, text="Load model…", command=self.ask_load_model).pack(side="right", padx=4)
        ttk.Button(bar, text="Open image…", command=self.ask_open_image).pack(side="right")
        return bar

    def _bind_keys(self) -> None:
        bindings = {
            "<Control-z>": self.undo,
            "<Control-Z>": self.undo,
            "<Delete>": self.clear,
            "<Escape>": self.clear,
            "<Control-o>": self.ask_open_image,
            "<Control-O>": self.ask_open_image,
            "<Control-l>": self.ask_load_model,
            "<Control-L>": self.ask_load_model,
            "<Control-t>": self.open_train_dialog,
            "<Control-m>": self.toggle_multi,
            "<Control-q>": self.close,
        }
        for sequence, action in bindings.items():
            # Bound to the main window only, so Esc in the training dialog does not clear.
            self.root.bind(sequence, lambda _e, act=action: (act(), "break")[1])

    # -- model ----------------------------------------------------------------------------------
    def _start_model(self, model: str | Path | None) -> None:
        if model is not None:
            self.load_model_file(model, fallback=True)
            return
        path, description = find_startup_model(self.cwd)
        if path is None:  # feedback (#17): the personal model, when installed, before bundled
            from digitlab.apps.feedback.personal import installed

            path, description = installed(), "your personal model"
            description = description if path is not None else BUNDLED
        self.load_model_file(path, description=description, fallback=path is not None)

    def load_model_file(
        self, path: str | Path | None, *, description: str | None = None, fallback: bool = False
    ) -> None:
        """Load a checkpoint / ``.onnx`` file (None = bundled) in the background and switch to it.

        On failure the current model stays in use and the error is shown in the window; with
        ``fallback`` the bundled model is loaded instead.
        """
        label = description or (str(path) if path is not None else BUNDLED)
        self.set_status(f"Loading {label}…")

        slot = self._slot

        def job() -> Any:  # on the worker: must not reference self (see worker.py)
            from digitlab.api import load_model

            rec = load_model(str(path) if path is not None else None)
            slot.recognizer = rec  # here, so that predictions queued after this use it
            return rec

        def done(rec: Any) -> None:
            self._show_model(rec, label)
            self.set_status(f"Loaded {label}")
            self.request_prediction()

        def failed(exc: BaseException) -> None:
            message = failure_message("load model", path if path is not None else BUNDLED, exc)
            if fallback:
                self.show_error(f"{message} — using the {BUNDLED} instead.")
                self.load_model_file(None)
            else:
                self.show_error(message)
                self.set_status("Model unchanged" if self.recognizer else "No model loaded")

        self.tasks.submit(job, done, failed)

    def _show_model(self, rec: Any, description: str) -> None:
        info = rec.info
        parts = [f"Model: {info.name}", description, info.backend, f"{info.parameters:,} params"]
        if info.val_accuracy is not None:
            parts.append(f"val {info.val_accuracy * 100:.2f}%")
        if info.test_accuracy is not None:
            parts.append(f"test {info.test_accuracy * 100:.2f}%")
        self.model_description = description
        self.model_var.set(" · ".join(parts))
        self.root.title(f"{TITLE} — {info.name}")

    def ask_load_model(self) -> None:
        """File dialog for a ``.pt`` / ``.onnx`` model, then load it."""
        path = filedialog.askopenfilename(
            parent=self.root, title="Load model", filetypes=MODEL_TYPES, initialdir=self.cwd
        )
        if path:
            self.load_model_file(path)

    # -- images ---------------------------------------------------------------------------------
    def ask_open_image(self) -> None:
        """File dialog for an image, then recognise it."""
        path = filedialog.askopenfilename(
            parent=self.root, title="Open image", filetypes=IMAGE_TYPES, initialdir=self.cwd
        )
        if path:
            self.open_image(path)

    def open_image(self, path: str | Path) -> None:
        """Decode ``path`` in the background, show its thumbnail and its prediction."""
        path = Path(path)
        self.set_status(f"Opening {path.name}…")

        def job() -> Image.Image:  # on the worker: must not reference self
            from digitlab.engine.decode import load_image

            return load_image(path)

        def done(image: Image.Image) -> None:
            self.clear_error()
            self.opened_image, self.opened_path = image, path
            if not self.pad.is_empty:
                self.pad.clear()  # undoable: Ctrl+Z brings the drawing back
            self.results.set_thumbnail(image, path.name)
            self.set_status(f"Opened {path.name} ({image.width}×{image.height})")
            self.request_prediction()

        def failed(exc: BaseException) -> None:
            self.show_error(failure_message("open image", path, exc))
            self.set_status("Image not opened")

        self.tasks.submit(job, done, failed)

    # -- drawing --------------------------------------------------------------------------------
    def _on_drawing_changed(self, final: bool) -> None:
        if self.opened_image is not None and not self.pad.is_empty:
            self._forget_image()  # drawing again: back to the pad
        if final:
            self.request_prediction()
        elif self._live_after is None:
            self._live_after = self.root.after(LIVE_PREDICT_MS, self.request_prediction)

    def _on_pen_changed(self, _value: str) -> None:
        self.pad.pen_width = float(round(float(self.pen_var.get())))
        self.pen_text.set(f"{self.pad.pen_width:.0f}")

    def _forget_image(self) -> None:
        self.opened_image, self.opened_path = None, None
        self.results.set_thumbnail(None)

    def toggle_multi(self) -> None:
        """Switch between single-digit and multi-digit (number) mode."""
        self.multi_var.set(not self.multi_var.get())
        self.request_prediction()

    def undo(self) -> None:
        """Undo the last stroke (or the last clear)."""
        if not self.pad.undo():
            self.set_status("Nothing to undo")

    def clear(self) -> None:
        """Clear the drawing pad and forget an opened image."""
        self._forget_image()
        self.pad.clear()

    # -- prediction -----------------------------------------------------------------------------
    def current_image(self) -> Image.Image | None:
        """What is recognised now: the opened image, else the drawing (None when blank)."""
        if self.opened_image is not None:
            return self.opened_image
        return None if self.pad.is_empty else self.pad.image()

    def request_prediction(self) -> None:
        """Recognise the current image on the worker; the newest request wins."""
        if self._live_after is not None:
            self.root.after_cancel(self._live_after)
            self._live_after = None
        self._generation += 1
        generation = self._generation
        image = self.current_image()
        multi = bool(self.multi_var.get())
        if image is None:
            self.last_result, self.last_image = None, None
            self.feedback.on_result(None, None)
            self.results.show_blank()
            self.pad.set_boxes([])
            return

        slot = self._slot

        def job() -> tuple[Any, float]:  # on the worker: must not reference self
            rec = slot.recognizer
            if rec is None:
                raise DigitlabError("no model is loaded: use File → Load model… (Ctrl+L)")
            start = time.perf_counter()
            result = rec.read_number(image) if multi else rec.predict(image)
            return result, time.perf_counter() - start

        def done(value: tuple[Any, float]) -> None:
            if generation == self._generation:
                self._show_result(value[0], image, value[1])

        def failed(exc: BaseException) -> None:
            if generation == self._generation:
                self.show_error(f"Recognition failed: {describe_error(exc)}")

        self.tasks.submit(job, done, failed, key="predict")

    def _show_result(self, result: Any, image: Image.Image, seconds: float) -> None:
        self.last_result, self.last_image = result, image
        boxes: list[tuple[int, int, int, int, str]] = []
        digit_boxes = result.digits if hasattr(result, "digits") else []  # a NumberResult's
        if hasattr(result, "digits"):
            self.results.show_number(result)
        else:
            self.results.show_prediction(result)
        if self.opened_image is not None and self.opened_path is not None:
            self.results.set_thumbnail(self.opened_image, self.opened_path.name, digit_boxes)
        else:
            boxes = [
                (
                    b.x,
                    b.y,
                    b.width,
                    b.height,
                    "?" if b.prediction.digit is None else str(b.prediction.digit),
                )
                for b in digit_boxes
            ]
        self.pad.set_boxes(boxes)
        self.feedback.on_result(result, image)
        self.set_status(f"Recognised in {seconds * 1000:.0f} ms")

    # -- training -------------------------------------------------------------------------------
    def open_train_dialog(self) -> None:
        """Open (or raise) the "Train…" dialog."""
        from digitlab.apps.gui.training import TrainDialog

        if self.train_dialog is not None and self.train_dialog.winfo_exists():
            self.train_dialog.lift()
            return
        self.train_dialog = TrainDialog(self)

    # -- messages -------------------------------------------------------------------------------
    def show_error(self, message: str) -> None:
        """Show an error in the window (no modal dialog: the app keeps working)."""
        log.warning("%s", message)
        self.error_var.set(message)
        if len(message) > ERROR_SHOWN_CHARS:
            message = message[: ERROR_SHOWN_CHARS - 1] + "…"
        self._error_shown.set(message)
        self.error_row.grid()

    def clear_error(self) -> None:
        """Hide the error line."""
        self.error_var.set("")
        self._error_shown.set("")
        self.error_row.grid_remove()

    def _on_callback_error(self, exc_type: type, exc: BaseException, tb: Any) -> None:
        """A bug in a Tk callback: log it with its traceback, say so, and keep running."""
        self._report_bug(exc)

    def _report_bug(self, exc: BaseException) -> None:
        log.error("error in a GUI callback", exc_info=exc)
        self.show_error(describe_error(exc))

    @property
    def recognizer(self) -> Any:
        """The :class:`~digitlab.engine.recognizer.Recognizer` in use (None before the first
        load)."""
        return self._slot.recognizer

    def set_status(self, message: str) -> None:
        """Show a short message on the right of the status bar."""
        self.status_var.set(message)

    @property
    def is_busy(self) -> bool:
        """True while a model load or prediction is pending or about to be (tests wait on it)."""
        return self._live_after is not None or self.tasks.busy

    def close(self) -> None:
        """Stop background work and close the window (a second call does nothing)."""
        if self._closed:
            return
        self._closed = True
        if self.train_dialog is not None:
            self.train_dialog.cancel()
        self.feedback.close()
        self.tasks.close()
        self.root.destroy()
        self._break_cycles()

    def _break_cycles(self) -> None:
        """Drop the references that tie this app and its widgets into cycles.

        Then the last reference going away frees every Tk object at once, on the Tk thread,
        instead of at some later garbage collection that may run on another thread (Tcl must not
        be finalised from a thread other than its own).
        """
        with contextlib.suppress(AttributeError):
            del self.root.report_callback_exception  # back to Tk's own method
        self.pad.release()
        self.results.release()
        if self.train_dialog is not None:
            self.train_dialog.release()
            self.train_dialog = None
