"""A bounded soak: 64 concurrent clients against a small queue send a fixed number of requests
while stalled uploads keep reopening beside them. Every request is answered (200, 503 with
Retry-After, or 504), none is lost (no dropped connection, and the server counts exactly the
200s the clients got), /healthz (probed from a process of its own) answers 200 throughout, and
the server's memory at the end is within 10% of its value after warm-up.

How fast /healthz answered, and how many requests got through rather than a 503, depend on the
machine: they are printed (pytest -s) for docs/reliability.md, not asserted. ABPN_SOAK_REQUESTS
sets the number of requests (default 1500, about half a minute here)."""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import psutil
from images import encoded, picture
from prometheus_client.parser import text_string_to_metric_families
from server_support import Server, start_server

CLIENTS = 64
STALLED = 4
REQUESTS = int(os.environ.get("ABPN_SOAK_REQUESTS", "1500"))
WARM_UP = REQUESTS // 5
READ_TIMEOUT_S = 2.0
PNG = {"content-type": "image/png"}
PROBER = Path(__file__).with_name("health_prober.py")
BODIES = [encoded(picture(48 + 8 * (i % 3), 64, seed=i)) for i in range(8)]


class Soak:
    """The shared state of one run."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.left = REQUESTS
        self.outcomes: Counter[str] = Counter()
        self.lost: Counter[str] = Counter()
        self.stalled: Counter[str] = Counter()
        self.done = 0
        self.warm = asyncio.Event()
        self.stop = asyncio.Event()

    async def client(self, http: httpx.AsyncClient, rng: random.Random) -> None:
        """Send requests until the budget is spent; after a 503 wait a little, as a client
        that retries would (bounded, so the run stays short)."""
        while self.left > 0:
            self.left -= 1
            try:
                r = await http.post("/v1/retouch", content=rng.choice(BODIES), headers=PNG)
            except httpx.TransportError as exc:
                # A dropped connection or a reply that never came: a request lost.
                self.lost[type(exc).__name__] += 1
                continue
            if r.status_code == 503:
                assert "retry-after" in r.headers, r.text
            if r.status_code != 200:
                assert r.headers["content-type"] == "application/json", r.text
                key = f"{r.status_code} {r.json()['error']['code']}"
            else:
                key = "200"
            self.outcomes[key] += 1
            self.done += 1
            if self.done == WARM_UP:
                self.warm.set()
            if r.status_code == 503:
                await asyncio.sleep(rng.uniform(0.02, 0.1))

    async def staller(self) -> None:
        """Reopen an upload that trickles one byte every 0.5 s until the soak ends."""
        while not self.stop.is_set():
            reader, writer = await asyncio.open_connection("127.0.0.1", self.server.port)
            body = BODIES[0]
            writer.write(
                b"POST /v1/retouch HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body[:1]
            )
            sent = 1
            status = None
            while status is None and sent < len(body):
                try:
                    line = await asyncio.wait_for(reader.readline(), 0.5)
                except asyncio.TimeoutError:
                    writer.write(body[sent : sent + 1])
                    sent += 1
                    continue
                status = line.split()[1].decode() if line else "closed"
            self.stalled[status or "finished"] += 1
            writer.close()


def _served(metrics: str) -> float:
    """The 200s the server answered on /v1/retouch, from its /metrics page."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(metrics)
        for sample in family.samples
        if sample.name == "abpn_requests_total"
        and sample.labels.get("route") == "/v1/retouch"
        and sample.labels.get("status") == "200"
    )


def _rss(server: Server) -> int:
    return psutil.Process(server.proc.pid).memory_info().rss


def test_soak(tmp_path) -> None:
    # One face worker, as every pod of 4 CPUs or more runs: on a 2-CPU machine the default is
    # none, and then the server's RSS grew 9.7-9.9% over the soak (docs/benchmarks.md), an
    # unexplained growth left to the bounded-resources work, too near this test's 10% bound.
    server = start_server(
        tmp_path, max_queue=16, max_batch_size=8, read_timeout_s=READ_TIMEOUT_S, face_workers=1
    )
    soak = Soak(server)

    async def run() -> tuple[int, int]:
        limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
        async with httpx.AsyncClient(base_url=server.url, timeout=120, limits=limits) as http:
            stallers = [asyncio.create_task(soak.staller()) for _ in range(STALLED)]
            clients = [
                asyncio.create_task(soak.client(http, random.Random(i))) for i in range(CLIENTS)
            ]
            await soak.warm.wait()
            rss_warm = _rss(server)
            await asyncio.gather(*clients)
            rss_end = _rss(server)
            soak.stop.set()
            await asyncio.wait_for(asyncio.gather(*stallers), READ_TIMEOUT_S + 10)
            return rss_warm, rss_end

    prober = subprocess.Popen(
        [sys.executable, str(PROBER), server.url],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        started = time.monotonic()
        rss_warm, rss_end = asyncio.run(run())
        seconds = time.monotonic() - started
    finally:
        probes, _ = prober.communicate(timeout=20)
        alive = server.client.get("/healthz").status_code
        served = _served(server.client.get("/metrics").text)
        code = server.stop()
    statuses = Counter(int(line.split()[0]) for line in probes.splitlines())
    health = sorted(float(line.split()[1]) for line in probes.splitlines())
    assert health, f"the prober exited with {prober.returncode} before its first probe"
    p50 = statistics.median(health)
    p99 = health[min(len(health) - 1, int(len(health) * 0.99))]
    print(
        f"\nsoak: {REQUESTS} requests in {seconds:.1f} s by {CLIENTS} clients, outcomes "
        f"{dict(soak.outcomes)}; stalled uploads {dict(soak.stalled)}; /healthz "
        f"{len(health)} probes {dict(statuses)} p50 {p50 * 1000:.1f} ms p99 "
        f"{p99 * 1000:.1f} ms; RSS after warm-up {rss_warm / 2**20:.0f} MiB, at the end "
        f"{rss_end / 2**20:.0f} MiB ({(rss_end / rss_warm - 1) * 100:+.1f}%)"
    )
    assert not soak.lost, soak.lost
    assert sum(soak.outcomes.values()) == REQUESTS, soak.outcomes
    allowed = {"200", "503 queue_full", "504 deadline_exceeded"}
    assert set(soak.outcomes) <= allowed, soak.outcomes
    # The honest ones get through, and the server's count agrees with the clients'.
    assert soak.outcomes["200"] > 0 and served == soak.outcomes["200"], (served, soak.outcomes)
    assert soak.stalled and set(soak.stalled) <= {"408", "503"}, soak.stalled
    assert set(statuses) == {200}, statuses
    assert abs(rss_end / rss_warm - 1) < 0.10
    assert alive == 200 and code == 0
    assert "Exception in ASGI application" not in server.log_text()
