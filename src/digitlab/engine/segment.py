"""Split a number written on one line into its digits.

Input is the ink map of :func:`digitlab.engine.ink.extract_ink` (uint8, ink = 255). Steps:

1. **Pieces**: 8-connected components of the ink.
2. **Line**: its height is the median height of the tall pieces (at least half the tallest),
   its middle the median of their vertical centres; every size rule below is relative to the
   line, so the same rules read a number 30 px or 300 px tall.
3. **Join** the parts of one digit: pieces whose horizontal extents overlap by at least
   JOIN_OVERLAP of the narrower one (a 5's flag above its body, a 4 drawn in two strokes), and
   short pieces in the upper half of the line within FLAG_GAP of a digit (a 5's flag drawn
   beside its body).
4. **Drop** what is not a digit: groups lower than MIN_HEIGHT of the line (dots, commas, the
   dash of "555-1234") or made only of pieces lower than DOT_HEIGHT (a colon's two dots).
5. **Read** the line (with a model): dynamic programming over the groups, left to right. Each
   group is read on its own, or neighbours that nearly touch are read together as one digit
   whose pen was lifted. A group narrower than SPLIT_ASPECT line heights is one digit; a wider
   one is over-segmented at the valleys of its column ink profile and the best sequence of
   pieces found by dynamic programming (touching digits); a group joined from several pieces
   may also be read as those pieces apart. Every candidate digit is scored by the model's
   (the recogniser's cut scorer, a network trained to tell whole digits from wrong cuts)
   log-probability, how much the model's logits look like a whole digit's (their energy, see
   WHOLE_ENERGY: half a 0 may be read as a confident 6, but with weak logits) and a shape prior
   (:func:`piece_score`); every extra cut costs a little.
   Without a model, the count of typical-width digits and the deepest valleys decide.

So a wide 0 or a 5 with a long flag stays whole, while "36" written touching is read as two
digits. Segments come back left to right, each with its own ink only (a neighbour's stroke that
reaches into its box is not copied).

One module (~560 lines) because the cut candidates, the stroke grouping and the model-scored
search over them are one algorithm: each step's output is the next one's input.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from digitlab.core.errors import DigitlabError
from digitlab.engine.ink import LOW_INK, Component, components, label_components
from digitlab.engine.normalise import stroke_width

# Pieces at least this fraction of the tallest one's height define the line.
TALL_FRACTION = 0.5
# Two groups are one digit when their x-ranges overlap by this much of the narrower one.
JOIN_OVERLAP = 0.5
# A short piece (lower than FLAG_HEIGHT of the line) whose bottom is above the line's middle
# joins the nearest digit within FLAG_GAP line heights (a 5's flag drawn beside its body).
FLAG_HEIGHT = 0.5
FLAG_GAP = 0.3
# Groups lower than this fraction of the line height are punctuation.
MIN_HEIGHT = 0.4
# A group whose pieces are all lower than this fraction of the line is dots (a colon, specks
# left by a broken stroke), however far apart they lie.
DOT_HEIGHT = 0.2
# Width / height of single MNIST digits' ink boxes (60,000 training digits): median 0.8, 95th
# percentile 1.11. For digit d, TYPICAL_ASPECT[d] is its 95th percentile (a 5's flag or a flat
# 2 runs wide, a 1 never). Groups up to SPLIT_ASPECT line heights wide are one digit (two
# touching digits are wider; without a model a group holds round(width / DIGIT_WIDTH)
# digits); a split piece is MIN_PIECE (a thin 1) to MAX_PIECE line heights wide.
TYPICAL_ASPECT = (1.18, 0.85, 1.25, 1.05, 1.05, 1.43, 1.0, 1.05, 1.0, 1.0)
SPLIT_ASPECT = 0.85
DIGIT_WIDTH = 0.8
MIN_PIECE = 0.15
MAX_PIECE = 1.7
# Over-segmentation: at most MAX_CUTS candidate cuts, at local minima of the column profile.
MAX_CUTS = 12
# Shape prior (see piece_score): aspect = width / max(height, SHORT_PIECE line heights).
ASPECT_SCALE = 0.3
SHORT_PIECE = 0.8
HEIGHT_SCALE = 0.1
# Every digit a reading has beyond one costs CUT_COST nats (APART_COST when the digits are
# separate pieces of ink): the model may read half a 0 as a fairly confident 6.
CUT_COST = 0.6
APART_COST = 0.1
# With the pen's strokes: a stroke overlapping the digit drawn so far horizontally by at least
# STROKE_OVERLAP of the narrower of the two is part of it.
STROKE_OVERLAP = 0.5
# Neighbouring groups at most MERGE_GAP line heights apart (or overlapping), up to MERGE_SPAN
# of them, may be read as one digit whose strokes came apart; the model decides. 0.06 read a 4,
# 5 or 7 written in two strokes a little apart as two digits: 0.2 took 80 numbers of stroke-drawn
# digits (tests/test_segment.py draws them) from 91% to 99% exact, and 150 strips of MNIST
# *training* digits from 95.3% to 96.0% (cramped: 82.7% to 83.3%).
MERGE_GAP = 0.2
MERGE_SPAN = 3
# A cut through a valley of at most DEEP_VALLEY stroke widths of ink (digits that barely
# touch) costs only DEEP_CUT_COST.
DEEP_VALLEY = 1.5
DEEP_CUT_COST = 0.1

# Energy = logsumexp(logits / T), the calibrated logits' "how much like a digit I know" score
# (Liu et al. 2020, energy-based out-of-distribution detection), on the scale of the first
# bundled model (the recogniser rescales other models' energies to it, see
# recognizer.ENERGY_REFERENCE). That model, MNIST training digits redrawn at 84 px: whole
# digits 6.4 / 7.9 / 8.6 (5th / 25th / 50th percentile), half digits median 4.9, two touching
# digits read as one median 3.4. A piece below WHOLE_ENERGY costs ENERGY_COST nats per unit
# short of it. Both values (and ASPECT_SCALE) were chosen on 300 number strips of MNIST
# *training* digits (exact reads 89.7% -> 97.3%; cramped strips 62.5% -> 75%); the test digits
# only report (benchmarks/robustness.py). The current bundled model, rescaled, reads 95.7% of
# the benchmark's numbers exactly with them unchanged.
WHOLE_ENERGY = 7.5
ENERGY_COST = 2.0


@dataclass(frozen=True)
class Reading:
    """What the model reads in one segment: the digit, its probability, and (optionally) the
    energy of its calibrated logits."""

    digit: int
    probability: float
    energy: float | None = None


# The Readings of a list of segments.
Reader = Callable[[list["Segment"]], list[Reading]]


@dataclass
class Segment:
    """One digit: its box in the ink map (x1, y1 exclusive) and its ink alone, cropped."""

    x0: int
    y0: int
    x1: int
    y1: int
    ink: np.ndarray  # uint8 (y1 - y0, x1 - x0)


@dataclass
class Group:
    """Pieces read together: their labels and joint bounding box (x1, y1 exclusive)."""

    labels: list[int]
    x0: int
    y0: int
    x1: int
    y1: int
    tallest: int = 0  # height of its tallest piece

    @classmethod
    def of(cls, c: Component) -> Group:
        """A group of one piece."""
        return cls([c.label], c.x0, c.y0, c.x1, c.y1, c.height)

    def absorb(self, other: Group) -> None:
        """Add another group's pieces."""
        self.labels += other.labels
        self.tallest = max(self.tallest, other.tallest)
        self.x0, self.y0 = min(self.x0, other.x0), min(self.y0, other.y0)
        self.x1, self.y1 = max(self.x1, other.x1), max(self.y1, other.y1)

    @property
    def width(self) -> int:
        """Bounding-box width."""
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        """Bounding-box height."""
        return self.y1 - self.y0


