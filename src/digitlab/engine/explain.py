"""Heat maps: which pixels made the model say what it said.

Two methods, both returning a (28, 28) float32 map in [0, 1] over the model's input:

* :func:`occlusion_map` (default, any backend including ONNX): slide a paper-coloured patch
  over the 28x28 input and record how much the predicted digit's probability drops while each
  pixel is hidden. Model-agnostic and easy to read: bright = "without this ink it would not
  be a 7".
* :func:`gradient_map` (torch backends): the gradient of the digit's logit with respect to
  each input pixel, times the input (gradient x input saliency), smoothed.

:func:`to_input_space` maps a 28x28 map back onto the input image through the affine transform
preprocessing recorded, so the heat map lines up with what the user drew or photographed.
:func:`heatmap_rgba` and :func:`overlay` turn a map into pictures.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageFilter

from digitlab.engine.preprocess import Preprocessed

if TYPE_CHECKING:
    from digitlab.engine.recognizer import Prediction, Recognizer

# Occlusion: a 6x6 patch (about a stroke's length, twice MNIST's ~2-3 px stroke width) moved in
# steps of 2 px: 12x12 = 144 occluded copies, one batch through the model.
OCCLUSION_PATCH = 6
OCCLUSION_STRIDE = 2
# Final smoothing of maps, in 28x28 pixels (hides the patch grid).
SMOOTH_SIGMA = 1.0
# Heat-map overlay: the map's alpha is value ** ALPHA_GAMMA * MAX_ALPHA (faint areas fade out).
MAX_ALPHA = 200
ALPHA_GAMMA = 0.7
# Opacity of the heat map when blended over the input image (overlay()).
OVERLAY_OPACITY = 0.6


def _normalise(m: np.ndarray) -> np.ndarray:
    """Clip negatives, scale to [0, 1] (all zero stays all zero)."""
    m = np.clip(np.asarray(m, dtype=np.float32), 0.0, None)
    top = float(m.max(initial=0.0))
    return m / top if top > 0 else m


def _smooth(m: np.ndarray, sigma: float = SMOOTH_SIGMA) -> np.ndarray:
    """Gaussian blur of a small float map (via an 8-bit Pillow image; precision is ample)."""
    m = _normalise(m)
    img = Image.fromarray((m * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(sigma))
    return _normalise(np.asarray(img, dtype=np.float32))


def occlusion_map(
    probabilities: Any,
    image: np.ndarray,
    target: int,
    *,
    patch: int = OCCLUSION_PATCH,
    stride: int = OCCLUSION_STRIDE,
) -> np.ndarray:
    """Occlusion sensitivity of class ``target`` for one (28, 28) uint8 model input.

    ``probabilities`` maps (N, 28, 28) uint8 inputs to (N, 10) probabilities (e.g.
    ``Recognizer.probabilities``). Each pixel scores the mean drop of the target probability
    over the patches that hide it.
    """
    size = image.shape[0]
    starts = list(range(0, size - patch + 1, stride))
    copies = []
    for y in starts:
        for x in starts:
            c = image.copy()
            c[y : y + patch, x : x + patch] = 0
            copies.append(c)
    probs = np.asarray(probabilities(np.stack([image, *copies])))
    base = float(probs[0, target])
    drops = np.clip(base - probs[1:, target], 0.0, None)
    total = np.zeros(image.shape, np.float32)
    count = np.zeros(image.shape, np.float32)
    k = 0
    for y in starts:
        for x in starts:
            total[y : y + patch, x : x + patch] += drops[k]
            count[y : y + patch, x : x + patch] += 1
            k += 1
    return _smooth(total / np.maximum(count, 1))


def gradient_map(backend: Any, image: np.ndarray, target: int) -> np.ndarray:
    """Gradient x input saliency of class ``target`` (needs ``backend.input_gradient``)."""
    x = (image.astype(np.float32) / 255.0)[None, None]
    grad = backend.input_gradient(x, [target])[0, 0]
    return _smooth(np.abs(grad * x[0, 0]) + 0.25 * np.abs(grad))


def to_input_space(heat: np.ndarray, pre: Preprocessed) -> np.ndarray:
    """Draw a 28x28 map back over the input image: (H, W) float32 in [0, 1]."""
    width, height = pre.input_size
    img = Image.fromarray(np.asarray(heat, dtype=np.float32), mode="F")
    out = img.transform((width, height), Image.AFFINE, pre.affine, resample=Image.BILINEAR)
    return np.clip(np.asarray(out, dtype=np.float32), 0.0, 1.0)


def explain_prediction(
    recognizer: Recognizer, pre: Preprocessed, prediction: Prediction, *, method: str = "occlusion"
) -> np.ndarray:
    """Heat map for a prediction, aligned with the input image ((H, W) float32, [0, 1]).

    ``method`` "occlusion" works for every backend; "gradient" needs a torch backend. An image
    without a digit gets an all-zero map.
    """
    width, height = pre.input_size
    if prediction.digit is None or not pre.has_ink:
        return np.zeros((height, width), np.float32)
    if method == "gradient" and hasattr(recognizer.backend, "input_gradient"):
        heat = gradient_map(recognizer.backend, pre.image, prediction.digit)
    else:
        heat = occlusion_map(recognizer.probabilities, pre.image, prediction.digit)
    return to_input_space(heat, pre)


def _colormap(v: np.ndarray) -> np.ndarray:
    """Blue -> cyan -> yellow -> red for values in [0, 1]: (..., 3) uint8."""
    stops = np.array([0.0, 0.35, 0.65, 1.0])
    colours = np.array([[40, 60, 255], [0, 220, 255], [255, 230, 0], [255, 30, 0]], float)
    rgb = np.stack([np.interp(v, stops, colours[:, c]) for c in range(3)], axis=-1)
    return rgb.astype(np.uint8)


def heatmap_rgba(heat: np.ndarray) -> Image.Image:
    """A heat map as an RGBA overlay (transparent where the map is 0)."""
    v = np.clip(np.asarray(heat, dtype=np.float32), 0.0, 1.0)
    rgba = np.empty((*v.shape, 4), np.uint8)
    rgba[..., :3] = _colormap(v)
    rgba[..., 3] = (np.power(v, ALPHA_GAMMA) * MAX_ALPHA).astype(np.uint8)
    return Image.fromarray(rgba, mode="RGBA")


def overlay(image: Image.Image, heat: np.ndarray, opacity: float = OVERLAY_OPACITY) -> Image.Image:
    """The input image (as RGB) with the heat map blended over it."""
    base = image.convert("RGBA")
    layer = heatmap_rgba(heat)
    if layer.size != base.size:
        layer = layer.resize(base.size, Image.BILINEAR)
    alpha = np.asarray(layer.getchannel("A"), dtype=np.float32) * opacity
    layer.putalpha(Image.fromarray(alpha.astype(np.uint8)))
    return Image.alpha_composite(base, layer).convert("RGB")
