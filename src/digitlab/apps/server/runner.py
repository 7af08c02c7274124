"""Running the app: one uvicorn process, or ``--workers N`` processes on one port.

With several workers each listens on a socket of its own, bound to the same port with
``SO_REUSEPORT`` (where the system has it), and the kernel spreads new connections over them
(:func:`_run_workers`). On one shared socket, the worker whose event loop wakes first takes
every connection waiting (asyncio accepts up to the backlog at a time): 32 keep-alive clients
that connect together landed 32-0 or 31-1 on one worker in 7 of 10 tries, and the 32-client
benchmark then ran at one worker's speed (0.48-0.54x the reference's requests/s against
0.82-0.84x in the runs where they were spread).

The limits for slow or hostile clients are set here: each request head must be complete
within ``settings.keep_alive_s`` of connecting or of the previous response, so idle and
trickling connections are closed (:class:`GuardedH11Protocol`); h11 refuses request heads over
:data:`MAX_HEAD_BYTES`; the body must arrive within ``settings.body_timeout_s``
(:mod:`.middleware`). Every connection is
a coroutine on the event loop, so a slow client holds a socket, never a worker thread.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import inspect
import logging
import os
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.supervisors import Multiprocess

from digitlab.apps.server.app import create_app
from digitlab.apps.server.settings import ServerSettings
from digitlab.core.errors import DigitlabError

logger = logging.getLogger(__name__)

APP_FACTORY = "digitlab.apps.server.app:create_app_from_env"
# Largest request line + headers h11 buffers (its default is 16 KiB; ours are small requests).
MAX_HEAD_BYTES = 16 * 1024


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for each request head.

    uvicorn closes a keep-alive connection that stays silent for ``timeout_keep_alive`` after
    a response, but any byte cancels that timer, and a new connection has none: a client that
    connects and sends nothing, or trickles its headers a byte at a time, would hold its
    socket forever. Here the head of each request (the first one after connecting, the next
    one after each response) must be complete within ``timeout_keep_alive`` seconds, else
    the connection is closed.
    """

    def connection_made(self, transport: Any) -> None:
        """uvicorn's hook, plus the deadline for the first request head."""
        super().connection_made(transport)
        self._arm_head_deadline()

    def on_response_complete(self) -> None:
        """uvicorn's hook, plus the deadline for the next request head."""
        super().on_response_complete()
        self._arm_head_deadline()

    def _arm_head_deadline(self) -> None:
        waiting_after = self.cycle  # a new request replaces the cycle
        self.loop.call_later(self.timeout_keep_alive, self._head_deadline, waiting_after)

    def _head_deadline(self, waiting_after: Any) -> None:
        if self.cycle is waiting_after and not self.transport.is_closing():
            logger.debug("closing a connection that sent no complete request head in time")
            self.transport.close()


def uvicorn_options(settings: ServerSettings) -> dict[str, Any]:
    """The uvicorn.Config keyword arguments for ``settings`` (besides the app)."""
    return {
        "host": settings.host,
        "port": settings.port,
        "access_log": settings.access_log,
        "log_level": "info",
        "ws": "none",  # the page and the API speak plain HTTP/1.1
        "http": GuardedH11Protocol,
        "timeout_keep_alive": settings.keep_alive_s,
        "h11_max_incomplete_event_size": MAX_HEAD_BYTES,
    }


