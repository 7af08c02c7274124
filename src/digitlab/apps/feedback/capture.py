"""An image and its right answer -> a correction ready to store, with what the model saw.

Every front end (the API, the desktop app, ``digitlab feedback add``) makes its corrections
here, so each stores the same things: the image bytes as given, the 28x28 input(s) the model
saw (one tile for a digit; for a number, one per digit the segmentation found), the prediction,
the right label and the model's id. Decoding goes through :mod:`digitlab.engine.decode` (typed
errors: too large, unsupported, broken).
"""

from __future__ import annotations

import hashlib
import secrets
from pathlib import Path
from typing import Any

import numpy as np

from digitlab.apps.feedback.store import NewCorrection, check_label, check_source
from digitlab.core.constants import IMAGE_SIDE, MAX_IMAGE_PIXELS
from digitlab.engine.decode import load_image


def model_id(recognizer: Any) -> str:
    """A short id of the model answering: its network name and file, e.g.
    ``digitnet:default.pt`` or ``digitnet:personal.pt``."""
    info = recognizer.info
    source = Path(str(info.source)).name if info.source else "unknown"
    return f"{info.name}:{source}"


def undo_token() -> tuple[str, str]:
    """A fresh undo token for a client and the hash the store keeps of it."""
    token = secrets.token_urlsafe(24)
    return token, hash_token(token)


def hash_token(token: str) -> str:
    """SHA-256 (hex) of an undo token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def make_correction(
    recognizer: Any,
    data: bytes,
    label: object,
    *,
    predicted: object = None,
    source: str = "api",
    name: str = "the image",
    max_pixels: int = MAX_IMAGE_PIXELS,
    undo_hash: str | None = None,
) -> NewCorrection:
    """Decode ``data``, run the model on it the way the front ends do, and build the
    correction: a one-digit ``label`` uses ``predict``, a longer one ``read_number``.

    ``predicted`` is what the user was shown (kept as given when given; else the model's
    answer now). Raises the decoder's typed ImageErrors and DigitlabError for a bad label.
    """
    label_text = check_label(label)
    check_source(source)
    image = load_image(bytes(data), max_pixels=max_pixels, name=name)
    if len(label_text) == 1:
        prediction = recognizer.predict(image)
        tiles = prediction.preprocessed[None]
        answer = "" if prediction.digit is None else str(prediction.digit)
    else:
        result = recognizer.read_number(image)
        tiles = (
            np.stack([d.prediction.preprocessed for d in result.digits])
            if result.digits
            else (np.zeros((0, IMAGE_SIDE, IMAGE_SIDE), np.uint8))
        )
        answer = result.number
    if predicted is not None and str(predicted).strip() != "":
        answer = check_label(predicted, "predicted")
    return NewCorrection(
        image=bytes(data),
        label=label_text,
        model_input=np.asarray(tiles, dtype=np.uint8),
        predicted=answer,
        model_id=model_id(recognizer),
        source=source,
        undo_hash=undo_hash,
    )