@dataclass
class Line:
    """The writing line: height and vertical middle, from the tall pieces."""

    height: float
    middle: float

    @classmethod
    def of(cls, comps: list[Component]) -> Line:
        """Median height and centre of the pieces at least TALL_FRACTION of the tallest."""
        tallest = max(c.height for c in comps)
        tall = [c for c in comps if c.height >= TALL_FRACTION * tallest]
        return cls(
            float(np.median([c.height for c in tall])),
            float(np.median([(c.y0 + c.y1) / 2 for c in tall])),
        )


def _overlap(a: Group, b: Group) -> float:
    """Horizontal overlap of two groups as a fraction of the narrower one's width."""
    inter = min(a.x1, b.x1) - max(a.x0, b.x0)
    return inter / max(1, min(a.width, b.width))


def _gap(a: Group, b: Group) -> int:
    """Horizontal gap between two groups (negative when they overlap)."""
    return max(a.x0, b.x0) - min(a.x1, b.x1)


def join_groups(comps: list[Component], line: Line) -> list[Group]:
    """Join overlapping pieces, then flags beside their digit (see module docs)."""
    groups = [Group.of(c) for c in sorted(comps, key=lambda c: c.x0)]
    merged = True
    while merged:
        merged = False
        for i in range(len(groups)):
            for j in range(i + 1, len(groups)):
                if _overlap(groups[i], groups[j]) >= JOIN_OVERLAP:
                    groups[i].absorb(groups.pop(j))
                    merged = True
                    break
            if merged:
                break
    tall = [g for g in groups if g.height >= FLAG_HEIGHT * line.height]
    for g in [g for g in groups if g.height < FLAG_HEIGHT * line.height]:
        if g.y1 > line.middle or not tall:
            continue
        nearest = min(tall, key=lambda t: _gap(g, t))
        if _gap(g, nearest) <= FLAG_GAP * line.height:
            nearest.absorb(g)
            groups.remove(g)
    return sorted(groups, key=lambda g: g.x0)


