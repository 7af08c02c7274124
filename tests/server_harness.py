"""A real uvicorn server on a loopback port, in a daemon thread (for the tests)."""

from __future__ import annotations

import threading
import time

import uvicorn
from fastapi import FastAPI

from digitlab.apps.server.runner import server_url, uvicorn_options
from digitlab.apps.server.settings import ServerSettings

STARTUP_TIMEOUT_S = 60.0
POLL_S = 0.02


class BackgroundServer:
    """``with BackgroundServer(app) as url:`` yields ``http://127.0.0.1:PORT`` once the server
    accepts connections (port 0 = a free port chosen by the OS) and stops it on exit.

    The server gets the same uvicorn options as ``digitlab serve`` (keep-alive and h11 limits)
    from the app's settings.
    """

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0) -> None:
        settings: ServerSettings = app.state.settings
        options = uvicorn_options(settings) | {"host": host, "port": port, "log_level": "warning"}
        self.server = uvicorn.Server(uvicorn.Config(app, **options))
        self.thread = threading.Thread(target=self.server.run, name="digitlab-server", daemon=True)
        self.url = ""

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start (see the log above)")
            time.sleep(POLL_S)
        self.url = server_url(self.server).rstrip("/")
        return self.url

    def __exit__(self, *exc_info: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=STARTUP_TIMEOUT_S)
