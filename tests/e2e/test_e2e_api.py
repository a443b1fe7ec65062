"""End to end against `python -m service` under uvicorn: round trips per format, batches that
really form under concurrency, every error status, the metadata endpoints and the JSON logs."""

from __future__ import annotations

import asyncio
import io
import json

import httpx
import pytest
from images import encoded, picture
from PIL import Image
from server_support import Server, raw_request, sample, wait_for


@pytest.mark.parametrize("fmt", ["jpeg", "png", "webp", "tiff"])
def test_round_trip(server: Server, fmt: str) -> None:
    body = encoded(picture(), fmt.upper())
    r = httpx.post(
        f"{server.url}/v1/retouch",
        content=body,
        headers={"content-type": f"image/{fmt}", "x-request-id": f"e2e-{fmt}"},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == f"image/{fmt}"
    assert r.headers["x-request-id"] == f"e2e-{fmt}"
    assert "model;dur=" in r.headers["server-timing"]
    with Image.open(io.BytesIO(r.content)) as img:
        assert img.format == fmt.upper() and img.size == (64, 48)


def test_multipart_upload(server: Server) -> None:
    r = httpx.post(
        f"{server.url}/v1/retouch",
        files={"image": ("photo.jpg", encoded(picture(), "JPEG"), "image/jpeg")},
        data={"format": "png", "strength": "0.5"},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png"


def test_concurrent_requests_form_batches(server: Server) -> None:
    count_before = server.metric("abpn_batch_size_count", device="cpu")
    sum_before = server.metric("abpn_batch_size_sum", device="cpu")

    async def burst() -> list[int]:
        async with httpx.AsyncClient(base_url=server.url, timeout=120) as client:
            responses = await asyncio.gather(
                *(
                    client.post(
                        "/v1/retouch",
                        content=encoded(picture(seed=i)),
                        headers={"content-type": "image/png"},
                    )
                    for i in range(16)
                )
            )
        return [r.status_code for r in responses]

    assert asyncio.run(burst()) == [200] * 16
    batches = server.metric("abpn_batch_size_count", device="cpu") - count_before
    images = server.metric("abpn_batch_size_sum", device="cpu") - sum_before
    assert images == 16
    assert batches < 16, f"16 images ran in {batches} batches: none larger than one"


def _bomb_png() -> bytes:
    """A valid PNG header claiming 100000 x 100000 pixels, with almost no data."""
    import struct
    import zlib

    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))


@pytest.mark.parametrize(
    ("headers", "body", "params", "status", "code"),
    [
        ({}, b"x", {}, 415, "unsupported_media_type"),
        ({"content-type": "application/pdf"}, b"x", {}, 415, "unsupported_media_type"),
        ({"content-type": "image/png"}, b"", {}, 400, "invalid_image"),
        ({"content-type": "image/jpeg"}, b"\xff\xd8\xff\xe0garbage", {}, 400, "invalid_image"),
        ({"content-type": "image/png"}, "truncated", {}, 400, "invalid_image"),
        ({"content-type": "image/png"}, _bomb_png(), {}, 413, "image_too_large"),
        ({"content-type": "image/png"}, "ok", {"strength": "1.6"}, 422, "invalid_parameter"),
        ({"content-type": "image/png"}, "ok", {"quality": "101"}, 422, "invalid_parameter"),
        ({"content-type": "image/png"}, "ok", {"format": "bmp"}, 422, "invalid_parameter"),
        ({"content-type": "image/png"}, "ok", {"output": "x"}, 422, "invalid_parameter"),
    ],
)
def test_errors(server: Server, headers, body, params, status: int, code: str) -> None:
    png = encoded(picture())
    if body == "truncated":
        body = png[: len(png) // 2]
    elif body == "ok":
        body = png
    r = httpx.post(
        f"{server.url}/v1/retouch", content=body, headers=headers, params=params, timeout=60
    )
    assert r.status_code == status, r.text
    assert r.json() == {"error": {"code": code, "message": r.json()["error"]["message"]}}


def test_body_over_the_limit_is_refused_before_it_is_sent(server: Server) -> None:
    # Only the headers go out: the answer must come without the server waiting for the body.
    head = (
        "POST /v1/retouch HTTP/1.1\nHost: 127.0.0.1\nContent-Type: image/png\n"
        "Content-Length: 100000000\n\n"
    )
    response = raw_request(server.port, head, timeout=10)
    assert response.startswith(b"HTTP/1.1 413"), response[:200]
    assert b'"body_too_large"' in response


def test_unknown_routes_and_methods_use_the_json_shape(server: Server) -> None:
    r = httpx.get(f"{server.url}/v2/retouch")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = httpx.put(f"{server.url}/v1/retouch")
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"


def test_metadata_endpoints(server: Server) -> None:
    assert httpx.get(f"{server.url}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{server.url}/readyz").json() == {"status": "ready"}
    card = httpx.get(f"{server.url}/v1/models").json()
    assert card["devices"] == ["cpu"] and card["batching"]["max_batch_size"] == 8
    assert httpx.get(f"{server.url}/docs").status_code == 200
    metrics = httpx.get(f"{server.url}/metrics").text
    assert sample(metrics, "abpn_model_info", name="abpn-random", weights_sha256="random") == 1
    assert "abpn_queue_depth " in metrics


def test_logs_are_json_lines_with_request_ids(server: Server) -> None:
    httpx.post(
        f"{server.url}/v1/retouch",
        content=b"",
        headers={"content-type": "image/png", "x-request-id": "find-me-42"},
    )

    def lines() -> list[dict]:
        return [json.loads(line) for line in server.log_text().splitlines() if line.strip()]

    # The access line is written once the answer has been sent, so the client may read the
    # log first (seen on a loaded machine).
    wait_for(
        lambda: any(
            line.get("request_id") == "find-me-42" and line.get("status") == 400 for line in lines()
        ),
        10,
        "the request's access line",
    )
    assert all({"ts", "level", "logger", "message"} <= set(line) for line in lines())
