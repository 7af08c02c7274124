"""digitlab's web app and REST API (``digitlab serve``).

One FastAPI application serves the drawing page at ``/`` (static files from
:mod:`digitlab.web`, no CDN), a small offline API reference at ``/docs`` and these routes:

==========================  ===============================================================
``POST /api/predict``       one image (multipart field ``file`` or JSON ``{"image": ...}``)
``POST /api/predict/batch`` several images (multipart fields ``files`` or JSON ``{"images"}``)
``POST /api/number``        a multi-digit number: the string plus one result per digit
``GET /api/model``          which model answers, its accuracy, and the server's input limits
``GET /healthz``            liveness
==========================  ===============================================================

Design:

* Settings live in one frozen dataclass, :class:`ServerSettings`; ``--workers N`` starts N
  uvicorn processes that each rebuild the settings from ``DIGITLAB_SERVE_*`` environment
  variables in the import-string factory :func:`create_app_from_env`.
* The model is loaded once per process in the lifespan hook and warmed up with one prediction.
* Every upload is checked before it is decoded: the body size is capped while it streams in
  (:class:`BodySizeLimitMiddleware`, 413), the image header must name an allowed format (415)
  and a pixel count under the limit (413, decompression bombs), and a file that fails to decode
  is a 422. Each error is JSON with a ``detail`` that names the problem.
* Clients only ever send image bytes: the server decodes them itself and hands the recogniser a
  PIL image, so no request can make it read a path or load a model.
* Inference runs in the thread pool, off the event loop, at most one request per core at a
  time (``inference_concurrency``), with one model thread each (``threads``). Measured in
  ``benchmarks/serve_load.py``: on 2 cores, one thread per forward pass keeps single-image
  latency stable, and two requests at once beat one (a global lock) by 6-40% in throughput
  (the machine was shared and noisy).
* ``/docs`` is this package's own page (``web/docs.html``) rendering ``/openapi.json``:
  FastAPI's Swagger UI and ReDoc pages load their scripts from a CDN and no installed package
  ships those assets, so they are switched off; the page must work offline.
"""

from __future__ import annotations

import base64
import binascii
import inspect
import io
import json
import logging
import os
import socket
import sys
import threading
import time
import warnings
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal

import uvicorn
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from PIL import Image, ImageDraw, UnidentifiedImageError
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from digitlab import __version__
from digitlab.core.errors import DigitlabError, ImageError

logger = logging.getLogger(__name__)

WEB_DIR = Path(__file__).resolve().parent / "web"

MEBIBYTE = 1024 * 1024
# A 12-megapixel phone JPEG is 3-6 MB and a drawing from the page is ~10 kB: 10 MiB is generous
# for real uploads and still small enough to hold in memory per request.
DEFAULT_MAX_BODY_BYTES = 10 * MEBIBYTE
# 8000 x 6000 = 48 MP is the largest common phone sensor; a decoded 50 MP RGB image is 150 MB.
# Anything bigger in a <= 10 MiB file is almost certainly a decompression bomb.
DEFAULT_MAX_PIXELS = 50_000_000
# One batch request's images; 64 canvas-sized PNGs decode and predict in well under a second.
DEFAULT_MAX_BATCH = 64
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
ENV_PREFIX = "DIGITLAB_SERVE_"
# Model threads per server process. One image is ~1 ms of work for one thread; a second
# thread cannot speed that up but, on a busy 2-core machine, makes the forward pass wait for a
# free core (measured: p50 1.1 ms with 1 thread, 5-7 ms with 2 under load). Scale with
# --workers instead.
DEFAULT_THREADS = 1
ORT_THREADS_ENV = "DIGITLAB_ORT_THREADS"  # read by digitlab.engine.backends.onnx
MAX_PORT = 65535  # TCP ports are 16-bit; 0 asks the OS for a free one
# Formats the server decodes (Pillow's names; "JPEG" also opens phone cameras' MPO files).
# Everything else (EPS, PDF, PSD, ...) is refused before a decoder runs.
ALLOWED_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF", "PPM")
ALLOWED_FORMATS_TEXT = "PNG, JPEG, GIF, BMP, WebP, TIFF or PPM"
# The warm-up image: a vertical stroke on a 28x28 field (a "1"), enough to run the model once.
WARM_UP_SIZE = 28
# How error messages name the image of a one-image request (batch images are "image N").
UPLOAD = "the upload"
# Top-k entries returned per prediction (the page shows the top three).
TOP_K = 3
# A header with these security settings goes on every response: the page loads nothing from
# outside this server (no CDN), so the policy can be strict.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)