def _smooth(profile: np.ndarray) -> np.ndarray:
    return np.convolve(profile, np.ones(3) / 3.0, mode="same")


def candidate_cuts(profile: np.ndarray, min_gap: int) -> list[int]:
    """Columns where a group may be cut: local minima of the smoothed column profile at least
    ``min_gap`` from the ends and from each other (lowest first kept), at most MAX_CUTS."""
    p = _smooth(profile)
    width = len(p)
    inner = np.arange(max(1, min_gap), width - max(1, min_gap))
    if inner.size == 0:
        return []
    left = p[inner - 1]
    right = p[np.minimum(inner + 1, width - 1)]
    minima = inner[(p[inner] <= left) & (p[inner] <= right)]
    picked: list[int] = []
    for c in minima[np.argsort(p[minima], kind="stable")]:
        if all(abs(int(c) - q) >= min_gap for q in picked):
            picked.append(int(c))
        if len(picked) == MAX_CUTS:
            break
    return sorted(picked)


def even_cuts(profile: np.ndarray, n: int) -> list[int]:
    """Cuts into ``n`` digits at the deepest valley within 40% of a digit's width of each
    even split (the fallback without a model)."""
    p = _smooth(profile)
    width = len(p)
    step = width / n
    cuts = []
    for k in range(1, n):
        lo = max(1, int(k * step - 0.4 * step))
        hi = min(width - 1, int(k * step + 0.4 * step) + 1)
        cuts.append(lo + int(np.argmin(p[lo:hi])) if hi > lo else int(k * step))
    return sorted(set(cuts))


def _aspect(s: Segment, line: Line) -> float:
    """Width / max(height, SHORT_PIECE line heights) of a piece."""
    return (s.x1 - s.x0) / max(s.y1 - s.y0, SHORT_PIECE * line.height, 1.0)


def piece_score(s: Segment, r: Reading, line: Line) -> float:
    """Log-plausibility of one piece being the digit the model read in it.

    log(probability), minus ENERGY_COST per unit of energy below WHOLE_ENERGY (when the reading
    has one), minus a shape prior: wider than TYPICAL_ASPECT[digit] costs
    ((aspect - typical) / ASPECT_SCALE)^2 nats, and a piece lower than FLAG_HEIGHT line heights
    ((FLAG_HEIGHT * line - height) / (HEIGHT_SCALE * line))^2 (a flag is not a digit).
    """
    aspect = _aspect(s, line)
    h = s.y1 - s.y0
    score = float(np.log(max(r.probability, 1e-12)))
    if r.energy is not None:
        score -= ENERGY_COST * max(0.0, WHOLE_ENERGY - r.energy)
    score -= max(0.0, (aspect - TYPICAL_ASPECT[r.digit]) / ASPECT_SCALE) ** 2
    score -= max(0.0, (FLAG_HEIGHT * line.height - h) / (HEIGHT_SCALE * line.height)) ** 2
    return score


