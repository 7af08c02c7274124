"""The recogniser: any image in, a digit (or a number) with calibrated confidence out.

One engine behind the CLI, the web server and the desktop app::

    rec = load_model()                 # the bundled model; or a checkpoint / .onnx path
    p = rec.predict("digit.png")       # Prediction: digit, confidence, top, uncertain, ...
    n = rec.read_number("2026.png")    # NumberResult: "2026" and a box per digit

The network runs through a *backend* (:mod:`digitlab.engine.backends`): an object with
``logits(batch)`` (float32 ``(N, 1, 28, 28)`` in [0, 1], ink = 1 -> ``(N, 10)`` logits) and
``record``, the model's :class:`~digitlab.core.record.ModelRecord` (name, temperature, energy
scale, accuracies). ``TorchBackend`` runs checkpoints, ``OnnxBackend`` exported ``.onnx`` files
without torch; :func:`digitlab.api.load_model` picks one. Everything else -- preprocessing,
the temperature softmax, the "not sure" rule, segmentation, heat maps -- is this module's and
the same for every backend. This module owns the pipeline: front ends call :meth:`predict`,
:meth:`predict_batch` or :meth:`read_number` and never chain its steps themselves.

**Confidence.** Probabilities are ``softmax(logits / T)`` with the temperature ``T`` fitted on
the validation split after training (:mod:`digitlab.engine.calibrate`), so that a confidence of 0.9
is right about 90% of the time.

**Uncertain.** A prediction is flagged ``uncertain`` when there is no digit, or

* its calibrated confidence is below :data:`CONFIDENCE_THRESHOLD` (0.8), or the best digit leads
  the runner-up by less than :data:`MARGIN_THRESHOLD` (0.5): the model hesitates; or
* the reading is unstable: averaged over the image and four slightly rotated (+-12 degrees) or
  scaled (0.85x, 1.15x) copies -- changes that never change a digit's identity -- the
  probability of the digit read is below :data:`STABILITY_THRESHOLD` (0.8). A softmax is
  often confident about things that are not digits at all (a letter, a scribble); such readings
  rarely survive small changes, a digit's do. The four copies are read only for an image that
  no other rule flags and whose confidence is below :data:`STABILITY_CHECK_BELOW` (0.99): above
  it the views almost never change the answer, and they would cost four more forward passes for
  every image (most of a served request's CPU); or
* the energy of its calibrated logits (``logsumexp``, on the reference scale: see
  :meth:`Recognizer.energies`) is below :data:`UNCERTAIN_ENERGY`: an input that excites no
  class as strongly as real digits do (energy-based out-of-distribution detection, Liu et al.
  2020). A confident softmax on a letter often has weak logits underneath.

On MNIST test digits drawn on a canvas this flags ~2-4% of the digits, which hold most of the
model's errors, and most scribbles and letters (see ``tests/test_recognizer.py``).
"""

from __future__ import annotations

import base64
import dataclasses
import io
import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from PIL import Image

from digitlab.core.constants import IMAGE_SHAPE, NUM_CLASSES
from digitlab.core.errors import DigitlabError
from digitlab.core.record import ModelRecord
from digitlab.engine.calibrate import logsumexp, softmax
from digitlab.engine.preprocess import (
    InkImage,
    Preprocessed,
    extract_ink,
    is_texture,
    preprocess_ink,
    to_model_input,
)

log = logging.getLogger(__name__)