# --------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerSettings:
    """Everything that configures a server process, in one place.

    ``model`` is a checkpoint or ``.onnx`` path chosen by whoever starts the server (``None`` =
    the bundled model); clients can never change it.
    """

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    model: str | None = None
    backend: str = "auto"
    workers: int = 1
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_batch: int = DEFAULT_MAX_BATCH
    threads: int = DEFAULT_THREADS
    inference_concurrency: int = 0
    access_log: bool = True

    def __post_init__(self) -> None:
        """Refuse settings that cannot work, naming the field."""
        positive = ("workers", "max_body_bytes", "max_pixels", "max_batch", "threads")
        for name in positive:
            if getattr(self, name) < 1:
                raise DigitlabError(
                    f"server setting {name} must be >= 1, got {getattr(self, name)}"
                )
        if self.inference_concurrency < 0:
            raise DigitlabError(
                "server setting inference_concurrency must be >= 0 (0 = one per CPU core), "
                f"got {self.inference_concurrency}"
            )
        if not 0 <= self.port <= MAX_PORT:
            raise DigitlabError(f"server setting port must be 0-65535, got {self.port}")

    def inference_slots(self) -> int:
        """Requests that may decode and run the model at once (0 = one per usable core)."""
        if self.inference_concurrency:
            return self.inference_concurrency
        try:
            return max(1, len(os.sched_getaffinity(0)))
        except AttributeError:  # not on Linux
            return max(1, os.cpu_count() or 1)

    @property
    def url(self) -> str:
        """The address people open (IPv6 hosts in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def to_env(self) -> dict[str, str]:
        """These settings as ``DIGITLAB_SERVE_*`` variables (read back by :meth:`from_env`)."""
        env = {}
        for key, value in asdict(self).items():
            if value is None:
                continue
            env[ENV_PREFIX + key.upper()] = str(int(value) if isinstance(value, bool) else value)
        return env

    @classmethod
    def from_env(cls, environ: MutableMapping[str, str] | None = None) -> ServerSettings:
        """Settings from ``DIGITLAB_SERVE_*`` variables; missing ones keep their defaults."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = environ.get(ENV_PREFIX + f.name.upper())
            if raw is None:
                continue
            values[f.name] = _parse_setting(f.name, raw, type(getattr(cls(), f.name)))
        return cls(**values)


def _parse_setting(name: str, raw: str, kind: type) -> Any:
    """Convert one environment value to the field's type, naming the variable on error."""
    try:
        if kind is bool:
            return raw.strip().lower() in {"1", "true", "yes", "on"}
        if kind is int:
            return int(raw)
    except ValueError:
        raise DigitlabError(f"{ENV_PREFIX}{name.upper()}={raw!r} is not an integer") from None
    return raw


def limit_threads(threads: int) -> None:
    """Cap the model's intra-op threads: ONNX Runtime (via its environment variable, for
    sessions created later) and PyTorch (when it is already imported; never imports it)."""
    os.environ.setdefault(ORT_THREADS_ENV, str(threads))
    torch = sys.modules.get("torch")
    if torch is not None and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def load_recognizer(settings: ServerSettings) -> Any:
    """Load ``settings.model`` with the thread limit applied (raises CheckpointError)."""
    from digitlab.api import load_model

    limit_threads(settings.threads)
    recognizer = load_model(settings.model, backend=settings.backend)
    limit_threads(settings.threads)
    return recognizer


# --------------------------------------------------------------------------------------------
# Response models
# --------------------------------------------------------------------------------------------


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
        default=None, description="PNG data URL of the 28x28 image the model saw (ink white)"
    )
    heatmap: str | None = Field(
        default=None,
        description="PNG data URL of where the model looked, the size of the input "
        "(only with ?explain=true)",
    )


class BatchOut(BaseModel):
    """Results for several images, in the order they were sent."""

    results: list[PredictionOut]


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
    temperature: float
    val_accuracy: float | None
    test_accuracy: float | None
    limits: Limits


class HealthOut(BaseModel):
    """Liveness answer."""

    status: Literal["ok"]
    version: str


