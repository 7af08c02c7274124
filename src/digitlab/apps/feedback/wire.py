"""Wiring feedback into a FastAPI app in one call (what ``digitlab serve`` does at integration).

    ctx = install_feedback(app, settings, get_recognizer=..., set_recognizer=...)

adds the Host check as the outermost middleware, includes the router, and opens the store on
``app.state.feedback``. Call it after the app's own middleware is added; close the store with
``ctx.close()`` in the lifespan's shutdown. In a worker process of ``--workers N``
(``settings.shared_dir``), the "Improve" job is shared with the other processes, and a
middleware makes this one follow the models it installs (:mod:`digitlab.apps.feedback.shared`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from digitlab.apps.feedback.improve import FollowImprovements, Improver
from digitlab.apps.feedback.options import FeedbackSettings
from digitlab.apps.feedback.routes import FeedbackContext, router
from digitlab.apps.feedback.security import HostCheckMiddleware
from digitlab.apps.feedback.shared import SharedJob


def install_feedback(
    app: Any,
    settings: FeedbackSettings,
    *,
    get_recognizer: Callable[[], Any],
    set_recognizer: Callable[[Any], None] | None = None,
    load_model: Callable[[str], Any] | None = None,
) -> FeedbackContext:
    """Add the Host check, the ``/api/feedback`` routes and ``app.state.feedback`` to ``app``.

    ``get_recognizer()`` returns the model answering now; ``set_recognizer(rec)`` switches it
    (for "Improve"); ``load_model(path)`` loads the model it switches to (default:
    :func:`digitlab.api.load_model` on the current model's device). Raises StoreError when
    feedback is on and the store cannot be opened.
    """
    ctx = FeedbackContext.open(settings, get_recognizer, set_recognizer, load_model)
    if settings.enabled and settings.shared_dir:
        ctx.improver = Improver(ctx, SharedJob(settings.shared_dir))
        app.add_middleware(FollowImprovements, improver=ctx.improver)
    app.add_middleware(HostCheckMiddleware, allowed_hosts=settings.allowed_hosts)
    app.include_router(router)
    app.state.feedback = ctx
    return ctx


def service_accessors(app: Any) -> tuple[Callable[[], Any], Callable[[Any], None]]:
    """``get_recognizer``/``set_recognizer`` for today's server, whose lifespan puts an
    ``InferenceService`` with a ``recognizer`` attribute on ``app.state.service`` (its
    methods read that attribute once per request, so assigning it is an atomic switch)."""

    def get() -> Any:
        return app.state.service.recognizer

    def put(recognizer: Any) -> None:
        app.state.service.recognizer = recognizer

    return get, put
