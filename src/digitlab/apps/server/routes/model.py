"""``GET /api/model`` and ``GET /healthz``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool

from digitlab import __version__
from digitlab.apps.server.routes.deps import Service
from digitlab.apps.server.schemas import HealthOut, Limits, ModelOut
from digitlab.core.constants import IMAGE_FORMATS

router = APIRouter(tags=["service"])


@router.get("/api/model", response_model=ModelOut, summary="The model")
async def model(service: Service, request: Request) -> dict[str, Any]:
    """Which model answers, where it was loaded from, its accuracy, where the network that
    scores a number's cuts came from, the input limits, and whether this server keeps
    corrections (``feedback``; null when it has no feedback API)."""
    settings = service.settings
    limits = Limits(
        max_body_bytes=settings.max_body_bytes,
        max_pixels=settings.max_pixels,
        max_batch=settings.max_batch,
        formats=[f.pillow.lower() for f in IMAGE_FORMATS],
    )
    feedback = getattr(request.app.state, "feedback", None)
    rec = service.recognizer
    # off the loop: an app given its recogniser (tests, embedders) loads the scorer here, once
    scorer = await run_in_threadpool(rec.cut_scorer) if hasattr(rec, "cut_scorer") else rec
    return {
        **rec.info.to_dict(),
        "cut_scorer": None if scorer is rec else str(scorer.info.source),
        "limits": limits,
        "feedback": feedback.status() if feedback is not None else None,
    }


@router.get("/healthz", response_model=HealthOut, summary="Liveness")
async def healthz() -> dict[str, str]:
    """`{"status": "ok"}` once the model is loaded."""
    return {"status": "ok", "version": __version__}
