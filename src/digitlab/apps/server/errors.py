"""Exception handlers: every error is JSON ``{"detail": "..."}`` with the right status.

The status of a user error comes from its type (``core.errors``), never from its wording:

========================================  ======
:class:`~digitlab.core.errors.ImageTooLargeError`     413
:class:`~digitlab.core.errors.UnsupportedImageError`  415
any other ``ImageError`` / ``DigitlabError``          422
========================================  ======

Request-shape problems found while reading the body (a missing field, a wrong Content-Type) are
raised as :class:`fastapi.HTTPException` with their status; anything else that escapes is a
bug: logged with its traceback and answered with a plain 500.
"""

from __future__ import annotations

import json
import logging

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from digitlab.core.errors import DigitlabError, ImageTooLargeError, UnsupportedImageError

logger = logging.getLogger(__name__)

TOO_LARGE = 413
UNSUPPORTED = 415
UNPROCESSABLE = 422


def status_of(exc: DigitlabError) -> int:
    """The HTTP status of a user error, by its type."""
    if isinstance(exc, ImageTooLargeError):
        return TOO_LARGE
    if isinstance(exc, UnsupportedImageError):
        return UNSUPPORTED
    return UNPROCESSABLE


def http_error(status: int, detail: str) -> HTTPException:
    """An HTTPException whose ``detail`` becomes the JSON ``detail``."""
    return HTTPException(status_code=status, detail=detail)


def json_error(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """The JSON error response every handler sends."""
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


async def _digitlab_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, DigitlabError)
    return json_error(status_of(exc), str(exc))


async def _http_exception_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
    return json_error(exc.status_code, detail, headers=getattr(exc, "headers", None))


async def _validation_handler(request: Request, exc: Exception) -> Response:
    """Pydantic/query errors as one readable sentence (plus the structured list)."""
    assert isinstance(exc, RequestValidationError)
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        parts.append(f"{where}: {err.get('msg', 'invalid')}" if where else err.get("msg", ""))
    errors = json.loads(json.dumps(exc.errors(), default=str))
    return JSONResponse({"detail": "; ".join(parts), "errors": errors}, status_code=UNPROCESSABLE)


async def _disconnect_handler(request: Request, exc: Exception) -> Response:
    """The client left before its body was in: nothing to answer (the middleware drops it)."""
    return Response(status_code=400)


async def _unexpected_handler(request: Request, exc: Exception) -> Response:
    logger.exception("unexpected error on %s %s", request.method, request.url.path)
    return json_error(500, "internal server error (logged on the server)")


def add_exception_handlers(app: FastAPI) -> None:
    """Install the handlers of the module docstring on ``app``."""
    app.add_exception_handler(DigitlabError, _digitlab_error_handler)
    app.add_exception_handler(StarletteHTTPException, _http_exception_handler)
    app.add_exception_handler(RequestValidationError, _validation_handler)
    app.add_exception_handler(ClientDisconnect, _disconnect_handler)
    app.add_exception_handler(Exception, _unexpected_handler)
