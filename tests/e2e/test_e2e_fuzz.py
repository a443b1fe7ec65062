"""Property-based fuzzing of a real server (hypothesis): valid JPEG, PNG, WebP and TIFF files,
mutated (bytes flipped, inserted, deleted, cut, header fields overwritten), under fuzzed
parameters and headers; and raw requests with fuzzed methods, targets and framing. Every
answer must be a 2xx, or a JSON error that is a 4xx, 503 or 504: never another 5xx, never a
hang (each answer is bounded in time), and the server must still be alive afterwards.

The budget is ABPN_FUZZ_EXAMPLES examples per test (default 700, about a minute in all on a
2-core machine); the run's outcomes by status are printed at the end (pytest -s)."""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections import Counter
from collections.abc import Iterator

import httpx
import numpy as np
import psutil
import pytest
from bombs import jpeg_scan_bomb, tiff_tile_bomb
from hostile_support import Answer, connect, read_answer
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from PIL import Image
from server_support import Server, start_server

EXAMPLES = int(os.environ.get("ABPN_FUZZ_EXAMPLES", "700"))
READ_TIMEOUT_S = 1.0
ANSWER_BOUND_S = 10.0
"""Longest any answer may take: the upload grace time plus a loaded machine's worst case."""
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,  # the server's own bound is asserted instead, per request
    database=None,  # a live server: nothing worth replaying from a stale database
    # No shrinking: a hang costs ANSWER_BOUND_S per try, and shrinking one would take minutes
    # of the CI budget; the failing example is reported as generated.
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
OUTCOMES: Counter[str] = Counter()


def _seed_files() -> dict[str, bytes]:
    """Small valid files of every format and of the modes that take other decoding paths."""
    rng = np.random.default_rng(7)
    rgb = Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8))
    rgba = Image.fromarray(rng.integers(0, 255, (24, 32, 4), dtype=np.uint8))
    files = {}
    for name, img, fmt, options in [
        ("jpeg", rgb, "JPEG", {"quality": 85}),
        ("jpeg-progressive", rgb, "JPEG", {"progressive": True}),
        ("jpeg-grey", rgb.convert("L"), "JPEG", {}),
        ("jpeg-cmyk", rgb.convert("CMYK"), "JPEG", {}),
        ("png", rgb, "PNG", {}),
        ("png-rgba", rgba, "PNG", {}),
        ("png-palette", rgb.convert("P"), "PNG", {}),
        ("webp", rgb, "WEBP", {"quality": 80}),
        ("webp-lossless-alpha", rgba, "WEBP", {"lossless": True}),
        ("tiff", rgb, "TIFF", {}),
        ("tiff-deflate-alpha", rgba, "TIFF", {"compression": "tiff_adobe_deflate"}),
        (
            "tiff-16bit-grey",
            Image.fromarray(rng.integers(0, 65535, (24, 32), np.uint16)),
            "TIFF",
            {},
        ),
    ]:
        out = io.BytesIO()
        exif = Image.Exif()
        exif[0x0112] = 6  # rotated: the orientation path too
        img.save(out, format=fmt, exif=exif.tobytes(), **options)
        files[name] = out.getvalue()
    return files