class ErrorOut(BaseModel):
    """Every error response: ``detail`` says what was wrong."""

    detail: str


class ImageJSON(BaseModel):
    """One image as a ``data:image/...;base64,...`` URL (or bare base64)."""

    model_config = ConfigDict(extra="forbid")

    image: str = Field(description="data:image/png;base64,... (or bare base64 of the file)")


class ImagesJSON(BaseModel):
    """Several images as data URLs."""

    model_config = ConfigDict(extra="forbid")

    images: list[str]


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


def _error(status: int, detail: str) -> HTTPException:
    return HTTPException(status_code=status, detail=detail)


class BodyTooLarge(HTTPException):
    """Raised from the request stream when the body passes the limit (becomes a 413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            status_code=413,
            detail=(
                f"request body too large: the limit is {limit:,} bytes ({limit / MEBIBYTE:g} MiB)"
            ),
        )


def _json_error(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


async def _http_exception_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
    return _json_error(exc.status_code, detail, headers=getattr(exc, "headers", None))


async def _validation_handler(request: Request, exc: Exception) -> Response:
    """Pydantic/query errors as one readable sentence (plus the structured list)."""
    assert isinstance(exc, RequestValidationError)
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        parts.append(f"{where}: {err.get('msg', 'invalid')}" if where else err.get("msg", ""))
    errors = json.loads(json.dumps(exc.errors(), default=str))
    return JSONResponse({"detail": "; ".join(parts), "errors": errors}, status_code=422)


async def _unexpected_handler(request: Request, exc: Exception) -> Response:
    logger.exception("unexpected error on %s %s", request.method, request.url.path)
    return _json_error(500, "internal server error (logged on the server)")


# --------------------------------------------------------------------------------------------
# Middleware
# --------------------------------------------------------------------------------------------

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class BodySizeLimitMiddleware:
    """Cap request bodies without ever reading more than the limit.

    A ``Content-Length`` over the limit is refused before the body is read; a body without one
    (chunked) is counted as it streams and the request fails the moment it passes the limit.
    """

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared == -1:
            await _send_json(send, 400, "Content-Length header is not a non-negative integer")
            return
        if declared is not None and declared > self.max_body_bytes:
            await _send_json(send, 413, BodyTooLarge(self.max_body_bytes).detail)
            return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise BodyTooLarge(self.max_body_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge as exc:
            if started:
                raise
            await _send_json(send, 413, exc.detail)


class SecurityHeadersMiddleware:
    """Add ``nosniff``, a strict Content-Security-Policy and no-referrer to every response."""

    HEADERS = (
        (b"x-content-type-options", b"nosniff"),
        (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
        (b"referrer-policy", b"no-referrer"),
    )

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + list(self.HEADERS)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _content_length(scope: Scope) -> int | None:
    """The declared body length, ``None`` when absent, ``-1`` when malformed."""
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                length = int(value)
            except ValueError:
                return -1
            return length if length >= 0 else -1
    return None


async def _send_json(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


# --------------------------------------------------------------------------------------------
# Decoding uploads
# --------------------------------------------------------------------------------------------


def decode_image(data: bytes, *, max_pixels: int, name: str = UPLOAD) -> Image.Image:
    """Decode uploaded bytes into a PIL image, checking format and size before decoding.

    Raises :class:`fastapi.HTTPException`: 415 for something that is not an image in an allowed
    format, 413 for more than ``max_pixels`` pixels, 422 for a truncated or corrupt file.
    """
    if not data:
        raise _error(422, f"{name} is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except Image.DecompressionBombError as exc:
        raise _error(413, f"{name} has too many pixels: {exc}") from None
    except UnidentifiedImageError:
        raise _error(
            415, f"{name} is not an image in a supported format ({ALLOWED_FORMATS_TEXT})"
        ) from None
    except Exception as exc:  # Pillow raises many types for a corrupt header
        raise _error(422, f"{name} is a damaged image: its header cannot be read ({exc})") from None
    width, height = image.size
    if width * height > max_pixels:
        raise _error(
            413,
            f"{name} has too many pixels: {width}x{height} = {width * height:,} "
            f"(the limit is {max_pixels:,})",
        )
    try:
        image.load()
    except Exception as exc:  # truncated or corrupt data: OSError, SyntaxError, struct.error...
        raise _error(422, f"{name} could not be decoded ({image.format}): {exc}") from None
    return image


def decode_data_url(text: str, *, name: str = UPLOAD) -> bytes:
    """The bytes of a ``data:image/...;base64,...`` URL (or of bare base64 text)."""
    payload = text.strip()
    if payload.startswith("data:"):
        header, sep, payload = payload.partition(",")
        if not sep:
            raise _error(422, f"{name}: data URL has no ',' before its data")
        media_type, *params = header[len("data:") :].split(";")
        if "base64" not in params:
            raise _error(422, f"{name}: data URL must be base64-encoded (';base64,')")
        if media_type and not (
            media_type.startswith("image/") or media_type == "application/octet-stream"
        ):
            raise _error(415, f"{name}: data URL type {media_type!r} is not an image type")
    try:
        return base64.b64decode("".join(payload.split()), validate=True)
    except (binascii.Error, ValueError):
        raise _error(
            422, f"{name} is not valid base64 (expected a data:image/...;base64 URL)"
        ) from None


# --------------------------------------------------------------------------------------------
# Inference
# --------------------------------------------------------------------------------------------


class InferenceService:
    """Decodes uploads and runs the recogniser; call its methods from worker threads.

    At most ``settings.inference_slots()`` requests decode and run the model at once; the
    others wait their turn. The recogniser itself is safe to call from several threads (torch
    in inference mode, ONNX Runtime sessions, numpy and Pillow), so one slot per core keeps
    both cores busy without oversubscribing them, and it bounds the memory that decoded
    uploads can take (each up to ``max_pixels`` x 4 bytes).
    """

    def __init__(self, recognizer: Any, settings: ServerSettings) -> None:
        self.recognizer = recognizer
        self.settings = settings
        self._slots = threading.BoundedSemaphore(settings.inference_slots())

    def _decode(self, data: bytes, name: str) -> Image.Image:
        return decode_image(data, max_pixels=self.settings.max_pixels, name=name)

    def predict(self, data: bytes, *, explain: bool = False) -> dict[str, Any]:
        """One image's prediction as a JSON-ready dict."""
        with self._slots:
            image = self._decode(data, UPLOAD)
            with _image_errors(UPLOAD):
                prediction = self.recognizer.predict(image, top_k=TOP_K, explain=explain)
            return prediction.to_dict(images=True)

    def predict_batch(self, items: list[bytes]) -> list[dict[str, Any]]:
        """Several images' predictions, in order."""
        with self._slots:
            images = [self._decode(data, f"image {i + 1}") for i, data in enumerate(items)]
            with _image_errors("batch"):
                predictions = self.recognizer.predict_batch(images, top_k=TOP_K)
            return [p.to_dict(images=True) for p in predictions]

    def read_number(self, data: bytes) -> dict[str, Any]:
        """A multi-digit number with one box and prediction per digit."""
        with self._slots:
            image = self._decode(data, UPLOAD)
            with _image_errors(UPLOAD):
                result = self.recognizer.read_number(image, top_k=TOP_K)
            return result.to_dict(images=True)

    def warm_up(self) -> None:
        """Predict one drawn stroke so that the first real request is not the slow one."""
        image = Image.new("L", (WARM_UP_SIZE, WARM_UP_SIZE), color=0)
        middle = WARM_UP_SIZE // 2
        ImageDraw.Draw(image).line(
            [(middle, WARM_UP_SIZE // 5), (middle, WARM_UP_SIZE * 4 // 5)], fill=255, width=3
        )
        with self._slots:
            self.recognizer.predict(image, top_k=TOP_K)


@contextmanager
def _image_errors(name: str) -> Iterator[None]:
    """Turn the recogniser's ImageError into an HTTP error naming the input."""
    try:
        yield
    except ImageError as exc:
        status = 413 if "pixel" in str(exc).lower() else 422
        raise _error(status, f"{name}: {exc}") from None


# --------------------------------------------------------------------------------------------
# Reading request bodies
# --------------------------------------------------------------------------------------------

_UNSUPPORTED_BODY = (
    "send the image as multipart/form-data (field {field!r}) or as JSON "
    '{{"{key}": "data:image/png;base64,..."}}; got Content-Type {ctype!r}'
)


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def _is_json(media_type: str) -> bool:
    return media_type == "application/json" or media_type.endswith("+json")


async def _multipart_files(request: Request, names: tuple[str, ...]) -> list[bytes]:
    """The uploaded files under any of ``names``, in the order they were sent."""
    async with request.form() as form:
        uploads = [v for k, v in form.multi_items() if k in names and isinstance(v, UploadFile)]
        texts = [k for k, v in form.multi_items() if k in names and not isinstance(v, UploadFile)]
        if texts and not uploads:
            raise _error(422, f"multipart field {texts[0]!r} must be a file upload, not text")
        if not uploads:
            got = sorted({k for k, _ in form.multi_items()}) or ["none"]
            raise _error(
                422, f"multipart field {names[0]!r} is missing (got fields: {', '.join(got)})"
            )
        return [await upload.read() for upload in uploads]


async def _json_body(request: Request, model: type[BaseModel]) -> BaseModel:
    raw = await request.body()
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()
        )
        raise _error(422, f"invalid JSON body: {problems}") from None


async def read_one_image(request: Request) -> bytes:
    """The single image of a request, from multipart field ``file`` or JSON ``image``."""
    media_type = _media_type(request)
    if media_type == "multipart/form-data":
        files = await _multipart_files(request, ("file",))
        if len(files) > 1:
            raise _error(
                422,
                f"send one file in field 'file' (got {len(files)}); "
                "use /api/predict/batch for several",
            )
        return files[0]
    if _is_json(media_type):
        body = await _json_body(request, ImageJSON)
        assert isinstance(body, ImageJSON)
        return decode_data_url(body.image)
    raise _error(415, _UNSUPPORTED_BODY.format(field="file", key="image", ctype=media_type))


async def read_many_images(request: Request, max_count: int) -> list[bytes]:
    """The images of a batch request, in order (multipart ``files``/``file`` or JSON ``images``)."""
    media_type = _media_type(request)
    if media_type == "multipart/form-data":
        items = await _multipart_files(request, ("files", "file"))
    elif _is_json(media_type):
        body = await _json_body(request, ImagesJSON)
        assert isinstance(body, ImagesJSON)
        if len(body.images) > max_count:
            _raise_too_many(len(body.images), max_count)
        items = [decode_data_url(t, name=f"image {i + 1}") for i, t in enumerate(body.images)]
    else:
        raise _error(415, _UNSUPPORTED_BODY.format(field="files", key="images", ctype=media_type))
    if not items:
        raise _error(422, "the batch is empty: send at least one image")
    if len(items) > max_count:
        _raise_too_many(len(items), max_count)
    return items


def _raise_too_many(count: int, limit: int) -> None:
    raise _error(413, f"too many images in one batch: {count} (the limit is {limit})")


# --------------------------------------------------------------------------------------------
# OpenAPI descriptions of the hand-parsed request bodies
# --------------------------------------------------------------------------------------------


def _body_doc(field: str, key: str, many: bool) -> dict[str, Any]:
    file_schema: dict[str, Any] = {"type": "string", "format": "binary"}
    text_schema: dict[str, Any] = {"type": "string", "example": "data:image/png;base64,iVBORw0..."}
    what = "images" if many else "an image"
    formats = f"{ALLOWED_FORMATS_TEXT}; at most {DEFAULT_MAX_PIXELS:,} pixels by default"
    if many:
        file_schema = {"type": "array", "items": file_schema}
        text_schema = {"type": "array", "items": text_schema}
    file_schema["description"] = f"{what} ({formats})" + (", repeat the field" if many else "")
    text_schema["description"] = f"{what} as data:image/...;base64 URL(s) (or bare base64)"
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": [field],
                        "properties": {field: file_schema},
                    }
                },
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": [key],
                        "additionalProperties": False,
                        "properties": {key: text_schema},
                    }
                },
            },
        }
    }