def check_port(settings: ServerSettings) -> None:
    """Fail with one clear line when the port is taken (before any model is loaded)."""
    if settings.port == 0:
        return
    with socket.socket(_family(settings.host), socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            sock.bind((settings.host, settings.port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise DigitlabError(
                    f"port {settings.port} on {settings.host} is already in use; "
                    f"choose another with --port (e.g. --port {_suggest(settings)})"
                ) from None
            raise DigitlabError(
                f"cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc}"
            ) from None


def _family(host: str) -> socket.AddressFamily:
    """The address family of a host to listen on (an IPv6 address has colons)."""
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _suggest(settings: ServerSettings) -> int:
    """A free port near the taken one (or 0 = any free port)."""
    for port in range(settings.port + 1, min(settings.port + 20, 65535)):
        with socket.socket() as sock:
            try:
                sock.bind((settings.host, port))
            except OSError:
                continue
            return port
    return 0


def run_server(
    settings: ServerSettings,
    *,
    recognizer: Any = None,
    feedback: Any = None,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve until interrupted, in this process or in ``settings.workers`` processes.

    ``on_ready(url)`` is called once the server accepts connections (with one worker; with
    several it is called just before the workers start, as each loads its own model).
    """
    options = uvicorn_options(settings)
    if settings.workers == 1:
        app = create_app(settings, recognizer=recognizer, feedback=feedback)
        config = uvicorn.Config(app, **options)
        AnnouncingServer(config, on_ready).run()
        return
    if settings.port == 0:
        raise DigitlabError("port 0 (any free port) needs a single worker; choose a port")
    with _shared_folder(feedback) as feedback:
        os.environ.update(settings.to_env())
        if feedback is not None:
            os.environ.update(feedback.to_env())
        if on_ready is not None:
            on_ready(settings.url)
        _run_workers(uvicorn.Config(APP_FACTORY, factory=True, workers=settings.workers, **options))


@contextlib.contextmanager
def _shared_folder(feedback: Any) -> Iterator[Any]:
    """The feedback settings with a folder the worker processes share the "Improve" job
    through (:mod:`digitlab.apps.feedback.shared`), removed when the server stops; unchanged
    when feedback is off."""
    if feedback is None or not feedback.enabled:
        yield feedback
        return
    folder = tempfile.mkdtemp(prefix="digitlab-serve-")
    try:
        yield dataclasses.replace(feedback, shared_dir=folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _run_workers(config: uvicorn.Config) -> None:
    """What ``uvicorn.run(..., workers=N)`` does, with a listening socket per worker
    (:func:`reuse_port_listeners`, where the system and uvicorn allow) and listeners that
    keep TCP_NODELAY.

    uvicorn binds its shared socket with ``proto`` 0; accepted connections inherit it and
    asyncio then leaves Nagle's algorithm on, so every keep-alive response waits ~40 ms for
    the client's delayed ACK (uvicorn issue #3149; measured here: /healthz 48 ms with
    ``--workers 2`` vs 0.6 ms with one). Re-wrapping the listener as IPPROTO_TCP fixes it.
    """
    if "target" in inspect.signature(Multiprocess).parameters:  # uvicorn < 0.36
        sock = tcp_listener(config.bind_socket())
        Multiprocess(config, target=uvicorn.Server(config).run, sockets=[sock]).run()
        return
    if not hasattr(socket, "SO_REUSEPORT"):  # run_server listens on host:port only
        Multiprocess(config, sockets=[tcp_listener(config.bind_socket())]).run()
        return
    OwnSocketSupervisor(config, reuse_port_listeners(config)).run()


def reuse_port_listeners(config: uvicorn.Config) -> list[socket.socket]:
    """``config.workers`` TCP sockets listening on ``config.host:config.port``, each with
    ``SO_REUSEPORT`` (the kernel spreads new connections over them by their addresses).
    Another program can still not take the port: it would need ``SO_REUSEPORT`` too and run as
    the same user, and :func:`check_port` refuses a port that is in use before any of this."""
    family = _family(config.host)
    listeners: list[socket.socket] = []
    try:
        for _ in range(config.workers):
            sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
            listeners.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((config.host, config.port))
            sock.listen(config.backlog)
            sock.set_inheritable(True)
    except OSError as exc:
        for sock in listeners:
            sock.close()
        raise DigitlabError(
            f"cannot listen on {config.host}:{config.port}: {exc.strerror or exc}"
        ) from None
    host = f"[{config.host}]" if family == socket.AF_INET6 else config.host
    logging.getLogger("uvicorn.error").info(
        "Uvicorn running on http://%s:%d, a socket for each of %d workers (SO_REUSEPORT)",
        host,
        config.port,
        config.workers,
    )
    return listeners


class OwnSocketSupervisor(Multiprocess):
    """uvicorn's worker supervisor (uvicorn >= 0.36), worker ``i`` listening on ``sockets[i]``.

    A worker started later (one that replaces a worker that died, SIGHUP's restart, SIGTTIN's
    extra one) listens on all of them, so every socket keeps a listener; SIGTTOU (one worker
    fewer) is refused, as it would leave a socket without one.
    """

    def init_processes(self) -> None:
        """Start the workers, each on its own socket."""
        from uvicorn.supervisors.multiprocess import Process

        for sock in self.sockets[: self.processes_num]:
            process = Process(self.config, [sock])
            process.start()
            self.processes.append(process)

    def handle_ttou(self) -> None:
        """Refuse: the worker stopped would leave its socket without a listener."""
        logger.warning(
            "SIGTTOU ignored: each worker has its own socket; restart with fewer --workers"
        )


def tcp_listener(sock: socket.socket) -> socket.socket:
    """The same listening socket, reporting ``IPPROTO_TCP`` so that asyncio sets TCP_NODELAY
    on the connections it accepts (a no-op for sockets that already do, or are not TCP)."""
    if sock.family not in (socket.AF_INET, socket.AF_INET6) or sock.proto != 0:
        return sock
    return socket.socket(sock.family, sock.type, socket.IPPROTO_TCP, fileno=sock.detach())


def server_url(server: Any) -> str:
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
            self.on_ready(server_url(self))