SEEDS = _seed_files()
BOMBS = {"jpeg-scan-bomb": jpeg_scan_bomb(), "tiff-tile-bomb": tiff_tile_bomb()}
"""Decoder bombs, mutated like the seeds: a mutation must not turn one into a long decode."""
SOURCES = {**SEEDS, **BOMBS}
MEDIA = ["image/jpeg", "image/png", "image/webp", "image/tiff", "application/octet-stream"]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A seed file or decoder bomb with a few mutations; the header (first 64 bytes) is hit more
    often, since that is where sizes and formats are read."""
    data = bytearray(SOURCES[draw(st.sampled_from(sorted(SOURCES)))])
    for _ in range(draw(st.integers(0, 4))):
        if not data:
            break
        kind = draw(st.sampled_from(["flip", "header", "insert", "delete", "cut", "repeat"]))
        at = draw(st.integers(0, len(data) - 1))
        if kind == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "header":
            at = draw(st.integers(0, min(63, len(data) - 1)))
            data[at : at + 4] = draw(st.binary(min_size=4, max_size=4))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 64))]
        elif kind == "cut":
            del data[at:]
        else:
            data[at:at] = data[at : at + draw(st.integers(1, 512))] * draw(st.integers(1, 8))
    return bytes(data)


PARAM_VALUES = st.one_of(
    st.sampled_from(
        [
            "0",
            "1",
            "1.5",
            "-1",
            "2",
            "nan",
            "inf",
            "1e308",
            "",
            "jpeg",
            "PNG",
            "jpg",
            "tif",
            "webp",
            "gif",
            "mask",
            "image",
            "90",
            "0",
            "101",
            "abc",
        ]
    ),
    st.text(max_size=8),
)
PARAMS = st.dictionaries(
    st.sampled_from(["strength", "format", "quality", "output", "x"]), PARAM_VALUES, max_size=4
)
# httpx refuses to send values with outer white space; raw requests send anything.
HEADER_VALUES = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=24).map(
    str.strip
)
EXTRA_HEADERS = st.dictionaries(
    st.sampled_from(
        [
            "x-request-timeout",
            "x-request-id",
            "accept",
            "x-anything",
            "expect",
            "content-encoding",
            "authorization",
        ]
    ),
    st.one_of(
        st.sampled_from(["1e-9", "0", "-1", "nan", "30", "100-continue", "gzip"]), HEADER_VALUES
    ),
    max_size=3,
)


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server with a short upload grace (lying lengths answer in about a second) and small
    limits, so that header claims cost little."""
    srv = start_server(
        tmp_path_factory.mktemp("fuzz"),
        read_timeout_s=READ_TIMEOUT_S,
        max_body_bytes=200_000,
        max_pixels=4_000_000,
        max_batch_wait_ms=2,
    )
    for name, data in SEEDS.items():  # every codec path once, before memory is measured
        media = f"image/{name.split('-')[0]}"
        assert srv.client.post(
            "/v1/retouch", content=data, headers={"content-type": media}
        ).is_success
    process = psutil.Process(srv.proc.pid)
    rss_before = process.memory_info().rss
    yield srv
    rss_after = process.memory_info().rss
    alive = srv.client.get("/healthz").status_code
    code = srv.stop()
    print(
        f"\nfuzz outcomes ({sum(OUTCOMES.values())} requests): {dict(sorted(OUTCOMES.items()))}; "
        f"RSS {rss_before / 2**20:.0f} -> {rss_after / 2**20:.0f} MiB"
    )
    assert alive == 200 and code == 0
    assert "Exception in ASGI application" not in srv.log_text()
    assert '"level": "error"' not in srv.log_text()


def _check(status: int, content_type: str, body: bytes, head: bool = False) -> None:
    OUTCOMES[str(status)] += 1
    if 200 <= status < 300:
        return
    assert 400 <= status < 500 or status in (503, 504), (status, body[:300])
    assert content_type.startswith("application/json"), (status, content_type, body[:300])
    if not head:
        error = json.loads(body)["error"]
        assert isinstance(error["code"], str) and isinstance(error["message"], str)


@pytest.mark.parametrize("name", sorted(BOMBS))
def test_decoder_bombs_are_refused_with_a_json_error(fuzzed: Server, name: str) -> None:
    media = "image/jpeg" if name.startswith("jpeg") else "image/tiff"
    r = fuzzed.client.post("/v1/retouch", content=BOMBS[name], headers={"content-type": media})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "invalid_image"


