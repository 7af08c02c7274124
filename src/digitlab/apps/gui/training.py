"""The "Train…" dialog: train a zoo model in the background with live progress.

Training runs :func:`digitlab.training.trainer.train` on a daemon thread (:func:`run_training`,
which holds no Tk object). Its callback only posts messages to a queue; the dialog updates its
progress bar and accuracy curve from them on the Tk thread. Cancel sets the run's
``stop_event``: the run
stops after saving ``last.pt`` and the app keeps the model it had. A finished run's ``best.pt``
becomes the app's model.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import tkinter as tk
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from tkinter import filedialog, ttk
from typing import TYPE_CHECKING, Any

from digitlab.apps.gui.app import ERROR_COLOUR, describe_error
from digitlab.apps.gui.charts import CurveChart
from digitlab.apps.gui.worker import Post, forget_widgets
from digitlab.core.errors import DigitlabError

if TYPE_CHECKING:
    from digitlab.apps.gui.app import DigitlabApp
    from digitlab.training.events import EpochEvent, StepEvent

log = logging.getLogger(__name__)

DEFAULT_MODEL = "digitnet_fast"  # trains to ~99% in one CPU epoch
DEFAULT_EPOCHS = 3
MAX_EPOCHS = 200
# Step events arrive hundreds of times per epoch; forward at most ~10 per second to the window.
UI_INTERVAL_S = 0.1
# Smoothing of the per-batch training accuracy for the curve (exponential moving average over
# roughly the last 1 / (1 - 0.9) = 10 batches).
EMA_DECAY = 0.9
HINT_COLOUR = "#666666"
WRAP = 500  # pixels: messages wrap within the dialog's initial width


def _parse_optional_int(text: str, name: str, minimum: int) -> int | None:
    """``""`` -> None, else an int >= minimum; a ValueError names the field otherwise."""
    text = text.strip().replace(",", "").replace("_", "")
    if not text:
        return None
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{name} must be a whole number, got {text!r}") from None
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return value


def run_training(post: Post, config: Any, download: bool, stop_event: threading.Event) -> None:
    """Body of the training thread: loads MNIST, trains, and reports through ``post``.

    Messages: ``("step", StepProgress)`` (at most every UI_INTERVAL_S, with an ``ema``
    accuracy), ``("epoch", EpochEvent)``, then ``("finished", TrainResult)`` or
    ``("failed", exception)``. It never touches Tk (see worker.py).
    """
    from digitlab.training.events import EpochEvent

    last_post = 0.0
    ema: float | None = None

    def callback(event: StepEvent | EpochEvent) -> None:
        nonlocal last_post, ema
        if isinstance(event, EpochEvent):
            post(("epoch", event))
            return
        ema = event.acc if ema is None else EMA_DECAY * ema + (1 - EMA_DECAY) * event.acc
        now = time.monotonic()
        if now - last_post >= UI_INTERVAL_S or event.step == event.steps:
            last_post = now
            post(("step", StepProgress(event, ema)))

    try:
        from digitlab.training.data import load_mnist
        from digitlab.training.trainer import train

        data = load_mnist(config.data_dir, download=download)
        result = train(config, data=data, callback=callback, stop_event=stop_event)
    except Exception as exc:
        log.debug("training failed", exc_info=True)
        post(("failed", exc))
    else:
        post(("finished", result))


@dataclass(frozen=True)
class StepProgress:
    """A step event as the dialog shows it: with the smoothed batch accuracy."""

    event: StepEvent
    ema: float  # exponential moving average of the batch accuracy (EMA_DECAY)


class TrainDialog(tk.Toplevel):
    """Choose a model and epochs, train it, watch progress, switch the app to the result."""

    def __init__(self, app: DigitlabApp) -> None:
        super().__init__(app.root)
        from digitlab.training.models import available_models

        self.app = app
        self.title("Train a model")
        self.configure(background=app.root.cget("background"))
        self.transient(app.root)
        self.protocol("WM_DELETE_WINDOW", self.close)
        self.stop_event: threading.Event | None = None
        self.thread: threading.Thread | None = None
        self.result: Any = None
        self.error: str | None = None
        self._alive = True

        self.model_var = tk.StringVar(self)
        self.epochs_var = tk.StringVar(self, str(DEFAULT_EPOCHS))
        self.samples_var = tk.StringVar(self, "")
        self.data_var = tk.StringVar(self, os.environ.get("DIGITLAB_DATA", ""))
        self.download_var = tk.BooleanVar(self, True)
        self.progress_var = tk.DoubleVar(self, 0.0)
        self.message_var = tk.StringVar(self, "Choose a model and press Start.")
        self.error_var = tk.StringVar(self, "")

        models = available_models()
        self.model_var.set(DEFAULT_MODEL if DEFAULT_MODEL in models else models[0])
        self._build(models)
        self.bind("<Escape>", lambda _e: self.close())
        self.bind("<Return>", lambda _e: self.start())  # start() ignores it while training

    # -- layout ---------------------------------------------------------------------------------
    def _build(self, models: list[str]) -> None:
        self.columnconfigure(0, weight=1)
        self.rowconfigure(2, weight=1)
        form = ttk.Frame(self, padding=8)
        form.grid(row=0, column=0, sticky="ew")
        form.columnconfigure(1, weight=1)
        rows: list[tuple[str, tk.Widget]] = [
            (
                "Model",
                ttk.Combobox(form, textvariable=self.model_var, values=models, state="readonly"),
            ),
            (
                "Epochs",
                ttk.Spinbox(form, textvariable=self.epochs_var, from_=1, to=MAX_EPOCHS, width=6),
            ),
            ("Training images", ttk.Entry(form, textvariable=self.samples_var, width=10)),
        ]
        for row, (label, widget) in enumerate(rows):
            ttk.Label(form, text=label).grid(row=row, column=0, sticky="w", pady=2, padx=(0, 6))
            widget.grid(row=row, column=1, sticky="w", pady=2)
        ttk.Label(form, text="(blank = all of them)", foreground=HINT_COLOUR).grid(
            row=2, column=2, sticky="w"
        )
        ttk.Label(form, text="MNIST folder").grid(row=3, column=0, sticky="w", pady=2, padx=(0, 6))
        ttk.Entry(form, textvariable=self.data_var).grid(row=3, column=1, sticky="ew", pady=2)
        ttk.Button(form, text="Browse…", command=self._browse_data).grid(row=3, column=2, padx=4)
        ttk.Checkbutton(
            form, text="Download MNIST if it is missing", variable=self.download_var
        ).grid(row=4, column=1, columnspan=2, sticky="w")

        status = ttk.Frame(self, padding=(8, 0))
        status.grid(row=1, column=0, sticky="ew")
        status.columnconfigure(0, weight=1)
        self.progress = ttk.Progressbar(status, variable=self.progress_var, maximum=1.0)
        self.progress.grid(row=0, column=0, sticky="ew")
        ttk.Label(status, textvariable=self.message_var, wraplength=WRAP).grid(
            row=1, column=0, sticky="w"
        )
        ttk.Label(
            status,
            textvariable=self.error_var,
            foreground=ERROR_COLOUR,
            justify="left",
            anchor="w",
            wraplength=WRAP,
        ).grid(row=2, column=0, sticky="ew")

        self.curve = CurveChart(self, x_label="epoch", y_label="accuracy", width=520, height=220)
        self.curve.grid(row=2, column=0, sticky="nsew", padx=8, pady=4)

        buttons = ttk.Frame(self, padding=8)
        buttons.grid(row=3, column=0, sticky="e")
        self.start_button = ttk.Button(buttons, text="Start", command=self.start)
        self.start_button.pack(side="left")
        self.cancel_button = ttk.Button(
            buttons, text="Cancel training", command=self.cancel, state="disabled"
        )
        self.cancel_button.pack(side="left", padx=4)
        ttk.Button(buttons, text="Close", command=self.close).pack(side="left")

    def _browse_data(self) -> None:
        folder = filedialog.askdirectory(parent=self, title="Folder with the MNIST files")
        if folder:
            self.data_var.set(folder)

    # -- running --------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        """True while the training thread is alive."""
        return self.thread is not None and self.thread.is_alive()

    def _config(self) -> Any:
        from digitlab.training.trainer import TrainConfig

        epochs = _parse_optional_int(self.epochs_var.get(), "Epochs", 1)
        samples = _parse_optional_int(self.samples_var.get(), "Training images", 1)
        model = self.model_var.get()
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        run_dir = self.app.cwd / "runs" / f"{stamp}-{model}"
        suffix = 1
        while run_dir.exists():  # two runs started within the same second
            suffix += 1
            run_dir = run_dir.with_name(f"{stamp}-{model}-{suffix}")
        data_dir = self.data_var.get().strip() or None
        return TrainConfig(
            model=model,
            epochs=epochs or DEFAULT_EPOCHS,
            train_samples=samples,
            run_dir=str(run_dir),
            data_dir=data_dir,
        )

    def start(self) -> None:
        """Validate the form and start training on a background thread."""
        if self.running:
            return
        self.error_var.set("")
        try:
            config = self._config()
        except (ValueError, DigitlabError) as exc:  # a bad field, or TrainConfig.validate
            self.error_var.set(str(exc))
            return
        self.result, self.error = None, None
        self.stop_event = threading.Event()
        self.progress_var.set(0.0)
        self.curve.reset(config.epochs)
        self.message_var.set(f"Loading MNIST for {config.model}…")
        self.start_button.configure(state="disabled")
        self.cancel_button.configure(state="normal")
        self.app.set_status(f"Training {config.model}…")
        self.thread = self.app.tasks.start_thread(
            run_training,
            (config, bool(self.download_var.get()), self.stop_event),
            self._on_message,
            name="digitlab-train",
        )

    def _on_message(self, message: tuple[str, Any]) -> None:
        kind, payload = message
        handlers = {
            "step": self._on_step,
            "epoch": self._on_epoch,
            "failed": self._on_failed,
            "finished": self._on_finished,
        }
        handlers[kind](payload)

    # -- events from the training thread (run on the Tk thread) --------------------------------
    def _on_step(self, progress: StepProgress) -> None:
        if not self._alive:
            return
        event = progress.event
        self.progress_var.set(event.progress)
        self.message_var.set(
            f"Epoch {event.epoch}/{event.epochs} · step {event.step}/{event.steps} · "
            f"loss {event.loss:.3f} · batch accuracy {event.acc * 100:.1f}%"
        )
        self.curve.add_point(
            "train (batches)", event.epoch - 1 + event.step / event.steps, progress.ema
        )

    def _on_epoch(self, event: EpochEvent) -> None:
        if not self._alive:
            return
        self.progress_var.set(event.epoch / event.epochs)
        if event.has_validation:
            val = event.val_acc
            self.curve.add_point("validation", event.epoch, val, markers=True)
            self.message_var.set(
                f"Epoch {event.epoch}/{event.epochs} done · validation {val * 100:.2f}%"
            )

    def _on_failed(self, exc: BaseException) -> None:
        self.error = describe_error(exc)
        self.app.show_error(f"Training failed: {self.error}")
        self.app.set_status("Training failed")
        if self._alive:
            self.error_var.set(self.error)
            self.message_var.set("Training failed.")
            self._idle()

    def _on_finished(self, result: Any) -> None:
        self.result = result
        if result.interrupted or not result.history or not Path(result.best_path).exists():
            where = self._short(result.run_dir)
            text = f"Training cancelled; run kept in {where}. The current model stays."
            self.app.set_status("Training cancelled — model unchanged")
        else:
            best = result.best.get("val_acc", float("nan"))
            text = f"Done: validation {best * 100:.2f}%. Now using {self._short(result.best_path)}."
            self.app.load_model_file(
                result.best_path, description=f"trained now: {Path(result.run_dir).name}/best.pt"
            )
        if self._alive:
            self.message_var.set(text)
            self._idle()

    def _short(self, path: Path | str) -> str:
        """``path`` relative to the app's folder when it is inside it."""
        try:
            return str(Path(path).relative_to(self.app.cwd))
        except ValueError:
            return str(path)

    def _idle(self) -> None:
        self.start_button.configure(state="normal")
        self.cancel_button.configure(state="disabled")

    # -- closing --------------------------------------------------------------------------------
    def cancel(self) -> None:
        """Ask the running training to stop (it saves last.pt; the app keeps its model)."""
        if self.stop_event is not None and self.running:
            self.stop_event.set()
            if self._alive:
                self.message_var.set("Stopping after the current batch…")
                self.cancel_button.configure(state="disabled")

    def release(self) -> None:
        """Forget the app (called when the app closes, to break the app <-> dialog cycle)."""
        self.cancel()
        self._alive = False
        self.app = None  # type: ignore[assignment]
        forget_widgets(self)

    def close(self) -> None:
        """Close the dialog; a running training is cancelled."""
        self.cancel()
        self._alive = False
        self.destroy()
        forget_widgets(self)  # no cycles left: freed on this thread when the app lets go
