"""Small charts drawn straight on Tk canvases (no matplotlib): probabilities and curves."""

from __future__ import annotations

import base64
import io
import math
import tkinter as tk
from collections.abc import Callable, Sequence

from PIL import Image

from digitlab.core.constants import NUM_CLASSES

BAR_COLOUR = "#9ecae1"
BEST_COLOUR = "#1f77b4"
AXIS_COLOUR = "#555555"
GRID_COLOUR = "#e5e5e5"
CURVE_COLOURS = ("#1f77b4", "#d62728", "#2ca02c")
# Margins (pixels) that leave room for the axis labels.
LABEL_MARGIN = 18
LEFT_MARGIN = 44
PAD = 6
POINT_RADIUS = 3
MAX_X_TICKS = 10


def photo_from_pil(image: Image.Image, size: tuple[int, int], *, smooth: bool) -> tk.PhotoImage:
    """A Tk PhotoImage of ``image`` fitted into ``size`` (aspect kept).

    Goes through PNG bytes, which Tk 8.6 decodes itself, so no PIL.ImageTk is needed.
    ``smooth=False`` scales with nearest-neighbour, to show a 28x28 input as crisp pixels.
    """
    img = image.copy()
    if img.mode not in ("L", "RGB", "RGBA"):
        img = img.convert("RGBA" if "A" in img.getbands() else "RGB")
    ratio = min(size[0] / img.width, size[1] / img.height)
    new_size = (max(1, round(img.width * ratio)), max(1, round(img.height * ratio)))
    resample = Image.Resampling.LANCZOS if smooth else Image.Resampling.NEAREST
    img = img.resize(new_size, resample)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return tk.PhotoImage(data=base64.b64encode(buf.getvalue()).decode("ascii"))


class ProbabilityChart(tk.Canvas):
    """Ten vertical bars, one per digit, the most likely one highlighted."""

    def __init__(self, master: tk.Misc, **kwargs) -> None:
        kwargs.setdefault("height", 140)
        super().__init__(master, background="white", highlightthickness=0, **kwargs)
        self.probabilities: list[float] = [0.0] * NUM_CLASSES
        self.bind("<Configure>", lambda _e: self.redraw())

    def set_probabilities(self, probabilities: Sequence[float] | None) -> None:
        """Show these ten probabilities (None or empty = all zero)."""
        values = list(probabilities or [])
        self.probabilities = values if len(values) == NUM_CLASSES else [0.0] * NUM_CLASSES
        self.redraw()

    def redraw(self) -> None:
        """Repaint at the current size."""
        self.delete("all")
        width, height = self.winfo_width(), self.winfo_height()
        plot_h = height - LABEL_MARGIN * 2
        slot = (width - 2 * PAD) / NUM_CLASSES
        best = max(range(NUM_CLASSES), key=lambda i: self.probabilities[i])
        has_any = any(p > 0 for p in self.probabilities)
        base_y = LABEL_MARGIN + plot_h
        self.create_line(PAD, base_y, width - PAD, base_y, fill=AXIS_COLOUR, tags="axis")
        for digit, prob in enumerate(self.probabilities):
            x0 = PAD + digit * slot + slot * 0.15
            x1 = PAD + (digit + 1) * slot - slot * 0.15
            top = base_y - max(0.0, min(1.0, prob)) * plot_h
            colour = BEST_COLOUR if has_any and digit == best else BAR_COLOUR
            self.create_rectangle(x0, top, x1, base_y, fill=colour, outline="", tags="bar")
            self.create_text(
                (x0 + x1) / 2, base_y + 2, text=str(digit), anchor="n", fill=AXIS_COLOUR
            )
            if prob >= 0.01:  # a label on bars under 1% would only be clutter
                self.create_text(
                    (x0 + x1) / 2,
                    top - 1,
                    text=f"{prob * 100:.0f}",
                    anchor="s",
                    fill=AXIS_COLOUR,
                    font=("TkDefaultFont", 8),
                )


