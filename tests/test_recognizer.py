"""The recogniser's API: predictions, batches, confidence, "not sure", heat maps, loading.

Accuracy per kind of image (canvas, photo, rotated, ...) is in ``test_robustness.py``.
"""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image

import tune_images as synth
from digitlab.api import load_model
from digitlab.core.errors import CheckpointError, DigitlabError, ImageError
from digitlab.engine import calibrate
from digitlab.engine.calibrate import softmax
from digitlab.engine.preprocess import to_model_input
from digitlab.engine.recognizer import CONFIDENCE_THRESHOLD, NumberResult, Prediction
from imagegen import ink_box, sample


@pytest.fixture(scope="module")
def canvases(mnist):
    """120 MNIST test digits drawn on canvases of every kind, with labels."""
    idx = sample(120, seed=21)
    rng = np.random.default_rng(21)
    kinds = synth.CANVAS_KINDS
    images = [
        synth.canvas(mnist.test_images[i], kinds[k % len(kinds)], rng) for k, i in enumerate(idx)
    ]
    return images, mnist.test_labels[idx]


def _decode_data_url(url: str) -> Image.Image:
    assert url.startswith("data:image/png;base64,")
    return Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))


def test_prediction_fields(recognizer, canvases):
    images, labels = canvases
    p = recognizer.predict(images[0], top_k=4)
    assert isinstance(p, Prediction)
    assert p.digit == labels[0]
    assert len(p.probabilities) == 10 and sum(p.probabilities) == pytest.approx(1.0, abs=1e-6)
    assert p.confidence == pytest.approx(max(p.probabilities))
    assert [d for d, _ in p.top] == list(np.argsort(p.probabilities)[::-1][:4])
    assert all(a >= b for (_, a), (_, b) in zip(p.top, p.top[1:], strict=False))
    assert p.preprocessed.shape == (28, 28) and p.preprocessed.dtype == np.uint8
    assert p.heatmap is None
    assert recognizer.predict(images[0], top_k=1).top == p.top[:1]


def test_to_dict_is_json_with_png_images(recognizer, canvases):
    images, _ = canvases
    d = recognizer.predict(images[1], explain=True).to_dict()
    json.dumps(d)
    assert set(d) >= {"digit", "confidence", "probabilities", "top", "uncertain", "preprocessed"}
    assert d["top"][0] == {"digit": d["digit"], "probability": d["confidence"]}
    assert _decode_data_url(d["preprocessed"]).size == (28, 28)
    heat = _decode_data_url(d["heatmap"])
    assert heat.size == images[1].size and heat.mode == "RGBA"
    assert "preprocessed" not in recognizer.predict(images[1]).to_dict(images=False)


def test_predict_batch_matches_predict(recognizer, canvases):
    images, labels = canvases
    batch = recognizer.predict_batch(images[:20])
    for img, b in zip(images[:20], batch, strict=True):
        one = recognizer.predict(img)
        assert b.digit == one.digit
        assert b.probabilities == pytest.approx(one.probabilities, abs=1e-5)
        assert b.uncertain == one.uncertain
    assert np.mean([b.digit == y for b, y in zip(batch, labels[:20], strict=True)]) >= 0.9
    assert recognizer.predict_batch([]) == []


def test_blank_gives_no_digit_never_a_guess(recognizer):
    for img in (Image.new("L", (280, 280), 255), Image.new("RGBA", (280, 280)), np.zeros((28, 28))):
        p = recognizer.predict(img, explain=True)
        assert p.digit is None and p.confidence == 0.0 and p.top == [] and p.uncertain
        assert p.probabilities == [0.0] * 10
        assert p.heatmap is not None and p.heatmap.max() == 0.0
        assert p.to_dict()["digit"] is None


def test_bad_arguments(recognizer, tmp_path):
    with pytest.raises(DigitlabError, match="top_k"):
        recognizer.predict(np.zeros((28, 28)), top_k=0)
    with pytest.raises(DigitlabError, match="top_k"):
        recognizer.predict(np.zeros((28, 28)), top_k=11)
    with pytest.raises(ImageError, match="no such file"):
        recognizer.predict(tmp_path / "nope.png")
    with pytest.raises(ImageError, match=r"image 2|nope2"):
        recognizer.predict_batch([np.zeros((28, 28)), tmp_path / "nope2.png"])