DEFAULT_TOP_K = 3
# Images per forward pass: large enough to amortise the call, small enough for any memory.
BATCH_SIZE = 256
# "Not sure" rule (see the module docstring), on calibrated probabilities. Chosen with an early
# 98.9% development model (temperature fitted on the 5,000-digit validation split): confidence
# < 0.8 flagged 1.5% of MNIST's test digits, holding 65% of its errors; adding the stability
# rule at 0.8 flagged 3.6% of canvas-drawn digits but 63% of scribbles and 61% of letters
# (confidence alone: 35% and 30%). With the shipped model and the energy rule below,
# benchmarks/robustness.py measures 83.0% of scribbles and 60.3% of letters flagged.
CONFIDENCE_THRESHOLD = 0.8
MARGIN_THRESHOLD = 0.5
STABILITY_THRESHOLD = 0.8
STABILITY_ROTATIONS = (-12.0, 12.0)  # degrees
STABILITY_SCALES = (0.85, 1.15)
# The views are read only below this confidence. Chosen on tune-side images (1,400 canvas
# drawings, 300 photos, 300 rotated, 1,000 raw digits, all *validation* digits, and 600 scribbles
# and 600 letters; a development script, seed 77) with the bundled model: the views flag 4 of 3,000
# digits (1 misread) and 4 of 600 scribbles that the other rules pass; below 0.99 they still see
# 3 of the 4 digits (the misread among them) and 3 of the 4 scribbles, and run for ~4% of
# digits instead of all of them (0.995: 4/4 and 4/4 but ~6%; 0.98: 3/4 and 2/4).
STABILITY_CHECK_BELOW = 0.99
# Energy rule, on ENERGY_REFERENCE's scale. Chosen on 1,400 canvas drawings of *validation*
# digits and 300 letters and 300 scribbles (seed 7). Bundled digitnet w32 d2: the other rules
# alone flag 1.8% of the digits (73% of their errors), 40% of letters, 61% of scribbles; adding
# energy < 6.0 flags 3.4% of the digits (82% of the errors), 62% of letters and 77% of
# scribbles (5.5: 2.4% / 57% / 71%; 6.5: 4.4% / 68% / 83%).
UNCERTAIN_ENERGY = 6.0
# A photo whose light-flattened reading has no ink is still read from its plain threshold when
# that looks this much like a digit (energy: logsumexp of the calibrated logits, reference
# scale). Blank photos rarely get that far: their plain readings are dropped for low contrast
# (preprocess.PLAIN_MIN_CONTRAST); this is the second guard. Bundled digitnet w32 d2, 605 tight
# crops of *training* digits that need the plain reading: above 6.5, 576 read right, 2 wrong
# (7.5: 549 / 0; 8.0: 478 / 0). Without the contrast gate, blank photos reached 7.7 with this
# model (9.5 with a w28 d2 candidate, 6.2 with the first bundled model): an energy threshold
# alone cannot tell them from digits across models.
ALTERNATIVE_MIN_ENERGY = 6.5
# The energy thresholds (UNCERTAIN_ENERGY, ALTERNATIVE_MIN_ENERGY, segment.WHOLE_ENERGY) are on
# the scale of the model bundled first (digitnet w32 d1, T 0.508), whose 5,000 validation
# digits have a median energy of 8.49. Networks scale their logits differently (a retrain of it
# on all 60k images: median 7.8 at the same temperature), so a model whose checkpoint records
# its own median (``energy_reference``, stored when the temperature is fitted) has its energies
# multiplied by ENERGY_REFERENCE / its median before any threshold applies; a model without
# one is taken as it is.
ENERGY_REFERENCE = 8.49


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------


def png_data_url(image: Image.Image) -> str:
    """A PIL image as a ``data:image/png;base64,...`` URL."""
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


@dataclass
class Prediction:
    """What the model thinks one image shows."""

    digit: int | None  # None = no digit found (blank / noise only)
    confidence: float  # probability of `digit` (0.0 when digit is None)
    probabilities: list[float]  # 10 floats (all 0.0 when digit is None)
    top: list[tuple[int, float]]  # top-k (digit, probability), best first ([] when no digit)
    uncertain: bool  # True when the model is not sure (or no digit)
    preprocessed: np.ndarray  # (28, 28) uint8, ink = 255: what the model saw
    heatmap: np.ndarray | None = None  # (H, W) float32 in [0, 1] over the input; explain=True

    def to_dict(self, *, images: bool = True) -> dict[str, Any]:
        """JSON-ready dict; with ``images`` the 28x28 input and heat map as PNG data URLs.

        The heat map PNG is an RGBA overlay the size of the input image: colour from blue (low)
        to red (high), alpha growing with the value, so it can be laid over the input as is.
        """
        out: dict[str, Any] = {
            "digit": self.digit,
            "confidence": float(self.confidence),
            "probabilities": [float(p) for p in self.probabilities],
            "top": [{"digit": int(d), "probability": float(p)} for d, p in self.top],
            "uncertain": bool(self.uncertain),
        }
        if images:
            out["preprocessed"] = png_data_url(Image.fromarray(self.preprocessed, mode="L"))
            if self.heatmap is not None:
                from digitlab.engine.explain import heatmap_rgba

                out["heatmap"] = png_data_url(heatmap_rgba(self.heatmap))
            else:
                out["heatmap"] = None
        return out


