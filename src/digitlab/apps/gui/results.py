"""The results card: the answer, top three, probability bars, model input and thumbnail.

It reads like the web page's result card: a verdict tinted by the state (green when sure,
amber when not, neutral when there is nothing), the answer large in a tile, "It's a 7" /
"99.2% confident"; the top three as chips; all ten probabilities as bars; the 28x28 image the
model saw. Percentages go through :func:`~digitlab.apps.gui.charts.format_probability`.
"""

from __future__ import annotations

import tkinter as tk
import tkinter.font as tkfont
from tkinter import ttk
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from digitlab.apps.gui.charts import ProbabilityChart, format_probability, photo_from_pil
from digitlab.apps.gui.style import (
    FONT_BIG,
    FONT_BODY,
    FONT_CHIP,
    FONT_SMALL,
    FONT_TITLE,
    Palette,
    palette_of,
    rounded_rect,
)
from digitlab.apps.gui.worker import forget_widgets
from digitlab.core.constants import IMAGE_SIDE

SIDEBAR_WIDTH = 340
PREVIEW_SIZE = (4 * IMAGE_SIDE, 4 * IMAGE_SIDE)  # the 28x28 model input at 4x, crisp pixels
THUMB_SIZE = (112, 112)
BIG_FONT_SIZE = 44
MIN_FONT_SIZE = 12
VERDICT_HEIGHT = 104
TILE = 80  # the answer's tile (pixels); it widens for a long number
TILE_PAD = 12
CHIP_HEIGHT = 36
CHIP_GAP = 8
BOX_RGB = (79, 70, 229)  # the accent, for digit boxes drawn into the opened image
TOP_SHOWN = 3
CAPTION_CHARS = 32  # two lines under the thumbnail
NO_IMAGE = "No image opened\n(Ctrl+O)"
BLANK = "–"
IDLE_STATUS = "Draw a digit or open an image."

# The verdict's look per state: (background, answer colour) attribute names of the Palette.
STATE_COLOURS = {
    "idle": ("faint", "muted"),
    "empty": ("faint", "muted"),
    "ok": ("ok_soft", "ok"),
    "unsure": ("warn_soft", "warn"),
}


def _digit_text(prediction: Any) -> str:
    return "?" if prediction.digit is None else str(prediction.digit)


def describe_prediction(prediction: Any) -> tuple[str, str, str]:
    """``(state, title, detail)`` for one prediction, in the web page's words."""
    if prediction.digit is None:
        return "empty", "No digit found", "Draw one larger and bolder, or try another image."
    confidence = format_probability(prediction.confidence)
    if prediction.uncertain:
        top = prediction.top
        maybe = f" — maybe {top[0][0]} or {top[1][0]}" if len(top) > 1 else ""
        return (
            "unsure",
            f"Not sure{maybe}",
            f"{confidence} for {prediction.digit}: try writing it more clearly.",
        )
    return "ok", f"It's a {prediction.digit}", f"{confidence} confident"


class VerdictCard(tk.Canvas):
    """The tinted box with the answer in a tile and two lines of text beside it."""

    def __init__(self, master: tk.Misc, panel: ResultsPanel) -> None:
        super().__init__(master, height=VERDICT_HEIGHT, highlightthickness=0, borderwidth=0)
        self.panel = panel
        self.state = "idle"
        # A copy of the big font per card, shrunk for long numbers.
        self.big_font = tkfont.Font(self, font=FONT_BIG)
        self.bind("<Configure>", lambda _e: self.redraw())
        self.bind("<<ThemeChanged>>", lambda _e: self.redraw(), add="+")

    def redraw(self) -> None:
        """Repaint from the panel's variables."""
        pal = palette_of(self)
        self.configure(background=pal.bg)
        self.delete("all")
        width, height = self.winfo_width(), self.winfo_height()
        if width < 2 * TILE_PAD + 10:
            return
        soft, strong = (getattr(pal, name) for name in STATE_COLOURS[self.state])
        rounded_rect(self, 0, 0, width - 1, height - 1, 14, fill=soft, tags="verdict")
        answer = self.panel.digit_var.get()
        self._fit_answer(answer, width * 0.55)
        tile_w = max(TILE, self.big_font.measure(answer) + 2 * TILE_PAD)
        top = (height - TILE) / 2
        rounded_rect(
            self, TILE_PAD, top, TILE_PAD + tile_w, top + TILE, 14, fill=pal.bg, tags="tile"
        )
        self.create_text(
            TILE_PAD + tile_w / 2,
            height / 2,
            text=answer,
            font=self.big_font,
            fill=strong,
            tags="answer",
        )
        text_x = 2 * TILE_PAD + tile_w + 4
        wrap = max(40, width - text_x - TILE_PAD)
        lines = [
            (self.panel.status_var.get(), FONT_TITLE, pal.text),
            (self.panel.confidence_var.get(), FONT_BODY, pal.muted),
            (self.panel.note_var.get(), FONT_SMALL, pal.muted),
        ]
        items = [
            self.create_text(text_x, 0, text=text, font=font, fill=colour, width=wrap, anchor="nw")
            for text, font, colour in lines
            if text
        ]
        # Centre the block of lines vertically.
        heights = [self.bbox(i)[3] - self.bbox(i)[1] for i in items]
        y = (height - sum(heights) - 3 * (len(items) - 1)) / 2
        for item, h in zip(items, heights, strict=True):
            self.coords(item, text_x, y)
            y += h + 3

    def _fit_answer(self, text: str, max_width: float) -> None:
        """The answer as large as fits: long numbers get a smaller font."""
        size = BIG_FONT_SIZE
        self.big_font.configure(size=size)
        while size > MIN_FONT_SIZE and self.big_font.measure(text) > max_width:
            size -= 2
            self.big_font.configure(size=size)