def test_heatmap_is_aligned_with_the_input(recognizer, mnist):
    """The map is the input's size and its weight lies on the digit, wherever it was drawn."""
    field = synth.place(synth.redraw(mnist.test_images[0], 120), (300, 420), 260, 150)
    img = Image.fromarray(((1 - field) * 255).astype(np.uint8))
    p = recognizer.predict(img, explain=True)
    assert p.heatmap.shape == (300, 420) and p.heatmap.dtype == np.float32
    assert p.heatmap.min() >= 0.0 and p.heatmap.max() == pytest.approx(1.0, abs=0.05)
    x0, y0, x1, y1 = ink_box((field * 255).astype(np.uint8), 60)
    pad = 20
    inside = p.heatmap[max(0, y0 - pad) : y1 + pad, max(0, x0 - pad) : x1 + pad].sum()
    assert inside / p.heatmap.sum() > 0.95
    ys, xs = np.nonzero(p.heatmap > 0.5)
    assert (
        x0 - pad <= xs.min()
        and xs.max() <= x1 + pad
        and y0 - pad <= ys.min() <= ys.max() <= y1 + pad
    )


def test_gradient_saliency_for_torch(recognizer, mnist):
    from digitlab.engine.explain import explain_prediction

    ratios = []
    for image in mnist.test_images[:20]:
        pre = to_model_input(image)
        pred = recognizer.predict_preprocessed([pre])[0]
        heat = explain_prediction(recognizer, pre, pred, method="gradient")
        assert heat.shape == (28, 28) and heat.max() == pytest.approx(1.0, abs=0.05)
        ratios.append(heat[image > 0].mean() / heat[image == 0].mean())
    # Saliency concentrates on the ink (a map that ignored the image would give about 1x):
    # 3.3x the paper's on average for the clean-recipe model, 1.98x for the bundled model
    # trained on degraded digits, which also weighs the paper around faint or blurred strokes.
    assert np.mean(ratios) > 1.5


# --------------------------------------------------------------------------------------------
# Confidence, calibration, "not sure"
# --------------------------------------------------------------------------------------------


def test_temperature_softmax():
    logits = np.array([[2.0, 1.0, 0.0]])
    assert softmax(logits, 1.0)[0] == pytest.approx(np.exp([2, 1, 0]) / np.exp([2, 1, 0]).sum())
    assert softmax(logits, 2.0)[0, 0] < softmax(logits, 1.0)[0, 0]  # warmer = less sure


def test_fit_temperature_recovers_a_known_temperature():
    rng = np.random.default_rng(0)
    true_t = 2.5
    logits = rng.normal(0, 4, (20_000, 10))
    labels = np.array([rng.choice(10, p=row) for row in softmax(logits, true_t)])
    assert calibrate.fit_temperature(logits, labels) == pytest.approx(true_t, rel=0.05)
    probs = softmax(logits, true_t)
    assert calibrate.expected_calibration_error(probs, labels) < 0.02
    assert calibrate.expected_calibration_error(softmax(logits, 1.0), labels) > 0.1
    with pytest.raises(DigitlabError, match="labels"):
        calibrate.fit_temperature(logits, labels[:5])


def test_calibration_on_the_validation_split_lowers_test_ece(recognizer, mnist):
    from digitlab.training.data import split_indices

    _, val = split_indices(60_000, 5_000, seed=0)
    test = sample(3000, seed=2)
    t = calibrate.fit_temperature(
        recognizer.logits(mnist.train_images[val]), mnist.train_labels[val]
    )
    logits = recognizer.logits(mnist.test_images[test])
    labels = mnist.test_labels[test]
    before = calibrate.expected_calibration_error(softmax(logits, 1.0), labels)
    after = calibrate.expected_calibration_error(softmax(logits, t), labels)
    assert after <= before + 0.002
    assert after < 0.01


