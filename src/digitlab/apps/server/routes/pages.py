"""The drawing page (``/``), the offline API reference (``/docs``) and the favicon.

``/docs`` is this package's own page (``web/docs.html``) rendering ``/openapi.json``:
FastAPI's Swagger UI and ReDoc pages load their scripts from a CDN and no installed package
ships those assets, so they are switched off; the page must work offline. The static files
(``/static``) are mounted by the app factory.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

WEB_DIR = Path(__file__).resolve().parents[2] / "web"
NO_CACHE = {"Cache-Control": "no-cache"}

router = APIRouter(include_in_schema=False)


@router.get("/")
async def index() -> FileResponse:
    """The drawing page."""
    return FileResponse(WEB_DIR / "index.html", headers=NO_CACHE)


@router.get("/docs")
async def docs() -> FileResponse:
    """The API reference page."""
    return FileResponse(WEB_DIR / "docs.html", headers=NO_CACHE)


@router.get("/favicon.ico")
async def favicon() -> FileResponse:
    """The icon."""
    return FileResponse(WEB_DIR / "icon.svg", media_type="image/svg+xml")
