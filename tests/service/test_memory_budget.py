"""Admission by memory and deadlines that bound the upload and the decode (issue 21): the
budget's leases, a photo refused 503 (or 413) by what its header states before any pixel is
decoded, a declared body refused before it is read, and a decode or upload still running at
the deadline answered 504 with the memory held until its thread lets go."""

from __future__ import annotations

import asyncio
import threading

import pytest
from asgi_support import metric_value, running, wait_until
from images import encoded, picture

from model import photo
from service.errors import ServiceError
from service.memory_budget import MemoryBudget, photo_cost
from service.metrics import Metrics

pytestmark = pytest.mark.anyio

PNG = {"content-type": "image/png"}
MIB = 2**20


def _budget(mb: int) -> MemoryBudget:
    return MemoryBudget(mb * MIB, Metrics(weights_sha256=False))


def test_a_lease_gives_its_bytes_back_when_closed() -> None:
    budget = _budget(4)
    with budget.lease() as lease:
        lease.grow(3 * MIB, "a photo")
        assert budget.held == 3 * MIB
    assert budget.held == 0


def test_past_the_budget_is_503_with_retry_after_and_takes_nothing() -> None:
    budget = _budget(4)
    first, second = budget.lease(), budget.lease()
    first.grow(3 * MIB, "a photo")
    with pytest.raises(ServiceError) as refused:
        second.grow(2 * MIB, "another photo")
    assert refused.value.status == 503 and refused.value.code == "memory_full"
    assert refused.value.headers["Retry-After"]
    assert budget.held == 3 * MIB
    first.close()
    second.grow(2 * MIB, "another photo")
    assert budget.held == 2 * MIB


def test_more_than_the_whole_budget_is_413() -> None:
    with pytest.raises(ServiceError) as refused:
        _budget(1).lease().grow(2 * MIB, "a 8000x6000 photo")
    assert refused.value.status == 413 and "ABPN_MEMORY_BUDGET_MB" in refused.value.message


def test_a_pinned_lease_holds_its_bytes_until_unpinned() -> None:
    budget = _budget(4)
    lease = budget.lease()
    lease.grow(MIB, "a photo")
    lease.pin()
    lease.close()
    assert budget.held == MIB
    lease.unpin()
    assert budget.held == 0
    lease.close()  # idempotent
    assert budget.held == 0


def test_a_photo_costs_its_pixels_and_its_decoders_buffers() -> None:
    jpeg = photo.DecodeCost(7680, 5120, 3 * 7680 * 5120)
    assert photo_cost(jpeg) == 7680 * 5120 * 12
    # A 16-bit RGBA TIFF: the decoder's 8 bytes a pixel, twice over, outweigh the pipeline's.
    tiff = photo.DecodeCost(1000, 1000, 8 * 1000 * 1000)
    assert photo_cost(tiff) == 1000 * 1000 * (4 + 16)


async def test_a_photo_past_the_budget_is_503_until_memory_is_free() -> None:
    body = encoded(picture(384, 512))
    async with running(memory_budget_mb=4) as (app, client):
        budget = app.state.runtime.memory
        filler = budget.lease()
        filler.grow(3 * MIB, "other photos")
        refused = await client.post("/v1/retouch", content=body, headers=PNG)
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "memory_full"
        assert refused.headers["retry-after"]
        filler.close()
        ok = await client.post("/v1/retouch", content=body, headers=PNG)
        assert ok.status_code == 200
        assert budget.held == 0
        metrics = (await client.get("/metrics")).text
        assert metric_value(metrics, "abpn_requests_rejected_total", reason="memory_full") == 1
        assert metric_value(metrics, "abpn_memory_in_flight_bytes") == 0
        assert metric_value(metrics, "abpn_memory_budget_bytes") == 4 * MIB


async def test_a_photo_needing_more_than_the_whole_budget_is_413() -> None:
    async with running(memory_budget_mb=1) as (_, client):
        response = await client.post("/v1/retouch", content=encoded(picture(384, 512)), headers=PNG)
        assert response.status_code == 413
        assert "ABPN_MEMORY_BUDGET_MB" in response.json()["error"]["message"]


async def test_a_declared_body_past_the_budget_is_refused_before_it_is_read() -> None:
    read = []

    async def body():
        read.append(True)
        yield b"\x00" * (2 * MIB)

    async with running(memory_budget_mb=4) as (app, client):
        filler = app.state.runtime.memory.lease()
        filler.grow(3 * MIB, "other photos")
        headers = {**PNG, "content-length": str(2 * MIB)}
        response = await client.post("/v1/retouch", content=body(), headers=headers)
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "memory_full"
        filler.close()
        assert app.state.runtime.memory.held == 0


async def test_a_decode_past_the_deadline_is_504_and_holds_its_memory_until_it_ends(
    monkeypatch,
) -> None:
    real_decode = photo.decode
    release = threading.Event()

    def stuck_decode(data, max_pixels=None, admit=None):
        def admit_then_hang(cost: photo.DecodeCost) -> None:
            admit(cost)
            release.wait(30)

        return real_decode(data, max_pixels, admit_then_hang)

    monkeypatch.setattr(photo, "decode", stuck_decode)
    async with running() as (app, client):
        budget = app.state.runtime.memory
        response = await client.post(
            "/v1/retouch",
            content=encoded(picture(384, 512)),
            headers={**PNG, "x-request-timeout": "0.5"},
        )
        assert response.status_code == 504
        assert response.json()["error"]["code"] == "deadline_exceeded"
        assert "decoding" in response.json()["error"]["message"]
        # The abandoned decode still runs: its photo's memory stays counted until it ends.
        assert budget.held >= 384 * 512 * 12
        release.set()
        await wait_until(lambda: budget.held == 0)


async def test_an_upload_still_arriving_at_the_deadline_is_504_and_closed() -> None:
    async def slow_body():
        yield encoded(picture())[:100]
        await asyncio.sleep(5)
        yield b"never read"

    async with running(read_timeout_s=60) as (_, client):
        response = await client.post(
            "/v1/retouch", content=slow_body(), headers={**PNG, "x-request-timeout": "0.5"}
        )
        assert response.status_code == 504
        assert response.json()["error"]["code"] == "deadline_exceeded"
        assert "upload" in response.json()["error"]["message"]
        assert response.headers["connection"] == "close"


async def test_a_chunked_body_past_the_budget_is_cut_with_503_and_closed() -> None:
    async def chunked():
        for _ in range(4):
            yield b"\x00" * MIB

    async with running(memory_budget_mb=4) as (app, client):
        filler = app.state.runtime.memory.lease()
        filler.grow(2 * MIB, "other photos")
        response = await client.post("/v1/retouch", content=chunked(), headers=PNG)
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "memory_full"
        assert response.headers["connection"] == "close"
        filler.close()
        assert app.state.runtime.memory.held == 0