class ChipRow(tk.Canvas):
    """A row of rounded chips: a digit in bold and a percentage (top three, digits found)."""

    def __init__(self, master: tk.Misc) -> None:
        super().__init__(master, height=CHIP_HEIGHT, highlightthickness=0, borderwidth=0)
        self.chips: list[tuple[str, str, str]] = []  # (digit, percentage, "best"/"unsure"/"")
        self.bind("<Configure>", lambda _e: self.redraw())
        self.bind("<<ThemeChanged>>", lambda _e: self.redraw(), add="+")

    def set_chips(self, chips: list[tuple[str, str, str]]) -> None:
        """Show these chips (an empty list shows a dash)."""
        self.chips = list(chips)
        self.redraw()

    def redraw(self) -> None:
        """Repaint at the current size."""
        pal: Palette = palette_of(self)
        self.configure(background=pal.bg)
        self.delete("all")
        if not self.chips:
            self.create_text(2, CHIP_HEIGHT / 2, text="—", anchor="w", fill=pal.muted)
            return
        x = 0.0
        for digit, pct, kind in self.chips:
            big = self.create_text(
                x + 12,
                CHIP_HEIGHT / 2,
                text=digit,
                anchor="w",
                font=FONT_CHIP,
                fill=pal.warn if kind == "unsure" else pal.text,
            )
            small_x = self.bbox(big)[2] + 7
            small = self.create_text(
                small_x, CHIP_HEIGHT / 2 + 1, text=pct, anchor="w", font=FONT_SMALL, fill=pal.muted
            )
            right = self.bbox(small)[2] + 12
            fill = pal.accent_soft if kind == "best" else pal.faint
            chip = rounded_rect(self, x, 1, right, CHIP_HEIGHT - 1, 12, fill=fill, tags="chip")
            self.tag_lower(chip)
            x = right + CHIP_GAP


