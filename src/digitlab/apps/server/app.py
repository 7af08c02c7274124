"""The application factory: :func:`create_app` builds the FastAPI app, loading the model once.

The model is loaded in the lifespan hook (once per process; ``--workers N`` processes load
one each) and warmed up with one prediction before the first request is accepted.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool
from fastapi.staticfiles import StaticFiles

from digitlab import __version__
from digitlab.apps.feedback.options import FeedbackSettings
from digitlab.apps.feedback.options import settings_from_env as feedback_settings_from_env
from digitlab.apps.feedback.wire import install_feedback, service_accessors
from digitlab.apps.server.errors import add_exception_handlers
from digitlab.apps.server.middleware import BodyLimitMiddleware, SecurityHeadersMiddleware
from digitlab.apps.server.routes import api_router, pages
from digitlab.apps.server.service import InferenceService
from digitlab.apps.server.settings import ServerSettings
from digitlab.core.resolve import is_bundled_name
from digitlab.core.settings import ENV_ORT_THREADS

logger = logging.getLogger(__name__)


def serving_backend(settings: ServerSettings) -> str:
    """The backend the server runs: ``--backend auto`` serves the bundled model with ONNX
    Runtime when it is installed (its shipped ``default.onnx`` gives the same answers as the
    checkpoint and runs a small batch about twice as fast as PyTorch on one thread); any other
    model, or an explicit backend, is loaded as :func:`digitlab.api.load_model` would. A GPU
    (``--device``) means PyTorch."""
    if settings.device != "cpu":
        return "torch"
    if (
        settings.backend == "auto"
        and is_bundled_name(settings.model)
        and importlib.util.find_spec("onnxruntime") is not None
    ):
        return "onnx"
    return settings.backend


def load_recognizer(settings: ServerSettings) -> Any:
    """Load ``settings.model`` for serving (raises CheckpointError), its threads set once:
    ONNX Runtime's through ``$DIGITLAB_ORT_THREADS`` (unless already set), PyTorch's with
    :func:`digitlab.engine.backends.torch.set_inference_threads`; a PyTorch network is then
    traced and frozen (:meth:`~digitlab.engine.backends.torch.TorchBackend.trace`). The cut
    scorer number reading uses is loaded (and traced) here too."""
    from digitlab.api import load_model

    os.environ.setdefault(ENV_ORT_THREADS, str(settings.threads))
    recognizer = load_model(
        settings.model, backend=serving_backend(settings), device=settings.device
    )
    scorer = recognizer.cut_scorer()  # loaded now, not by the first /api/number request
    if recognizer.info.backend == "torch":
        from digitlab.engine.backends.torch import set_inference_threads

        set_inference_threads(settings.threads)
        for network in dict.fromkeys((recognizer.backend, scorer.backend)):  # once if the same
            trace = getattr(network, "trace", None)  # a frozen trace: less CPU a pass
            if trace is not None:
                trace()
    return recognizer


def create_app(
    settings: ServerSettings | None = None,
    *,
    recognizer: Any = None,
    feedback: FeedbackSettings | None = None,
) -> FastAPI:
    """Build the application.

    ``recognizer`` (an object with the :class:`digitlab.engine.recognizer.Recognizer` API) is
    used as it is when given (the process's thread settings are left alone: tests embed apps
    this way); otherwise ``settings.model`` is loaded once in the lifespan hook. ``feedback``
    adds the corrections API (``/api/feedback``), its store, and the Host check that keeps
    other sites' pages and rebinding DNS names away (``digitlab serve`` always passes it).
    """
    settings = settings or ServerSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        rec = recognizer
        if rec is None:
            rec = await run_in_threadpool(load_recognizer, settings)
        service = InferenceService(rec, settings)
        await service.start()
        app.state.service = service
        info = rec.info
        logger.info("model %s (%s, %s) ready", info.name, info.backend, info.source)
        try:
            yield
        finally:
            await service.stop()
            if getattr(app.state, "feedback", None) is not None:
                app.state.feedback.close()

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
    app.add_middleware(
        BodyLimitMiddleware,
        max_body_bytes=settings.max_body_bytes,
        body_timeout_s=settings.body_timeout_s,
    )
    add_exception_handlers(app)
    app.include_router(api_router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=pages.WEB_DIR), name="static")
    app.state.feedback = None
    if feedback is not None:  # last, so that its Host check is the outermost middleware
        get, put = service_accessors(app)

        def load(path: str) -> Any:  # as at start: threads, a traced network, the cut scorer
            # (the backend by the file: --backend onnx named the bundled model's, and the
            # improved model is a checkpoint)
            return load_recognizer(dataclasses.replace(settings, model=path, backend="auto"))

        install_feedback(app, feedback, get_recognizer=get, set_recognizer=put, load_model=load)
    return app


def create_app_from_env() -> FastAPI:
    """Import-string factory for uvicorn workers: settings come from ``DIGITLAB_SERVE_*``."""
    settings = ServerSettings.from_env()
    return create_app(settings, feedback=feedback_settings_from_env(settings.host))
