"""The drawing pad: strokes on a Tk canvas mirrored onto an off-screen PIL image.

Strokes are kept in *paper units*, a fixed logical surface of ``PAPER_WIDTH`` x ``PAPER_HEIGHT``.
The Tk canvas shows that paper scaled to fit the widget (so the window can be resized freely),
and :meth:`DrawingPad.image` renders the same strokes at paper resolution with PIL, in MNIST
polarity (white ink on black), for the recogniser.
"""

from __future__ import annotations

import tkinter as tk
from collections.abc import Callable
from dataclasses import dataclass, field

from PIL import Image, ImageDraw

# The paper is 3:2: a single digit drawn large fits, and so does a short number of 3-4 digits
# in multi-digit mode. 280 units high = 10x MNIST's 28 pixels.
PAPER_HEIGHT = 280
PAPER_WIDTH = PAPER_HEIGHT * 3 // 2
# Pen widths in paper units. MNIST strokes are ~2-3 px on a 20 px digit box, i.e. ~10-15% of
# the digit's height; a digit drawn ~2/3 of the paper high (~190 units) wants ~20-28 units.
PEN_MIN, PEN_MAX, PEN_DEFAULT = 6, 48, 22
# Screen colours (the model's copy is always white ink on black, see DrawingPad.image).
PAPER_COLOUR = "white"
INK_COLOUR = "black"
DESK_COLOUR = "#d9d9d9"
BOX_COLOUR = "#1f77b4"
HINT = "Draw a digit here"
HINT_COLOUR = "#b0b0b0"
HINT_POINTS = 14  # font size at scale 1, scaled with the paper
HINT_MIN_POINTS = 9

Point = tuple[float, float]


@dataclass
class Stroke:
    """One pen-down-to-pen-up line, in paper units, with each point's event time (ms)."""

    width: float
    points: list[Point] = field(default_factory=list)
    times: list[float] = field(default_factory=list)


def _ignore_change(_final: bool) -> None:
    """The change callback of a pad whose window is closed."""


