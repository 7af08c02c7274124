"""The feedback endpoints: a FastAPI :data:`router` the server includes.

==================================  ==========================================================
``POST /api/feedback``              store a correction (multipart ``file`` + ``label``
                                    [+ ``predicted``], or JSON ``{"image": data URL, "label"}``)
``GET /api/feedback/stats``         counts per digit, per source, per model
``GET /api/feedback``               list stored corrections (admin token when exposed)
``DELETE /api/feedback/{id}``       take one back (its undo token, or admin when exposed)
``DELETE /api/feedback?all=true``   delete every correction (admin token when exposed)
``POST /api/feedback/improve``      fine-tune on the corrections in the background (202)
``GET /api/feedback/improve``       the fine-tuning job's progress and result
==================================  ==========================================================

**What it expects on ``app.state``** (put there in the server's lifespan): ``feedback``, a
:class:`FeedbackContext` -- the :class:`~digitlab.apps.feedback.options.FeedbackSettings`,
the open store (``None`` when feedback is off), ``get_recognizer()`` returning the recogniser
answering now, and ``set_recognizer(rec)`` switching to another one (one attribute
assignment: requests in flight finish on the old model, the next ones use the new one).
Nothing else: the router decodes uploads itself with :mod:`digitlab.engine.decode`, with the
same limits and status codes as ``/api/predict`` (413 too large, 415 not a supported image,
422 broken; JSON ``detail``), and runs the model in the thread pool.

State-changing endpoints refuse cross-site browser requests
(:func:`~digitlab.apps.feedback.security.require_same_origin`); the Host check is the
:class:`~digitlab.apps.feedback.security.HostCheckMiddleware` the server adds.

One module (~530 lines) because the endpoints share one context, one set of request
schemas and one error mapping; split by endpoint they would import each other's pieces.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.datastructures import UploadFile

from digitlab.apps.feedback.capture import hash_token, make_correction, undo_token
from digitlab.apps.feedback.options import FeedbackSettings
from digitlab.apps.feedback.security import check_admin, require_admin, require_same_origin
from digitlab.apps.feedback.store import (
    MAX_LABEL_DIGITS,
    FeedbackStore,
    StoreError,
    StoreFullError,
)
from digitlab.core.constants import IMAGE_FORMATS_TEXT
from digitlab.core.errors import (
    DigitlabError,
    ImageError,
    ImageTooLargeError,
    UnsupportedImageError,
)
from digitlab.engine.decode import decode_data_url

log = logging.getLogger(__name__)

UPLOAD = "the upload"
UNDO_HEADER = "x-undo-token"
DEFAULT_LIST_LIMIT = 100
MAX_LIST_LIMIT = 1000
HTTP_INSUFFICIENT_STORAGE = 507  # the store is at its size cap
HTTP_UNAVAILABLE = 503  # the database cannot be reached


@dataclass
class FeedbackContext:
    """Everything the router needs, on ``app.state.feedback`` (see the module docstring)."""

    settings: FeedbackSettings
    store: FeedbackStore | None
    get_recognizer: Callable[[], Any]
    set_recognizer: Callable[[Any], None] | None = None
    improver: Any = None  # an :class:`~digitlab.apps.feedback.improve.Improver`, made lazily
    extra: dict[str, Any] = field(default_factory=dict)
    # how the app loads a model it switches to (a path -> a recogniser): a server's own loader
    # sets its threads, traces a PyTorch network and loads the cut scorer, as at start
    load_model: Callable[[str], Any] | None = None

    @classmethod
    def open(
        cls,
        settings: FeedbackSettings,
        get_recognizer: Callable[[], Any],
        set_recognizer: Callable[[Any], None] | None = None,
        load_model: Callable[[str], Any] | None = None,
    ) -> FeedbackContext:
        """Open the store the settings name (none when feedback is off). Raises StoreError."""
        store = None
        if settings.enabled:
            store = FeedbackStore(settings.db, max_corrections=settings.max_corrections)
        return cls(settings, store, get_recognizer, set_recognizer, load_model=load_model)

    def close(self) -> None:
        """Close the store (call in the lifespan's shutdown)."""
        if self.store is not None:
            self.store.close()

    def status(self) -> dict[str, Any]:
        """What ``/api/model`` should say about feedback (the ``feedback`` field)."""
        s = self.settings
        return {
            "enabled": s.enabled,
            "exposed": s.exposed,
            "admin_required": s.exposed,
            "store": self.store.where if self.store is not None and not s.exposed else None,
        }


# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------


class FeedbackJSON(BaseModel):
    """A correction as JSON: the image as a data URL, the right label."""

    model_config = ConfigDict(extra="forbid")

    image: str = Field(description="data:image/png;base64,... (or bare base64 of the file)")
    label: str | int = Field(description='the right answer: a digit, or a number\'s digits "2026"')
    predicted: str | int | None = Field(
        default=None, description="what the model said (default: what it says now)"
    )
    source: Literal["web", "api"] = "api"


class FeedbackOut(BaseModel):
    """A stored correction."""

    model_config = ConfigDict(protected_namespaces=())

    id: int
    duplicate: bool = Field(description="true when this exact image and label were stored before")
    count: int = Field(description="corrections in the store now")
    label: str
    predicted: str | None
    model_id: str
    undo_token: str | None = Field(
        description="send as X-Undo-Token with DELETE /api/feedback/{id} to take it back"
    )


class StatsOut(BaseModel):
    """Counts of the stored corrections."""

    count: int
    max_corrections: int
    wrong: int = Field(description="corrections whose label differs from the prediction")
    by_digit: dict[str, int]
    by_source: dict[str, int]
    by_model: dict[str, int]


class CorrectionOut(BaseModel):
    """One stored correction, without its images."""

    model_config = ConfigDict(protected_namespaces=())

    id: int
    created: float
    source: str
    label: str
    predicted: str | None
    model_id: str
    sha256: str


class ListOut(BaseModel):
    """A page of stored corrections, oldest first."""

    count: int
    corrections: list[CorrectionOut]


class DeletedOut(BaseModel):
    """What a delete removed."""

    deleted: int = Field(description="how many corrections were deleted")
    count: int = Field(description="corrections left")


class ImproveOut(BaseModel):
    """The fine-tuning job (``state``: idle, running, done, refused, failed)."""

    state: str
    progress: float = Field(description="0-1")
    message: str
    corrections: int = 0
    result: dict[str, Any] | None = None


class ErrorOut(BaseModel):
    """Every error: ``detail`` says what was wrong."""

    detail: str


_ERRORS: dict[int | str, dict[str, Any]] = {
    403: {"model": ErrorOut, "description": "feedback off, cross-site request, or wrong token"},
    413: {"model": ErrorOut, "description": "image over the pixel limit"},
    415: {"model": ErrorOut, "description": "not an image in a supported format"},
    422: {"model": ErrorOut, "description": "broken image, bad label or malformed request"},
    503: {"model": ErrorOut, "description": "the feedback database cannot be reached"},
    507: {"model": ErrorOut, "description": "the store is at its size cap"},
}
_ADMIN_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "exposed server: the admin token is missing"},
    403: {"model": ErrorOut, "description": "feedback off, cross-site request, or wrong token"},
    503: {"model": ErrorOut, "description": "the feedback database cannot be reached"},
}

