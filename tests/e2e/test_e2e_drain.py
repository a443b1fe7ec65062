"""SIGTERM in the middle of 20 concurrent requests: readiness and new requests turn 503, every
accepted request is answered 200, and the process exits cleanly within the drain timeout. And
when the work left is longer than the drain timeout, the process still exits on time, having
answered every request (200, or 503 to retry elsewhere)."""

from __future__ import annotations

import asyncio
import signal
import time

import httpx
import pytest
from images import encoded, slow_portrait
from server_support import start_server, wait_for

DRAIN_TIMEOUT_S = 60


def test_sigterm_drains_every_accepted_request(tmp_path) -> None:
    server = start_server(tmp_path, max_batch_size=4, max_queue=32, drain_timeout_s=DRAIN_TIMEOUT_S)
    try:
        # Real faces, so that the 20 take a few seconds however the faces are parsed (a picture
        # without one comes back almost at once): the drain is observable while it runs.
        bodies = [encoded(slow_portrait(300, 256, seed=i)) for i in range(20)]

        async def scenario() -> tuple[list[int], int, int, str]:
            async with httpx.AsyncClient(base_url=server.url, timeout=120) as client:
                tasks = [
                    asyncio.create_task(
                        client.post("/v1/retouch", content=b, headers={"content-type": "image/png"})
                    )
                    for b in bodies
                ]
                await asyncio.to_thread(
                    wait_for,
                    lambda: server.metric("abpn_in_flight_requests") == 20,
                    60,
                    "all 20 requests accepted",
                )
                server.proc.send_signal(signal.SIGTERM)
                sent_at = time.monotonic()
                ready = await client.get("/readyz")
                while ready.status_code == 200 and time.monotonic() - sent_at < 5:
                    await asyncio.sleep(0.02)
                    ready = await client.get("/readyz")
                async with httpx.AsyncClient(base_url=server.url, timeout=30) as fresh:
                    late = await fresh.post(
                        "/v1/retouch", content=bodies[0], headers={"content-type": "image/png"}
                    )
                # Answered at all means still draining: once nothing is in flight the server
                # stops listening, and this would be a connection error instead.
                done = await asyncio.gather(*tasks)
                return (
                    [r.status_code for r in done],
                    ready.status_code,
                    late.status_code,
                    late.json()["error"]["code"],
                )

        statuses, ready_status, late_status, late_code = asyncio.run(scenario())
        assert ready_status == 503
        assert (late_status, late_code) == (503, "draining")
        assert statuses == [200] * 20
        started = time.monotonic()
        assert server.proc.wait(DRAIN_TIMEOUT_S) == 0
        assert time.monotonic() - started < DRAIN_TIMEOUT_S
    finally:
        server.stop()


# With and without face workers: requests waiting for one are cut by the drain too.
@pytest.mark.parametrize("face_workers", [0, 1])
def test_drain_timeout_bounds_the_exit_and_answers_everyone(tmp_path, face_workers: int) -> None:
    drain_timeout_s = 2.0
    server = start_server(
        tmp_path,
        max_batch_size=1,
        max_queue=32,
        drain_timeout_s=drain_timeout_s,
        face_workers=face_workers,
    )
    try:
        # 12 large portraits one at a time (a second or more each): far more than the 2 s drain.
        bodies = [encoded(slow_portrait(1200, 1024, seed=i)) for i in range(12)]

        async def scenario() -> tuple[list[tuple[int, str]], float]:
            async with httpx.AsyncClient(base_url=server.url, timeout=120) as client:
                tasks = [
                    asyncio.create_task(
                        client.post("/v1/retouch", content=b, headers={"content-type": "image/png"})
                    )
                    for b in bodies
                ]
                await asyncio.to_thread(
                    wait_for,
                    lambda: server.metric("abpn_in_flight_requests") == 12,
                    60,
                    "all 12 requests accepted",
                )
                server.proc.send_signal(signal.SIGTERM)
                sent_at = time.monotonic()
                done = await asyncio.gather(*tasks)
                await asyncio.to_thread(server.proc.wait, 30)
                exit_after = time.monotonic() - sent_at
            answers = [
                (r.status_code, "" if r.status_code == 200 else r.json()["error"]["code"])
                for r in done
            ]
            return answers, exit_after

        answers, exit_after = asyncio.run(scenario())
        assert server.proc.returncode == 0
        assert exit_after < drain_timeout_s + 1.0, exit_after
        assert set(answers) <= {(200, ""), (503, "shutting_down")}, answers
        assert (503, "shutting_down") in answers
    finally:
        server.stop()
