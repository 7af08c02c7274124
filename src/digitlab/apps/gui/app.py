"""The main window: drawing pad, results sidebar, menus, shortcuts, status bar.

All recognition goes through :class:`digitlab.engine.recognizer.Recognizer` (the same engine
as the CLI and the web app), on a worker thread so the window never freezes; results come back
to the Tk thread through :class:`~digitlab.apps.gui.worker.TaskRunner`.

One module (~790 lines) because the main window's widgets, menus, shortcuts and the state
that ties them (model, mode, last result) are one Tk object; the pad, results, charts, style,
feedback panel and training dialog are their own modules.
"""

from __future__ import annotations

import contextlib
import csv
import inspect
import json
import logging
import time
import tkinter as tk
import tkinter.font as tkfont
from pathlib import Path
from tkinter import filedialog, ttk
from typing import Any

from PIL import Image

from digitlab.apps.gui.canvas import PEN_MAX, PEN_MIN, DrawingPad
from digitlab.apps.gui.results import ResultsPanel
from digitlab.apps.gui.style import LIGHT, apply_theme, current_mode, initial_mode
from digitlab.apps.gui.worker import TaskRunner
from digitlab.core.errors import DigitlabError
from digitlab.core.resolve import is_bundled_name

log = logging.getLogger(__name__)

TITLE = "digitlab"
# While the pen moves, predict at most every 150 ms: fast enough to feel live, slow enough that
# a CPU model (a few ms per call) never queues up. A finished stroke is predicted at once.
LIVE_PREDICT_MS = 150
INITIAL_SIZE = "1040x700"
ERROR_COLOUR = LIGHT.bad  # for dialogs that colour an error line themselves
STATUS_GAP = 16  # pixels between the status bar's two texts
# The status bar's right text (what just happened) gets at most this share of the width; the
# left one (the model) the rest; both end in "…" when they do not fit.
STATUS_RIGHT_SHARE = 0.45
KEYS_HELP = "Ctrl+Z undo · Esc clear · Ctrl+O open · Ctrl+M number mode · Ctrl+D dark mode"
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
# ``--model newest`` / Model → Load newest run: the newest finished run under ./runs.
NEWEST_RUN = "newest"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.csv"


def _metrics_rows(run_dir: Path) -> list[dict[str, float]]:
    """The rows of a run's ``metrics.csv`` as numbers (empty when missing or unreadable)."""
    try:
        with (run_dir / METRICS_FILE).open(newline="") as f:
            return [{k: float(v) for k, v in row.items() if k and v} for row in csv.DictReader(f)]
    except (OSError, ValueError, csv.Error):
        return []


def run_is_finished(run_dir: Path) -> bool:
    """Whether a training run directory holds a finished run.

    The rule (from what ``digitlab.training.trainer`` writes): the run has ``best.pt``,
    ``config.json`` and ``metrics.csv``, and its last metrics row is the last epoch of the
    config, or the run stopped early (``early_stopping`` epochs without a better score after
    its best epoch). A run that was cancelled or crashed stops short of both, so it is never
    picked up as "the newest run" (its best.pt may be an early, weak epoch).
    """
    if not (run_dir / "best.pt").is_file():
        return False
    try:
        config = json.loads((run_dir / CONFIG_FILE).read_text())
        epochs = int(config["epochs"])
        patience = int(config.get("early_stopping") or 0)
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return False
    rows = _metrics_rows(run_dir)
    if not rows or "epoch" not in rows[-1]:
        return False
    if int(rows[-1]["epoch"]) >= epochs:
        return True
    if patience <= 0:
        return False
    from digitlab.training.trainer import selection_score  # the rule that picks best.pt

    try:
        scores = [selection_score(row) for row in rows]
    except KeyError:
        return False
    best = scores.index(max(scores))  # the first best epoch, as the trainer counts it
    return len(rows) - 1 - best >= patience