_BODY_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file", "label"],
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": f"the image as predicted ({IMAGE_FORMATS_TEXT})",
                        },
                        "label": {"type": "string", "description": "the right digit(s)"},
                        "predicted": {"type": "string", "description": "what the model said"},
                        "source": {"type": "string", "enum": ["web", "api"]},
                    },
                }
            },
            "application/json": {"schema": FeedbackJSON.model_json_schema()},
        },
    }
}


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def feedback_context(request: Request) -> FeedbackContext:
    """FastAPI dependency: ``app.state.feedback`` (500 with a clear log when missing)."""
    ctx = getattr(request.app.state, "feedback", None)
    if ctx is None:
        raise RuntimeError("app.state.feedback is not set: see digitlab.apps.feedback.routes")
    return ctx


Ctx = Annotated[FeedbackContext, Depends(feedback_context)]


def enabled_store(ctx: Ctx) -> FeedbackStore:
    """FastAPI dependency: the open store, or 403 when feedback is off on this server."""
    if not ctx.settings.enabled or ctx.store is None:
        raise HTTPException(
            status_code=403,
            detail="feedback is off on this server (a server bound beyond loopback keeps it "
            "off unless started with --feedback)",
        )
    return ctx.store


def http_error(exc: Exception) -> HTTPException:
    """The status code for an error from decoding, the label or the store."""
    if isinstance(exc, ImageTooLargeError):
        return HTTPException(413, str(exc))
    if isinstance(exc, UnsupportedImageError):
        return HTTPException(415, str(exc))
    if isinstance(exc, StoreFullError):
        return HTTPException(HTTP_INSUFFICIENT_STORAGE, str(exc))
    if isinstance(exc, StoreError):
        return HTTPException(HTTP_UNAVAILABLE, str(exc))
    if isinstance(exc, (ImageError, DigitlabError)):
        return HTTPException(422, str(exc))
    raise exc


