"""GET /v1/models: what is served, where, and how requests are batched."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from service import errors
from service.runtime import RuntimeDep

router = APIRouter(tags=["models"])


class Batching(BaseModel):
    """The dynamic batching settings."""

    max_batch_size: int
    max_batch_wait_ms: float
    max_queue: int


class Limits(BaseModel):
    """The request limits."""

    max_body_bytes: int
    max_pixels: int
    request_timeout_s: float


class ModelCard(BaseModel):
    """The served model."""

    name: str
    version: str
    weights_sha256: str
    devices: list[str]
    batching: Batching
    limits: Limits


@router.get("/v1/models", summary="The served model", responses=errors.responses(401, 503))
async def models(runtime: RuntimeDep) -> ModelCard:
    """Model name, version and weights SHA-256, the devices holding a replica, the batching
    settings and the request limits."""
    info = runtime.info
    if info is None:
        raise errors.unavailable("not_ready", "the model is still loading")
    s = runtime.settings
    return ModelCard(
        name=info.name,
        version=info.version,
        weights_sha256=info.sha256,
        devices=runtime.devices,
        batching=Batching(
            max_batch_size=s.max_batch_size,
            max_batch_wait_ms=s.max_batch_wait_ms,
            max_queue=s.max_queue,
        ),
        limits=Limits(
            max_body_bytes=s.max_body_bytes,
            max_pixels=s.max_pixels,
            request_timeout_s=s.request_timeout_s,
        ),
    )
