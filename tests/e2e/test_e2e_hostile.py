"""Hostile clients against a real server: uploads that stall or lie about their length, framing
that cannot be parsed, made-up methods, deadlines of a nanosecond, and uploads caught by the
drain. Every one gets a JSON answer in bounded time, and none starves the honest clients."""

from __future__ import annotations

import contextlib
import signal
import struct
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from hostile_support import Answer, connect, read_answer, request_head
from images import encoded, picture
from server_support import Server, start_server, wait_for

READ_TIMEOUT_S = 2.0
MARGIN_S = 4.0  # a loaded 2-core CI machine, and the 1 s Retry-After of a retrying client
PNG = {"Content-Type": "image/png"}
BODY = encoded(picture())


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server with a queue of 8 and a 2 s upload grace time."""
    srv = start_server(
        tmp_path_factory.mktemp("hostile"), max_queue=8, read_timeout_s=READ_TIMEOUT_S
    )
    yield srv
    srv.stop()


def _stall(port: int, count: int, declared: int) -> list:
    """`count` uploads that send their headers and one byte of a `declared`-byte body."""
    sockets = []
    for _ in range(count):
        sock = connect(port)
        sock.sendall(request_head("POST", "/v1/retouch", PNG, declared) + BODY[:1])
        sockets.append(sock)
    return sockets


def _trickle(sockets: list, stop: threading.Event) -> None:
    """One more byte on each socket every 0.5 s, as a slow-loris client does."""
    sent = 1
    while not stop.wait(0.5) and sent < len(BODY) - 1:
        for sock in sockets:
            with contextlib.suppress(OSError):  # cut by the server: what the test expects
                sock.sendall(BODY[sent : sent + 1])
        sent += 1


def test_stalled_uploads_are_cut_and_honest_clients_get_through(hostile: Server) -> None:
    stalled = _stall(hostile.port, 8, len(BODY))
    stop = threading.Event()
    trickler = threading.Thread(target=_trickle, args=(stalled, stop), daemon=True)
    try:
        wait_for(
            lambda: hostile.metric("abpn_uploads_in_progress") == 8, 10, "the queue full of stalls"
        )
        # They hold every place, yet the autoscaling signal says no work is waiting.
        assert hostile.metric("abpn_queue_depth") == 0
        trickler.start()
        started = time.monotonic()
        # An honest client retrying on 503 as the README asks.
        while True:
            r = hostile.client.post("/v1/retouch", content=BODY, headers=PNG)
            if r.status_code != 503:
                break
            assert r.json()["error"]["code"] == "queue_full"
            assert time.monotonic() - started < READ_TIMEOUT_S + MARGIN_S, "never got in"
            time.sleep(float(r.headers["Retry-After"]))
        waited = time.monotonic() - started
        assert r.status_code == 200, r.text
        assert waited < READ_TIMEOUT_S + MARGIN_S
        answers = [read_answer(sock, READ_TIMEOUT_S + MARGIN_S) for sock in stalled]
    finally:
        stop.set()
        for sock in stalled:
            sock.close()
    for answer in answers:
        assert answer is not None and answer.status == 408, answer
        assert answer.error_code() == "upload_timeout"
        assert answer.headers["connection"] == "close"
    assert hostile.metric("abpn_requests_rejected_total", reason="upload_timeout") >= 8


def test_a_body_shorter_than_its_content_length_gets_408(hostile: Server) -> None:
    with connect(hostile.port) as sock:
        sock.sendall(request_head("POST", "/v1/retouch", PNG, len(BODY) + 1000) + BODY)
        started = time.monotonic()
        answer = read_answer(sock, READ_TIMEOUT_S + MARGIN_S)
        assert answer is not None, "no answer"
        assert time.monotonic() - started < READ_TIMEOUT_S + MARGIN_S
        assert (answer.status, answer.error_code()) == (408, "upload_timeout")
        assert read_answer(sock, 5) is None  # and the connection is closed


@pytest.mark.parametrize(
    "raw",
    [
        b"POST /v1/retouch HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
        b"Content-Length: abc\r\n\r\n",
        b"POST /v1/retouch HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
        b"Content-Length: 10\r\nContent-Length: 20\r\n\r\n0123456789",
        b"POST /v1/retouch HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
        b"Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
        # The app has started on it (an unknown route answers at once) when the chunk breaks.
        b"POST /nowhere HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header Line\r\n\r\n",
        b"NOT-HTTP\r\n\r\n",
    ],
    ids=[
        "length-abc",
        "two-lengths",
        "bad-chunk-size",
        "bad-chunk-unknown-route",
        "bad-header",
        "bad-request-line",
    ],
)
def test_malformed_framing_gets_a_json_400(hostile: Server, raw: bytes) -> None:
    with connect(hostile.port) as sock:
        sock.sendall(raw)
        answer = read_answer(sock, 10)
    assert answer is not None
    assert (answer.status, answer.error_code()) == (400, "bad_request")
    time.sleep(0.2)  # the app's own (dropped) answer, if any, comes just after
    log = hostile.log_text()
    assert "Exception in ASGI application" not in log and "unhandled error" not in log


def test_made_up_methods_do_not_add_metric_series(hostile: Server) -> None:
    for i in range(5):
        with connect(hostile.port) as sock:
            sock.sendall(request_head(f"ZZTOP{i}", "/healthz", {}))
            answer = read_answer(sock, 10)
        assert answer is not None and answer.status == 405
        assert answer.error_code() == "method_not_allowed"
    page = hostile.metrics()
    assert "ZZTOP" not in page
    assert 'method="other"' in page


def test_deadlines_the_client_chose_do_not_flood_the_log(hostile: Server) -> None:
    before = hostile.log_text().count("\n")
    for _ in range(20):
        r = hostile.client.post(
            "/v1/retouch", content=BODY, headers={**PNG, "X-Request-Timeout": "1e-9"}
        )
        assert r.status_code == 504 and r.json()["error"]["code"] == "deadline_exceeded"
    new = hostile.log_text().splitlines()[before:]
    assert new, "the access lines are missing"
    assert not [line for line in new if '"level": "error"' in line or "Traceback" in line]


def _tiff_with_samples_per_pixel(samples: int) -> bytes:
    data = bytearray(encoded(picture(), "TIFF"))
    (ifd,) = struct.unpack_from("<I", data, 4)  # Pillow writes little-endian ("II") TIFFs
    (count,) = struct.unpack_from("<H", data, ifd)
    for i in range(count):
        entry = ifd + 2 + 12 * i
        if struct.unpack_from("<H", data, entry)[0] == 277:  # SamplesPerPixel
            struct.pack_into("<H", data, entry + 8, samples)
    return bytes(data)


def test_what_pillow_thinks_of_a_bad_file_is_not_logged_as_an_error(hostile: Server) -> None:
    """Found by the fuzzer: Pillow logs some malformed TIFFs at ERROR."""
    before = len(hostile.log_text().splitlines())
    for _ in range(3):
        r = hostile.client.post(
            "/v1/retouch",
            content=_tiff_with_samples_per_pixel(2048),
            headers={"Content-Type": "image/tiff"},
        )
        assert r.status_code in (400, 415) and r.json()["error"]["code"]
    new = hostile.log_text().splitlines()[before:]
    assert new and not [line for line in new if '"level": "error"' in line]


def _signal_and_collect(server: Server, sock) -> tuple[Answer | None, float, int]:
    server.proc.send_signal(signal.SIGTERM)
    started = time.monotonic()
    answer = read_answer(sock, 60)
    code = server.proc.wait(60)
    return answer, time.monotonic() - started, code


def test_an_upload_cut_by_the_drain_gets_a_json_503(tmp_path) -> None:
    server = start_server(tmp_path, drain_timeout_s=2, read_timeout_s=60)
    try:
        (sock,) = _stall(server.port, 1, len(BODY))
        wait_for(lambda: server.metric("abpn_uploads_in_progress") == 1, 10, "the upload admitted")
        answer, _, code = _signal_and_collect(server, sock)
        sock.close()
    finally:
        server.stop()
    assert answer is not None, "no answer"
    assert (answer.status, answer.error_code()) == (503, "shutting_down")
    assert "retry-after" in answer.headers
    assert code == 0
    assert "Exception in ASGI application" not in server.log_text()


def test_a_stalled_upload_holds_the_drain_only_until_its_upload_deadline(tmp_path) -> None:
    server = start_server(tmp_path, drain_timeout_s=60, read_timeout_s=READ_TIMEOUT_S)
    try:
        (sock,) = _stall(server.port, 1, len(BODY))
        wait_for(lambda: server.metric("abpn_uploads_in_progress") == 1, 10, "the upload admitted")
        answer, seconds, code = _signal_and_collect(server, sock)
        sock.close()
    finally:
        server.stop()
    assert answer is not None and answer.status == 408, answer
    assert seconds < READ_TIMEOUT_S + MARGIN_S + 2
    assert code == 0


def test_http_client_sees_408_as_json(hostile: Server) -> None:
    """The same cut seen through an ordinary client library, which streams a slow body."""

    def slow_body() -> Iterator[bytes]:
        yield BODY[:10]
        time.sleep(READ_TIMEOUT_S + 1.5)
        yield BODY[10:]

    with httpx.Client(base_url=hostile.url, timeout=30) as client:
        try:
            r = client.post("/v1/retouch", content=slow_body(), headers=PNG)
        except httpx.TransportError:
            pytest.fail("the server closed without an answer")
    assert r.status_code == 408 and r.json()["error"]["code"] == "upload_timeout"


def test_headers_that_never_end_get_408_and_idle_connections_are_closed(hostile: Server) -> None:
    with (
        connect(hostile.port) as idle,
        connect(hostile.port) as half,
        connect(hostile.port) as kept,
    ):
        half.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        # A keep-alive connection: one answered request, then half of the next one's headers.
        kept.sendall(request_head("GET", "/healthz", {}))
        first = read_answer(kept, 10)
        assert first is not None and first.status == 200
        kept.sendall(b"GET /healthz HTTP/1.1\r\nHo")
        started = time.monotonic()
        for sock in (half, kept):
            answer = read_answer(sock, READ_TIMEOUT_S + MARGIN_S)
            assert answer is not None, "the half-sent headers were never answered"
            assert (answer.status, answer.error_code()) == (408, "request_timeout")
            assert answer.headers["connection"] == "close"
        assert read_answer(idle, READ_TIMEOUT_S + MARGIN_S) is None  # closed, not answered
        assert time.monotonic() - started < READ_TIMEOUT_S + MARGIN_S
        assert idle.recv(1) == b""


def test_a_kept_alive_connection_outlives_the_header_deadline_then_closes(
    tmp_path: pytest.TempPathFactory,
) -> None:
    """Idle between requests for longer than ABPN_READ_TIMEOUT_S, the connection still takes
    the next request (a server closing it then races the client's reuse: the request is lost);
    idle past ABPN_KEEP_ALIVE_S it is closed."""
    server = start_server(tmp_path, read_timeout_s=1, keep_alive_s=4)
    try:
        with connect(server.port) as kept:
            for pause in (0, 2.5):
                time.sleep(pause)
                kept.sendall(request_head("GET", "/healthz", {}))
                answer = read_answer(kept, 10)
                assert answer is not None and answer.status == 200, pause
            assert read_answer(kept, 4 + MARGIN_S) is None  # closed after the keep-alive time
            assert kept.recv(1) == b""
    finally:
        server.stop()
