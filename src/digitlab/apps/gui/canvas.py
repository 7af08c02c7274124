"""The drawing pad: strokes on a Tk canvas mirrored onto an off-screen PIL image.

Strokes are kept in *paper units*, a fixed logical surface: a square of ``PAPER_HEIGHT`` units
for one digit, twice as wide in multi-digit mode (the web page's pad is square too). The Tk
canvas shows that paper scaled to fit the widget (so the window can be resized freely), and
:meth:`DrawingPad.image` renders the same strokes at paper resolution with PIL, in MNIST
polarity (white ink on black), for the recogniser.
"""

from __future__ import annotations

import tkinter as tk
from collections.abc import Callable
from dataclasses import dataclass, field

from PIL import Image, ImageDraw

from digitlab.apps.gui.style import FONT_HEADING, FONT_SMALL, FONT_TITLE, palette_of, rounded_rect

# 280 units high = 10x MNIST's 28 pixels. One digit: a square; a number: 2:1, room for 3-4
# digits side by side.
PAPER_HEIGHT = 280
PAPER_WIDTH = PAPER_HEIGHT  # single-digit mode
WIDE_PAPER_WIDTH = 2 * PAPER_HEIGHT  # multi-digit mode
# Pen widths in paper units. MNIST strokes are ~2-3 px on a 20 px digit box, i.e. ~10-15% of
# the digit's height; a digit drawn ~2/3 of the paper high (~190 units) wants ~20-28 units.
PEN_MIN, PEN_MAX, PEN_DEFAULT = 6, 48, 22
PAPER_RADIUS = 14  # rounded corners of the paper on screen (pixels)
PAPER_MARGIN = 2  # pixels around the paper, for its border line
DOT_SPACING = 24  # the faint dotted grid on the paper, in paper units (as on the web page)
DOT_RADIUS = 1.2
HINT = "Draw a digit here"
HINT_MULTI = "Write a number here"
HINT_SUB = "or open an image (Ctrl+O)"
HINT_OPENED = "Reading {name}"
HINT_OPENED_SUB = "draw here to go back to drawing"

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
        super().__init__(master, highlightthickness=0, borderwidth=0, cursor="pencil", **kwargs)
        self._on_change = on_change
        self.strokes: list[Stroke] = []
        self._undo: list[tuple[str, list[Stroke]]] = []  # ("stroke", []) or ("clear", old)
        self._current: Stroke | None = None
        self.pen_width = float(PEN_DEFAULT)
        self.paper_width = PAPER_WIDTH
        self._scale = 1.0
        self._offset = (0.0, 0.0)
        self._size = (1, 1)
        self._boxes: list[tuple[int, int, int, int, str]] = []
        self.opened_name: str | None = None  # an opened image is being read instead
        self.bind("<Configure>", self._on_resize)
        self.bind("<ButtonPress-1>", self._on_press)
        self.bind("<B1-Motion>", self._on_drag)
        self.bind("<ButtonRelease-1>", self._on_release)
        self.bind("<<ThemeChanged>>", lambda _e: self.redraw(), add="+")

    # -- public API -----------------------------------------------------------------------------
    @property
    def is_empty(self) -> bool:
        """True when nothing is drawn."""
        return not self.strokes and self._current is None

    @property
    def wide(self) -> bool:
        """True in multi-digit mode (the paper is twice as wide as high)."""
        return self.paper_width == WIDE_PAPER_WIDTH

    def set_wide(self, wide: bool) -> None:
        """Switch between the square paper (one digit) and the wide one (a number).

        The drawing keeps its place relative to the paper's centre, so a digit drawn on the
        square stays in the middle of the wide paper and comes back when switching back.
        """
        width = WIDE_PAPER_WIDTH if wide else PAPER_WIDTH
        if width == self.paper_width:
            return
        shift = (width - self.paper_width) / 2
        strokes = [*self.strokes, *(s for _, saved in self._undo for s in saved)]
        for stroke in [*strokes, *([self._current] if self._current else [])]:
            stroke.points = [(x + shift, y) for x, y in stroke.points]
        self.paper_width = width
        self._boxes = []
        self._fit()
        self.redraw()

    def image(self) -> Image.Image:
        """The drawing at paper resolution: grayscale, white ink (255) on black (0)."""
        img = Image.new("L", (self.paper_width, PAPER_HEIGHT), 0)
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

    def set_opened(self, name: str | None) -> None:
        """Say on the empty paper that an opened image (``name``) is read, or not (None)."""
        self.opened_name = name
        self.redraw()

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
        return min(max(px, 0.0), self.paper_width), min(max(py, 0.0), PAPER_HEIGHT)

    def redraw(self) -> None:
        """Repaint the paper, every stroke and the digit boxes at the current scale."""
        pal = palette_of(self)
        self.configure(background=pal.bg)
        self.delete("all")
        x0, y0 = self.paper_to_screen(0, 0)
        x1, y1 = self.paper_to_screen(self.paper_width, PAPER_HEIGHT)
        rounded_rect(
            self, x0, y0, x1, y1, PAPER_RADIUS, fill=pal.paper, outline=pal.border, tags="paper"
        )
        step = DOT_SPACING * self._scale
        if step >= 8:  # no grid on a tiny pad
            r = DOT_RADIUS
            for gx in range(DOT_SPACING // 2, self.paper_width, DOT_SPACING):
                for gy in range(DOT_SPACING // 2, PAPER_HEIGHT, DOT_SPACING):
                    sx, sy = self.paper_to_screen(gx, gy)
                    self.create_oval(
                        sx - r, sy - r, sx + r, sy + r, fill=pal.dots, outline="", tags="grid"
                    )
        for stroke in [*self.strokes, *([self._current] if self._current else [])]:
            self._draw_stroke(stroke)
        if self.is_empty:
            cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
            hint, sub = (HINT_MULTI if self.wide else HINT), HINT_SUB
            if self.opened_name is not None:
                hint, sub = HINT_OPENED.format(name=self.opened_name), HINT_OPENED_SUB
            self.create_text(
                cx,
                cy - 2,
                text=hint,
                fill=pal.hint,
                anchor="s",
                tags="hint",
                font=FONT_TITLE,
            )
            self.create_text(
                cx, cy + 4, text=sub, fill=pal.hint, anchor="n", tags="hint", font=FONT_SMALL
            )
        self._draw_boxes()

    # -- drawing --------------------------------------------------------------------------------
    def _draw_stroke(self, stroke: Stroke) -> None:
        ink = palette_of(self).ink
        width = max(1.0, stroke.width * self._scale)
        coords = [c for p in stroke.points for c in self.paper_to_screen(*p)]
        if len(stroke.points) == 1:
            x, y = coords
            r = width / 2
            self.create_oval(x - r, y - r, x + r, y + r, fill=ink, outline="", tags="ink")
        elif coords:
            self.create_line(
                *coords,
                fill=ink,
                width=width,
                capstyle=tk.ROUND,
                joinstyle=tk.ROUND,
                tags="ink",
            )

    def _draw_segment(self, a: Point, b: Point, width: float) -> None:
        self.create_line(
            *self.paper_to_screen(*a),
            *self.paper_to_screen(*b),
            fill=palette_of(self).ink,
            width=max(1.0, width * self._scale),
            capstyle=tk.ROUND,
            tags="ink",
        )

    def _draw_boxes(self) -> None:
        """Each digit: an accent outline with its reading on a tab at the top left (the web
        page's boxes); unreadable ones ("?") in the warning colour."""
        self.delete("box", "box-tab")
        pal = palette_of(self)
        for x, y, w, h, label in self._boxes:
            colour = pal.warn if label == "?" else pal.accent
            sx0, sy0 = self.paper_to_screen(x, y)
            sx1, sy1 = self.paper_to_screen(x + w, y + h)
            rounded_rect(self, sx0, sy0, sx1, sy1, 6, outline=colour, fill="", width=2, tags="box")
            text = self.create_text(
                sx0 + 5, sy0 + 1, text=label, anchor="nw", fill="#ffffff", font=FONT_HEADING
            )
            _, _, bx1, by1 = self.bbox(text)
            # The tab is the label's background: tagged apart, so "box" = outline + label.
            tab = rounded_rect(self, sx0, sy0, bx1 + 5, by1 + 1, 5, fill=colour, tags="box-tab")
            self.addtag_withtag("box", text)
            self.tag_raise(text, tab)

    # -- events ---------------------------------------------------------------------------------
    def _fit(self) -> None:
        """Scale the paper to fit the widget, centred, with a margin for its border."""
        width, height = self._size
        self._scale = max(
            1e-3,
            min(
                (width - 2 * PAPER_MARGIN) / self.paper_width,
                (height - 2 * PAPER_MARGIN) / PAPER_HEIGHT,
            ),
        )
        self._offset = (
            (width - self.paper_width * self._scale) / 2,
            (height - PAPER_HEIGHT * self._scale) / 2,
        )

    def _on_resize(self, event: tk.Event) -> None:
        self._size = (event.width, event.height)
        self._fit()
        self.redraw()

    def _on_press(self, event: tk.Event) -> None:
        self.focus_set()
        point = self.screen_to_paper(event.x, event.y)
        self._current = Stroke(self.pen_width, [point], [float(event.time)])
        self.delete("hint")
        if self._boxes:
            self._boxes = []
            self.delete("box", "box-tab")
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