@dataclass
class DigitBox:
    """One digit of a number: its box in the input image and its prediction."""

    x: int
    y: int
    width: int
    height: int
    prediction: Prediction

    def to_dict(self, *, images: bool = False) -> dict[str, Any]:
        """JSON-ready dict: the box and the prediction's dict."""
        return {
            "x": int(self.x),
            "y": int(self.y),
            "width": int(self.width),
            "height": int(self.height),
            "prediction": self.prediction.to_dict(images=images),
        }


@dataclass
class NumberResult:
    """A number read from one image: the digit string (left to right) and a box per digit."""

    number: str  # "" when no digit was found
    digits: list[DigitBox]

    @property
    def uncertain(self) -> bool:
        """True when no digit was found or any digit is uncertain."""
        return not self.digits or any(d.prediction.uncertain for d in self.digits)

    def to_dict(self, *, images: bool = False) -> dict[str, Any]:
        """JSON-ready dict: number, uncertain and the digits' boxes and predictions."""
        return {
            "number": self.number,
            "uncertain": self.uncertain,
            "digits": [d.to_dict(images=images) for d in self.digits],
        }


# --------------------------------------------------------------------------------------------
# Backends
# --------------------------------------------------------------------------------------------


class Backend(Protocol):
    """What the recogniser needs from a model runner (``engine.backends``: torch, onnx)."""

    record: ModelRecord  # what the model is (name, temperature, energy scale, accuracies)

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """float32 (N, 1, 28, 28) in [0, 1], ink = 1 -> (N, 10) logits."""
        ...


# --------------------------------------------------------------------------------------------
# The recogniser
# --------------------------------------------------------------------------------------------


def stability_views(image: np.ndarray) -> list[np.ndarray]:
    """Slightly rotated and scaled copies of a (28, 28) uint8 model input (about its centre)."""
    img = Image.fromarray(image)
    size = image.shape[0]
    views = [np.asarray(img.rotate(a, Image.BILINEAR)) for a in STABILITY_ROTATIONS]
    for factor in STABILITY_SCALES:
        side = round(size * factor)
        scaled = img.resize((side, side), Image.BILINEAR)
        offset = (size - side) // 2
        canvas = Image.new("L", (size, size))
        if offset >= 0:
            canvas.paste(scaled, (offset, offset))
        else:
            canvas = scaled.crop((-offset, -offset, -offset + size, -offset + size))
        views.append(np.asarray(canvas))
    return views


def is_uncertain(
    probabilities: np.ndarray, stability: float = 1.0, energy: float | None = None
) -> bool:
    """The "not sure" rule of the module docstring (``energy`` on the reference scale)."""
    p = np.sort(np.asarray(probabilities))[::-1]
    if p[0] < CONFIDENCE_THRESHOLD or p[0] - p[1] < MARGIN_THRESHOLD:
        return True
    if stability < STABILITY_THRESHOLD:
        return True
    return energy is not None and energy < UNCERTAIN_ENERGY


def _check_top_k(top_k: int) -> int:
    """``top_k`` as an int in 1..10, else a DigitlabError."""
    if not isinstance(top_k, (int, np.integer)) or not 1 <= int(top_k) <= NUM_CLASSES:
        raise DigitlabError(f"top_k must be an integer from 1 to {NUM_CLASSES}, got {top_k!r}")
    return int(top_k)


def make_prediction(
    probabilities: np.ndarray | None,
    preprocessed: np.ndarray,
    top_k: int,
    *,
    uncertain: bool | None = None,
) -> Prediction:
    """A :class:`Prediction` from one row of probabilities (None = no digit).

    ``uncertain`` overrides the confidence/margin rule (the recogniser passes its full rule).
    """
    if probabilities is None:
        return Prediction(None, 0.0, [0.0] * NUM_CLASSES, [], True, preprocessed)
    p = np.asarray(probabilities, dtype=np.float64)
    order = np.argsort(-p, kind="stable")
    digit = int(order[0])
    top = [(int(d), float(p[d])) for d in order[:top_k]]
    flag = is_uncertain(p) if uncertain is None else uncertain
    return Prediction(digit, float(p[digit]), [float(v) for v in p], top, flag, preprocessed)