_ERRORS: dict[int | str, dict[str, Any]] = {
    413: {"model": ErrorOut, "description": "body, batch or pixel count over the limit"},
    415: {"model": ErrorOut, "description": "not an image in a supported format"},
    422: {"model": ErrorOut, "description": "truncated/corrupt image or malformed request"},
}


# --------------------------------------------------------------------------------------------
# The application
# --------------------------------------------------------------------------------------------


def _service(request: Request) -> InferenceService:
    return request.app.state.service


def create_app(settings: ServerSettings | None = None, *, recognizer: Any = None) -> FastAPI:
    """Build the application.

    ``recognizer`` (an object with the :class:`digitlab.engine.recognizer.Recognizer` API) is used
    as it is when given (the process's thread settings are left alone: tests embed apps this
    way); otherwise ``settings.model`` is loaded once in the lifespan hook, with the model
    threads capped to ``settings.threads``.
    """
    settings = settings or ServerSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # type: ignore[no-untyped-def]
        rec = recognizer
        if rec is None:
            rec = await run_in_threadpool(load_recognizer, settings)
        service = InferenceService(rec, settings)
        await run_in_threadpool(service.warm_up)
        app.state.service = service
        info = rec.info
        logger.info("model %s (%s, %s) ready", info.name, info.backend, info.source)
        yield

    app = FastAPI(
        title="digitlab",
        version=__version__,
        summary="Handwritten-digit recognition: draw, upload or POST an image, get the digit.",
        lifespan=lifespan,
        docs_url=None,  # FastAPI's Swagger/ReDoc pages load from a CDN; /docs is local instead
        redoc_url=None,
    )
    app.state.settings = settings
    app.add_middleware(SecurityHeadersMiddleware)
    app.add_middleware(BodySizeLimitMiddleware, max_body_bytes=settings.max_body_bytes)
    app.add_exception_handler(StarletteHTTPException, _http_exception_handler)
    app.add_exception_handler(RequestValidationError, _validation_handler)
    app.add_exception_handler(Exception, _unexpected_handler)
    _add_api_routes(app)
    _add_page_routes(app)
    return app


