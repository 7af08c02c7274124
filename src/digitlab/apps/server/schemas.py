"""The API's request and response models (pydantic): what ``/openapi.json`` documents."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# Strokes sent with a drawing (``POST /api/number``): bounded so that a request cannot make the
# server hold or walk an unbounded list.
MAX_STROKES = 200
MAX_STROKE_POINTS = 10_000


class TopEntry(BaseModel):
    """One of the most likely digits."""

    digit: int = Field(ge=0, le=9)
    probability: float = Field(ge=0.0, le=1.0)


class PredictionOut(BaseModel):
    """What the model thinks one image shows."""

    digit: int | None = Field(description="the digit, or null when the image shows no digit")
    confidence: float = Field(description="probability of `digit` (0 when there is none)")
    probabilities: list[float] = Field(description="probability of each digit 0-9")
    top: list[TopEntry] = Field(description="the three most likely digits, best first")
    uncertain: bool = Field(description="true when the model is not sure (or sees no digit)")
    preprocessed: str | None = Field(
        default=None,
        description="PNG data URL of the 28x28 image the model saw (ink white); "
        "absent with ?images=false",
    )
    heatmap: str | None = Field(
        default=None,
        description="PNG data URL of where the model looked, the size of the input "
        "(only with ?explain=true)",
    )


class ItemError(BaseModel):
    """A batch item that could not be read: its status code and what was wrong."""

    status: int = Field(description="the HTTP status the image alone would have got (413/415/422)")
    detail: str = Field(description='what was wrong, naming the image ("image 2: ...")')


class BatchOut(BaseModel):
    """Results for several images, in the order they were sent: a prediction per image, or an
    error object for an image that could not be read (the others are still answered)."""

    results: list[PredictionOut | ItemError]


class DigitBoxOut(BaseModel):
    """One digit of a number: where it is in the input image and what it is."""

    x: int
    y: int
    width: int
    height: int
    prediction: PredictionOut


class NumberOut(BaseModel):
    """A multi-digit number read left to right."""

    number: str = Field(description='the digits read left to right ("" when none)')
    digits: list[DigitBoxOut]
    uncertain: bool = Field(description="true when any digit is uncertain or none was found")


class Limits(BaseModel):
    """What this server accepts."""

    max_body_bytes: int
    max_pixels: int
    max_batch: int
    formats: list[str]


class ModelOut(BaseModel):
    """The model answering requests."""

    model_config = ConfigDict(protected_namespaces=())

    name: str
    parameters: int
    source: str = Field(description="where the model was loaded from")
    backend: str
    device: str = Field(description='where the network runs: "cpu", or a GPU such as "cuda:0"')
    temperature: float
    val_accuracy: float | None
    test_accuracy: float | None
    cut_scorer: str | None = Field(
        default=None,
        description="where the network that scores a number's candidate cuts was loaded from "
        "(null: the model scores them itself)",
    )
    limits: Limits
    feedback: dict[str, Any] | None = Field(
        default=None,
        description="whether corrections are kept (enabled, exposed, admin_required, store)",
    )


class HealthOut(BaseModel):
    """Liveness answer."""

    status: Literal["ok"]
    version: str


class ErrorOut(BaseModel):
    """Every error response: ``detail`` says what was wrong."""

    detail: str


# A point of a stroke: [x, y] or [x, y, t_ms], in input-image pixels (finite numbers).
Point = list[float]


class ImageJSON(BaseModel):
    """One image as a ``data:image/...;base64,...`` URL (or bare base64)."""

    model_config = ConfigDict(extra="forbid")

    image: str = Field(description="data:image/png;base64,... (or bare base64 of the file)")


class NumberJSON(ImageJSON):
    """An image of a number, optionally with the strokes that drew it."""

    strokes: list[list[Point]] | None = Field(
        default=None,
        description=(
            "the strokes in drawing order, each a list of [x, y] or [x, y, t_ms] points in "
            f"image pixels (at most {MAX_STROKES} strokes and {MAX_STROKE_POINTS:,} points)"
        ),
    )


class ImagesJSON(BaseModel):
    """Several images as data URLs."""

    model_config = ConfigDict(extra="forbid")

    images: list[str]
