"""Small charts drawn straight on Tk canvases (no matplotlib): probabilities and curves.

Both follow the theme (light / dark, see :mod:`.style`) and draw like the web page: rounded
bar tracks with the best digit in the accent colour, and probabilities formatted by
:func:`format_probability`, the same rule as the page's ``pct()``.
"""

from __future__ import annotations

import base64
import io
import math
import tkinter as tk
from collections.abc import Callable, Sequence

from PIL import Image

from digitlab.apps.gui.style import FONT_SMALL, FONT_STRONG, palette_of, rounded_rect
from digitlab.core.constants import NUM_CLASSES

# Margins (pixels) that leave room for the axis labels.
LABEL_MARGIN = 18
LEFT_MARGIN = 44
PAD = 6
POINT_RADIUS = 3
MAX_X_TICKS = 10
# Probability axes: the round steps a tick may take, and at most this many steps up to 100%.
TICK_STEPS = (0.01, 0.02, 0.05, 0.1, 0.25)
MAX_TICK_INTERVALS = 5
BAR_GAP = 6  # pixels between two bar tracks
BAR_RADIUS = 7
PCT_HEIGHT = 16  # the row of percentages above the bars
DIGIT_HEIGHT = 20  # the row of digits below them
MIN_FILL = 2  # a bar with any probability shows at least this many pixels


def format_probability(p: float, digits: int = 1) -> str:
    """A probability as a percentage, never "100%" or "0%" for values that are not exactly that:
    ``>99.9%``, ``<0.1%`` (the web page's ``pct()``)."""
    limit = 10.0 ** -(digits + 2)
    if 0 < p < limit:
        return f"<{limit * 100:.{digits}f}%"
    if 1 - limit < p < 1:
        return f">{(1 - limit) * 100:.{digits}f}%"
    return f"{p * 100:.{digits}f}%"


def probability_ticks(low: float) -> list[float]:
    """Axis ticks from ``low`` (rounded down) to 100% at a round step: 0/25/50/75/100%,
    50/60/.../100%, 92/94/.../100%... never more than six labels."""
    low = min(max(float(low), 0.0), 0.99)
    start, step = 0.0, TICK_STEPS[-1]
    for step in TICK_STEPS:
        start = math.floor(low / step + 1e-9) * step
        if (1.0 - start) / step <= MAX_TICK_INTERVALS + 1e-9:
            break
    count = round((1.0 - start) / step)
    return [round(start + i * step, 6) for i in range(count + 1)]


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
    """Ten bars, one per digit, on rounded tracks; the most likely one in the accent colour."""

    def __init__(self, master: tk.Misc, **kwargs) -> None:
        kwargs.setdefault("height", 150)
        super().__init__(master, highlightthickness=0, borderwidth=0, **kwargs)
        self.probabilities: list[float] = [0.0] * NUM_CLASSES
        self.shown = False  # False: no prediction (empty tracks, no percentages)
        self.bind("<Configure>", lambda _e: self.redraw())
        self.bind("<<ThemeChanged>>", lambda _e: self.redraw(), add="+")

    def set_probabilities(self, probabilities: Sequence[float] | None) -> None:
        """Show these ten probabilities (None or empty = no prediction)."""
        values = [float(v) for v in (probabilities or [])]
        self.shown = len(values) == NUM_CLASSES
        self.probabilities = values if self.shown else [0.0] * NUM_CLASSES
        self.redraw()

    def redraw(self) -> None:
        """Repaint at the current size."""
        pal = palette_of(self)
        self.configure(background=pal.bg)
        self.delete("all")
        width, height = self.winfo_width(), self.winfo_height()
        slot = (width + BAR_GAP) / NUM_CLASSES
        top, bottom = PCT_HEIGHT + 2, height - DIGIT_HEIGHT
        if slot <= BAR_GAP or bottom <= top:
            return
        best = max(range(NUM_CLASSES), key=lambda i: self.probabilities[i])
        for digit, prob in enumerate(self.probabilities):
            x0 = digit * slot
            x1 = x0 + slot - BAR_GAP
            is_best = self.shown and digit == best
            rounded_rect(self, x0, top, x1, bottom, BAR_RADIUS, fill=pal.faint, tags="track")
            if self.shown:
                fill_top = bottom - max(MIN_FILL, min(1.0, max(0.0, prob)) * (bottom - top))
                colour = pal.accent if is_best else pal.bar
                rounded_rect(self, x0, fill_top, x1, bottom, BAR_RADIUS, fill=colour, tags="bar")
                self.create_text(
                    (x0 + x1) / 2,
                    top - 2,
                    text=f"{round(prob * 100)}%",
                    anchor="s",
                    fill=pal.text if is_best else pal.muted,
                    font=FONT_STRONG if is_best else FONT_SMALL,
                    tags="pct",
                )
            self.create_text(
                (x0 + x1) / 2,
                bottom + 3,
                text=str(digit),
                anchor="n",
                fill=pal.text,
                font=FONT_STRONG,
                tags="digit",
            )