def newest_finished_run(cwd: Path | None = None) -> Path | None:
    """``best.pt`` of the newest finished run under ``<cwd>/runs`` (see :func:`run_is_finished`),
    or None when there is none."""
    runs = (cwd or Path.cwd()) / "runs"
    if not runs.is_dir():
        return None
    finished = [d / "best.pt" for d in runs.iterdir() if d.is_dir() and run_is_finished(d)]
    return max(finished, key=lambda p: p.stat().st_mtime) if finished else None


def startup_model(
    model: str | Path | None = None, cwd: Path | None = None
) -> tuple[str | Path | None, str]:
    """The one rule for which model the desktop app starts with.

    The user's personal model when one is installed (``digitlab finetune --install``), else the
    bundled model -- unless ``model`` names one: a checkpoint / ``.onnx`` path or a bundled
    name (as for every other front end), or ``"newest"`` for the newest *finished* training run
    under ``<cwd>/runs`` (never a cancelled or unfinished one). Returns ``(what to pass to
    digitlab.load_model — None for the bundled model, a description for the window)``. Raises
    :class:`DigitlabError` for ``"newest"`` when there is no finished run.
    """
    if model is None:  # the user's personal model (digitlab finetune --install), else bundled
        from digitlab.apps.feedback.personal import installed

        personal = installed()
        return (personal, "your personal model") if personal else (None, BUNDLED)
    if is_bundled_name(model):
        return None, BUNDLED
    if str(model) == NEWEST_RUN:
        folder = cwd or Path.cwd()
        best = newest_finished_run(folder)
        if best is None:
            raise DigitlabError(
                f"--model {NEWEST_RUN}: no finished training run in {folder / 'runs'} "
                "(a cancelled or unfinished run is never used)"
            )
        return best, f"newest run: {best.parent.name}/best.pt"
    return model, str(model)


_threads_set = False


def _set_torch_threads_once(rec: Any) -> None:
    """Set PyTorch's inference threads the first time a torch model runs in this process."""
    global _threads_set
    if _threads_set or rec.info.backend != "torch":
        return
    from digitlab.engine.backends.torch import set_inference_threads

    set_inference_threads()
    _threads_set = True


def accepts_strokes(rec: Any) -> bool:
    """Whether ``rec.read_number`` takes the pen strokes (``strokes=`` keyword)."""
    try:
        return "strokes" in inspect.signature(rec.read_number).parameters
    except (TypeError, ValueError):
        return False