class DrawingPad(tk.Canvas):
    """A resizable Tk canvas to draw digits on with the mouse, with undo and clear.

    ``on_change(final)`` is called after every change: ``final`` is False while a stroke is
    still being drawn and True when it ends (or after undo/clear).
    """

    def __init__(self, master: tk.Misc, on_change: Callable[[bool], None], **kwargs) -> None:
        kwargs.setdefault("width", PAPER_WIDTH)
        kwargs.setdefault("height", PAPER_HEIGHT)
        super().__init__(
            master, background=DESK_COLOUR, highlightthickness=0, cursor="pencil", **kwargs
        )
        self._on_change = on_change
        self.strokes: list[Stroke] = []
        self._undo: list[tuple[str, list[Stroke]]] = []  # ("stroke", []) or ("clear", old)
        self._current: Stroke | None = None
        self.pen_width = float(PEN_DEFAULT)
        self._scale = 1.0
        self._offset = (0.0, 0.0)
        self._boxes: list[tuple[int, int, int, int, str]] = []
        self.bind("<Configure>", self._on_resize)
        self.bind("<ButtonPress-1>", self._on_press)
        self.bind("<B1-Motion>", self._on_drag)
        self.bind("<ButtonRelease-1>", self._on_release)

    # -- public API -----------------------------------------------------------------------------
    @property
    def is_empty(self) -> bool:
        """True when nothing is drawn."""
        return not self.strokes and self._current is None

    def image(self) -> Image.Image:
        """The drawing at paper resolution: grayscale, white ink (255) on black (0)."""
        img = Image.new("L", (PAPER_WIDTH, PAPER_HEIGHT), 0)
        draw = ImageDraw.Draw(img)
        strokes = [*self.strokes, *([self._current] if self._current else [])]
        for stroke in strokes:
            radius = stroke.width / 2
            if len(stroke.points) > 1:
                draw.line(stroke.points, fill=255, width=round(stroke.width), joint="curve")
            for x, y in stroke.points:  # round caps and joints, like Tk's ROUND cap style
                draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=255)
        return img

    def timed_strokes(self) -> list[list[tuple[float, float, float]]]:
        """The finished strokes in drawing order as ``(x, y, t_ms)`` points.

        ``x, y`` are pixels of :meth:`image` (paper units); ``t_ms`` counts from the first
        point of the first stroke, from the X events' own time stamps.
        """
        strokes = [s for s in self.strokes if s.points]
        if not strokes:
            return []
        t0 = strokes[0].times[0]
        return [
            [(x, y, t - t0) for (x, y), t in zip(s.points, s.times, strict=True)] for s in strokes
        ]

    def undo(self) -> bool:
        """Undo the last stroke or clear; returns False when there is nothing to undo."""
        if not self._undo:
            return False
        action, saved = self._undo.pop()
        if action == "stroke" and self.strokes:
            self.strokes.pop()
        elif action == "clear":
            self.strokes = saved
        self._boxes = []
        self.redraw()
        self._on_change(True)
        return True

    def clear(self) -> None:
        """Wipe the paper (undoable)."""
        if self.strokes:
            self._undo.append(("clear", self.strokes))
        self.strokes = []
        self._current = None
        self._boxes = []
        self.redraw()
        self._on_change(True)

    def release(self) -> None:
        """Forget the change callback (called once the window is gone, to break a cycle)."""
        self._on_change = _ignore_change

    def set_boxes(self, boxes: list[tuple[int, int, int, int, str]]) -> None:
        """Outline recognised digits: ``(x, y, width, height, label)`` in paper units."""
        self._boxes = list(boxes)
        self._draw_boxes()

    def paper_to_screen(self, x: float, y: float) -> tuple[float, float]:
        """Paper units -> canvas pixel coordinates."""
        return self._offset[0] + x * self._scale, self._offset[1] + y * self._scale

    def screen_to_paper(self, x: float, y: float) -> tuple[float, float]:
        """Canvas pixel coordinates -> paper units, clamped to the paper."""
        px = (x - self._offset[0]) / self._scale
        py = (y - self._offset[1]) / self._scale
        return min(max(px, 0.0), PAPER_WIDTH), min(max(py, 0.0), PAPER_HEIGHT)

    def redraw(self) -> None:
        """Repaint the paper, every stroke and the digit boxes at the current scale."""
        self.delete("all")
        x0, y0 = self.paper_to_screen(0, 0)
        x1, y1 = self.paper_to_screen(PAPER_WIDTH, PAPER_HEIGHT)
        self.create_rectangle(x0, y0, x1, y1, fill=PAPER_COLOUR, outline="", tags="paper")
        for stroke in [*self.strokes, *([self._current] if self._current else [])]:
            self._draw_stroke(stroke)
        if self.is_empty:
            self.create_text(
                (x0 + x1) / 2,
                (y0 + y1) / 2,
                text=HINT,
                fill=HINT_COLOUR,
                tags="hint",
                font=("TkDefaultFont", max(HINT_MIN_POINTS, round(HINT_POINTS * self._scale))),
            )
        self._draw_boxes()

    # -- drawing --------------------------------------------------------------------------------
    def _draw_stroke(self, stroke: Stroke) -> None:
        width = max(1.0, stroke.width * self._scale)
        coords = [c for p in stroke.points for c in self.paper_to_screen(*p)]
        if len(stroke.points) == 1:
            x, y = coords
            r = width / 2
            self.create_oval(x - r, y - r, x + r, y + r, fill=INK_COLOUR, outline="", tags="ink")
        elif coords:
            self.create_line(
                *coords,
                fill=INK_COLOUR,
                width=width,
                capstyle=tk.ROUND,
                joinstyle=tk.ROUND,
                tags="ink",
            )

    def _draw_segment(self, a: Point, b: Point, width: float) -> None:
        self.create_line(
            *self.paper_to_screen(*a),
            *self.paper_to_screen(*b),
            fill=INK_COLOUR,
            width=max(1.0, width * self._scale),
            capstyle=tk.ROUND,
            tags="ink",
        )

    def _draw_boxes(self) -> None:
        self.delete("box")
        for x, y, w, h, label in self._boxes:
            sx0, sy0 = self.paper_to_screen(x, y)
            sx1, sy1 = self.paper_to_screen(x + w, y + h)
            self.create_rectangle(sx0, sy0, sx1, sy1, outline=BOX_COLOUR, width=2, tags="box")
            self.create_text(
                sx0 + 2,
                sy0 - 2,
                text=label,
                anchor="sw",
                fill=BOX_COLOUR,
                font=("TkDefaultFont", 12, "bold"),
                tags="box",
            )

    # -- events ---------------------------------------------------------------------------------
    def _on_resize(self, event: tk.Event) -> None:
        self._scale = min(event.width / PAPER_WIDTH, event.height / PAPER_HEIGHT)
        self._offset = (
            (event.width - PAPER_WIDTH * self._scale) / 2,
            (event.height - PAPER_HEIGHT * self._scale) / 2,
        )
        self.redraw()

    def _on_press(self, event: tk.Event) -> None:
        self.focus_set()
        point = self.screen_to_paper(event.x, event.y)
        self._current = Stroke(self.pen_width, [point], [float(event.time)])
        self.delete("hint")
        if self._boxes:
            self._boxes = []
            self.delete("box")
        self._draw_stroke(self._current)
        self._on_change(False)

    def _on_drag(self, event: tk.Event) -> None:
        if self._current is None:
            return
        point = self.screen_to_paper(event.x, event.y)
        last = self._current.points[-1]
        if point == last:
            return
        self._current.points.append(point)
        self._current.times.append(float(event.time))
        self._draw_segment(last, point, self._current.width)
        self._on_change(False)

    def _on_release(self, event: tk.Event) -> None:
        if self._current is None:
            return
        self._on_drag(event)
        self.strokes.append(self._current)
        self._undo.append(("stroke", []))
        self._current = None
        self._on_change(True)
