"""One error type, one JSON shape: every error answers `{"error": {"code", "message"}}` with
its status, whether it came from our code, the codec, the batcher, routing (404, 405) or
parameter validation (422)."""

from __future__ import annotations

import http
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from model.photo import PhotoError
from service import batcher

logger = logging.getLogger("abpn.errors")

RETRY_AFTER_S = 1
"""Retry-After (seconds) sent with every 503."""

CLIENT_CLOSED_REQUEST = 499
"""Status logged for requests whose client went away (nginx's convention; nobody reads it)."""


class ErrorDetail(BaseModel):
    """What went wrong."""

    code: str
    message: str


class ErrorBody(BaseModel):
    """The body of every error response."""

    error: ErrorDetail


class ServiceError(Exception):
    """An error answered as `status` with the JSON error body and optional headers."""

    def __init__(
        self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


def unavailable(code: str, message: str) -> ServiceError:
    """A 503 that tells the client when to try again."""
    return ServiceError(503, code, message, {"Retry-After": str(RETRY_AFTER_S)})


_PHOTO_STATUS = {
    "unsupported_media_type": 415,
    "invalid_image": 400,
    "image_too_large": 413,
    "format_limit": 422,
}


def as_service_error(exc: Exception) -> ServiceError:
    """The ServiceError a domain exception is answered with."""
    if isinstance(exc, ServiceError):
        return exc
    if isinstance(exc, PhotoError):
        return ServiceError(_PHOTO_STATUS.get(exc.code, 400), exc.code, exc.message)
    if isinstance(exc, batcher.QueueFull):
        return unavailable("queue_full", str(exc))
    if isinstance(exc, batcher.Overloaded):
        return ServiceError(503, "overloaded", str(exc), {"Retry-After": str(exc.retry_after_s)})
    if isinstance(exc, batcher.ShuttingDown):
        return unavailable("shutting_down", str(exc))
    if isinstance(exc, batcher.ModelOutOfMemory):
        return unavailable("out_of_memory", str(exc))
    if isinstance(exc, batcher.DeadlineExceeded):
        return ServiceError(504, "deadline_exceeded", str(exc))
    if isinstance(exc, batcher.ClientGone):
        return ServiceError(CLIENT_CLOSED_REQUEST, "client_closed_request", str(exc))
    if isinstance(exc, ClientDisconnect):
        return ServiceError(
            CLIENT_CLOSED_REQUEST, "client_closed_request", "client disconnected during upload"
        )
    if isinstance(exc, batcher.ModelFailed):
        return ServiceError(500, "model_error", str(exc))
    if isinstance(exc, batcher.ModelTimeout):
        return ServiceError(504, "model_timeout", str(exc))
    if isinstance(exc, batcher.ReplicaDied):
        return ServiceError(500, "replica_died", str(exc))
    return ServiceError(500, "internal_error", "internal server error")


def error_response(error: ServiceError) -> JSONResponse:
    """The JSON response for `error`."""
    body = ErrorBody(error=ErrorDetail(code=error.code, message=error.message))
    return JSONResponse(body.model_dump(), status_code=error.status, headers=error.headers)


def validation_message(errors: Iterable[Mapping[str, Any]]) -> str:
    """One readable line from pydantic's error list, e.g. "query.strength: Input should be less
    than or equal to 1.5"."""
    parts = []
    for err in errors:
        where = ".".join(str(p) for p in err.get("loc", ()))
        parts.append(f"{where}: {err.get('msg', 'invalid')}" if where else str(err.get("msg")))
    return "; ".join(parts) or "invalid request"


def _record(request: Request, error: ServiceError, exc: Exception) -> None:
    """Count the outcome once, where every error passes."""
    metrics = getattr(request.app.state, "metrics", None)
    if metrics is None:
        return
    if isinstance(exc, batcher.ClientGone):
        metrics.cancelled.labels(exc.stage).inc()
    elif isinstance(exc, ClientDisconnect):
        metrics.cancelled.labels("upload").inc()
    elif error.code == "deadline_exceeded":
        metrics.timed_out.inc()
    elif error.status != 404:
        metrics.rejected.labels(error.code).inc()


async def _handle_domain(request: Request, exc: Exception) -> JSONResponse:
    error = as_service_error(exc)
    if error.status == 500:
        # Only a bug gets a traceback: every other status is the client's doing or the load's
        # (a 504 for a 1 ns X-Request-Timeout), and the access line records it already.
        logger.error("request failed: %s", error.message, exc_info=exc)
    _record(request, error, exc)
    return error_response(error)


async def _handle_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    try:
        phrase = http.HTTPStatus(exc.status_code).phrase
    except ValueError:
        phrase = "error"
    code = phrase.lower().replace(" ", "_").replace("-", "_")
    error = ServiceError(exc.status_code, code, str(exc.detail or phrase), exc.headers)
    _record(request, error, exc)
    return error_response(error)


async def _handle_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
    error = ServiceError(422, "invalid_parameter", validation_message(exc.errors()))
    _record(request, error, exc)
    return error_response(error)


def install(app: FastAPI) -> None:
    """Route every error the app can raise to the JSON shape."""
    for exc_type in (
        ServiceError,
        PhotoError,
        batcher.BatcherError,
        ClientDisconnect,
    ):
        app.add_exception_handler(exc_type, _handle_domain)
    app.add_exception_handler(StarletteHTTPException, _handle_http)
    app.add_exception_handler(RequestValidationError, _handle_validation)


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for the given error statuses."""
    return {
        status: {"model": ErrorBody, "description": DESCRIPTIONS[status]} for status in statuses
    }


DESCRIPTIONS = {
    400: "invalid_image: the image is corrupt, truncated or empty; invalid_multipart; "
    "bad_request: the HTTP framing itself is malformed.",
    401: "unauthorized: ABPN_API_KEYS is set and the request has no valid "
    "`Authorization: Bearer <key>`.",
    408: "upload_timeout: the body did not arrive within ABPN_READ_TIMEOUT_S plus its length "
    "over ABPN_MIN_UPLOAD_RATE; request_timeout: the headers took longer than "
    "ABPN_READ_TIMEOUT_S.",
    404: "not_found.",
    405: "method_not_allowed.",
    413: "body_too_large (over ABPN_MAX_BODY_BYTES, refused before it is read) or "
    "image_too_large (over ABPN_MAX_PIXELS, or needing more than the whole "
    "ABPN_MEMORY_BUDGET_MB, read from the header before decoding).",
    415: "unsupported_media_type: missing or unsupported Content-Type, or not JPEG, PNG, WebP "
    "or TIFF data.",
    422: "invalid_parameter: a query, form or header parameter is out of range; "
    "format_limit: the output format cannot hold this image (size or metadata).",
    500: "internal_error, model_error or replica_died (the model's process died while it "
    "held this request; it is being replaced).",
    503: "queue_full, overloaded (the work queued ahead would outlast the deadline), "
    "memory_full (the photos in flight hold ABPN_MEMORY_BUDGET_MB), "
    "not_ready, draining, shutting_down or out_of_memory; with Retry-After.",
    504: "deadline_exceeded: still queued at the request's deadline; it was never computed. "
    "model_timeout: its batch ran past ABPN_BATCH_TIMEOUT_S, or its face parse (or another "
    "one on the same face workers) past ABPN_FACES_TIMEOUT_S; the process was replaced.",
}