class ResultsPanel(ttk.Frame):
    """Shows a :class:`Prediction` or a :class:`NumberResult` from the recogniser."""

    def __init__(self, master: tk.Misc) -> None:
        super().__init__(master, width=SIDEBAR_WIDTH, style="Card.TFrame", padding=16)
        self.digit_var = tk.StringVar(self, BLANK)
        self.status_var = tk.StringVar(self, IDLE_STATUS)
        self.confidence_var = tk.StringVar(self, "")
        self.top_var = tk.StringVar(self, "")
        self.note_var = tk.StringVar(self, "")
        self.thumb_caption = tk.StringVar(self, NO_IMAGE)
        self._photos: dict[str, tk.PhotoImage] = {}  # Tk shows an image only while referenced
        self.columnconfigure(0, weight=1)
        self.verdict = VerdictCard(self, self)
        self.verdict.grid(row=0, column=0, sticky="ew")
        self.number_heading = self._heading("Digits found", row=1)
        self.number_chips = ChipRow(self)
        self.number_chips.grid(row=2, column=0, sticky="ew")
        self._heading("Top three", row=3)
        self.top_chips = ChipRow(self)
        self.top_chips.grid(row=4, column=0, sticky="ew")
        self.chart_heading = self._heading("All ten probabilities", row=5)
        self.chart = ProbabilityChart(self, width=SIDEBAR_WIDTH - 32, height=124)
        self.chart.grid(row=6, column=0, sticky="ew")
        ttk.Separator(self).grid(row=7, column=0, sticky="ew", pady=(12, 10))
        self._build_images().grid(row=8, column=0, sticky="ew")
        self._show_number_row(False)
        self.set_preview(None)
        self.top_chips.set_chips([])

    def _heading(self, text: str, row: int) -> ttk.Label:
        label = ttk.Label(self, text=text.upper(), style="Heading.TLabel")
        label.grid(row=row, column=0, sticky="w", pady=(10, 4))
        return label

    def _show_number_row(self, shown: bool) -> None:
        for widget in (self.number_heading, self.number_chips):
            if shown:
                widget.grid()
            else:
                widget.grid_remove()

    def _build_images(self) -> ttk.Frame:
        images = ttk.Frame(self)
        images.columnconfigure((0, 1), weight=1, uniform="images")  # two equal image boxes
        self.preview_label = tk.Label(images, background="black", borderwidth=0)
        self.preview_label.grid(row=0, column=0)
        ttk.Label(images, text="Model sees (28×28)", style="Small.TLabel").grid(
            row=1, column=0, pady=(6, 0)
        )
        self.thumb_label = ttk.Label(
            images,
            textvariable=self.thumb_caption,
            anchor="center",
            justify="center",
            compound="top",
            style="Small.TLabel",
            wraplength=THUMB_SIZE[0] + 40,
        )
        self.thumb_label.grid(row=0, column=1, rowspan=2)
        return images

    def release(self) -> None:
        """Break the panel <-> child widget cycles once the window is destroyed."""
        self.verdict.panel = None  # type: ignore[assignment]
        forget_widgets(self)

    # -- showing results ------------------------------------------------------------------------
    def _set_verdict(
        self, state: str, answer: str, title: str, detail: str, note: str = ""
    ) -> None:
        self.digit_var.set(answer)
        self.status_var.set(title)
        self.confidence_var.set(detail)
        self.note_var.set(note)
        self.verdict.state = state
        self.verdict.redraw()

    def show_blank(self, message: str = IDLE_STATUS, digit: str = BLANK) -> None:
        """Nothing to show (empty pad, or no digit found)."""
        self._set_verdict("idle" if digit == BLANK else "empty", digit, message, "")
        self.top_var.set("")
        self.top_chips.set_chips([])
        self._show_number_row(False)
        self.chart.set_probabilities(None)
        self.set_preview(None)

    def show_prediction(self, prediction: Any, *, note: str = "") -> None:
        """One digit: the answer, its probability, the top three, the bars and the input."""
        state, title, detail = describe_prediction(prediction)
        self._set_verdict(state, _digit_text(prediction), title, detail, note)
        top = prediction.top[:TOP_SHOWN]
        self.top_var.set("\n".join(f"{d}  {format_probability(p)}" for d, p in top))
        self.top_chips.set_chips(
            [
                (str(d), format_probability(p), "best" if i == 0 else "")
                for i, (d, p) in enumerate(top)
            ]
        )
        self._show_number_row(False)
        self.chart.set_probabilities(
            prediction.probabilities if prediction.digit is not None else None
        )
        self.set_preview(prediction.preprocessed)

    def show_number(self, number: Any) -> None:
        """Several digits: the number, each digit's probability; the scores of the first digit."""
        boxes = number.digits
        if not boxes:
            self.show_blank("No digits found", "?")
            self.confidence_var.set("Write the digits larger, side by side, or try another image.")
            self.verdict.redraw()
            return
        self.show_prediction(boxes[0].prediction)
        lowest = min(0.0 if b.prediction.digit is None else b.prediction.confidence for b in boxes)
        count = f"{len(boxes)} digit{'s' if len(boxes) != 1 else ''}"
        title = (
            f"Not sure about every digit: {number.number or '?'}"
            if number.uncertain
            else f"It reads {number.number}"
        )
        self._set_verdict(
            "unsure" if number.uncertain else "ok",
            number.number or "?",
            title,
            f"{count} · lowest confidence {format_probability(lowest)}",
            f"Scores below: digit 1 of {len(boxes)}.",
        )
        self.number_chips.set_chips(
            [
                (
                    _digit_text(b.prediction),
                    format_probability(b.prediction.confidence),
                    "unsure" if b.prediction.uncertain else "",
                )
                for b in boxes
            ]
        )
        self._show_number_row(True)

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