class Recognizer:
    """Preprocessing + a backend + calibrated probabilities; see the module docstring."""

    def __init__(
        self,
        backend: Backend,
        *,
        backend_name: str | None = None,
        cut_scorer: Callable[[], Recognizer] | None = None,
    ) -> None:
        """Wrap ``backend``; ``backend_name`` overrides the name it reports. ``cut_scorer``
        loads (once, on the first :meth:`read_number`) the recogniser whose readings score a
        number's candidate cuts; without one, or if it fails to load, this one scores them."""
        self.backend = backend
        self._cut_scorer_loader = cut_scorer
        self._cut_scorer: Recognizer | None = None
        self._cut_scorer_lock = threading.Lock()
        # What the model is (name, temperature, energy scale, accuracies, which runtime).
        self.info: ModelRecord = backend.record
        if backend_name:
            self.info.backend = backend_name
        self.temperature = self.info.temperature
        reference = self.info.energy_reference
        self._energy_scale = ENERGY_REFERENCE / reference if reference else 1.0

    def __repr__(self) -> str:
        return f"Recognizer({self.info.name!r}, backend={self.info.backend!r})"

    def cut_scorer(self) -> Recognizer:
        """The recogniser that scores a number's candidate cuts (see ``cut_scorer`` above)."""
        if self._cut_scorer is None:
            with self._cut_scorer_lock:
                if self._cut_scorer is None:
                    self._cut_scorer = self._load_cut_scorer()
        return self._cut_scorer

    def _load_cut_scorer(self) -> Recognizer:
        if self._cut_scorer_loader is None:
            return self
        try:
            return self._cut_scorer_loader()
        except DigitlabError as exc:
            log.warning("numbers: cuts scored by the reading model (%s)", exc)
            return self

    # -- raw model access ------------------------------------------------------------------

    def logits(self, images: np.ndarray) -> np.ndarray:
        """Logits for (N, 28, 28) uint8 or (N, 1, 28, 28) float images (ink bright), batched."""
        x = np.asarray(images)
        if x.dtype == np.uint8:
            x = x.astype(np.float32) / 255.0
        x = x.astype(np.float32, copy=False).reshape(-1, *IMAGE_SHAPE)
        if len(x) == 0:
            return np.zeros((0, NUM_CLASSES), np.float32)
        parts = [self.backend.logits(x[i : i + BATCH_SIZE]) for i in range(0, len(x), BATCH_SIZE)]
        return np.concatenate(parts).astype(np.float32, copy=False)

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """Calibrated probabilities (N, 10) for 28x28 model inputs (see :meth:`logits`)."""
        return softmax(self.logits(images), self.temperature)

    def energies(self, images: np.ndarray) -> np.ndarray:
        """Energy (``logsumexp`` of the calibrated logits) of 28x28 model inputs, on the scale
        the recogniser's thresholds were set on (see ENERGY_REFERENCE): (N,) float64, large
        for a whole digit, small for a fragment or something that is no digit."""
        return self._energy(self.logits(images) / self.temperature)

    def _energy(self, scaled_logits: np.ndarray) -> np.ndarray:
        """Energy of already calibrated logits, times the model's energy scale."""
        return logsumexp(scaled_logits) * self._energy_scale

    # -- public API ------------------------------------------------------------------------

    def predict(
        self, image: Any, *, top_k: int = DEFAULT_TOP_K, explain: bool = False
    ) -> Prediction:
        """Recognise one digit in ``image`` (path, bytes, PIL image, numpy array).

        With ``explain`` the prediction carries a heat map of the pixels that mattered,
        aligned with the input image. Raises ImageError for unreadable images.
        """
        top_k = _check_top_k(top_k)
        return self.predict_preprocessed([to_model_input(image)], top_k=top_k, explain=explain)[0]

    def predict_batch(
        self, images: Iterable[Any], *, top_k: int = DEFAULT_TOP_K, explain: bool = False
    ) -> list[Prediction]:
        """Recognise one digit in each image, in one batched pass through the model.

        Items may be anything :meth:`predict` takes, or :class:`Preprocessed` results. An
        unreadable image raises ImageError (naming it); preprocess items yourself with
        :func:`digitlab.engine.preprocess.to_model_input` to handle failures one by one.
        """
        top_k = _check_top_k(top_k)
        items = [to_model_input(im) for im in images]
        return self.predict_preprocessed(items, top_k=top_k, explain=explain)

    def predict_preprocessed(
        self, items: Sequence[Preprocessed], *, top_k: int = DEFAULT_TOP_K, explain: bool = False
    ) -> list[Prediction]:
        """Predictions for already preprocessed images (no-ink items give digit None).

        One batched pass over every inked image and its stability views. With ``explain``
        each prediction carries a heat map (aligned with its input image) of the reading
        the recogniser chose: for a photo read two ways, the one it kept.
        """
        top_k = _check_top_k(top_k)
        items = self._choose_alternatives(items)
        out = self._predict_chosen(items, top_k)
        if explain:
            from digitlab.engine.explain import explain_prediction

            for pre, prediction in zip(items, out, strict=True):
                prediction.heatmap = explain_prediction(self, pre, prediction)
        return out

    def _predict_chosen(self, items: Sequence[Preprocessed], top_k: int) -> list[Prediction]:
        """Predictions for items whose alternatives are already decided.

        Two batched passes at most: every inked image, then the stability views of those
        that need them (see :data:`STABILITY_CHECK_BELOW`)."""
        inked = [i for i, p in enumerate(items) if p.has_ink]
        out = [make_prediction(None, p.image, top_k) for p in items]
        if not inked:
            return out
        logits = self.logits(np.stack([items[i].image for i in inked]))  # (len(inked), 10)
        probs = softmax(logits, self.temperature)
        energy = self._energy(logits / self.temperature)  # (len(inked),)
        flags = [is_uncertain(p, energy=float(e)) for p, e in zip(probs, energy, strict=True)]
        check = [k for k, p in enumerate(probs) if not flags[k] and p.max() < STABILITY_CHECK_BELOW]
        if check:
            views = [v for k in check for v in stability_views(items[inked[k]].image)]
            per_image = len(views) // len(check)
            view_probs = softmax(self.logits(np.stack(views)), self.temperature)
            view_probs = view_probs.reshape(len(check), per_image, NUM_CLASSES)
            for k, vp in zip(check, view_probs, strict=True):
                digit = int(probs[k].argmax())
                stability = (probs[k, digit] + vp[:, digit].sum()) / (1 + per_image)
                flags[k] = is_uncertain(
                    probs[k], stability=float(stability), energy=float(energy[k])
                )
        for k, i in enumerate(inked):
            out[i] = make_prediction(probs[k], items[i].image, top_k, uncertain=flags[k])
        return out

    def _choose_alternatives(self, items: Sequence[Preprocessed]) -> list[Preprocessed]:
        """For images preprocessed two ways (see ``Preprocessed.alternative``: photos, and
        digits under MIN_DIGIT_PIXELS), keep the one whose calibrated logits have the higher
        energy: the one the model finds more like a digit (flattening the light wins on
        shadowed photos, the plain threshold on digits cropped tight, whose wide strokes the
        flattening eats). Where the first reading found no ink, the alternative must reach
        ALTERNATIVE_MIN_ENERGY: a smooth gradient thresholded plainly is a blob, two specks
        are not a tiny digit."""
        pairs = [i for i, p in enumerate(items) if p.alternative is not None]
        if not pairs:
            return list(items)
        stack = np.stack([im for i in pairs for im in (items[i].image, items[i].alternative.image)])
        energy = self.energies(stack).reshape(len(pairs), 2)
        chosen = list(items)
        for k, i in enumerate(pairs):
            floor = energy[k, 0] if items[i].has_ink else ALTERNATIVE_MIN_ENERGY
            # Decided once: the kept reading carries no alternative.
            if energy[k, 1] > floor:
                chosen[i] = items[i].alternative  # it has none of its own
            else:
                chosen[i] = dataclasses.replace(items[i], alternative=None)
        return chosen

    def read_number(
        self,
        image: Any,
        *,
        top_k: int = DEFAULT_TOP_K,
        strokes: Sequence[Sequence[Sequence[float]]] | None = None,
    ) -> NumberResult:
        """Read a number written on one line: segment into digits, recognise each.

        ``strokes`` (optional, from a drawing surface): the pen's strokes in drawing order,
        each a list of (x, y) or (x, y, t_ms) points in ``image``'s pixels. With them, strokes
        drawn one after another that overlap horizontally make one digit (a 4 or 5 drawn in
        two strokes) and digits drawn touching still come apart; the model still decides
        between reading neighbours apart or together. The candidate cuts are scored by
        :meth:`cut_scorer` (the bundled cut scorer for models loaded by ``load_model``); the
        digits cut out are read by this recogniser's model. Returns the digits left to right with
        their boxes (input-image pixels) and predictions; ``number`` is "" when the image
        holds no ink. Bad ``strokes`` raise DigitlabError naming the problem.
        """
        from digitlab.engine.segment import check_strokes

        top_k = _check_top_k(top_k)
        pen = check_strokes(strokes) if strokes is not None else []
        ink = extract_ink(image, plain_reading=False)
        # A second reading (a small photo read again as one, ink.SMALL_PHOTO_MIN_SIDE; a photo
        # read without the table's rim that its blocks joined to the writing,
        # ink.split_from_rims) is kept when its least digit-like digit is more like a digit to
        # the model than the first reading's (ALTERNATIVE_MIN_ENERGY where that found no ink).
        judge = ink.plain is not None
        first = self._read_number_ink(ink, pen, top_k, judge) if ink.has_ink else None
        if judge:
            plain = dataclasses.replace(
                ink, ink=ink.plain, mask=ink.plain > 0, has_ink=True, polarity=ink.plain_polarity
            )
            second = self._read_number_ink(plain, pen, top_k, judge)
            floor = first[1] if first is not None else ALTERNATIVE_MIN_ENERGY
            if second[0].digits and second[1] > floor:
                return second[0]
        return first[0] if first is not None else NumberResult("", [])

    def _read_number_ink(
        self, ink: InkImage, pen: list[np.ndarray], top_k: int, judge: bool
    ) -> tuple[NumberResult, float]:
        """:meth:`read_number` on one reading of the ink: the result and, with ``judge``, the
        least energy of its digits (-inf without digits, or without ``judge``)."""
        from digitlab.engine.segment import Reading, Segment, segment_digits

        work_strokes = [s / ink.scale for s in pen]

        def prepare(segment: Segment) -> Preprocessed:
            return preprocess_ink(
                segment.ink,
                scale=ink.scale,
                offset=(segment.x0, segment.y0),
                input_size=ink.input_size,
                polarity=ink.polarity,
            )

        scorer = self.cut_scorer()

        def read(option: list[Segment]) -> list[Reading]:
            pres = [prepare(s) for s in option]
            if not all(p.has_ink for p in pres):
                return [Reading(0, 0.0)] * len(option)
            scaled = scorer.logits(np.stack([p.image for p in pres])) / scorer.temperature
            probs = softmax(scaled, 1.0)
            energy = scorer._energy(scaled)
            return [
                Reading(int(row.argmax()), float(row.max()), float(e))
                for row, e in zip(probs, energy, strict=True)
            ]

        segments = segment_digits(ink.ink, read=read, strokes=work_strokes)
        pres = [prepare(s) for s in segments]
        # A digit's ink that is texture (blobs over its whole box, none a quarter of it: noise
        # cut into "digits") is no digit, as for a single digit (preprocess.TEXTURE_SHARE).
        keep = [
            (s, p)
            for s, p in zip(segments, pres, strict=True)
            if p.has_ink and not is_texture(s.ink)
        ]
        if not keep:
            return NumberResult("", []), -np.inf
        least = (
            float(self.energies(np.stack([p.image for _, p in keep])).min()) if judge else -np.inf
        )
        preds = self.predict_preprocessed([p for _, p in keep], top_k=top_k)
        boxes = []
        for (_, pre), pred in zip(keep, preds, strict=True):
            assert pre.box is not None
            x, y, w, h = pre.box
            boxes.append(DigitBox(x, y, w, h, pred))
        number = "".join(str(b.prediction.digit) for b in boxes if b.prediction.digit is not None)
        return NumberResult(number, boxes), least
