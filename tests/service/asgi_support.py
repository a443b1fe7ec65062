"""Helpers of the ASGI-level tests: an app on random weights with its lifespan running, an httpx
client on it through the ASGI transport, small test images, metric lookup."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI
from PIL import Image

from service.app import create_app
from service.config import Settings
from service.lifecycle import Phase


def decoded(data: bytes) -> Image.Image:
    """Pillow's view of response bytes."""
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


async def wait_until(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    """Poll `predicate` on the event loop until it holds (bounded)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)


@asynccontextmanager
async def running(**overrides: Any) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """An app on random weights, lifespan started and warmed up, with a client on it."""
    settings = Settings(**{"weights": "random", "devices": "cpu", **overrides})
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        await wait_until(lambda: app.state.runtime.lifecycle.phase is Phase.READY)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://abpn") as client:
            yield app, client


def metric_value(text: str, name: str, /, **labels: str) -> float:
    """The sample `name{labels}` from a /metrics page (0 when absent)."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0
