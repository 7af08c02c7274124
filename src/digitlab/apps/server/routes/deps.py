"""Dependencies shared by the routers.

They are ``async def`` on purpose: FastAPI runs a plain ``def`` dependency in the thread pool,
a thread switch per request (measured: ~1 ms of CPU a request on the 2-core machine) for what
is an attribute lookup.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request

from digitlab.apps.server.service import InferenceService
from digitlab.apps.server.settings import ServerSettings


async def get_service(request: Request) -> InferenceService:
    """The application's inference service (created in the lifespan hook)."""
    return request.app.state.service


async def get_settings(request: Request) -> ServerSettings:
    """The application's settings."""
    return request.app.state.settings


Service = Annotated[InferenceService, Depends(get_service)]
Settings = Annotated[ServerSettings, Depends(get_settings)]
WantImages = Annotated[
    bool,
    Query(
        description="include the 28x28 preview PNG (`preprocessed`); false saves its encoding "
        "and ~1 kB per prediction",
    ),
]