def _form_text(form: Any, name: str, required: bool = False) -> str | None:
    value = form.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise HTTPException(422, f"multipart field {name!r} is missing")
        return None
    if not isinstance(value, str):
        raise HTTPException(422, f"multipart field {name!r} must be text, not a file")
    return value


async def read_correction_body(request: Request) -> dict[str, Any]:
    """The image bytes, label, predicted and source of a POST /api/feedback body."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type == "multipart/form-data":
        try:
            form = await request.form(max_files=2, max_fields=10)
        except Exception as exc:  # malformed multipart
            raise HTTPException(422, f"malformed multipart body: {exc}") from None
        files = [f for f in form.getlist("file") if isinstance(f, UploadFile)]
        if not files:
            got = sorted({k for k, _ in form.multi_items()}) or ["none"]
            raise HTTPException(
                422, f"multipart field 'file' is missing (got fields: {', '.join(got)})"
            )
        if len(files) > 1:
            raise HTTPException(422, f"send one image in field 'file' (got {len(files)})")
        source = _form_text(form, "source") or "api"
        if source not in ("web", "api"):
            raise HTTPException(422, f"source must be 'web' or 'api', got {source!r}")
        return {
            "data": await files[0].read(),
            "label": _form_text(form, "label", required=True),
            "predicted": _form_text(form, "predicted"),
            "source": source,
        }
    if media_type == "application/json" or media_type.endswith("+json"):
        try:
            body = FeedbackJSON.model_validate_json(await request.body())
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()
            )
            raise HTTPException(422, f"invalid JSON body: {problems}") from None
        try:
            data = decode_data_url(body.image, UPLOAD)
        except ImageError as exc:
            raise http_error(exc) from None
        return {
            "data": data,
            "label": body.label,
            "predicted": body.predicted,
            "source": body.source,
        }
    raise HTTPException(
        415,
        "send the correction as multipart/form-data (fields 'file', 'label') or JSON "
        f"({{'image': data URL, 'label': ...}}), not {media_type or 'no content type'}",
    )


Store = Annotated[FeedbackStore, Depends(enabled_store)]

# --------------------------------------------------------------------------------------------
# Routes
# --------------------------------------------------------------------------------------------

router = APIRouter(prefix="/api/feedback", tags=["feedback"])


@router.post(
    "",
    status_code=201,
    response_model=FeedbackOut,
    responses=_ERRORS,
    openapi_extra=_BODY_DOC,
    summary="Store a correction",
    dependencies=[Depends(require_same_origin)],
)
async def add_feedback(
    request: Request,
    ctx: Ctx,
    store: Store,
) -> dict[str, Any]:
    """The image as it was sent for prediction and the right label (a digit, or a number's
    digits); `predicted` is what the model said. The same image limits as /api/predict.
    Returns an `undo_token` that takes this correction back (DELETE with X-Undo-Token)."""
    body = await read_correction_body(request)
    token, token_hash = undo_token()

    def work() -> tuple[Any, Any]:
        recognizer = ctx.get_recognizer()
        new = make_correction(
            recognizer,
            body["data"],
            body["label"],
            predicted=body["predicted"],
            source=body["source"],
            name=UPLOAD,
            max_pixels=ctx.settings.max_pixels,
            undo_hash=token_hash,
        )
        return new, store.add(new)

    try:
        new, result = await run_in_threadpool(work)
    except (DigitlabError, ImageError) as exc:
        raise http_error(exc) from None
    return {
        "id": result.id,
        "duplicate": result.duplicate,
        "count": result.count,
        "label": new.label,
        "predicted": new.predicted,
        "model_id": new.model_id,
        "undo_token": None if result.duplicate else token,
    }


@router.get("/stats", response_model=StatsOut, responses=_ERRORS, summary="Correction counts")
async def feedback_stats(store: Store) -> dict[str, Any]:
    """How many corrections are stored, per corrected digit, per source and per model."""
    try:
        stats = await run_in_threadpool(store.stats)
    except StoreError as exc:
        raise http_error(exc) from None
    out = stats.to_dict()
    out.pop("location")
    return out


@router.get(
    "",
    response_model=ListOut,
    responses=_ADMIN_ERRORS,
    summary="List stored corrections",
    dependencies=[Depends(require_admin)],
)
async def list_feedback(
    store: Store,
    limit: int = Query(DEFAULT_LIST_LIMIT, ge=1, le=MAX_LIST_LIMIT),
    offset: int = Query(0, ge=0),
) -> dict[str, Any]:
    """A page of corrections, oldest first, without their images (admin token when exposed)."""
    try:
        rows = await run_in_threadpool(store.list, limit=limit, offset=offset)
        count = await run_in_threadpool(store.count)
    except StoreError as exc:
        raise http_error(exc) from None
    return {"count": count, "corrections": [r.summary() for r in rows]}


@router.delete(
    "/{correction_id}",
    response_model=DeletedOut,
    responses={**_ADMIN_ERRORS, 404: {"model": ErrorOut, "description": "no such correction"}},
    summary="Take a correction back",
    dependencies=[Depends(require_same_origin)],
)
async def delete_feedback(
    correction_id: int,
    request: Request,
    ctx: Ctx,
    store: Store,
) -> dict[str, Any]:
    """Undo: with the `undo_token` its POST returned (header X-Undo-Token) anyone may take
    their own correction back; otherwise this needs the admin token on an exposed server."""
    try:
        stored_hash = await run_in_threadpool(store.undo_hash, correction_id)
        token = request.headers.get(UNDO_HEADER)
        if not (token and stored_hash and hash_token(token) == stored_hash):
            check_admin(
                request,
                exposed=ctx.settings.exposed,
                admin_token=ctx.settings.admin_token,
                what="deleting a correction without its undo token",
            )
        deleted = await run_in_threadpool(store.delete, correction_id)
        count = await run_in_threadpool(store.count)
    except StoreError as exc:
        raise http_error(exc) from None
    if not deleted:
        raise HTTPException(404, f"no correction with id {correction_id}")
    return {"deleted": 1, "count": count}


@router.delete(
    "",
    response_model=DeletedOut,
    responses=_ADMIN_ERRORS,
    summary="Delete every correction",
    dependencies=[Depends(require_same_origin), Depends(require_admin)],
)
async def delete_all_feedback(
    store: Store,
    all: bool = Query(False, description="must be true: deletes every stored correction"),
) -> dict[str, Any]:
    """Delete the whole store's contents (`?all=true`; admin token when exposed)."""
    if not all:
        raise HTTPException(422, "add ?all=true to delete every stored correction")
    try:
        deleted = await run_in_threadpool(store.delete_all)
    except StoreError as exc:
        raise http_error(exc) from None
    return {"deleted": deleted, "count": 0}


