"""The recognition routes: ``/api/predict``, ``/api/predict/batch`` and ``/api/number``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query

from digitlab.apps.server.routes.deps import Service, WantImages
from digitlab.apps.server.schemas import BatchOut, ErrorOut, NumberOut, PredictionOut
from digitlab.apps.server.uploads import BatchUpload, ImageUpload, NumberBody, body_doc

router = APIRouter(prefix="/api", tags=["recognition"])

ERRORS: dict[int | str, dict[str, Any]] = {
    408: {"model": ErrorOut, "description": "the body did not arrive in time"},
    413: {"model": ErrorOut, "description": "body, batch or pixel count over the limit"},
    415: {"model": ErrorOut, "description": "not an image in a supported format"},
    422: {"model": ErrorOut, "description": "truncated/corrupt image or malformed request"},
}
# A batch answers 200 with an error object for each bad image: its own errors are about the
# request as a whole.
BATCH_ERRORS = {
    **{k: v for k, v in ERRORS.items() if k != 415},
    413: {"model": ErrorOut, "description": "body or image count over the limit"},
    422: {"model": ErrorOut, "description": "malformed request or an empty batch"},
}


@router.post(
    "/predict",
    response_model=PredictionOut,
    responses=ERRORS,
    openapi_extra=body_doc("file", "image", many=False),
    summary="Recognise one digit",
)
async def predict(
    data: ImageUpload,
    service: Service,
    explain: bool = Query(False, description="also return a heat map of where it looked"),
    images: WantImages = True,
) -> dict[str, Any]:
    """One image as multipart field `file` or JSON `{"image": "data:image/...;base64,..."}`."""
    return await service.predict(data, explain=explain, images=images)


@router.post(
    "/predict/batch",
    response_model=BatchOut,
    responses=BATCH_ERRORS,
    openapi_extra=body_doc("files", "images", many=True),
    summary="Recognise several single digits",
)
async def predict_batch(items: BatchUpload, service: Service, images: WantImages = True) -> dict:
    """Several images (multipart fields `files`, or JSON `images`); results in order.

    Each image is answered on its own: one that cannot be read (not an image, truncated, too
    many pixels) gets `{"status": 415, "detail": "image 2: ..."}` in its place, with the status
    it would have had alone, and the others still get their predictions (the response is 200).
    """
    return {"results": await service.predict_batch(items, images=images)}


@router.post(
    "/number",
    response_model=NumberOut,
    responses=ERRORS,
    openapi_extra=body_doc("file", "image", many=False, strokes=True),
    summary="Read a multi-digit number",
)
async def number(body: NumberBody, service: Service, images: WantImages = True) -> dict:
    """One image with several digits side by side; each digit's box is in input pixels.

    Optionally with `strokes` (the drawing's strokes in order, each a list of [x, y] or
    [x, y, t_ms] points in image pixels: JSON field, or a multipart text field holding that
    JSON), which the recogniser uses to separate touching digits when it supports them.
    """
    return await service.read_number(body.data, strokes=body.strokes, images=images)