def test_uncertain_flags_the_errors_not_the_digits(recognizer, mnist):
    # 4,000 images, so that the model's errors are enough to measure a share of: 1,500 held only
    # 5 errors of the bundled model (2 flagged); these 4,000 hold 13 (10 flagged, 77%).
    idx = sample(4000, seed=9)
    preds = recognizer.predict_batch(list(mnist.test_images[idx]))
    wrong = np.array([p.digit != y for p, y in zip(preds, mnist.test_labels[idx], strict=True)])
    unsure = np.array([p.uncertain for p in preds])
    assert unsure.mean() < 0.06  # real digits are mostly read with confidence
    assert unsure[wrong].mean() >= 0.5  # most mistakes come flagged
    assert wrong[~unsure].mean() < 0.005  # what is not flagged is right
    assert all(p.confidence >= CONFIDENCE_THRESHOLD for p in np.array(preds)[~unsure])


def test_scribbles_and_letters_mostly_come_out_uncertain(recognizer):
    rng = np.random.default_rng(5)
    scribbles = [synth.scribble(rng) for _ in range(60)]
    letters = [synth.letter(ch, rng) for ch in "ABCDEFGHJKLMNPQRTUVWXY" * 3]
    for name, images in (("scribbles", scribbles), ("letters", letters)):
        share = np.mean([p.uncertain for p in recognizer.predict_batch(images)])
        assert share >= 0.5, f"only {share:.0%} of {name} flagged uncertain"


def test_stability_views_read_only_for_unsure_looking_images(recognizer, canvases, monkeypatch):
    """A confident reading costs one forward pass; a less confident one adds its four views,
    and the flag then follows the mean over the five readings, as the rule says."""
    from digitlab.engine import recognizer as R

    images, _ = canvases
    items = [to_model_input(im) for im in images[:40]]
    passes: list[int] = []
    logits = recognizer.logits

    def counting(batch):
        passes.append(len(batch))
        return logits(batch)

    monkeypatch.setattr(recognizer, "logits", counting)
    preds = recognizer.predict_preprocessed(items)
    confident = [p.confidence >= R.STABILITY_CHECK_BELOW for p in preds]
    assert sum(confident) >= 30  # most canvas digits skip the views
    views = len(R.STABILITY_ROTATIONS) + len(R.STABILITY_SCALES)
    assert passes[0] == 40 and sum(passes[1:]) <= views * (40 - sum(confident))

    # Checking every image: the flags are exactly the rule computed by hand here, and only
    # images that no other rule flags had their views read.
    monkeypatch.setattr(R, "STABILITY_CHECK_BELOW", 2.0)
    passes.clear()
    everything = recognizer.predict_preprocessed(items)
    calls = list(passes)
    needed = 0
    for item, p in zip(items, everything, strict=True):
        stack = np.stack([item.image, *R.stability_views(item.image)])
        probs = softmax(logits(stack), recognizer.temperature)
        energy = float(recognizer.energies(stack[:1])[0])
        want = R.is_uncertain(probs[0], stability=probs[:, p.digit].mean(), energy=energy)
        assert p.uncertain == want
        needed += not R.is_uncertain(probs[0], energy=energy)
    assert calls == [40, needed * views]
    # Skipping the views never unflags an image the other rules flag.
    assert all(b.uncertain for a, b in zip(preds, everything, strict=True) if a.uncertain)


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def test_info_describes_the_model(recognizer):
    info = recognizer.info
    assert info.backend == "torch" and info.device == "cpu" and info.name
    assert info.parameters > 1000
    assert info.temperature > 0 and info.source.endswith(".pt")
    assert set(info.to_dict()) == {
        "name",
        "config",
        "parameters",
        "source",
        "backend",
        "device",
        "temperature",
        "energy_reference",
        "val_accuracy",
        "test_accuracy",
        "epoch",
        "digitlab_version",
        "quantization",
    }
    json.dumps(info.to_dict())


def test_a_model_trained_without_validation_has_no_val_accuracy(tmp_path):
    """``--val-size 0`` runs record NaN validation metrics; the info carries None (JSON-safe)."""
    from digitlab.training.checkpoint import save_checkpoint
    from digitlab.training.models import create_model, model_config

    path = tmp_path / "full.pt"
    save_checkpoint(
        path,
        model_name="digitnet_fast",
        model_config=model_config("digitnet_fast"),
        model=create_model("digitnet_fast"),
        epoch=1,
        metrics={"val_acc": float("nan"), "test_acc": 0.9},
    )
    info = load_model(path).info
    assert info.val_accuracy is None and info.test_accuracy == 0.9
    json.dumps(info.to_dict(), allow_nan=False)