def _improver(ctx: FeedbackContext) -> Any:
    if ctx.improver is None:
        from digitlab.apps.feedback.improve import Improver

        ctx.improver = Improver(ctx)
    return ctx.improver


@router.post(
    "/improve",
    status_code=202,
    response_model=ImproveOut,
    responses={**_ADMIN_ERRORS, 409: {"model": ErrorOut, "description": "already running"}},
    summary="Improve the model from the corrections",
    dependencies=[Depends(require_same_origin), Depends(require_admin)],
)
async def start_improve(
    ctx: Ctx,
    store: Store,
) -> dict[str, Any]:
    """Fine-tune the model answering now on the stored corrections (with MNIST replay) in
    the background; on success it becomes the user's personal model and answers from then
    on, switched atomically. Poll GET /api/feedback/improve for progress."""
    if ctx.set_recognizer is None:
        raise HTTPException(403, "this server cannot switch models (set_recognizer is not set)")
    improver = _improver(ctx)
    try:
        await run_in_threadpool(improver.start)  # reads the corrections: off the event loop
    except DigitlabError as exc:
        status = 409 if improver.running else 422
        raise HTTPException(status, str(exc)) from None
    return improver.status()


@router.get(
    "/improve",
    response_model=ImproveOut,
    responses=_ERRORS,
    summary="Progress of the model improvement",
)
async def improve_status(
    ctx: Ctx,
    store: Store,
) -> dict[str, Any]:
    """State (idle, running, done, refused, failed), progress 0-1, a message, and the
    before/after accuracies once done."""
    return _improver(ctx).status()


__all__ = ["MAX_LABEL_DIGITS", "FeedbackContext", "router"]
