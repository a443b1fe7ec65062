"""Operational endpoints: liveness, readiness and the Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel

from service import errors
from service.runtime import RuntimeDep

router = APIRouter(tags=["operations"])


class Status(BaseModel):
    """A probe's answer."""

    status: str


@router.get("/healthz", summary="Liveness", response_model=Status, responses=errors.responses(503))
async def healthz(runtime: RuntimeDep) -> Status | JSONResponse:
    """200 while the process is alive, starting and draining included; 503 when start-up
    failed (`failed`), or when it cannot recover by itself (`wedged`: a replaced replica or
    face workers not back within ABPN_RECOVERY_TIMEOUT_S, a batch dispatcher stopped), so
    that the orchestrator restarts it."""
    error = runtime.liveness_error()
    if error is not None:
        return errors.error_response(error)
    return Status(status="ok")


@router.get("/readyz", summary="Readiness", response_model=Status, responses=errors.responses(503))
async def readyz(runtime: RuntimeDep) -> Status | JSONResponse:
    """200 once the weights are loaded and every replica has run its warm-up batch; 503
    (`not_ready`) before that and while a replica is being replaced, and (`draining`) once
    shutdown began."""
    error = runtime.readiness_error()
    if error is not None:
        return errors.error_response(error)
    return Status(status="ready")


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Text format."}},
)
async def metrics(runtime: RuntimeDep) -> Response:
    """Every `abpn_*` metric, in the Prometheus text format."""
    return Response(runtime.metrics.render(), media_type=CONTENT_TYPE_LATEST)
