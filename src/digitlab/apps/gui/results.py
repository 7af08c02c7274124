"""The results sidebar: the answer, top three, probability bars, model input and thumbnail."""

from __future__ import annotations

import tkinter as tk
import tkinter.font as tkfont
from tkinter import ttk
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from digitlab.apps.gui.charts import ProbabilityChart, photo_from_pil
from digitlab.apps.gui.worker import forget_widgets
from digitlab.core.constants import IMAGE_SIDE

SIDEBAR_WIDTH = 300
PREVIEW_SIZE = (4 * IMAGE_SIDE, 4 * IMAGE_SIDE)  # the 28x28 model input at 4x, crisp pixels
THUMB_SIZE = (120, 112)
BIG_FONT_SIZE = 44
MIN_FONT_SIZE = 12
# Widths (pixels) that keep the sidebar at SIDEBAR_WIDTH whatever it shows: the answer may use
# what the top-3 column (~9 fixed-width characters) leaves; text wraps inside the frame padding.
ANSWER_WIDTH = SIDEBAR_WIDTH - 120
TEXT_WRAP = SIDEBAR_WIDTH - 30
UNSURE_COLOUR = "#b36b00"
BOX_RGB = (31, 119, 180)
TOP_SHOWN = 3
CAPTION_CHARS = 32  # two lines under the thumbnail
NO_IMAGE = "No image opened\n(Ctrl+O)"
BLANK = "–"


def _digit_text(prediction: Any) -> str:
    return "?" if prediction.digit is None else str(prediction.digit)


