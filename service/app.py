"""The FastAPI application: `create_app` wires settings, runtime, middleware, error handlers
and routes; its lifespan loads the replicas, warms them up in the background (readiness turns
200 after) and drains on shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from importlib.metadata import PackageNotFoundError, version

from fastapi import FastAPI

from service import auth, docs_assets, errors
from service.config import Settings
from service.middleware import RequestContextMiddleware
from service.routes import demo, health, models, retouch
from service.runtime import Runtime

logger = logging.getLogger("abpn.app")


def _version() -> str:
    try:
        return version("abpn-serve")
    except PackageNotFoundError:
        return "0.0.0"


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    runtime: Runtime = app.state.runtime
    await runtime.start()
    warm_up = asyncio.create_task(runtime.warm_up(), name="abpn-warm-up")
    try:
        yield
    finally:
        # A server stopped without the SIGTERM drain (tests) still lets the requests in flight
        # finish, within what is left of the drain timeout.
        runtime.lifecycle.begin_drain(runtime.settings.drain_timeout_s)
        await runtime.lifecycle.wait_idle(runtime.lifecycle.drain_remaining())
        warm_up.cancel()
        await asyncio.gather(warm_up, return_exceptions=True)
        await runtime.stop()
        logger.info("stopped")


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the service. Settings default to the ABPN_* environment."""
    settings = settings or Settings()
    runtime = Runtime(settings)
    app = FastAPI(
        title="abpn-serve",
        version=_version(),
        summary="Retouches portrait photos up to 8K with ABPN (Adaptive Blend Pyramid Network).",
        description='Every error answers `{"error": {"code": ..., "message": ...}}`.',
        lifespan=_lifespan,
        docs_url=None,  # docs_assets serves /docs and /redoc without a CDN
        redoc_url=None,
        # Starlette's slash redirect is absolute, built from the client's Host header.
        redirect_slashes=False,
    )
    app.state.runtime = runtime
    app.state.metrics = runtime.metrics
    errors.install(app)
    digests = auth.load_keys(settings.api_keys)
    if digests is not None:
        # Added first, so it runs inside the request context (request id, metrics, access log).
        app.add_middleware(auth.ApiKeyMiddleware, digests=digests, metrics=runtime.metrics)
        auth.document(app)
    app.add_middleware(RequestContextMiddleware, metrics=runtime.metrics)
    app.include_router(retouch.router)
    app.include_router(health.router)
    app.include_router(models.router)
    docs_assets.install(app)
    demo.install(app)
    return app