def test_energies_are_put_on_the_reference_scale(tmp_path, mnist):
    """A model that records its own energy scale (median energy of its validation digits) has
    its energies rescaled to ENERGY_REFERENCE, so the thresholds mean the same for any model;
    a checkpoint without one is taken as it is."""
    import torch

    from digitlab.engine.calibrate import logsumexp
    from digitlab.engine.recognizer import ENERGY_REFERENCE
    from digitlab.training.checkpoint import save_checkpoint
    from digitlab.training.models import create_model, model_config

    torch.manual_seed(0)
    model = create_model("digitnet_fast")
    images = mnist.test_images[:20]
    paths = {}
    for name, extra in (("plain", None), ("scaled", {"energy_reference": 2 * ENERGY_REFERENCE})):
        paths[name] = tmp_path / f"{name}.pt"
        save_checkpoint(
            paths[name],
            model_name="digitnet_fast",
            model_config=model_config("digitnet_fast"),
            model=model,
            temperature=0.5,
            extra=extra,
        )
    plain, scaled = load_model(paths["plain"]), load_model(paths["scaled"])
    raw = logsumexp(plain.logits(images) / 0.5)
    np.testing.assert_allclose(plain.energies(images), raw, rtol=1e-6)
    np.testing.assert_allclose(scaled.energies(images), raw / 2, rtol=1e-6)


def test_load_model_errors(tmp_path):
    with pytest.raises(CheckpointError, match=r"missing\.pt: no such file"):
        load_model(tmp_path / "missing.pt")
    with pytest.raises(CheckpointError, match=r"missing\.onnx: no such file"):
        load_model(tmp_path / "missing.onnx")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(CheckpointError, match=r"junk\.pt"):
        load_model(junk)
    bad_onnx = tmp_path / "bad.onnx"
    bad_onnx.write_bytes(b"not onnx")
    with pytest.raises(CheckpointError, match=r"bad\.onnx"):
        load_model(bad_onnx)
    with pytest.raises(DigitlabError, match="backend"):
        load_model(None, backend="tensorflow")
    assert load_model(load_model(None)).info.backend == "torch"


def test_onnx_backend_gives_the_same_predictions(recognizer, canvases, tmp_path):
    pytest.importorskip("onnxruntime")
    from digitlab.training.export import export_onnx

    path = tmp_path / "model.onnx"
    export_onnx(None, path, verify=False, speed=False)
    rec = load_model(path)
    assert rec.info.backend == "onnx" and rec.info.name == recognizer.info.name
    assert load_model(path, backend="onnx").info.backend == "onnx"
    images, _ = canvases
    for a, b in zip(
        rec.predict_batch(images[:30]), recognizer.predict_batch(images[:30]), strict=True
    ):
        assert a.digit == b.digit
        assert a.probabilities == pytest.approx(b.probabilities, abs=1e-3)
    heat = rec.predict(images[0], explain=True).heatmap
    assert heat.shape == images[0].size[::-1] and heat.max() > 0.9
    number = rec.read_number(images[0])
    assert isinstance(number, NumberResult)


@pytest.mark.parametrize("dark_on_light", [False, True])
def test_digits_cropped_tight_are_read(recognizer, mnist, dark_on_light):
    """Ink touching every edge, strokes as wide as the light-flattening's blocks: the plain
    threshold reading (with the plain histogram's polarity) wins. Measured on 200 test digits
    at 96 px: 91.0% light-on-dark and 92.5% dark-on-light (before the plain alternative
    existed: 23.5% and 30.0%)."""
    n = 100
    images = [synth.cropped_tight(mnist.test_images[i], 96, dark_on_light) for i in range(n)]
    preds = recognizer.predict_batch(images)
    acc = np.mean([p.digit == int(y) for p, y in zip(preds, mnist.test_labels[:n], strict=True)])
    assert acc >= 0.85, acc  # measured on these 100: 90% and 93%