class CurveChart(tk.Canvas):
    """Line chart of one or more series over a shared x axis (e.g. accuracy per epoch)."""

    def __init__(self, master: tk.Misc, *, x_label: str, y_label: str, **kwargs) -> None:
        kwargs.setdefault("height", 180)
        super().__init__(master, highlightthickness=0, borderwidth=0, **kwargs)
        self.x_label, self.y_label = x_label, y_label
        self.series: dict[str, list[tuple[float, float]]] = {}
        self.markers: set[str] = set()
        self.x_max = 1.0
        self.bind("<Configure>", lambda _e: self.redraw())
        self.bind("<<ThemeChanged>>", lambda _e: self.redraw(), add="+")

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

    def y_ticks(self) -> list[float]:
        """The probability-axis ticks: round steps from below the lowest point to 100%."""
        ys = [y for points in self.series.values() for _, y in points]
        return probability_ticks(min(ys) if ys else 0.0)

    def redraw(self) -> None:
        """Repaint axes, grid, legend and every series at the current size."""
        pal = palette_of(self)
        self.configure(background=pal.bg)
        self.delete("all")
        width, height = self.winfo_width(), self.winfo_height()
        left, right = LEFT_MARGIN, width - PAD * 2
        top, bottom = LABEL_MARGIN + PAD, height - LABEL_MARGIN * 2
        if right <= left or bottom <= top:
            return
        ticks = self.y_ticks()
        y_lo, y_hi = ticks[0], ticks[-1]

        def sx(x: float) -> float:
            return left + (right - left) * x / self.x_max

        def sy(y: float) -> float:
            return bottom - (bottom - top) * (min(max(y, y_lo), y_hi) - y_lo) / (y_hi - y_lo)

        self._draw_axes(left, right, top, bottom, sx, sy, ticks)
        colours = (pal.accent, pal.warn, pal.ok)
        legend_x = right
        for index, (name, points) in reversed(list(enumerate(self.series.items()))):
            colour = colours[index % len(colours)]
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
        ticks: list[float],
    ) -> None:
        pal = palette_of(self)
        for value in ticks:
            self.create_line(left, sy(value), right, sy(value), fill=pal.border, tags="grid")
            self.create_text(
                left - 4,
                sy(value),
                text=f"{value * 100:.0f}%",
                anchor="e",
                fill=pal.muted,
                font=FONT_SMALL,
                tags="ytick",
            )
        # One tick per epoch, thinned out so that at most ~10 labels show.
        step = max(1, math.ceil(self.x_max / MAX_X_TICKS))
        for x in range(0, math.floor(self.x_max) + 1, step):
            self.create_line(sx(x), bottom, sx(x), bottom + 3, fill=pal.muted)
            self.create_text(
                sx(x),
                bottom + 4,
                text=str(x),
                anchor="n",
                fill=pal.muted,
                font=FONT_SMALL,
            )
        self.create_line(left, bottom, right, bottom, fill=pal.muted)
        self.create_line(left, top, left, bottom, fill=pal.muted)
        self.create_text(
            (left + right) / 2,
            bottom + LABEL_MARGIN + 2,
            text=self.x_label,
            anchor="n",
            fill=pal.muted,
        )
        self.create_text(PAD, PAD, text=self.y_label, anchor="nw", fill=pal.muted)
