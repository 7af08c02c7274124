"""The fast paths give the slow paths' answers: numpy rank filters and bounding boxes against
Pillow's, and the traced PyTorch network against the eager one (speed itself is measured in
``benchmarks/``, never here)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageFilter

from digitlab.engine.ink import _counts, _rank_filter
from digitlab.engine.normalise import _bbox


def test_rank_filter_is_pillows_min_and_max_filter():
    rng = np.random.default_rng(0)
    for _ in range(60):
        h, w = (int(v) for v in rng.integers(1, 60, 2))
        a = ((rng.random((h, w)) < rng.random()) * rng.integers(0, 256, (h, w))).astype(np.uint8)
        for size in (3, 5, 7, 9):
            for op, pil in (
                (np.maximum, ImageFilter.MaxFilter),
                (np.minimum, ImageFilter.MinFilter),
            ):
                want = np.asarray(Image.fromarray(a).filter(pil(size)))
                assert np.array_equal(_rank_filter(a, size, op), want), (h, w, size, op)


def test_bbox_is_pillows_getbbox():
    rng = np.random.default_rng(1)
    for _ in range(100):
        h, w = (int(v) for v in rng.integers(1, 40, 2))
        a = ((rng.random((h, w)) < rng.random() * 0.1) * 255).astype(np.uint8)
        assert _bbox(a) == Image.fromarray(a).getbbox()


def test_histogram_reuse_never_returns_another_arrays_counts():
    a = np.zeros((30, 30), np.uint8)
    b = a.copy()
    b[0, 0] = 200
    assert _counts(a)[0] == 900
    assert _counts(b)[200] == 1 and _counts(b)[0] == 899
    assert _counts(a)[200] == 0
    with pytest.raises(ValueError):
        _counts(a)[0] = 1  # shared between callers: read-only


def test_traced_torch_network_gives_the_eager_answers(mnist):
    torch = pytest.importorskip("torch")
    from digitlab.api import load_model

    eager = load_model("default", backend="torch")
    traced = load_model("default", backend="torch")
    with torch.inference_mode():
        assert traced.backend.trace()
    assert traced.backend.traced is not None and eager.backend.traced is None
    images = [255 - d for d in mnist.test_images[:300]]
    a, b = eager.predict_batch(images), traced.predict_batch(images)
    assert [p.digit for p in a] == [p.digit for p in b]
    assert [p.uncertain for p in a] == [p.uncertain for p in b]
    diff = max(
        abs(x - y)
        for p, q in zip(a, b, strict=True)
        for x, y in zip(p.probabilities, q.probabilities, strict=True)
    )
    assert diff < 1e-5
    # Heat maps still come from the eager network's gradients.
    assert traced.predict(images[0], explain=True).heatmap is not None
