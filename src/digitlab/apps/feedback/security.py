"""Keeping a user's store theirs: Host checking, cross-site refusal, the admin token.

* :class:`HostCheckMiddleware` (ASGI, for the whole app): the server answers only to the Host
  names it serves -- loopback names by default, ``--allowed-hosts`` when exposed. A web page
  elsewhere cannot reach a loopback server through DNS rebinding (a name of theirs that
  resolves to 127.0.0.1 still sends *their* name as Host).
* :func:`require_same_origin` (a FastAPI dependency, on every endpoint that changes state):
  a browser request sent by another site is refused -- ``Sec-Fetch-Site`` other than
  ``same-origin``/``none``, or an ``Origin`` that is not this server. Requests without either
  header (curl, scripts, the desktop app) are not from a browser page and pass.
* :func:`require_admin` (a FastAPI dependency): on a server bound beyond loopback, listing or
  deleting stored corrections (and retraining) needs the admin token (``--admin-token`` or
  ``$DIGITLAB_ADMIN_TOKEN``) as ``Authorization: Bearer TOKEN`` or ``X-Admin-Token``:
  401 without it, 403 with a wrong one (or when the server has none configured).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import HTTPException, Request

log = logging.getLogger(__name__)

# The names a loopback server answers to by default.
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
# Fetch metadata values of a request the page itself (or the user, typing the URL) made.
SAME_ORIGIN_FETCH = ("same-origin", "none")
ADMIN_HEADER = "x-admin-token"
# How long the Host check waits for a connection the server already answered to close.
DISCONNECT_WAIT_S = 1.0
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def is_loopback(host: str) -> bool:
    """Whether a bind address (or name) is this machine only."""
    host = host.strip().strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def split_host(value: str) -> str:
    """The host name of a ``Host`` header value, without port or IPv6 brackets, lower case."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value[1:]
    if value.count(":") == 1:
        return value.split(":", 1)[0]
    return value


def parse_allowed_hosts(text: str | None) -> tuple[str, ...]:
    """``--allowed-hosts`` ("a.example,b.example", "*.example.org", "*") as a tuple."""
    if not text:
        return ()
    return tuple(split_host(h) if h.strip() != "*" else "*" for h in text.split(",") if h.strip())


def default_allowed_hosts(bind_host: str) -> tuple[str, ...]:
    """What a server bound to ``bind_host`` answers to without ``--allowed-hosts``: the
    loopback names, plus the bound address itself when it is a specific one."""
    names = list(LOOPBACK_NAMES)
    bound = split_host(bind_host) if bind_host else ""
    if bound and bound not in names and bound not in ("0.0.0.0", "::"):
        names.append(bound)
    return tuple(names)


def host_allowed(host: str, allowed: tuple[str, ...]) -> bool:
    """Whether the Host name ``host`` matches ``allowed`` ("*" = any; "*.x" = x's subdomains)."""
    for pattern in allowed:
        if pattern == "*" or pattern == host:
            return True
        if pattern.startswith("*.") and host.endswith(pattern[1:]):
            return True
    return False


class HostCheckMiddleware:
    """Answer only requests whose ``Host`` header names this server (else 400, JSON detail)."""

    def __init__(self, app: ASGIApp, allowed_hosts: tuple[str, ...] = LOOPBACK_NAMES) -> None:
        self.app = app
        self.allowed_hosts = tuple(allowed_hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        raw = ""
        for name, value in scope.get("headers", []):
            if name == b"host":
                raw = value.decode("latin-1")
                break
        host = split_host(raw)
        if host_allowed(host, self.allowed_hosts):
            await self.app(scope, receive, send)
            return
        detail = (
            f"Host {raw!r} is not served here (this server answers to "
            f"{', '.join(self.allowed_hosts)}); start it with --allowed-hosts to add names"
            if raw
            else "the request has no Host header"
        )
        body = json.dumps({"detail": detail}).encode()
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": 400,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
        except Exception as exc:  # the server's own error type (h11, httptools): any
            # This check answers without reading the body; when the body was malformed, the
            # server has already answered 400 itself and closes: nothing is left to send to.
            # Wait (briefly) until it has seen the connection close, so that it does not
            # report this response as unfinished either.
            log.debug("Host check: the connection was already answered (%s)", exc)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(_until_disconnect(receive), DISCONNECT_WAIT_S)


async def _until_disconnect(receive: Receive) -> None:
    """Receive (and drop) messages until the client's disconnect."""
    while (await receive())["type"] != "http.disconnect":
        pass


def own_origin(request: Request) -> str:
    """This server's origin as the browser sees it: scheme://Host."""
    host = request.headers.get("host", "")
    return f"{request.url.scheme}://{host}".lower()


def cross_site_reason(request: Request) -> str | None:
    """Why a request is cross-site (None: same origin, or not from a browser page)."""
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site.lower() not in SAME_ORIGIN_FETCH:
        return f"Sec-Fetch-Site is {fetch_site!r}"
    origin = request.headers.get("origin")
    if origin is not None and origin.rstrip("/").lower() != own_origin(request):
        return f"Origin {origin!r} is not this server ({own_origin(request)})"
    return None


async def require_same_origin(request: Request) -> None:
    """FastAPI dependency: 403 for a browser request another site made (see module doc)."""
    reason = cross_site_reason(request)
    if reason is not None:
        raise HTTPException(
            status_code=403,
            detail=f"cross-site request refused: {reason}; only this server's own page may "
            "change its feedback store",
        )


def presented_token(request: Request) -> str | None:
    """The admin token a request carries (Bearer or X-Admin-Token), if any."""
    auth = request.headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return request.headers.get(ADMIN_HEADER)


def check_admin(request: Request, *, exposed: bool, admin_token: str | None, what: str) -> None:
    """Raise 401/403 unless the request may ``what`` (always allowed on a loopback server)."""
    if not exposed:
        return
    if not admin_token:
        raise HTTPException(
            status_code=403,
            detail=f"{what} needs an admin token on a server reachable from the network, and "
            "none is configured: start it with --admin-token or DIGITLAB_ADMIN_TOKEN",
        )
    token = presented_token(request)
    if not token:
        raise HTTPException(
            status_code=401,
            detail=f"{what} needs the admin token (Authorization: Bearer TOKEN)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not hmac.compare_digest(token.encode(), admin_token.encode()):
        raise HTTPException(status_code=403, detail=f"{what}: wrong admin token")


async def require_admin(request: Request) -> None:
    """FastAPI dependency: the admin check with the settings on ``app.state.feedback``."""
    settings = request.app.state.feedback.settings
    check_admin(
        request,
        exposed=settings.exposed,
        admin_token=settings.admin_token,
        what=f"{request.method} {request.url.path}",
    )
