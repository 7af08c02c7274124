"""Reading request bodies: FastAPI dependencies that hand the routes raw image bytes.

Clients only ever send image bytes (a multipart file or a base64 data URL in JSON): the routes
decode them with the one decoder, :mod:`digitlab.engine.decode`, so no request can make the
server read a path or load a model. Problems with the request's shape (a wrong Content-Type, a
missing field, malformed JSON) are 415/422 with a message naming the field.

The bodies are parsed by hand rather than declared as FastAPI parameters because one route
takes either multipart or JSON; their OpenAPI description is :func:`body_doc`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from pydantic import BaseModel, ValidationError
from starlette.datastructures import UploadFile

from digitlab.apps.server.errors import UNPROCESSABLE, UNSUPPORTED, http_error
from digitlab.apps.server.schemas import (
    MAX_STROKE_POINTS,
    MAX_STROKES,
    ImageJSON,
    ImagesJSON,
    NumberJSON,
)
from digitlab.core.constants import IMAGE_FORMATS_TEXT, MAX_IMAGE_PIXELS
from digitlab.core.errors import DigitlabError
from digitlab.engine.decode import decode_data_url

# How error messages name the image of a one-image request (batch images are "image N").
UPLOAD = "the upload"
# A stroke point: [x, y] or [x, y, t_ms].
POINT_LENGTHS = (2, 3)

_UNSUPPORTED_BODY = (
    "send the image as multipart/form-data (field {field!r}) or as JSON "
    '{{"{key}": "data:image/png;base64,..."}}; got Content-Type {ctype!r}'
)

Strokes = list[list[tuple[float, ...]]]


@dataclass
class NumberUpload:
    """The body of ``POST /api/number``: the image and, optionally, its strokes."""

    data: bytes
    strokes: Strokes | None = None


@dataclass
class BatchItem:
    """One image of a batch: its bytes, or why they could not be read."""

    name: str
    data: bytes = b""
    error: DigitlabError | None = None


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def _is_json(media_type: str) -> bool:
    return media_type == "application/json" or media_type.endswith("+json")


async def _multipart(
    request: Request, names: tuple[str, ...], text_fields: tuple[str, ...] = ()
) -> tuple[list[bytes], dict[str, str]]:
    """The files uploaded under any of ``names`` (in order) and the text ``text_fields``."""
    async with request.form() as form:
        items = form.multi_items()
        uploads = [v for k, v in items if k in names and isinstance(v, UploadFile)]
        texts = [k for k, v in items if k in names and not isinstance(v, UploadFile)]
        if texts and not uploads:
            raise http_error(
                UNPROCESSABLE, f"multipart field {texts[0]!r} must be a file upload, not text"
            )
        if not uploads:
            got = sorted({k for k, _ in items}) or ["none"]
            raise http_error(
                UNPROCESSABLE,
                f"multipart field {names[0]!r} is missing (got fields: {', '.join(got)})",
            )
        extra: dict[str, str] = {}
        for k, v in items:
            if k in text_fields:
                if not isinstance(v, str):
                    raise http_error(UNPROCESSABLE, f"multipart field {k!r} must be text")
                extra[k] = v
        return [await upload.read() for upload in uploads], extra


async def _json_body(request: Request, model: type[BaseModel]) -> Any:
    raw = await request.body()
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()
        )
        raise http_error(UNPROCESSABLE, f"invalid JSON body: {problems}") from None


def _unsupported(field: str, key: str, media_type: str) -> Exception:
    return http_error(UNSUPPORTED, _UNSUPPORTED_BODY.format(field=field, key=key, ctype=media_type))


async def _single_file(request: Request, text_fields: tuple[str, ...] = ()) -> tuple[bytes, dict]:
    files, extra = await _multipart(request, ("file",), text_fields)
    if len(files) > 1:
        raise http_error(
            UNPROCESSABLE,
            f"send one file in field 'file' (got {len(files)}); use /api/predict/batch for several",
        )
    return files[0], extra


async def one_image(request: Request) -> bytes:
    """The single image of a request, from multipart field ``file`` or JSON ``image``."""
    media_type = _media_type(request)
    if media_type == "multipart/form-data":
        return (await _single_file(request))[0]
    if _is_json(media_type):
        body = await _json_body(request, ImageJSON)
        return decode_data_url(body.image, UPLOAD)
    raise _unsupported("file", "image", media_type)


async def number_upload(request: Request) -> NumberUpload:
    """The image of a number and its optional ``strokes`` (multipart text field or JSON)."""
    media_type = _media_type(request)
    if media_type == "multipart/form-data":
        data, extra = await _single_file(request, ("strokes",))
        raw = extra.get("strokes")
        if raw is None:
            return NumberUpload(data)
        try:
            value = json.loads(raw)
        except ValueError as exc:
            raise http_error(UNPROCESSABLE, f"strokes: not valid JSON ({exc})") from None
        return NumberUpload(data, parse_strokes(value))
    if _is_json(media_type):
        body = await _json_body(request, NumberJSON)
        return NumberUpload(decode_data_url(body.image, UPLOAD), parse_strokes(body.strokes))
    raise _unsupported("file", "image", media_type)


async def batch_images(request: Request) -> list[BatchItem]:
    """The images of a batch request, in order (multipart ``files``/``file`` or JSON ``images``).

    An image whose data URL is malformed becomes an item with its error (answered on its own);
    an empty batch or one over the limit fails the whole request.
    """
    max_count = request.app.state.settings.max_batch
    media_type = _media_type(request)
    if media_type == "multipart/form-data":
        files, _ = await _multipart(request, ("files", "file"))
        items = [BatchItem(f"image {i + 1}", data) for i, data in enumerate(files)]
    elif _is_json(media_type):
        body = await _json_body(request, ImagesJSON)
        if len(body.images) > max_count:
            _raise_too_many(len(body.images), max_count)
        items = [_data_url_item(f"image {i + 1}", t) for i, t in enumerate(body.images)]
    else:
        raise _unsupported("files", "images", media_type)
    if not items:
        raise http_error(UNPROCESSABLE, "the batch is empty: send at least one image")
    if len(items) > max_count:
        _raise_too_many(len(items), max_count)
    return items


def _data_url_item(name: str, text: str) -> BatchItem:
    try:
        return BatchItem(name, decode_data_url(text, name))
    except DigitlabError as exc:
        return BatchItem(name, error=exc)


def _raise_too_many(count: int, limit: int) -> None:
    raise http_error(413, f"too many images in one batch: {count} (the limit is {limit})")


def parse_strokes(value: Any) -> Strokes | None:
    """Check ``strokes``: a list of strokes, each a list of [x, y] or [x, y, t_ms] finite
    numbers, at most :data:`MAX_STROKES` strokes and :data:`MAX_STROKE_POINTS` points in all.

    Raises a 422 naming the field (and the first bad stroke or point).
    """
    if value is None:
        return None

    def bad(why: str) -> Exception:
        return http_error(UNPROCESSABLE, f"strokes: {why}")

    if not isinstance(value, list):
        raise bad("must be a list of strokes, each a list of [x, y] points")
    if len(value) > MAX_STROKES:
        raise bad(f"{len(value)} strokes, the limit is {MAX_STROKES}")
    total = 0
    strokes: Strokes = []
    for i, stroke in enumerate(value):
        if not isinstance(stroke, list):
            raise bad(f"stroke {i} must be a list of [x, y] points")
        total += len(stroke)
        if total > MAX_STROKE_POINTS:
            raise bad(f"more than {MAX_STROKE_POINTS:,} points in all")
        points = []
        for j, point in enumerate(stroke):
            if (
                not isinstance(point, (list, tuple))
                or len(point) not in POINT_LENGTHS
                or not all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                    for v in point
                )
            ):
                raise bad(
                    f"stroke {i} point {j} must be [x, y] or [x, y, t_ms] of finite numbers, "
                    f"got {str(point)[:60]}"
                )
            points.append(tuple(float(v) for v in point))
        strokes.append(points)
    return strokes


def body_doc(field: str, key: str, *, many: bool, strokes: bool = False) -> dict[str, Any]:
    """OpenAPI ``requestBody`` for a route that takes multipart ``field`` or JSON ``key``."""
    file_schema: dict[str, Any] = {"type": "string", "format": "binary"}
    text_schema: dict[str, Any] = {"type": "string", "example": "data:image/png;base64,iVBORw0..."}
    what = "images" if many else "an image"
    formats = f"{IMAGE_FORMATS_TEXT}; at most {MAX_IMAGE_PIXELS:,} pixels by default"
    if many:
        file_schema = {"type": "array", "items": file_schema}
        text_schema = {"type": "array", "items": text_schema}
    file_schema["description"] = f"{what} ({formats})" + (", repeat the field" if many else "")
    text_schema["description"] = f"{what} as data:image/...;base64 URL(s) (or bare base64)"
    form_props: dict[str, Any] = {field: file_schema}
    json_props: dict[str, Any] = {key: text_schema}
    if strokes:
        stroke_schema = NumberJSON.model_json_schema()["properties"]["strokes"]
        json_props["strokes"] = stroke_schema
        form_props["strokes"] = {
            "type": "string",
            "description": "optional: the strokes as JSON text (same shape as in the JSON body)",
        }
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {"type": "object", "required": [field], "properties": form_props}
                },
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": [key],
                        "additionalProperties": False,
                        "properties": json_props,
                    }
                },
            },
        }
    }


ImageUpload = Annotated[bytes, Depends(one_image)]
NumberBody = Annotated[NumberUpload, Depends(number_upload)]
BatchUpload = Annotated[list[BatchItem], Depends(batch_images)]