@FUZZ
@given(
    body=mutated(),
    media=st.sampled_from(MEDIA),
    params=PARAMS,
    headers=EXTRA_HEADERS,
    multipart=st.booleans(),
)
def test_mutated_images_get_2xx_or_json_errors(
    fuzzed: Server, body: bytes, media: str, params: dict, headers: dict, multipart: bool
) -> None:
    with httpx.Client(base_url=fuzzed.url, timeout=ANSWER_BOUND_S) as client:
        if multipart:
            r = client.post(
                "/v1/retouch", files={"image": ("f", body, media)}, data=params, headers=headers
            )
        else:
            r = client.post(
                "/v1/retouch",
                content=body,
                params=params,
                headers={"content-type": media, **headers},
            )
    _check(r.status_code, r.headers.get("content-type", ""), r.content)


FRAMING = st.sampled_from(
    ["exact", "longer", "shorter", "garbage", "two", "chunked", "bad-chunk", "none"]
)
METHODS = st.one_of(
    st.sampled_from(["GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS"]),
    st.text(st.characters(min_codepoint=65, max_codepoint=90), min_size=1, max_size=8),
)
TARGETS = st.one_of(
    st.sampled_from(
        [
            "/v1/retouch",
            "/v1/retouch?strength=0.5&format=webp",
            "/healthz",
            "/readyz",
            "/metrics",
            "/v1/models",
            "/openapi.json",
            "/",
            "/v1/",
            "/%00",
            "/v1/retouch?strength=%ff",
            "//v1//retouch",
            "*",
        ]
    ),
    st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=40).map(lambda s: "/" + s),
)
RAW_HEADER = st.tuples(
    st.text(
        st.characters(min_codepoint=33, max_codepoint=126, exclude_characters=":"),
        min_size=1,
        max_size=12,
    ),
    st.binary(max_size=16).map(lambda b: b.decode("latin-1")),
)


def _framed(body: bytes, framing: str, delta: int) -> tuple[list[str], bytes]:
    if framing == "exact":
        return [f"Content-Length: {len(body)}"], body
    if framing == "longer":  # more body than declared: the rest reads as the next request
        return [f"Content-Length: {max(0, len(body) - delta)}"], body
    if framing == "shorter":  # declared more than sent: the upload deadline answers it
        return [f"Content-Length: {len(body) + delta}"], body
    if framing == "garbage":
        return [f"Content-Length: {delta}x"], body
    if framing == "two":
        return [f"Content-Length: {len(body)}", f"Content-Length: {len(body) + delta}"], body
    if framing == "chunked":
        return [
            "Transfer-Encoding: chunked"
        ], f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"
    if framing == "bad-chunk":
        return ["Transfer-Encoding: chunked"], b"-" + f"{delta:x}\r\n".encode() + body
    return [], body


@FUZZ
@given(
    method=METHODS,
    target=TARGETS,
    body=mutated(),
    framing=FRAMING,
    delta=st.integers(1, 5000),
    extra=st.lists(RAW_HEADER, max_size=3),
    media=st.sampled_from(MEDIA),
)
def test_fuzzed_framing_gets_a_bounded_json_answer(
    fuzzed: Server,
    method: str,
    target: str,
    body: bytes,
    framing: str,
    delta: int,
    extra: list,
    media: str,
) -> None:
    framing_lines, payload = _framed(body, framing, delta)
    lines = [
        f"{method} {target} HTTP/1.1",
        "Host: 127.0.0.1",
        f"Content-Type: {media}",
        *framing_lines,
        *(f"{k}: {v}" for k, v in extra),
    ]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    with connect(fuzzed.port, ANSWER_BOUND_S) as sock:
        # Refused while sending (a 400 for the headers): the answer is still there to read.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(head + payload)
        answer: Answer | None = read_answer(sock, ANSWER_BOUND_S, head=method == "HEAD")
    assert answer is not None, "no answer within the bound"
    _check(
        answer.status, answer.headers.get("content-type", ""), answer.body, head=method == "HEAD"
    )