class ResultsPanel(ttk.Frame):
    """Shows a :class:`Prediction` or a :class:`NumberResult` from the recogniser."""

    def __init__(self, master: tk.Misc) -> None:
        super().__init__(master, width=SIDEBAR_WIDTH)
        self.digit_var = tk.StringVar(self, BLANK)
        self.confidence_var = tk.StringVar(self, "Draw a digit")
        self.top_var = tk.StringVar(self, "")
        self.note_var = tk.StringVar(self, "")
        self.thumb_caption = tk.StringVar(self, NO_IMAGE)
        self._photos: dict[str, tk.PhotoImage] = {}  # Tk shows an image only while referenced
        self.columnconfigure((0, 1), weight=1, uniform="images")  # two equal image boxes
        self._build_answer().grid(row=0, column=0, columnspan=2, sticky="ew")
        chart_box = ttk.LabelFrame(self, text="Probabilities", padding=4)
        chart_box.grid(row=1, column=0, columnspan=2, sticky="ew", pady=6)
        self.chart = ProbabilityChart(chart_box, width=SIDEBAR_WIDTH - 20)
        self.chart.pack(fill="x")
        self._build_images()
        self.set_preview(None)

    def _build_answer(self) -> ttk.LabelFrame:
        answer = ttk.LabelFrame(self, text="Prediction", padding=6)
        answer.columnconfigure(0, weight=1)
        self.big_font = tkfont.nametofont("TkDefaultFont").copy()
        self.big_font.configure(size=BIG_FONT_SIZE, weight="bold")
        self.digit_label = ttk.Label(
            answer, textvariable=self.digit_var, font=self.big_font, anchor="center"
        )
        self.digit_label.grid(row=0, column=0, sticky="ew")
        ttk.Label(answer, textvariable=self.top_var, justify="left", font="TkFixedFont").grid(
            row=0, column=1, sticky="e"
        )
        for row, (var, colour) in enumerate(
            ((self.confidence_var, ""), (self.note_var, UNSURE_COLOUR)), start=1
        ):
            ttk.Label(
                answer,
                textvariable=var,
                foreground=colour,
                anchor="w",
                wraplength=TEXT_WRAP,
                justify="left",
            ).grid(row=row, column=0, columnspan=2, sticky="ew")
        return answer

    def _set_answer(self, text: str) -> None:
        """Show the answer as large as fits: long numbers get a smaller font."""
        size = BIG_FONT_SIZE
        self.big_font.configure(size=size)
        while size > MIN_FONT_SIZE and self.big_font.measure(text) > ANSWER_WIDTH:
            size -= 2
            self.big_font.configure(size=size)
        self.digit_var.set(text)

    def _build_images(self) -> None:
        preview_box = ttk.LabelFrame(self, text="Model sees (28×28)", padding=4)
        preview_box.grid(row=2, column=0, sticky="nsew", padx=(0, 3))
        self.preview_label = tk.Label(preview_box, background="black")
        self.preview_label.pack()
        thumb_box = ttk.LabelFrame(self, text="Opened image", padding=4)
        thumb_box.grid(row=2, column=1, sticky="nsew", padx=(3, 0))
        self.thumb_label = ttk.Label(
            thumb_box,
            textvariable=self.thumb_caption,
            anchor="center",
            justify="center",
            compound="top",
            wraplength=THUMB_SIZE[0],
        )
        self.thumb_label.pack(fill="both", expand=True)

    def release(self) -> None:
        """Break the panel <-> child widget cycles once the window is destroyed."""
        forget_widgets(self)

    # -- showing results ------------------------------------------------------------------------
    def show_blank(self, message: str = "Draw a digit", digit: str = BLANK) -> None:
        """Nothing to show (empty pad, or no digit found)."""
        self._set_answer(digit)
        self.confidence_var.set(message)
        self.top_var.set("")
        self.note_var.set("")
        self.chart.set_probabilities(None)
        self.set_preview(None)

    def show_prediction(self, prediction: Any, *, note: str = "") -> None:
        """One digit: the answer, its probability, the top three, the bars and the input."""
        if prediction.digit is None:
            self._set_answer("?")
            self.confidence_var.set("No digit found")
        else:
            self._set_answer(str(prediction.digit))
            self.confidence_var.set(f"{prediction.confidence * 100:.1f}% sure")
        self.top_var.set("\n".join(f"{d}  {p * 100:5.1f}%" for d, p in prediction.top[:TOP_SHOWN]))
        unsure = "Not sure — try drawing it larger and centred." if prediction.uncertain else ""
        self.note_var.set(" ".join(s for s in (note, unsure) if s))
        self.chart.set_probabilities(prediction.probabilities)
        self.set_preview(prediction.preprocessed)

    def show_number(self, number: Any) -> None:
        """Several digits: the number, each digit's probability; details of the first digit."""
        boxes = number.digits
        if not boxes:
            self.show_blank("No digits found", "?")
            return
        self.show_prediction(
            boxes[0].prediction, note=f"Bars, top 3 and preview: digit 1 of {len(boxes)}."
        )
        self._set_answer(number.number or "?")
        self.confidence_var.set(
            " · ".join(
                f"{_digit_text(b.prediction)}: {b.prediction.confidence * 100:.0f}%" for b in boxes
            )
        )

    def set_preview(self, array: np.ndarray | None) -> None:
        """Show the 28x28 model input (ink = 255), or black when None."""
        image = (
            Image.new("L", (IMAGE_SIDE, IMAGE_SIDE), 0)
            if array is None
            else Image.fromarray(np.asarray(array, dtype=np.uint8), mode="L")
        )
        self._photos["preview"] = photo_from_pil(image, PREVIEW_SIZE, smooth=False)
        self.preview_label.configure(image=self._photos["preview"])

    def set_thumbnail(self, image: Image.Image | None, caption: str = "", boxes=()) -> None:
        """Show an opened image (with digit boxes outlined), or the "no image" hint for None."""
        if image is None:
            self.thumb_label.configure(image="")
            self._photos.pop("thumb", None)
            self.thumb_caption.set(NO_IMAGE)
            return
        shown = image.convert("RGB")
        if boxes:
            draw = ImageDraw.Draw(shown)
            line = max(1, round(max(shown.size) / THUMB_SIZE[0]))  # ~1 px once shrunk
            for box in boxes:
                draw.rectangle(
                    (box.x, box.y, box.x + box.width, box.y + box.height),
                    outline=BOX_RGB,
                    width=line,
                )
        self._photos["thumb"] = photo_from_pil(shown, THUMB_SIZE, smooth=True)
        self.thumb_label.configure(image=self._photos["thumb"])
        if len(caption) > CAPTION_CHARS:  # keep both ends of a long file name
            half = (CAPTION_CHARS - 1) // 2
            caption = f"{caption[:half]}…{caption[-half:]}"
        self.thumb_caption.set(caption)
