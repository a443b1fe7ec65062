"""The app against the inputs of the reliability review (issue 11), through the ASGI transport:
format limits answered 422 before the model runs, truncated JPEGs and unterminated multipart
bodies answered 400, no traceback for a client's own deadline, and an OpenAPI schema that
advertises only what is accepted."""

from __future__ import annotations

import io
import logging
import struct
import zlib

import numpy as np
import pytest
from asgi_support import metric_value, running
from images import encoded, picture
from PIL import Image

pytestmark = pytest.mark.anyio

PNG = {"content-type": "image/png"}


def _png_with_exif(exif_bytes: int) -> bytes:
    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

    data = encoded(picture())
    iend = data.rfind(b"IEND") - 4
    exif = b"MM\x00\x2a\x00\x00\x00\x08\x00\x00" + b"\x00" * exif_bytes
    return data[:iend] + chunk(b"eXIf", exif) + data[iend:]


def _flat_png(h: int, w: int) -> bytes:
    return encoded(np.full((h, w, 3), 128, np.uint8))


@pytest.mark.parametrize(
    ("body", "params", "limit"),
    [
        (_png_with_exif(400_000), {"format": "jpeg"}, "65533 bytes of EXIF"),
        (_flat_png(4, 20000), {"format": "webp"}, "16383"),
        (_flat_png(2, 70000), {"format": "jpeg"}, "65500"),
        (_flat_png(2, 70000), {"format": "jpeg", "output": "mask"}, "65500"),
    ],
    ids=["exif-jpeg", "wide-webp", "wide-jpeg", "wide-jpeg-mask"],
)
async def test_format_limits_are_422_before_the_model_runs(body, params, limit: str) -> None:
    async with running() as (_, client):
        r = await client.post("/v1/retouch", content=body, headers=PNG, params=params)
        metrics = (await client.get("/metrics")).text
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "format_limit"
    assert limit in r.json()["error"]["message"]
    assert metric_value(metrics, "abpn_batch_size_count", device="cpu") == 0


async def test_exif_too_long_for_jpeg_is_fine_as_png() -> None:
    async with running() as (_, client):
        r = await client.post("/v1/retouch", content=_png_with_exif(400_000), headers=PNG)
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"


async def test_a_tiny_jpeg_claiming_8k_is_400_and_never_computed() -> None:
    data = bytearray(encoded(picture(), "JPEG", quality=90))
    sof = data.find(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, 5120, 7680)
    async with running() as (_, client):
        r = await client.post(
            "/v1/retouch", content=bytes(data), headers={"content-type": "image/jpeg"}
        )
        metrics = (await client.get("/metrics")).text
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_image"
    assert metric_value(metrics, "abpn_batch_size_count", device="cpu") == 0


async def test_a_lab_tiff_comes_back_without_alpha() -> None:
    """Decoded as RGB, not as three bands plus an "A" taken for alpha. Re-encoded, it is RGB;
    left unchanged (no face) in its own format, it comes back as the bytes sent."""
    out = io.BytesIO()
    Image.new("LAB", (64, 48), (140, 150, 160)).save(out, format="TIFF")
    lab = out.getvalue()
    async with running() as (_, client):
        tiff = {"content-type": "image/tiff"}
        converted = await client.post(
            "/v1/retouch", content=lab, headers=tiff, params={"format": "png"}
        )
        same = await client.post("/v1/retouch", content=lab, headers=tiff)
    assert converted.status_code == 200
    assert Image.open(io.BytesIO(converted.content)).mode == "RGB"
    assert same.status_code == 200 and same.content == lab


async def test_an_unterminated_multipart_body_is_400() -> None:
    png = encoded(picture())
    boundary = "abpnboundary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode() + png  # no closing --boundary--
    headers = {"content-type": f"multipart/form-data; boundary={boundary}"}
    async with running() as (_, client):
        r = await client.post("/v1/retouch", content=body, headers=headers)
        complete = await client.post(
            "/v1/retouch", content=body + f"\r\n--{boundary}--\r\n".encode(), headers=headers
        )
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_multipart", r.text
    assert complete.status_code == 200


async def test_a_client_deadline_is_not_logged_as_an_error(caplog) -> None:
    async with running() as (_, client):
        with caplog.at_level(logging.INFO):
            for _ in range(3):
                r = await client.post(
                    "/v1/retouch",
                    content=encoded(picture()),
                    headers={**PNG, "x-request-timeout": "1e-9"},
                )
                assert r.status_code == 504
    assert not [rec for rec in caplog.records if rec.levelno >= logging.ERROR or rec.exc_info]


async def test_the_timeout_header_schema_has_no_null() -> None:
    async with running() as (_, client):
        schema = (await client.get("/openapi.json")).json()
        r = await client.post(
            "/v1/retouch", content=encoded(picture()), headers={**PNG, "x-request-timeout": "5"}
        )
    (header,) = [
        p for p in schema["paths"]["/v1/retouch"]["post"]["parameters"] if p["in"] == "header"
    ]
    assert header["schema"]["type"] == "number" and "anyOf" not in header["schema"]
    assert not header["required"]
    assert r.status_code == 200
    responses = schema["paths"]["/v1/retouch"]["post"]["responses"]
    assert {"401", "408", "422"} <= set(responses)
