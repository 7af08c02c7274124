"""The report suite's independent image generators (``benchmarks/report_images.py``).

Two kinds of test:

* the generators are reproducible and make what they claim (a border-cut digit touches the
  border, an empty notebook photo has its lines, a two-stroke 4/5/7 has a visible gap between
  its strokes, ...);
* accuracy floors of the bundled model on small samples of a few report categories. The floors
  sit at or below what these exact samples measured (stated beside each); the full-size numbers
  are in ``benchmarks/results/robustness.md`` (``python benchmarks/robustness.py --suite
  report``). These samples are small, so a floor is a tripwire, not the issue's target.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import report_images as ri


@pytest.fixture(scope="module")
def test_digits(mnist_dir):
    m = ri.load_digit_source(str(mnist_dir))
    return m.test_images, m.test_labels


def _pixels(sample: ri.Sample) -> np.ndarray:
    return np.asarray(sample.image)


# --- the generators -----------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(ri.DIGIT_CATEGORIES))
def test_digit_generators_are_deterministic(name, test_digits):
    images, labels = test_digits
    gen = ri.DIGIT_CATEGORIES[name]
    if name in ("photo", "notebook"):  # close-ups: phone-sized photos take seconds each
        gen = functools.partial(gen, phone=False)
    for i in (0, 7):
        a = gen(images[i], int(labels[i]), np.random.default_rng(123 + i))
        b = gen(images[i], int(labels[i]), np.random.default_rng(123 + i))
        assert a.label == b.label == int(labels[i])
        assert a.kind == b.kind
        assert np.array_equal(_pixels(a), _pixels(b))
    c = gen(images[0], int(labels[0]), np.random.default_rng(999))
    a = gen(images[0], int(labels[0]), np.random.default_rng(123))
    assert c.image.size != a.image.size or not np.array_equal(_pixels(a), _pixels(c))


def test_number_and_blank_generators_are_deterministic(test_digits):
    images, labels = test_digits
    for gen in (ri.gen_number_two_stroke, ri.gen_number_canvas_strokes):
        a, b = gen(np.random.default_rng(5)), gen(np.random.default_rng(5))
        assert a.label == b.label and a.strokes == b.strokes
        assert np.array_equal(_pixels(a), _pixels(b))
    idx = np.array([3, 1, 4, 1, 5])
    a = ri.gen_number_upload(images[idx], labels[idx], np.random.default_rng(2))
    b = ri.gen_number_upload(images[idx], labels[idx], np.random.default_rng(2))
    assert a.label == "".join(str(int(v)) for v in labels[idx])
    assert np.array_equal(_pixels(a), _pixels(b))
    for kind in ri.NO_DIGIT_KINDS:
        a, b = (
            ri.gen_no_digit(kind, np.random.default_rng(8)),
            ri.gen_no_digit(kind, np.random.default_rng(8)),
        )
        assert a.label is None and a.kind == kind
        assert np.array_equal(_pixels(a), _pixels(b))


def test_border_digits_touch_the_border(test_digits):
    images, labels = test_digits
    rng = np.random.default_rng(0)
    cut = 0
    for i in range(40):
        s = ri.gen_border(images[i], int(labels[i]), rng)
        g = np.asarray(s.image, np.float32)
        paper = np.median(g)
        ink = g.min() if s.meta["dark_on_light"] else g.max()
        inked = np.abs(g - paper) > 0.4 * abs(ink - paper)
        edges = {"top": inked[0], "bottom": inked[-1], "left": inked[:, 0], "right": inked[:, -1]}
        for side, c in s.meta["sides"].items():
            assert edges[side].any(), (i, side, s.kind)
            cut += c > 0
    assert cut > 5  # and some are really cut, not just touching


def test_scale_spans_3_to_90_percent(test_digits):
    images, labels = test_digits
    rng = np.random.default_rng(1)
    fracs = [
        ri.gen_scale(images[i], int(labels[i]), rng).meta["height_fraction"] for i in range(60)
    ]
    assert min(fracs) >= 0.025 and max(fracs) <= 0.95
    assert min(fracs) < 0.06 and max(fracs) > 0.5


def test_marker_spans_hairline_to_very_thick(test_digits):
    images, labels = test_digits
    rng = np.random.default_rng(2)
    kinds = {ri.gen_marker(images[i], int(labels[i]), rng).kind for i in range(80)}
    assert {"hairline", "very thick pen", "very dilated", "eroded"} <= kinds


def _line_dips(sample: ri.Sample) -> int:
    """Dark horizontal lines crossing a narrow vertical strip in the middle of a photo."""
    g = np.asarray(sample.image.convert("L"), np.float32)
    h, w = g.shape
    strip = g[:, int(0.48 * w) : int(0.52 * w) + 1].mean(axis=1)
    base = ndimage.median_filter(strip, size=max(9, h // 8))
    depth = base - strip
    noise = np.median(np.abs(depth - np.median(depth)))
    dark = depth > max(8.0, 6 * noise)
    return int(ndimage.label(dark)[1])


def test_empty_notebook_photos_have_lines_and_plain_paper_none():
    rng = np.random.default_rng(3)
    for _ in range(3):  # close-ups only, to keep the test fast
        assert _line_dips(ri.gen_no_digit("empty ruled photo", rng, phone=False)) >= 3
        assert _line_dips(ri.gen_no_digit("empty squared photo", rng, phone=False)) >= 3
        # plain paper: at most one dip (a sharp shadow edge), never a set of lines
        assert _line_dips(ri.gen_no_digit("empty paper photo", rng, phone=False)) <= 1
    big = ri.gen_no_digit("empty ruled photo", rng, phone=True)
    assert big.image.size[0] >= 1000 and _line_dips(big) >= 3


def test_notebook_digit_photos_are_jpeg_photos_with_lines(test_digits):
    images, labels = test_digits
    rng = np.random.default_rng(4)
    for i in range(3):
        s = ri.gen_notebook(images[i], int(labels[i]), rng, phone=False)
        assert s.meta["lines"] in ("ruled", "squared") and s.meta["spacing"] > 0
        assert any(e.startswith("jpeg") for e in s.meta["effects"])
        assert s.image.mode == "RGB"


def test_canvas_is_a_transparent_280px_rgba_export(test_digits):
    images, labels = test_digits
    rng = np.random.default_rng(5)
    for i in range(10):
        s = ri.gen_canvas(images[i], int(labels[i]), rng)
        a = np.asarray(s.image)
        assert s.image.mode == "RGBA" and s.image.size == (280, 280)
        assert (a[..., 3] == 0).mean() > 0.5 and a[..., 3].max() == 255
        assert abs(s.meta["angle"]) <= 25 and s.meta["pen"] <= 9


def test_lowres_uses_every_filter_and_size_range():
    images, labels = ri.uci_digits()
    rng = np.random.default_rng(6)
    samples = [ri.gen_lowres(images[i], int(labels[i]), rng) for i in range(60)]
    assert {s.kind for s in samples} == set(ri.LOWRES_FILTERS)
    sizes = {s.image.size[0] for s in samples}
    assert min(sizes) == 16 and max(sizes) == 128


def test_two_stroke_digits_have_a_visible_gap_and_strokes_match_pixels():
    rng = np.random.default_rng(7)
    split_seen = 0
    for _ in range(20):
        s = ri.gen_number_two_stroke(rng)
        assert any(s.label[k] in "457" for k in s.meta["two_stroke_at"])
        pen_w = s.meta["pen"]
        for k in s.meta["two_stroke_at"]:
            a, b = s.meta["digit_strokes"][k]
            assert b - a == 2  # two strokes
            p, q = np.array(s.strokes[a]), np.array(s.strokes[b - 1])
            gap = np.min(np.linalg.norm(p[:, None, :] - q[None, :, :], axis=2)) - pen_w
            assert gap > 0.015 * (p[:, 1].max() - p[:, 1].min() + q[:, 1].max() - q[:, 1].min()) / 2
            split_seen += 1
        alpha = (
            np.asarray(s.image.convert("RGBA"))[..., 3]
            if s.image.mode == "RGBA"
            else (255 - np.asarray(s.image))
        )
        pts = np.array([pt for st in s.strokes for pt in st])
        ys = np.clip(np.round(pts[:, 1]).astype(int), 0, alpha.shape[0] - 1)
        xs = np.clip(np.round(pts[:, 0]).astype(int), 0, alpha.shape[1] - 1)
        assert (alpha[ys, xs] > 100).mean() > 0.95  # the strokes are where the ink is
    assert split_seen >= 20


def test_strokes_hook_uses_strokes_only_when_accepted():
    calls = []

    class Old:
        def read_number(self, image, *, top_k=3):
            calls.append(("old", image))

    class New:
        def read_number(self, image, *, top_k=3, strokes=None):
            calls.append(("new", image, strokes))

    ri.read_number_with_strokes(Old(), "img", [[(0, 0)]])
    ri.read_number_with_strokes(New(), "img", [[(0, 0)]])
    assert calls == [("old", "img"), ("new", "img", [[(0, 0)]])]


def test_noise_generator_makes_every_kind_and_noisy_paper(test_digits):
    images, labels = test_digits
    rng = np.random.default_rng(8)
    samples = [ri.gen_noise(images[i], int(labels[i]), rng) for i in range(40)]
    assert {s.kind for s in samples} == set(ri.NOISE_KINDS)
    for s in samples:
        grey = np.asarray(s.image.convert("L"), np.float32)
        # neighbours differ by noise (a clean image: by less than a grey level on average)
        assert np.abs(np.diff(grey, axis=1)).mean() > 2, (s.kind, s.meta)
        if s.kind == "salt and pepper":
            extremes = np.isin(np.asarray(s.image), (0, 255)).mean()
            assert extremes >= 0.5 * s.meta["share"], s.meta


# --- floors on the bundled model ------------------------------------------------------------


def _digit_accuracy(recognizer, gen, images, labels, n, seed):
    """(accuracy, false no-digit rate) of ``n`` images from ``gen``, printed for the record."""
    rng = np.random.default_rng(seed)
    idx = np.random.default_rng(seed).choice(len(images), n, replace=False)
    right = nulls = 0
    for i in idx:
        s = gen(images[i], int(labels[i]), rng)
        p = recognizer.predict(s.image)
        right += p.digit == s.label
        nulls += p.digit is None
    print(f"{gen.__name__}: {right}/{n} right, {nulls} no-digit")
    return right / n, nulls / n


def test_floor_canvas(recognizer, test_digits):
    acc, nulls = _digit_accuracy(recognizer, ri.gen_canvas, *test_digits, 100, 11)
    # Measured 97/100 right, 0 no-digit here (96/100 since the fifth session's ink changes);
    # the target is 99.5%.
    assert acc >= 0.95, acc
    assert nulls <= 0.01, nulls


def test_floor_noise(recognizer, test_digits):
    acc, nulls = _digit_accuracy(recognizer, ri.gen_noise, *test_digits, 100, 14)
    # Measured 93/100 right, 5 no-digit (before the eighth session's two noise rules: 59/100,
    # 18 no-digit; with the median filter of lone noise pixels alone: 74/100, 24). The issue's
    # false "no digit" target (<= 0.3%) is not met under heavy noise: a tripwire.
    assert acc >= 0.9, acc
    assert nulls <= 0.07, nulls


def test_floor_lowres(recognizer):
    acc, nulls = _digit_accuracy(recognizer, ri.gen_lowres, *ri.uci_digits(), 150, 12)
    # Measured 145/150 right (96.7%), 1 no-digit here since the fifth session's ink changes
    # (before: 122/150, 12 no-digit); the target is 97% (and <= 0.3% no-digit): a
    # tripwire against getting worse.
    assert acc >= 0.94, acc
    assert nulls <= 0.02, nulls


def test_floor_marker(recognizer, test_digits):
    acc, nulls = _digit_accuracy(recognizer, ri.gen_marker, *test_digits, 100, 13)
    # Measured 99/100 right, 0 no-digit here; no accuracy target in the issue.
    assert acc >= 0.97, acc
    assert nulls <= 0.01, nulls


def test_floor_numbers(recognizer, test_digits):
    images, labels = test_digits
    rng = np.random.default_rng(14)
    uploads = two = 0
    n = 25
    for _ in range(n):
        idx = rng.integers(0, len(images), int(rng.integers(2, 7)))
        s = ri.gen_number_upload(images[idx], labels[idx], rng)
        uploads += recognizer.read_number(s.image).number == s.label
        s = ri.gen_number_two_stroke(rng)
        two += ri.read_number_with_strokes(recognizer, s.image, s.strokes).number == s.label
    print(f"numbers: uploads {uploads}/{n}, two-stroke {two}/{n}")
    # Measured 23/25 uploads and 25/25 two-stroke numbers here; targets 98% each.
    assert uploads >= 22, uploads
    assert two >= 24, two


def _no_digit_rate(recognizer, kinds, per_kind: int, seed: int) -> tuple[int, int]:
    rng = np.random.default_rng(seed)
    null = total = 0
    for kind in kinds:
        for _ in range(per_kind):
            null += recognizer.predict(ri.gen_no_digit(kind, rng).image).digit is None
            total += 1
    print(f"no digit ({', '.join(kinds)}): {null}/{total}")
    return null, total


def test_floor_no_digit(recognizer):
    kinds = [k for k in ri.NO_DIGIT_KINDS if "photo" not in k]
    null, total = _no_digit_rate(recognizer, kinds, 8, 15)
    # Measured 39/40 here; the target is 99.5%.
    assert null >= 38, (null, total)


@pytest.mark.slow
def test_floor_photos_notebook_and_empty_paper(recognizer, test_digits):
    acc_p, null_p = _digit_accuracy(recognizer, ri.gen_photo, *test_digits, 100, 16)
    acc_n, null_n = _digit_accuracy(recognizer, ri.gen_notebook, *test_digits, 100, 17)
    kinds = [k for k in ri.NO_DIGIT_KINDS if "photo" in k]
    null, total = _no_digit_rate(recognizer, kinds, 15, 18)
    # Measured: photos 97/100 right (2 no-digit), notebook 48/100 right (50 no-digit), empty
    # paper 43/45 no digit. Targets 99%, 97% and 99.5%: these floors only catch regressions.
    assert acc_p >= 0.95 and acc_n >= 0.45, (acc_p, acc_n)
    assert null_p <= 0.03 and null_n <= 0.55, (null_p, null_n)
    assert null >= 42, (null, total)
