"""The API's routers, gathered into :data:`api_router` (the page routes are separate)."""

from __future__ import annotations

from fastapi import APIRouter

from digitlab.apps.server.routes import model, predict

api_router = APIRouter()
api_router.include_router(predict.router)
api_router.include_router(model.router)
