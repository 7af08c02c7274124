"""digitlab's web app and REST API (``digitlab serve``).

One FastAPI application serves the drawing page at ``/`` (static files from
:mod:`digitlab.apps.web`, no CDN), a small offline API reference at ``/docs`` and these routes:

==========================  ===============================================================
``POST /api/predict``       one image (multipart field ``file`` or JSON ``{"image": ...}``)
``POST /api/predict/batch`` several images (multipart fields ``files`` or JSON ``{"images"}``),
                            answered one by one (a bad image gets an error object)
``POST /api/number``        a multi-digit number: the string plus one result per digit
``GET /api/model``          which model answers, its accuracy, and the server's input limits
``GET /healthz``            liveness
==========================  ===============================================================

The package is laid out like the FastAPI full-stack template's backend:

* :mod:`.settings` -- :class:`ServerSettings` (also from ``DIGITLAB_SERVE_<OPTION>``);
* :mod:`.schemas` -- the pydantic request and response models;
* :mod:`.errors` -- exception handlers: ``core.errors`` types to 413/415/422;
* :mod:`.middleware` -- body size and time limits, security headers;
* :mod:`.uploads` -- request bodies as FastAPI dependencies (``Annotated[..., Depends()]``);
* :mod:`.service` -- decoding (the one decoder, :mod:`digitlab.engine.decode`) and
  micro-batched inference;
* :mod:`.routes` -- the ``APIRouter`` modules (predict, model, pages);
* :mod:`.app` -- :func:`create_app`, the model loaded once in the lifespan hook;
* :mod:`.runner` -- :func:`run_server`, one process or ``--workers N``.
"""

from __future__ import annotations

from digitlab.apps.server.app import create_app, create_app_from_env, load_recognizer
from digitlab.apps.server.runner import APP_FACTORY, check_port, run_server, tcp_listener
from digitlab.apps.server.settings import DEFAULT_MAX_BODY_BYTES, ServerSettings

__all__ = [
    "APP_FACTORY",
    "DEFAULT_MAX_BODY_BYTES",
    "ServerSettings",
    "check_port",
    "create_app",
    "create_app_from_env",
    "load_recognizer",
    "run_server",
    "tcp_listener",
]