def _segment(x0: int, y0: int, piece: np.ndarray) -> Segment | None:
    """A segment from an ink patch at (x0, y0), trimmed to its rows and columns with ink."""
    rows = np.flatnonzero(piece.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(piece.any(axis=0))
    top, bottom = int(rows[0]), int(rows[-1]) + 1
    left, right = int(cols[0]), int(cols[-1]) + 1
    return Segment(
        x0 + left,
        y0 + top,
        x0 + right,
        y0 + bottom,
        np.ascontiguousarray(piece[top:bottom, left:right]),
    )


@dataclass
class _GroupInk:
    """A group's own ink, cropped to its box, and the labels under it."""

    group: Group
    crop: np.ndarray
    labels: np.ndarray
    patch: np.ndarray

    @classmethod
    def of(cls, g: Group, labels: np.ndarray, ink: np.ndarray) -> _GroupInk:
        sub = labels[g.y0 : g.y1, g.x0 : g.x1]
        patch = ink[g.y0 : g.y1, g.x0 : g.x1]
        crop = np.where(np.isin(sub, g.labels), patch, 0).astype(np.uint8)
        return cls(g, crop, sub, patch)

    def piece(self, a: int, b: int) -> Segment | None:
        """The group's ink between columns a and b."""
        return _segment(self.group.x0 + a, self.group.y0, self.crop[:, a:b])

    def apart(self, line: Line) -> list[Segment]:
        """The group's pieces of ink on their own (tall ones only), left to right."""
        parts = [
            _segment(self.group.x0, self.group.y0, np.where(self.labels == lab, self.patch, 0))
            for lab in self.group.labels
        ]
        tall = [s for s in parts if s is not None and s.y1 - s.y0 >= MIN_HEIGHT * line.height]
        return sorted(tall, key=lambda s: s.x0)


def _geometric(gi: _GroupInk, line: Line) -> list[Segment]:
    """Reading without a model: round(width / DIGIT_WIDTH) digits cut at valleys."""
    g = gi.group
    r = g.width / max(line.height, 1.0)
    n = 1 if r <= SPLIT_ASPECT else max(1, round(r / DIGIT_WIDTH))
    edges = [0, *(even_cuts(gi.crop.sum(axis=0, dtype=np.float32), n) if n > 1 else []), g.width]
    pieces = [gi.piece(a, b) for a, b in itertools.pairwise(edges)]
    return [p for p in pieces if p is not None]


def _stroke_px(crop: np.ndarray) -> float:
    """Stroke width of a group's ink in pixels (area / centre-line length)."""
    return max(1.0, stroke_width(Image.fromarray(crop)))


def _best_split(gi: _GroupInk, read: Reader, line: Line) -> tuple[list[Segment], float]:
    """Best sequence of pieces between candidate cuts (dynamic programming) and its score.

    The whole group is one of the sequences. A cut costs CUT_COST nats, or DEEP_CUT_COST where
    the column profile shows at most DEEP_VALLEY stroke widths of ink: two digits barely
    touching.
    """
    g = gi.group
    min_w = max(1, int(MIN_PIECE * line.height))
    max_w = MAX_PIECE * line.height
    profile = gi.crop.sum(axis=0, dtype=np.float32) / 255.0
    pos = [0, *candidate_cuts(profile, min_w), g.width]
    deep = DEEP_VALLEY * _stroke_px(gi.crop)
    cut_cost = [
        DEEP_CUT_COST if 0 < k < len(pos) - 1 and profile[pos[k]] <= deep else CUT_COST
        for k in range(len(pos))
    ]
    spans = [
        (i, j)
        for i in range(len(pos))
        for j in range(i + 1, len(pos))
        if pos[j] - pos[i] <= max_w or (i == 0 and j == len(pos) - 1)
    ]
    pieces = {(i, j): gi.piece(pos[i], pos[j]) for i, j in spans}
    usable = [(k, p) for k, p in pieces.items() if p is not None]
    reads = read([p for _, p in usable])
    score = {k: piece_score(p, r, line) for (k, p), r in zip(usable, reads, strict=True)}
    best: list[tuple[float, list[Segment]] | None] = [None] * len(pos)
    best[0] = (0.0, [])
    for j in range(1, len(pos)):
        for i in range(j):
            done = best[i]
            if done is None or (i, j) not in score:
                continue
            piece = pieces[(i, j)]
            assert piece is not None
            total = done[0] + score[(i, j)] - (cut_cost[i] if i else 0.0)
            current = best[j]
            if current is None or total > current[0]:
                best[j] = (total, [*done[1], piece])
    end = best[-1]
    return (end[1], end[0]) if end is not None else ([], -np.inf)


def _reading(gi: _GroupInk, read: Reader, line: Line) -> tuple[float, list[Segment]]:
    """A group's best reading with a model and its score: the whole, its best split, or its
    pieces apart."""
    g = gi.group
    whole = gi.piece(0, g.width)
    if whole is None:
        return 0.0, []
    options: list[tuple[float, list[Segment]]] = []
    if g.width <= SPLIT_ASPECT * line.height:
        options.append((piece_score(whole, read([whole])[0], line), [whole]))
    else:
        options.append(_best_split(gi, read, line)[::-1])
    if len(g.labels) > 1:
        apart = gi.apart(line)
        if len(apart) > 1:
            reads = read(apart)
            total = sum(piece_score(s, r, line) for s, r in zip(apart, reads, strict=True))
            options.append((total - APART_COST * (len(apart) - 1), apart))
    return max(options, key=lambda o: o[0])


def _is_written(g: Group, line: Line) -> bool:
    """A group that may be a digit on its own: at least MIN_HEIGHT of the line high, and not
    only dots (every piece lower than DOT_HEIGHT of the line: a colon, specks)."""
    return g.height >= MIN_HEIGHT * line.height and g.tallest >= DOT_HEIGHT * line.height


def _union(groups: list[Group]) -> Group:
    """One group holding the pieces of several."""
    first = groups[0]
    merged = Group(list(first.labels), first.x0, first.y0, first.x1, first.y1, first.tallest)
    for g in groups[1:]:
        merged.absorb(g)
    return merged


def _with_model(
    groups: list[Group], labels: np.ndarray, ink: np.ndarray, read: Reader, line: Line
) -> list[Segment]:
    """The best reading of the whole line: each group read on its own, or neighbours that
    nearly touch (gap <= MERGE_GAP line heights, up to MERGE_SPAN of them) read as one digit --
    a digit whose pen was lifted, or which the scan broke. Dynamic programming over the groups;
    a group that is not :func:`_is_written` counts only as part of a digit."""
    n = len(groups)
    best: list[tuple[float, list[Segment]]] = [(0.0, [])] * (n + 1)
    for j in range(1, n + 1):
        g = groups[j - 1]
        score, segs = best[j - 1]
        if _is_written(g, line):
            own_score, own = _reading(_GroupInk.of(g, labels, ink), read, line)
            score, segs = score + own_score, segs + own
        choice = (score, segs)
        for i in range(j - 2, max(-1, j - 1 - MERGE_SPAN), -1):
            if _gap(groups[i], groups[i + 1]) > MERGE_GAP * line.height:
                break
            merged = _union(groups[i:j])
            if merged.width > MAX_PIECE * line.height:
                break
            if merged.height < MIN_HEIGHT * line.height:
                continue
            whole = _GroupInk.of(merged, labels, ink).piece(0, merged.width)
            if whole is None:
                continue
            total = best[i][0] + piece_score(whole, read([whole])[0], line)
            if total > choice[0]:
                choice = (total, [*best[i][1], whole])
        best[j] = choice
    return best[n][1]


Stroke = np.ndarray  # float (n, 2): x, y of one pen-down stroke, in ink-map pixels


def check_strokes(strokes: Sequence[Sequence[Sequence[float]]]) -> list[Stroke]:
    """Strokes as a list of (n, 2) float arrays; DigitlabError naming the problem otherwise.

    Each stroke is a sequence of points (x, y) or (x, y, t_ms); the time is not used (the
    strokes' order is).
    """
    out = []
    for k, stroke in enumerate(strokes):
        try:
            # Points may mix (x, y) and (x, y, t): only x and y are used.
            a = np.asarray(
                [p[:2] if isinstance(p, (list, tuple)) and len(p) == 3 else p for p in stroke],
                dtype=np.float64,
            )
        except (TypeError, ValueError) as e:
            raise DigitlabError(f"stroke {k} is not a list of (x, y) points: {e}") from None
        if a.ndim != 2 or a.shape[0] == 0 or a.shape[1] != 2:
            raise DigitlabError(
                f"stroke {k} must be a non-empty list of (x, y) or (x, y, t) points, "
                f"got an array of shape {a.shape}"
            )
        if not np.isfinite(a).all():
            raise DigitlabError(f"stroke {k} has a point that is not a finite number")
        out.append(a[:, :2])
    return out


def group_strokes(strokes: Sequence[Stroke]) -> list[list[Stroke]]:
    """Strokes, in drawing order, grouped into digits: a stroke whose horizontal extent overlaps
    the current digit's by at least STROKE_OVERLAP of the narrower of the two belongs to it (a
    4's second stroke, a 5's flag, a 7's bar); a pen lift with a jump to the right starts the
    next digit."""
    groups: list[list[Stroke]] = []
    lo = hi = 0.0
    for s in strokes:
        x0, x1 = float(s[:, 0].min()), float(s[:, 0].max())
        if groups:
            # Extents in pixels covered (a vertical stroke covers one).
            inter = min(hi, x1) - max(lo, x0) + 1
            if inter >= STROKE_OVERLAP * (min(hi - lo, x1 - x0) + 1):
                groups[-1].append(s)
                lo, hi = min(lo, x0), max(hi, x1)
                continue
        groups.append([s])
        lo, hi = x0, x1
    return groups


def stroke_labels(ink: np.ndarray, strokes: Sequence[Stroke]) -> tuple[np.ndarray, int]:
    """Label the ink by the digit (:func:`group_strokes`) whose strokes drew it: each digit's
    strokes are traced with a pen twice the ink's stroke width, and the ink under the trace
    takes its label (0 where no stroke passed). Returns labels and their count."""
    groups = group_strokes(strokes)
    width = stroke_width(Image.fromarray(ink))
    trace = Image.new("I", (ink.shape[1], ink.shape[0]), 0)
    draw = ImageDraw.Draw(trace)
    # A wide trace catches the whole stroke; a narrow one drawn over it gives each digit back
    # its own strokes' middle where a neighbour's wide trace covered them (digits touching).
    for pen in (max(3, round(2 * width + 2)), max(1, round(width))):
        for k, group in enumerate(groups, start=1):
            for s in group:
                points = [(float(x), float(y)) for x, y in s]
                if len(points) > 1:
                    draw.line(points, fill=k, width=pen, joint="curve")
                for x, y in (points[0], points[-1]):
                    r = pen / 2
                    draw.ellipse((x - r, y - r, x + r, y + r), fill=k)
    labels = np.where(ink >= LOW_INK * 255, np.asarray(trace, dtype=np.int32), 0)
    return labels.astype(np.int32), len(groups)


def segment_digits(
    ink: np.ndarray, read: Reader | None = None, *, strokes: Sequence[Stroke] | None = None
) -> list[Segment]:
    """Digits of a one-line number in a uint8 ink map, left to right (see module docs).

    ``read`` (if given) returns the :class:`Reading` of each of a list of segments; it decides
    between keeping a group whole, splitting it, reading its pieces apart, or joining it with a
    neighbour it nearly touches. Without it the count of typical-width digits decides.
    ``strokes`` (the pen's strokes in drawing order, in ``ink``'s pixels; see
    :func:`check_strokes`) replace the ink's connected pieces by the digits the strokes group
    into: digits drawn touching come apart, a digit drawn in two strokes stays whole.
    """
    if strokes:
        labels, n = stroke_labels(ink, strokes)
    else:
        labels, n = label_components(ink >= LOW_INK * 255)
    comps = [c for c in components(labels, n) if c.area > 0]
    if not comps:
        return []
    line = Line.of(comps)
    # The strokes already made each digit one piece (joining by overlap would give a 4's
    # second stroke to a neighbour drawn touching it).
    groups = [Group.of(c) for c in sorted(comps, key=lambda c: c.x0)] if strokes else None
    groups = groups or join_groups(comps, line)
    if read is not None:
        segments = _with_model(groups, labels, ink, read, line)
    else:
        segments = [
            s
            for g in groups
            if _is_written(g, line)
            for s in _geometric(_GroupInk.of(g, labels, ink), line)
        ]
    return sorted(segments, key=lambda s: s.x0)