class CurveChart(tk.Canvas):
    """Line chart of one or more series over a shared x axis (e.g. accuracy per epoch)."""

    def __init__(self, master: tk.Misc, *, x_label: str, y_label: str, **kwargs) -> None:
        kwargs.setdefault("height", 180)
        super().__init__(master, background="white", highlightthickness=0, **kwargs)
        self.x_label, self.y_label = x_label, y_label
        self.series: dict[str, list[tuple[float, float]]] = {}
        self.markers: set[str] = set()
        self.x_max = 1.0
        self.bind("<Configure>", lambda _e: self.redraw())

    def reset(self, x_max: float) -> None:
        """Forget every point; the x axis will run from 0 to ``x_max``."""
        self.series = {}
        self.x_max = max(float(x_max), 1e-9)
        self.redraw()

    def add_point(self, name: str, x: float, y: float, *, markers: bool = False) -> None:
        """Append ``(x, y)`` to series ``name`` (with dots at each point when ``markers``)."""
        self.series.setdefault(name, []).append((float(x), float(y)))
        if markers:
            self.markers.add(name)
        self.redraw()

    def _y_range(self) -> tuple[float, float]:
        ys = [y for points in self.series.values() for _, y in points]
        if not ys:
            return 0.0, 1.0
        low = min(ys)
        # Round the bottom down to a tenth so the axis labels stay readable, top fixed at 100%.
        return max(0.0, min(0.9, int(low * 10) / 10)), 1.0

    def redraw(self) -> None:
        """Repaint axes, grid, legend and every series at the current size."""
        self.delete("all")
        width, height = self.winfo_width(), self.winfo_height()
        left, right = LEFT_MARGIN, width - PAD * 2
        top, bottom = LABEL_MARGIN + PAD, height - LABEL_MARGIN * 2
        if right <= left or bottom <= top:
            return
        y_lo, y_hi = self._y_range()

        def sx(x: float) -> float:
            return left + (right - left) * x / self.x_max

        def sy(y: float) -> float:
            return bottom - (bottom - top) * (min(max(y, y_lo), y_hi) - y_lo) / (y_hi - y_lo)

        self._draw_axes(left, right, top, bottom, sx, sy, y_lo, y_hi)
        legend_x = right
        for index, (name, points) in reversed(list(enumerate(self.series.items()))):
            colour = CURVE_COLOURS[index % len(CURVE_COLOURS)]
            coords = [c for x, y in points for c in (sx(x), sy(y))]
            if len(points) > 1:
                self.create_line(*coords, fill=colour, width=2, tags=("curve", name))
            if name in self.markers or len(points) == 1:
                for x, y in points:
                    cx, cy = sx(x), sy(y)
                    self.create_oval(
                        cx - POINT_RADIUS,
                        cy - POINT_RADIUS,
                        cx + POINT_RADIUS,
                        cy + POINT_RADIUS,
                        fill=colour,
                        outline="",
                        tags=("curve", name),
                    )
            item = self.create_text(
                legend_x, PAD, text=f"■ {name}", anchor="ne", fill=colour, tags="legend"
            )
            legend_x = self.bbox(item)[0] - PAD * 2

    def _draw_axes(
        self,
        left: float,
        right: float,
        top: float,
        bottom: float,
        sx: Callable[[float], float],
        sy: Callable[[float], float],
        y_lo: float,
        y_hi: float,
    ) -> None:
        y_ticks = 5
        for i in range(y_ticks + 1):
            value = y_lo + (y_hi - y_lo) * i / y_ticks
            self.create_line(left, sy(value), right, sy(value), fill=GRID_COLOUR)
            self.create_text(
                left - 4,
                sy(value),
                text=f"{value * 100:.0f}%",
                anchor="e",
                fill=AXIS_COLOUR,
                font=("TkDefaultFont", 8),
            )
        # One tick per epoch, thinned out so that at most ~10 labels show.
        step = max(1, math.ceil(self.x_max / MAX_X_TICKS))
        for x in range(0, math.floor(self.x_max) + 1, step):
            self.create_line(sx(x), bottom, sx(x), bottom + 3, fill=AXIS_COLOUR)
            self.create_text(
                sx(x),
                bottom + 4,
                text=str(x),
                anchor="n",
                fill=AXIS_COLOUR,
                font=("TkDefaultFont", 8),
            )
        self.create_line(left, bottom, right, bottom, fill=AXIS_COLOUR)
        self.create_line(left, top, left, bottom, fill=AXIS_COLOUR)
        self.create_text(
            (left + right) / 2,
            bottom + LABEL_MARGIN + 2,
            text=self.x_label,
            anchor="n",
            fill=AXIS_COLOUR,
        )
        self.create_text(PAD, PAD, text=self.y_label, anchor="nw", fill=AXIS_COLOUR)
