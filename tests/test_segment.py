"""Reading multi-digit numbers: segmentation into digits, joining parts, splitting touching
digits, boxes in input pixels."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image, ImageDraw

import tune_images as synth
from digitlab.engine import preprocess as P
from digitlab.engine import segment
from imagegen import sample


def _strip(mnist, digits_idx, rng, **kw) -> synth.Strip:
    return synth.number_strip(
        mnist.test_images[digits_idx], mnist.test_labels[digits_idx], rng, **kw
    )


def _iou(a, b) -> float:
    ax0, ay0, aw, ah = a
    bx0, by0, bw, bh = b
    ix = max(0, min(ax0 + aw, bx0 + bw) - max(ax0, bx0))
    iy = max(0, min(ay0 + ah, by0 + bh) - max(ay0, by0))
    inter = ix * iy
    return inter / (aw * ah + bw * bh - inter)


def test_spaced_digits_are_found_with_their_boxes(recognizer, mnist):
    rng = np.random.default_rng(1)
    idx = sample(4, seed=4)
    strip = _strip(mnist, idx, rng, touch_probability=0.0)
    result = recognizer.read_number(strip.image)
    assert len(result.digits) == 4
    for found, truth in zip(result.digits, strip.boxes, strict=True):
        assert _iou((found.x, found.y, found.width, found.height), truth) > 0.7
    assert result.number == "".join(str(d.prediction.digit) for d in result.digits)
    d = result.to_dict()
    json.dumps(d)
    assert d["number"] == result.number and len(d["digits"]) == 4
    assert set(d["digits"][0]) == {"x", "y", "width", "height", "prediction"}


def test_blank_reads_as_empty_number(recognizer):
    result = recognizer.read_number(Image.new("L", (400, 120), 255))
    assert result.number == "" and result.digits == [] and result.uncertain


def test_segments_without_a_model_follow_the_gaps(mnist):
    rng = np.random.default_rng(2)
    strip = _strip(mnist, sample(5, seed=6), rng, touch_probability=0.0)
    ink = P.extract_ink(strip.image)
    segs = segment.segment_digits(ink.ink)
    assert len(segs) == 5
    assert [s.x0 for s in segs] == sorted(s.x0 for s in segs)
    for s in segs:  # each segment holds its own ink only
        assert s.ink.shape == (s.y1 - s.y0, s.x1 - s.x0) and s.ink.max() > 0


def _draw(strokes, size=(420, 140), width=9) -> Image.Image:
    img = Image.new("L", size, 255)
    draw = ImageDraw.Draw(img)
    for pts in strokes:
        draw.line(pts, fill=0, width=width, joint="curve")
    return img


def test_a_fives_flag_is_joined_to_its_body():
    """A 5 written in two strokes (body, then a separate flag beside it) is one digit; so is
    a 4 written in two strokes."""
    five_body = [(60, 25), (55, 70), (80, 62), (100, 75), (102, 100), (85, 118), (55, 112)]
    five_flag = [(72, 25), (112, 22)]  # starts beyond the body's top
    four_left = [(210, 20), (195, 80), (245, 80)]
    four_right = [(232, 45), (232, 120)]
    img = _draw([five_body, five_flag, four_left, four_right])
    ink = P.extract_ink(img)
    _, n = P.label_components(ink.ink >= P.LOW_INK * 255)
    assert n >= 3  # really drawn apart
    segs = segment.segment_digits(ink.ink)
    assert len(segs) == 2


def test_punctuation_is_dropped(recognizer, mnist):
    """555-1234 style: a dash and a dot between digits are not digits."""
    rng = np.random.default_rng(3)
    idx = sample(4, seed=8)
    strip = _strip(mnist, idx, rng, touch_probability=0.0)
    img = strip.image.copy()
    draw = ImageDraw.Draw(img)
    (x1, y1, w1, h1), (x2, _, _, _) = strip.boxes[1], strip.boxes[2]
    mid = (x1 + w1 + x2) // 2
    draw.line([(mid - 8, y1 + h1 // 2), (mid + 8, y1 + h1 // 2)], fill=0, width=6)  # dash
    (x3, y3, w3, h3), (x4, _, _, _) = strip.boxes[2], strip.boxes[3]
    dot = (x3 + w3 + x4) // 2
    draw.ellipse([dot - 4, y3 + h3 - 8, dot + 4, y3 + h3], fill=0)  # full stop
    assert len(recognizer.read_number(img).digits) == 4


def test_touching_digits_are_split_at_a_valley(recognizer):
    """Two zeros drawn touching: one blob of ink, read as two digits."""
    img = Image.new("L", (360, 180), 255)
    draw = ImageDraw.Draw(img)
    draw.ellipse([60, 40, 140, 150], outline=0, width=11)
    draw.ellipse([135, 40, 215, 150], outline=0, width=11)
    ink = P.extract_ink(img)
    assert P.label_components(ink.ink >= P.LOW_INK * 255)[1] == 1  # they do touch
    result = recognizer.read_number(img)
    assert len(result.digits) == 2
    assert result.number == "00"
    cut = result.digits[0].x + result.digits[0].width
    assert 128 <= cut <= 150


def test_a_wide_single_digit_is_not_split(recognizer):
    img = Image.new("L", (360, 180), 255)
    draw = ImageDraw.Draw(img)
    draw.ellipse([60, 50, 177, 140], outline=0, width=12)  # a wide 0: 1.3 times its height
    assert recognizer.read_number(img).number == "0"


def test_boxes_are_in_input_pixels_for_large_images(recognizer, mnist):
    rng = np.random.default_rng(5)
    strip = _strip(mnist, sample(3, seed=10), rng, touch_probability=0.0, height=400)
    assert strip.image.width > P.WORK_MAX_SIDE  # reduced internally
    result = recognizer.read_number(strip.image)
    assert len(result.digits) == 3
    for found, truth in zip(result.digits, strip.boxes, strict=True):
        assert _iou((found.x, found.y, found.width, found.height), truth) > 0.7


def test_weak_logits_make_a_piece_less_plausible():
    """Energy below WHOLE_ENERGY costs ENERGY_COST nats per unit: half a digit read with a
    confident softmax but weak logits loses to the whole digit."""
    piece = segment.Segment(0, 0, 40, 50, np.zeros((50, 40), np.uint8))
    line = segment.Line(height=50.0, middle=25.0)
    strong = segment.piece_score(piece, segment.Reading(6, 0.95, segment.WHOLE_ENERGY), line)
    weak = segment.piece_score(piece, segment.Reading(6, 0.95, segment.WHOLE_ENERGY - 2), line)
    unknown = segment.piece_score(piece, segment.Reading(6, 0.95), line)
    assert strong == unknown == pytest.approx(np.log(0.95))  # 40x50: an ordinary 6, no shape cost
    assert strong - weak == pytest.approx(2 * segment.ENERGY_COST)


def test_half_a_digit_has_weaker_logits_than_the_whole(recognizer, mnist):
    """The premise of the energy term, on real digits: cut MNIST digits in half and the
    calibrated logits' energy drops (measured with the first bundled model: median 8.6 whole vs
    4.9 half; energies on its scale, see recognizer.ENERGY_REFERENCE)."""
    wholes, halves = [], []
    for i in range(40):
        digit = 255 - np.asarray(Image.fromarray(mnist.test_images[i]).resize((84, 84)))
        cols = np.flatnonzero((digit < 128).any(axis=0))
        left = np.full_like(digit, 255)
        cut = (cols[0] + cols[-1]) // 2
        left[:, :cut] = digit[:, :cut]
        wholes.append(P.to_model_input(Image.fromarray(digit)).image)
        halves.append(P.to_model_input(Image.fromarray(left)).image)
    whole = np.median(recognizer.energies(np.stack(wholes)))
    half = np.median(recognizer.energies(np.stack(halves)))
    assert whole > segment.WHOLE_ENERGY > half
