"""Per-request context, as a pure ASGI middleware (it never buffers bodies): the request id
(echoed, or made), arrival time, the request counter and latency histogram, the access log
line, and a JSON 500 for anything unexpected."""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import ServiceError, error_response
from service.log_format import request_id
from service.metrics import Metrics

logger = logging.getLogger("abpn.access")

_VALID_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
# Probes and scrapes are frequent and uninteresting: logged at debug level only.
_QUIET_PATHS = {"/healthz", "/readyz", "/metrics"}
# The metric's method label takes these or "other": a client may send any token as the method,
# and each new label value would be a new time series kept for the life of the process.
_METHODS = {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"}


class RequestContextMiddleware:
    """Wraps every HTTP request of the app."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI call."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = Headers(scope=scope).get("x-request-id", "")
        if not _VALID_ID.fullmatch(rid):
            rid = uuid.uuid4().hex
        token = request_id.set(rid)
        scope.setdefault("state", {})["arrived_at"] = time.monotonic()
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
                headers = MutableHeaders(scope=message)
                headers["X-Request-ID"] = rid
                # No response is to be sniffed into another type (an upload echoed as HTML).
                headers["X-Content-Type-Options"] = "nosniff"
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            logger.exception("unhandled error")
            if response_started:
                raise
            await error_response(ServiceError(500, "internal_error", "internal server error"))(
                scope, receive, send_with_id
            )
        finally:
            self._observe(scope, status, time.perf_counter() - started)
            request_id.reset(token)

    def _observe(self, scope: Scope, status: int, seconds: float) -> None:
        route = getattr(scope.get("route"), "path", None) or "unmatched"
        method = scope["method"] if scope["method"] in _METHODS else "other"
        self.metrics.requests.labels(route, method, str(status)).inc()
        self.metrics.request_seconds.labels(route).observe(seconds)
        level = logging.DEBUG if scope["path"] in _QUIET_PATHS else logging.INFO
        logger.log(
            level,
            "%s %s %d",
            scope["method"],
            scope["path"],
            status,
            extra={
                "request_id": request_id.get(),
                "status": status,
                "duration_ms": round(seconds * 1000, 2),
                "route": route,
            },
        )
