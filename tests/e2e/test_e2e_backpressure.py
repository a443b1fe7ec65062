"""Backpressure end to end, on a server that takes one image at a time and queues one: a large
image keeps the replica busy (real work, nothing faked) while the tests decide what happens to
the small requests behind it: refused when the queue is full, 504 at their deadline, dropped
when their client goes away. The last two are never computed, which the batch and pixel
counters show."""

from __future__ import annotations

import queue
import socket
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import httpx
import pytest
from images import encoded, picture, slow_portrait
from server_support import Server, sample, wait_for

BIG = (2400, 2048)  # a face about 800 px wide: over a second of CPU work for the random network
PNG = {"content-type": "image/png"}


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(4) as executor:
        yield executor


@pytest.fixture
def post(server_narrow: Server) -> Iterator[Callable[..., httpx.Response]]:
    """POST an image; each call on a client made beforehand (making one takes tens of ms,
    which the timing-sensitive steps below should not spend)."""
    clients: queue.SimpleQueue[httpx.Client] = queue.SimpleQueue()
    made = [httpx.Client(base_url=server_narrow.url, timeout=120) for _ in range(6)]
    for client in made:
        clients.put(client)

    def send(body: bytes, **headers: str) -> httpx.Response:
        client = clients.get_nowait()
        try:
            return client.post("/v1/retouch", content=body, headers=PNG | headers)
        finally:
            clients.put(client)

    yield send
    for client in made:
        client.close()


def _occupy(server: Server, pool: ThreadPoolExecutor, post) -> tuple[Future, float]:
    """Send the large image and return once the replica is working on it."""
    batches = server.metric("abpn_batch_size_count", device="cpu")
    big = pool.submit(post, encoded(slow_portrait(*BIG)))
    wait_for(
        lambda: server.metric("abpn_batch_size_count", device="cpu") == batches + 1,
        what="the large image reaching the replica",
    )
    return big, batches + 1


def _not_computed_cancellations(server: Server) -> float:
    """Requests dropped because their client left before they reached the replica."""
    text = server.metrics()
    stages = ("upload", "decode", "faces", "queued")
    return sum(sample(text, "abpn_requests_cancelled_total", stage=s) for s in stages)


def _settle(server: Server, post, big: Future, batches: int) -> None:
    """The large image is answered, and the replica ran exactly `batches` batches in all."""
    assert big.result(timeout=120).status_code == 200
    small = post(encoded(picture()))  # one more, so a wrongly kept item would run
    assert small.status_code == 200
    assert server.metric("abpn_batch_size_count", device="cpu") == batches + 1


def test_queue_full_is_503_with_retry_after_at_once(server_narrow: Server, pool, post) -> None:
    server = server_narrow
    big, batches = _occupy(server, pool, post)
    queued = pool.submit(post, encoded(picture()))
    wait_for(lambda: server.metric("abpn_queue_depth") == 1, what="the small image queued")
    refused = post(encoded(picture()))
    assert refused.status_code == 503, refused.text
    assert refused.json()["error"]["code"] == "queue_full"
    assert refused.headers["retry-after"] == "1"
    # At once: refused while the replica still works on the large image, not after it.
    assert not big.done(), "the large image finished too early for this test to hold"
    assert queued.result(timeout=120).status_code == 200
    _settle(server, post, big, batches + 1)


def test_deadline_in_the_queue_is_504_and_never_computed(server_narrow: Server, pool, post) -> None:
    server = server_narrow
    big, batches = _occupy(server, pool, post)
    pixels = server.metric("abpn_pixels_processed_total")
    timed_out = server.metric("abpn_requests_timed_out_total")
    late = post(encoded(picture()), **{"x-request-timeout": "0.3"})
    assert late.status_code == 504, late.text
    assert late.json()["error"]["code"] == "deadline_exceeded"
    assert not big.done(), "the large image finished too early for this test to hold"
    assert server.metric("abpn_requests_timed_out_total") == timed_out + 1
    assert big.result(timeout=120).status_code == 200
    assert server.metric("abpn_pixels_processed_total") == pixels + BIG[0] * BIG[1]
    _settle(server, post, big, batches)


def test_client_gone_while_queued_is_never_computed(server_narrow: Server, pool, post) -> None:
    server = server_narrow
    big, batches = _occupy(server, pool, post)
    pixels = server.metric("abpn_pixels_processed_total")
    cancelled = _not_computed_cancellations(server)
    body = encoded(picture())
    head = (
        "POST /v1/retouch HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(head + body)
        wait_for(lambda: server.metric("abpn_queue_depth") == 1, what="the small image queued")
    # The socket is closed: the server sees the disconnect and drops the queued item.
    wait_for(
        lambda: _not_computed_cancellations(server) == cancelled + 1,
        what="the disconnect being noticed",
    )
    assert server.metric("abpn_queue_depth") == 0
    assert not big.done(), "the large image finished too early for this test to hold"
    assert big.result(timeout=120).status_code == 200
    assert server.metric("abpn_pixels_processed_total") == pixels + BIG[0] * BIG[1]
    _settle(server, post, big, batches)


def test_health_answers_in_milliseconds_while_the_model_runs(
    server_narrow: Server, pool, post
) -> None:
    server = server_narrow
    big, batches = _occupy(server, pool, post)
    latencies = []
    for _ in range(5):
        started = time.perf_counter()
        assert server.client.get("/healthz").status_code == 200
        latencies.append(time.perf_counter() - started)
    assert not big.done(), "the large image finished too early for this test to hold"
    assert sorted(latencies)[2] < 0.1, latencies
    _settle(server, post, big, batches)