def _add_api_routes(app: FastAPI) -> None:
    @app.post(
        "/api/predict",
        response_model=PredictionOut,
        responses=_ERRORS,
        openapi_extra=_body_doc("file", "image", many=False),
        summary="Recognise one digit",
        tags=["recognition"],
    )
    async def predict(
        request: Request,
        explain: bool = Query(False, description="also return a heat map of where it looked"),
    ) -> dict[str, Any]:
        """One image as multipart field `file` or JSON `{"image": "data:image/...;base64,..."}`."""
        data = await read_one_image(request)
        return await run_in_threadpool(_service(request).predict, data, explain=explain)

    @app.post(
        "/api/predict/batch",
        response_model=BatchOut,
        responses=_ERRORS,
        openapi_extra=_body_doc("files", "images", many=True),
        summary="Recognise several single digits",
        tags=["recognition"],
    )
    async def predict_batch(request: Request) -> dict[str, Any]:
        """Several images (multipart fields `files`, or JSON `images`); results in order."""
        service = _service(request)
        items = await read_many_images(request, service.settings.max_batch)
        return {"results": await run_in_threadpool(service.predict_batch, items)}

    @app.post(
        "/api/number",
        response_model=NumberOut,
        responses=_ERRORS,
        openapi_extra=_body_doc("file", "image", many=False),
        summary="Read a multi-digit number",
        tags=["recognition"],
    )
    async def number(request: Request) -> dict[str, Any]:
        """One image with several digits side by side; each digit's box is in input pixels."""
        data = await read_one_image(request)
        return await run_in_threadpool(_service(request).read_number, data)

    @app.get("/api/model", response_model=ModelOut, summary="The model", tags=["service"])
    async def model(request: Request) -> dict[str, Any]:
        """Which model answers, where it was loaded from, its accuracy, and the input limits."""
        service = _service(request)
        info = service.recognizer.info
        limits = Limits(
            max_body_bytes=service.settings.max_body_bytes,
            max_pixels=service.settings.max_pixels,
            max_batch=service.settings.max_batch,
            formats=[f.lower() for f in ALLOWED_FORMATS],
        )
        return {**info.to_dict(), "limits": limits}

    @app.get("/healthz", response_model=HealthOut, summary="Liveness", tags=["service"])
    async def healthz() -> dict[str, str]:
        """`{"status": "ok"}` once the model is loaded."""
        return {"status": "ok", "version": __version__}