def fit_text(font: tkfont.Font, text: str, width: int) -> str:
    """``text`` cut to ``width`` pixels in ``font``, ending in "…" when cut."""
    if width <= 0:
        return ""
    if font.measure(text) <= width:
        return text
    low, high = 0, len(text)  # the longest prefix that fits with the ellipsis
    while low < high:
        mid = (low + high + 1) // 2
        if font.measure(text[:mid] + "…") <= width:
            low = mid
        else:
            high = mid - 1
    return text[:low].rstrip() + "…" if low else ""


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

    def __init__(
        self,
        root: tk.Tk,
        *,
        model: Any = None,
        cwd: Path | None = None,
        description: str | None = None,
    ) -> None:
        """``model``: None (the bundled model), a name or path (see :func:`startup_model`) or a
        loaded recogniser; ``description`` says where it came from in the status bar."""
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
        self.title_var = tk.StringVar(root, "Draw a digit")
        self.theme_var = tk.StringVar(root, initial_mode())
        self.dark_var = tk.BooleanVar(root, self.theme_var.get() == "dark")

        self._build_window()
        self.set_theme(self.theme_var.get())
        root.update_idletasks()  # the window may shrink until the toolbar or sidebar would clip
        root.minsize(root.winfo_reqwidth(), root.winfo_reqheight())
        self._bind_keys()
        root.report_callback_exception = self._on_callback_error
        self._start_model(model, description)

    # -- layout ---------------------------------------------------------------------------------
    def _build_window(self) -> None:
        root = self.root
        apply_theme(root, self.theme_var.get())
        root.title(TITLE)
        root.geometry(INITIAL_SIZE)
        root.protocol("WM_DELETE_WINDOW", self.close)
        root.columnconfigure(0, weight=1)
        root.rowconfigure(1, weight=1)
        self._build_menu()
        self._build_topbar().grid(row=0, column=0, sticky="ew", padx=16, pady=(12, 6))

        main = ttk.Frame(root)
        main.grid(row=1, column=0, sticky="nsew", padx=16, pady=6)
        main.columnconfigure(0, weight=1)
        main.rowconfigure(0, weight=1)
        main.grid_columnconfigure(0, weight=1)
        main.grid_rowconfigure(0, weight=1)
        self._build_input_card(main).grid(row=0, column=0, rowspan=2, sticky="nsew")
        self.results = ResultsPanel(main)
        self.results.grid(row=0, column=1, sticky="ns", padx=(14, 0))
        from digitlab.apps.gui.feedback import FeedbackPanel  # corrections (#17)

        self.feedback = FeedbackPanel(main, self)
        self.feedback.grid(row=1, column=1, sticky="new", padx=(14, 0), pady=(6, 0))

        error_row = self.error_row = ttk.Frame(root, style="Error.TFrame", padding=(12, 6))
        error_row.grid(row=2, column=0, sticky="ew", padx=16, pady=(0, 8))
        error_row.columnconfigure(0, weight=1)
        self.error_label = ttk.Label(
            error_row, textvariable=self._error_shown, style="Error.TLabel", justify="left"
        )
        self.error_label.grid(row=0, column=0, sticky="ew")
        # Wrap the message at the label's current width, whatever the window size.
        self.error_label.bind(
            "<Configure>", lambda e: self.error_label.configure(wraplength=max(1, e.width - 4))
        )
        self.error_dismiss = ttk.Button(error_row, text="✕", width=3, command=self.clear_error)
        self.error_dismiss.grid(row=0, column=1, sticky="e", padx=(8, 0))
        error_row.grid_remove()  # shown only while there is an error

        ttk.Separator(root).grid(row=3, column=0, sticky="ew")
        status = self.status_bar = ttk.Frame(root, style="Status.TFrame", padding=(16, 4))
        status.grid(row=4, column=0, sticky="ew")
        # Both labels get their width from the bar (not from their text), and each shows its
        # text cut to fit with "…", so the two never run into each other.
        status.columnconfigure(0, weight=1)
        self.status_left = ttk.Label(status, style="Status.TLabel", anchor="w")
        self.status_left.grid(row=0, column=0, sticky="ew")
        self.status_right = ttk.Label(status, style="Status.TLabel", anchor="e")
        self.status_right.grid(row=0, column=1, sticky="e", padx=(STATUS_GAP, 0))
        self._status_font = tkfont.nametofont("DigitlabSmall", root)
        self._traces = [
            (var, var.trace_add("write", lambda *_: self._layout_status()))
            for var in (self.model_var, self.status_var)
        ]
        status.bind("<Configure>", lambda _e: self._layout_status(), add="+")

    def _layout_status(self) -> None:
        """Share the status bar's width between its two texts, each cut to fit with "…"."""
        if self._closed:
            return
        pad = 32  # the bar's horizontal padding
        width = self.status_bar.winfo_width() - pad - STATUS_GAP
        right = self.status_var.get()
        right_w = min(self._status_font.measure(right), int(width * STATUS_RIGHT_SHARE))
        left_w = max(0, width - right_w)
        self.status_right.configure(text=fit_text(self._status_font, right, right_w))
        self.status_left.configure(text=fit_text(self._status_font, self.model_var.get(), left_w))

    def _build_topbar(self) -> ttk.Frame:
        bar = ttk.Frame(self.root)
        ttk.Label(bar, text=TITLE, style="Brand.TLabel").pack(side="left")
        ttk.Checkbutton(
            bar,
            text="Dark",
            style="Switch.TCheckbutton",
            variable=self.dark_var,
            command=self._on_dark_toggled,
        ).pack(side="right")
        ttk.Button(bar, text="Train…", command=self.open_train_dialog).pack(
            side="right", padx=(0, 16)
        )
        ttk.Button(bar, text="Load model…", command=self.ask_load_model).pack(
            side="right", padx=(0, 8)
        )
        return bar

    def _build_input_card(self, master: tk.Misc) -> ttk.Frame:
        card = ttk.Frame(master, style="Card.TFrame", padding=16)
        card.columnconfigure(0, weight=1)
        card.rowconfigure(1, weight=1)
        head = ttk.Frame(card)
        head.grid(row=0, column=0, sticky="ew", pady=(0, 10))
        ttk.Label(head, textvariable=self.title_var, style="Title.TLabel").pack(side="left")
        modes = ttk.Frame(head)
        modes.pack(side="right")
        for text, value in (("Digit", False), ("Number", True)):
            ttk.Radiobutton(
                modes,
                text=text,
                value=value,
                variable=self.multi_var,
                style="Toggle.TButton",
                command=self._on_mode_changed,
                width=8,
            ).pack(side="left")

        self.pad = DrawingPad(card, on_change=self._on_drawing_changed)
        self.pad.grid(row=1, column=0, sticky="nsew")
        self.pen_var.set(self.pad.pen_width)
        self._on_pen_changed("")

        tools = ttk.Frame(card)
        tools.grid(row=2, column=0, sticky="ew", pady=(12, 0))
        ttk.Label(tools, text="Brush").pack(side="left")
        self.pen_scale = ttk.Scale(
            tools,
            from_=PEN_MIN,
            to=PEN_MAX,
            variable=self.pen_var,
            length=130,
            command=self._on_pen_changed,
        )
        self.pen_scale.pack(side="left", padx=(8, 4))
        ttk.Label(tools, textvariable=self.pen_text, width=3, style="Value.TLabel").pack(
            side="left"
        )
        ttk.Button(
            tools, text="Open image…", style="Accent.TButton", command=self.ask_open_image
        ).pack(side="right")
        ttk.Button(tools, text="Clear", command=self.clear).pack(side="right", padx=(0, 8))
        ttk.Button(tools, text="Undo", command=self.undo).pack(side="right", padx=(0, 8))
        ttk.Label(card, text=KEYS_HELP, style="Small.TLabel").grid(
            row=3, column=0, sticky="w", pady=(10, 0)
        )
        return card

    def _build_menu(self) -> None:
        menubar = self.menubar = tk.Menu(self.root)
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
            command=self._on_mode_changed,
        )
        view_menu = tk.Menu(menubar, tearoff=False)
        view_menu.add_checkbutton(
            label="Dark mode",
            accelerator="Ctrl+D",
            variable=self.dark_var,
            command=self._on_dark_toggled,
        )
        model_menu = tk.Menu(menubar, tearoff=False)
        model_menu.add_command(label="Load newest run", command=self.load_newest_run)
        model_menu.add_command(label="Train…", accelerator="Ctrl+T", command=self.open_train_dialog)
        menubar.add_cascade(label="File", menu=file_menu, underline=0)
        menubar.add_cascade(label="Edit", menu=edit_menu, underline=0)
        menubar.add_cascade(label="View", menu=view_menu, underline=0)
        menubar.add_cascade(label="Model", menu=model_menu, underline=0)
        self.menus = [menubar, file_menu, edit_menu, view_menu, model_menu]
        self.root.configure(menu=menubar)

    # -- theme ----------------------------------------------------------------------------------
    def set_theme(self, mode: str) -> None:
        """Switch the whole app (and its dialogs) to the "light" or "dark" theme."""
        apply_theme(self.root, mode)
        self.theme_var.set(mode)
        self.dark_var.set(mode == "dark")
        from digitlab.apps.gui.style import PALETTES

        pal = PALETTES[mode]
        for menu in self.menus:
            menu.configure(
                background=pal.bg,
                foreground=pal.text,
                activebackground=pal.accent,
                activeforeground="#ffffff",
            )
        if self.train_dialog is not None and self.train_dialog.winfo_exists():
            self.train_dialog.configure(background=pal.bg)

    def toggle_theme(self) -> None:
        """Light <-> dark (View → Dark mode, Ctrl+D)."""
        self.set_theme("light" if current_mode(self.root) == "dark" else "dark")

    def _on_dark_toggled(self) -> None:
        self.set_theme("dark" if self.dark_var.get() else "light")

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
            "<Control-d>": self.toggle_theme,
            "<Control-q>": self.close,
        }
        for sequence, action in bindings.items():
            # Bound to the main window only, so Esc in the training dialog does not clear.
            self.root.bind(sequence, lambda _e, act=action: (act(), "break")[1])

    # -- model ----------------------------------------------------------------------------------
    def _start_model(self, model: Any, description: str | None) -> None:
        """Load the model :func:`startup_model` picks (or a recogniser already loaded)."""
        if hasattr(model, "read_number"):  # a Recognizer the caller loaded (``digitlab gui``)
            self.load_model_file(model, description=description or model.info.source)
            return
        try:
            spec, picked = startup_model(model, self.cwd)
        except DigitlabError as exc:
            self.show_error(str(exc))
            self.set_status("No model loaded")
            return
        self.load_model_file(spec, description=description or picked)

    def load_model_file(
        self, path: Any, *, description: str | None = None, fallback: bool = False
    ) -> None:
        """Load a checkpoint / ``.onnx`` file (None = bundled) in the background and switch to it.

        ``path`` may also be a loaded recogniser, which is then used as it is. On failure the
        current model stays in use and the error is shown in the window; with ``fallback`` the
        bundled model is loaded instead (only for callers that ask: a model the user named is
        never silently replaced).
        """
        label = description or (str(path) if path is not None else BUNDLED)
        self.set_status(f"Loading {label}…")

        slot = self._slot

        def job() -> Any:  # on the worker: must not reference self (see worker.py)
            from digitlab.api import load_model

            rec = load_model(path if hasattr(path, "read_number") else path and str(path))
            _set_torch_threads_once(rec)
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

    def load_newest_run(self) -> None:
        """Switch to the newest finished training run under ``<cwd>/runs`` (Model menu)."""
        best = newest_finished_run(self.cwd)
        if best is None:
            self.show_error(
                f"No finished training run in {self.cwd / 'runs'} "
                "(a cancelled or unfinished run is never used)."
            )
            return
        self.load_model_file(best, description=f"newest run: {best.parent.name}/best.pt")

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
            self.pad.set_opened(path.name)
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
        self.pad.set_opened(None)
        self.results.set_thumbnail(None)

    def toggle_multi(self) -> None:
        """Switch between single-digit and multi-digit (number) mode."""
        self.set_multi(not self.multi_var.get())

    def set_multi(self, multi: bool) -> None:
        """Multi-digit (number) mode on or off."""
        self.multi_var.set(multi)
        self._on_mode_changed()

    def _on_mode_changed(self) -> None:
        """Number mode: a wide paper and its title; then predict again."""
        multi = bool(self.multi_var.get())
        self.title_var.set("Write a number" if multi else "Draw a digit")
        self.pad.set_wide(multi)
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
        # The strokes, in drawing order, when the image is the drawing (for read_number).
        strokes = self.pad.timed_strokes() if multi and self.opened_image is None else None
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
            if not multi:
                result = rec.predict(image)
            elif strokes and accepts_strokes(rec):
                result = rec.read_number(image, strokes=strokes)
            else:
                result = rec.read_number(image)
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
        for var, trace in self._traces:  # Tcl holds these callbacks, and they hold the app
            with contextlib.suppress(tk.TclError):
                var.trace_remove("write", trace)
        self._traces = []
        self.pad.release()
        self.results.release()
        if self.train_dialog is not None:
            self.train_dialog.release()
            self.train_dialog = None
