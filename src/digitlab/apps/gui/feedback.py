"""The desktop app's "Teach it" panel (issue #17): the same as the web page's.

After each prediction: "Right", "Wrong — it's a" 0-9 (keys 0-9 in the main window) or, in
multi-digit mode, the corrected number; "Undo" takes the last correction back; a counter shows
how many are stored; "Improve from N corrections" fine-tunes in the background with a progress
bar and switches the window to the new (personal) model when it is accepted.

The store (:class:`~digitlab.apps.feedback.store.FeedbackStore`, the user's default unless
``store_location`` says otherwise) is opened on the worker thread, and corrections are saved
and taken back there, so the window never waits on the disk ("Improve" reads its snapshot of
the corrections when clicked). The main window hooks in with four lines (see
``app.py``): build the panel, ``on_result(result, image)`` after each prediction (None when
cleared), and ``close()``.
"""

from __future__ import annotations

import io
import logging
import os
import tkinter as tk
from tkinter import ttk
from types import SimpleNamespace
from typing import Any

from PIL import Image

from digitlab.apps.gui.worker import forget_widgets

log = logging.getLogger(__name__)

POLL_MS = 300  # how often the window checks the background fine-tuning
DIGIT_KEYS = tuple(str(d) for d in range(10))


def image_bytes(image: Image.Image, path: Any = None) -> bytes:
    """The image as it was given: an opened file's bytes, else the drawing as a PNG."""
    if path is not None:
        try:
            with open(path, "rb") as fh:
                return fh.read()
        except OSError:
            pass  # gone since it was opened: store what was shown
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def predicted_text(result: Any) -> str:
    """What the model said: a digit, a number's digits, or "" (no digit)."""
    if hasattr(result, "number"):
        return result.number
    return "" if result.digit is None else str(result.digit)


def store_count(hold: SimpleNamespace, *, create: bool) -> int:
    """Open ``hold.store`` if needed (creating it only with ``create``); its count, or 0 when
    the default store does not exist yet. Runs on the worker."""
    from digitlab.apps.feedback.store import FeedbackStore, resolve_location

    if hold.store is None:
        location = resolve_location(hold.location)
        if not create and "://" not in location and not os.path.exists(location):
            return 0
        hold.store = FeedbackStore(location)
    return hold.store.count()