def _add_page_routes(app: FastAPI) -> None:
    no_cache = {"Cache-Control": "no-cache"}

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(WEB_DIR / "index.html", headers=no_cache)

    @app.get("/docs", include_in_schema=False)
    async def docs() -> FileResponse:
        return FileResponse(WEB_DIR / "docs.html", headers=no_cache)

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> FileResponse:
        return FileResponse(WEB_DIR / "icon.svg", media_type="image/svg+xml")

    app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")


def create_app_from_env() -> FastAPI:
    """Import-string factory for uvicorn workers: settings come from ``DIGITLAB_SERVE_*``."""
    return create_app(ServerSettings.from_env())


# --------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------

APP_FACTORY = "digitlab.apps.server:create_app_from_env"


def run_server(
    settings: ServerSettings,
    *,
    recognizer: Any = None,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve until interrupted, in this process or in ``settings.workers`` processes.

    ``on_ready(url)`` is called once the server accepts connections (with one worker; with
    several it is called just before the workers start, as each loads its own model).
    """
    common: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "access_log": settings.access_log,
        "log_level": "info",
        "ws": "none",  # the page and the API speak plain HTTP/1.1
    }
    if settings.workers == 1:
        config = uvicorn.Config(create_app(settings, recognizer=recognizer), **common)
        AnnouncingServer(config, on_ready).run()
        return
    if settings.port == 0:
        raise DigitlabError("port 0 (any free port) needs a single worker; choose a port")
    os.environ.update(settings.to_env())
    if on_ready is not None:
        on_ready(settings.url)
    _run_workers(uvicorn.Config(APP_FACTORY, factory=True, workers=settings.workers, **common))


def _run_workers(config: uvicorn.Config) -> None:
    """What ``uvicorn.run(..., workers=N)`` does, with a listener that keeps TCP_NODELAY.

    uvicorn binds the shared socket with ``proto`` 0; accepted connections inherit it and
    asyncio then leaves Nagle's algorithm on, so every keep-alive response waits ~40 ms for
    the client's delayed ACK (uvicorn issue #3149; measured here: /healthz 48 ms with
    ``--workers 2`` vs 0.6 ms with one). Re-wrapping the listener as IPPROTO_TCP fixes it.
    """
    from uvicorn.supervisors import Multiprocess

    sock = tcp_listener(config.bind_socket())
    if "target" in inspect.signature(Multiprocess).parameters:  # uvicorn < 0.36
        supervisor = Multiprocess(config, target=uvicorn.Server(config).run, sockets=[sock])
    else:
        supervisor = Multiprocess(config, sockets=[sock])
    supervisor.run()


def tcp_listener(sock: socket.socket) -> socket.socket:
    """The same listening socket, reporting ``IPPROTO_TCP`` so that asyncio sets TCP_NODELAY
    on the connections it accepts (a no-op for sockets that already do, or are not TCP)."""
    if sock.family not in (socket.AF_INET, socket.AF_INET6) or sock.proto != 0:
        return sock
    return socket.socket(sock.family, sock.type, socket.IPPROTO_TCP, fileno=sock.detach())


def _server_url(server: Any) -> str:
    """``http://host:port/`` of a started uvicorn server's first socket."""
    host, port = server.servers[0].sockets[0].getsockname()[:2]
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{port}/"


