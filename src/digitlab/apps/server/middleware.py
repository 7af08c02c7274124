"""ASGI middleware: request body limits (size and time) and security headers.

Both are plain ASGI classes (no ``BaseHTTPMiddleware``): they wrap ``receive``/``send`` without
buffering bodies or adding a task per request.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import h11

from digitlab.apps.server.settings import MEBIBYTE

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Lingering close: a body declared (Content-Length) over the limit is read and thrown away
# before the 413 is sent, so that a client that writes its whole body before reading (Python's
# urllib, most scripts) gets the JSON answer instead of "connection reset by peer" (closing a
# socket with unread data makes the kernel send a reset). Bounded: at most this many bytes and
# seconds are drained; past either, the connection is simply closed.
LINGER_MAX_BYTES = 64 * MEBIBYTE
LINGER_MAX_S = 10.0
# A header with these security settings goes on every response: the page loads nothing from
# outside this server (no CDN), so the policy can be strict.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)


def too_large_detail(limit: int) -> str:
    """The 413 message for a body over ``limit`` bytes."""
    return f"request body too large: the limit is {limit:,} bytes ({limit / MEBIBYTE:g} MiB)"


class BodyTooLargeError(Exception):
    """Raised from the request stream when the body passes the limit (becomes a 413)."""


class BodyTimeoutError(Exception):
    """Raised from the request stream when the body is not in by its deadline (becomes a 408)."""


class BodyLimitMiddleware:
    """Cap request bodies in size and in time, without ever reading more than the limit.

    * A ``Content-Length`` over ``max_body_bytes`` is answered 413 before the application runs
      (after a bounded lingering read of the body; see :data:`LINGER_MAX_BYTES`).
    * A body without one (chunked) is counted as it streams and the request fails with 413 the
      moment it passes the limit.
    * The whole body must arrive within ``body_timeout_s`` of the request's headers, else 408:
      a client that stalls mid-upload holds one connection for that long, and no more (it
      never holds a worker thread: bodies are read on the event loop).
    """

    def __init__(self, app: ASGIApp, max_body_bytes: int, body_timeout_s: float) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.body_timeout_s = body_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared == -1:
            await send_json(send, 400, "Content-Length header is not a non-negative integer")
            return
        if declared is not None and declared > self.max_body_bytes:
            if declared <= LINGER_MAX_BYTES and not _expects_continue(scope):
                await _drain(receive, LINGER_MAX_BYTES, LINGER_MAX_S)
            await send_json(send, 413, too_large_detail(self.max_body_bytes))
            return
        received = 0
        body_done = False
        started = False
        gone = False  # the client disconnected (or the HTTP layer already answered it)
        deadline = time.monotonic() + self.body_timeout_s

        async def limited_receive() -> Message:
            nonlocal received, body_done, gone
            if body_done:  # later calls only wait for a disconnect: no deadline
                message = await receive()
                gone = gone or message["type"] == "http.disconnect"
                return message
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                raise BodyTimeoutError from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise BodyTooLargeError
                body_done = not message.get("more_body", False)
            else:
                body_done = gone = True
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started, gone
            if gone:
                # Nobody to answer: the client left mid-body, or uvicorn answered a protocol
                # error in the body itself (400) and closed the connection.
                return
            if message["type"] == "http.response.start":
                started = True
            try:
                await send(message)
            except h11.LocalProtocolError:
                # uvicorn already answered this connection itself (a protocol error in the
                # body, found before the app ran): there is nothing left to send.
                logger.debug("response dropped: the connection was already answered")
                gone = True

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLargeError:
            if started:
                raise
            await send_json(send, 413, too_large_detail(self.max_body_bytes))
        except BodyTimeoutError:
            if started:
                raise
            logger.info("request body not received within %g s", self.body_timeout_s)
            await send_json(
                send,
                408,
                f"request body not received within {self.body_timeout_s:g} s "
                f"({received:,} bytes arrived)",
            )


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


def _expects_continue(scope: Scope) -> bool:
    """Whether the client waits for ``100 Continue`` before sending its body."""
    return any(
        name == b"expect" and value.lower() == b"100-continue"
        for name, value in scope.get("headers", [])
    )


async def _drain(receive: Receive, max_bytes: int, max_s: float) -> None:
    """Read and discard the request body, up to ``max_bytes`` and ``max_s`` seconds."""
    drained = 0
    deadline = time.monotonic() + max_s
    try:
        while drained <= max_bytes:
            message = await asyncio.wait_for(receive(), max(0.0, deadline - time.monotonic()))
            if message["type"] != "http.request":
                return
            drained += len(message.get("body", b""))
            if not message.get("more_body", False):
                return
    except asyncio.TimeoutError:
        return


async def send_json(send: Send, status: int, detail: str) -> None:
    """A complete JSON error response that closes the connection."""
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