class FeedbackPanel(ttk.LabelFrame):
    """The panel; ``app`` is the :class:`~digitlab.apps.gui.app.DigitlabApp`."""

    def __init__(self, master: tk.Misc, app: Any, store_location: str | None = None) -> None:
        super().__init__(master, text="Teach it", padding=6)
        self.app = app
        # The store, opened on the worker; a missing default store is created by the first
        # correction (so merely opening the window writes nothing).
        self.hold = SimpleNamespace(store=None, location=store_location, error=None)
        self.improver: Any = None
        self.current: tuple[Any, Image.Image, bytes] | None = None
        self.undo_ids: list[int] = []
        self.count = 0
        self.finetune_overrides: dict[str, Any] = {}  # FinetuneConfig fields (tests: fewer steps)
        self._poll_after: str | None = None
        self.status_var = tk.StringVar(self, "")
        self.count_var = tk.StringVar(self, "0 corrections stored")
        self.number_var = tk.StringVar(self, "")
        self._build()
        self._enable(False)
        app.root.bind("<Key>", self._on_key, add="+")
        self._open_store()

    # -- layout -------------------------------------------------------------------------------
    def _build(self) -> None:
        self.columnconfigure(0, weight=1)
        top = ttk.Frame(self)
        top.grid(row=0, column=0, sticky="ew")
        self.right_button = ttk.Button(top, text="Right", command=self.mark_right)
        self.right_button.pack(side="left")
        self.wrong_label = ttk.Label(top, text="Wrong — it's a")
        self.wrong_label.pack(side="left", padx=(8, 0))
        self.digit_row = ttk.Frame(self)
        self.digit_row.grid(row=1, column=0, sticky="w", pady=(4, 0))
        self.digit_buttons = []
        for d in range(10):
            b = ttk.Button(
                self.digit_row, text=str(d), width=2, command=lambda d=d: self.send(str(d))
            )
            b.grid(row=0, column=d, padx=1)
            self.digit_buttons.append(b)
        self.number_row = ttk.Frame(self)
        self.number_entry = ttk.Entry(self.number_row, textvariable=self.number_var, width=12)
        self.number_entry.pack(side="left")
        self.number_entry.bind("<Return>", lambda _e: (self.save_number(), "break")[1])
        self.save_button = ttk.Button(self.number_row, text="Save", command=self.save_number)
        self.save_button.pack(side="left", padx=4)
        ttk.Label(self, textvariable=self.status_var, wraplength=260, justify="left").grid(
            row=3, column=0, sticky="ew", pady=(4, 0)
        )
        bottom = ttk.Frame(self)
        bottom.grid(row=4, column=0, sticky="ew", pady=(4, 0))
        ttk.Label(bottom, textvariable=self.count_var).pack(side="left")
        self.undo_button = ttk.Button(bottom, text="Undo", command=self.undo, state="disabled")
        self.undo_button.pack(side="right")
        self.improve_button = ttk.Button(
            self, text="Improve from 0 corrections", command=self.improve, state="disabled"
        )
        self.improve_button.grid(row=5, column=0, sticky="ew", pady=(4, 0))
        self.progress = ttk.Progressbar(self, maximum=1.0, mode="determinate")

    def _enable(self, on: bool) -> None:
        state = "normal" if on else "disabled"
        for widget in (self.right_button, self.save_button, self.number_entry, *self.digit_buttons):
            widget.configure(state=state)

    def _set_count(self, n: int) -> None:
        self.count = n
        self.count_var.set(f"{n} correction{'s' if n != 1 else ''} stored")
        running = self.improver is not None and self.improver.running
        self.improve_button.configure(
            text=f"Improve from {n} correction{'s' if n != 1 else ''}",
            state="normal" if n and not running else "disabled",
        )

    def _say(self, text: str) -> None:
        self.status_var.set(text)

    # -- store ----------------------------------------------------------------------------------
    @property
    def store(self) -> Any:
        """The open store (None until it exists)."""
        return self.hold.store

    def _open_store(self) -> None:
        hold = self.hold

        def job() -> int:  # worker: no Tk objects
            return store_count(hold, create=False)

        def failed(exc: BaseException) -> None:
            hold.error = str(exc)
            self._say(f"Corrections cannot be kept: {exc}")

        self.app.tasks.submit(job, self._set_count, failed)

    # -- the hook -------------------------------------------------------------------------------
    def on_result(self, result: Any, image: Image.Image | None) -> None:
        """A new prediction is shown (None: the input was cleared)."""
        if result is None or image is None:
            self.current = None
            self._enable(False)
            return
        data = image_bytes(image, self.app.opened_path if self.app.opened_image else None)
        self.current = (result, image, data)
        multi = hasattr(result, "number")
        if multi:
            self.digit_row.grid_remove()
            self.number_row.grid(row=2, column=0, sticky="w", pady=(4, 0))
            self.wrong_label.configure(text="Wrong — it's")
            self.number_var.set("")
        else:
            self.number_row.grid_remove()
            self.digit_row.grid()
            self.wrong_label.configure(text="Wrong — it's a")
        self._enable(self.hold.error is None)

    # -- actions --------------------------------------------------------------------------------
    def mark_right(self) -> None:
        """The model was right: keep it as a confirmed example."""
        if self.current is not None:
            self.send(predicted_text(self.current[0]))

    def save_number(self) -> None:
        """Store the typed number as the correction."""
        value = self.number_var.get().strip()
        if not value.isdigit():
            self._say("Type the right number with digits only.")
            return
        self.send(value)

    def _on_key(self, event: tk.Event) -> None:
        if event.char not in DIGIT_KEYS or not event.char:
            return
        if isinstance(event.widget, (tk.Entry, ttk.Entry)):
            return  # typing the number
        if self.current is None or hasattr(self.current[0], "number"):
            return
        self.send(event.char)

    def send(self, label: str) -> None:
        """Store the current image with ``label`` (on the worker)."""
        if self.current is None or self.hold.error is not None:
            return
        result, _image, data = self.current
        self.current = None
        self._enable(False)
        predicted = predicted_text(result)
        hold, slot = self.hold, self.app._slot

        def job() -> Any:  # worker: no Tk objects
            from digitlab.apps.feedback.capture import make_correction

            new = make_correction(
                slot.recognizer, data, label, predicted=predicted or None, source="gui"
            )
            store_count(hold, create=True)
            return hold.store.add(new)

        def done(added: Any) -> None:
            if not added.duplicate:
                self.undo_ids.append(added.id)
            self.undo_button.configure(state="normal" if self.undo_ids else "disabled")
            self._set_count(added.count)
            if added.duplicate:
                self._say("Already stored: this exact image was saved before.")
            elif label == predicted:
                self._say("Thanks: kept as a confirmed example.")
            else:
                self._say(f"Thanks: kept as {label}. Improve the model to learn from it.")

        def failed(exc: BaseException) -> None:
            self._say(f"Not saved: {exc}")

        self.app.tasks.submit(job, done, failed)

    def undo(self) -> None:
        """Take the last correction made in this window back."""
        if not self.undo_ids or self.store is None:
            return
        correction_id = self.undo_ids.pop()
        store = self.store
        self.undo_button.configure(state="disabled")

        def job() -> tuple[bool, int]:
            return store.delete(correction_id), store.count()

        def done(value: tuple[bool, int]) -> None:
            self._set_count(value[1])
            self._say("Undone: the last correction was taken back.")
            self.undo_button.configure(state="normal" if self.undo_ids else "disabled")

        def failed(exc: BaseException) -> None:
            self.undo_ids.append(correction_id)
            self._say(f"Could not undo: {exc}")

        self.app.tasks.submit(job, done, failed)

    def improve(self) -> None:
        """Fine-tune on the corrections in the background; switch models when accepted."""
        from digitlab.apps.feedback.improve import Improver
        from digitlab.core.errors import DigitlabError

        if self.store is None:
            self._say("No corrections yet: correct a few predictions first.")
            return
        slot = self.app._slot
        if self.improver is None:
            ctx = SimpleNamespace(
                store=self.store,
                get_recognizer=lambda: slot.recognizer,
                set_recognizer=lambda rec: setattr(slot, "recognizer", rec),
                extra={"finetune": self.finetune_overrides},
            )
            self.improver = Improver(ctx)
        try:
            self.improver.start()
        except DigitlabError as exc:
            self._say(f"Cannot improve now: {exc}")
            return
        self.improve_button.configure(state="disabled")
        self.progress.grid(row=6, column=0, sticky="ew", pady=(4, 0))
        self._poll()

    def _poll(self) -> None:
        self._poll_after = None
        status = self.improver.status()
        self.progress.configure(value=status["progress"])
        self._say(status["message"])
        if status["state"] == "running":
            self._poll_after = self.after(POLL_MS, self._poll)
            return
        self.progress.grid_remove()
        self._set_count(self.count)
        if status["state"] == "done":
            rec = self.app.recognizer
            self.app._show_model(rec, "your personal model")
            self.app.request_prediction()

    def close(self) -> None:
        """Stop polling and close the store."""
        if self._poll_after is not None:
            self.after_cancel(self._poll_after)
            self._poll_after = None
        if self.store is not None:
            self.store.close()
        # No cycles through the app or the child widgets (see worker.forget_widgets): closing
        # frees every Tk object on the Tk thread, without the garbage collector.
        self.current = None
        self.app = None
        self.digit_buttons = []
        forget_widgets(self)