class AnnouncingServer(uvicorn.Server):
    """A uvicorn server that reports its URL once it listens."""

    def __init__(
        self, config: uvicorn.Config, on_ready: Callable[[str], None] | None = None
    ) -> None:
        super().__init__(config)
        self.on_ready = on_ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """Start as uvicorn does, then call ``on_ready(url)``."""
        await super().startup(sockets)
        if self.started and self.on_ready is not None:
            self.on_ready(_server_url(self))


class BackgroundServer:
    """A real uvicorn server on a loopback port in a daemon thread (tests and benchmarks).

    ``with BackgroundServer(app) as url:`` yields ``http://127.0.0.1:PORT`` once the server
    accepts connections (port 0 = a free port chosen by the OS) and stops it on exit.
    """

    STARTUP_TIMEOUT_S = 60.0
    POLL_S = 0.02

    def __init__(self, app: FastAPI, host: str = DEFAULT_HOST, port: int = 0) -> None:
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", ws="none")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="digitlab-server", daemon=True)
        self.url = ""

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + self.STARTUP_TIMEOUT_S
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise DigitlabError("the test server did not start (see the log above)")
            time.sleep(self.POLL_S)
        self.url = _server_url(self.server).rstrip("/")
        return self.url

    def __exit__(self, *exc_info: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=self.STARTUP_TIMEOUT_S)
