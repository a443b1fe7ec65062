"""The app through httpx's ASGI transport, on the random-weights network: the API, metadata
handling, every error with its status and JSON shape, batching, readiness and drain."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import platform
import signal
import struct
import warnings
import weakref
import zlib

import httpx
import numpy as np
import pytest
from asgi_support import decoded, metric_value, running, wait_until
from images import crowd, encoded, grace_hopper, picture, slow_portrait
from PIL import Image, ImageCms

from model.faces import FaceParser
from model.weights import DEFAULT_WEIGHTS
from service.app import create_app
from service.config import Settings
from service.log_format import JsonFormatter, configure

pytestmark = pytest.mark.anyio

PNG = {"content-type": "image/png"}


@pytest.mark.parametrize("fmt", ["jpeg", "png", "webp", "tiff"])
async def test_round_trip_keeps_format_and_size(fmt: str) -> None:
    async with running() as (_, client):
        body = encoded(picture(), fmt.upper())
        r = await client.post("/v1/retouch", content=body, headers={"content-type": f"image/{fmt}"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == f"image/{fmt}"
    img = decoded(r.content)
    assert img.format == fmt.upper() and img.size == (64, 48)
    assert {"queue", "decode", "model", "encode"} <= {
        part.split(";")[0].strip() for part in r.headers["server-timing"].split(",")
    }
    assert len(r.headers["x-request-id"]) >= 16


async def test_parameters_from_query_and_form() -> None:
    async with running() as (_, client):
        body = encoded(picture())
        r = await client.post(
            "/v1/retouch?format=jpg&quality=70",
            content=body,
            headers={"x-request-id": "req-1"} | PNG,
        )
        assert r.status_code == 200
        assert r.headers["content-type"] == "image/jpeg"
        assert r.headers["x-request-id"] == "req-1"
        r = await client.post(
            "/v1/retouch?format=png",
            files={"image": ("photo.png", body, "image/png")},
            data={"format": "webp", "output": "mask"},
        )
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "image/webp"
        assert decoded(r.content).size == (64, 48)
        r = await client.post(
            "/v1/retouch", files={"image": ("x", body, "application/octet-stream")}
        )
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"


async def test_strength_zero_returns_the_input_and_mask_is_grey() -> None:
    pixels = picture()
    async with running() as (_, client):
        r = await client.post("/v1/retouch?strength=0", content=encoded(pixels), headers=PNG)
        assert r.status_code == 200
        np.testing.assert_array_equal(np.asarray(decoded(r.content)), pixels)
        r = await client.post("/v1/retouch?output=mask", content=encoded(pixels), headers=PNG)
        assert decoded(r.content).mode == "L"


async def test_whitening_lightens_the_face_only_and_faces_are_counted() -> None:
    portrait = grace_hopper()
    async with running() as (_, client):
        body = encoded(portrait)
        r = await client.post("/v1/retouch?strength=0&whitening=1.2", content=body, headers=PNG)
        assert r.status_code == 200, r.text
        assert r.headers["x-faces"] == "1"
        out = np.asarray(decoded(r.content)).astype(int)
        changed = (out != portrait).any(axis=-1)
        assert 0.02 < changed.mean() < 0.3  # the face's skin, not the photo
        assert (out[changed] >= portrait[changed]).all()
        r = await client.post(
            "/v1/retouch", files={"image": ("p.png", body, "image/png")}, data={"whitening": "0"}
        )
        assert r.headers["x-faces"] == "1"
        r = await client.post("/v1/retouch?whitening=1", content=encoded(picture()), headers=PNG)
        assert r.status_code == 200 and r.headers["x-faces"] == "0"
        np.testing.assert_array_equal(np.asarray(decoded(r.content)), picture())
        for bad in ("1.6", "-0.1", "inf"):
            r = await client.post(f"/v1/retouch?whitening={bad}", content=body, headers=PNG)
            assert r.status_code == 422, bad
            assert r.json()["error"]["code"] == "invalid_parameter"


@pytest.mark.parametrize("face_workers", [0, 1])
async def test_faces_past_the_cap_are_left_alone_and_counted(face_workers: int) -> None:
    """The cap holds where the replica parses and where a face worker does."""
    photo = crowd()
    detected = len(FaceParser().detect(photo))
    async with running(face_workers=face_workers, max_faces=2) as (_, client):
        r = await client.post("/v1/retouch?whitening=1", content=encoded(photo), headers=PNG)
        assert r.status_code == 200, r.text
        assert r.headers["x-faces"] == "2"
        assert r.headers["x-faces-skipped"] == str(detected - 2)
        r = await client.post("/v1/retouch", content=encoded(grace_hopper()), headers=PNG)
        assert r.headers["x-faces"] == "1" and r.headers["x-faces-skipped"] == "0"


async def test_a_hung_face_worker_costs_its_request_and_is_replaced() -> None:
    # The limit also bounds the parse after the replacement: wide, so any machine's fits.
    async with running(face_workers=1, faces_timeout_s=10) as (app, client):
        for worker in app.state.runtime.faces._workers.pool._processes.values():
            os.kill(worker.pid, signal.SIGSTOP)  # what a wedged native call looks like
        body = encoded(grace_hopper())
        r = await client.post("/v1/retouch", content=body, headers=PNG)
        assert r.status_code == 504, r.text
        assert r.json()["error"]["code"] == "model_timeout"
        metrics = (await client.get("/metrics")).text
        labels = {"process": "face_worker", "reason": "timeout"}
        assert metric_value(metrics, "abpn_process_restarts_total", **labels) == 1
        r = await client.post("/v1/retouch", content=body, headers=PNG)
        assert r.status_code == 200, r.text
        assert r.headers["x-faces"] == "1"


@pytest.mark.parametrize("fmt", ["jpeg", "webp", "png", "tiff"])
async def test_a_photo_the_model_leaves_unchanged_comes_back_bit_for_bit(fmt: str) -> None:
    """No face found (a photo without one), or strength 0 on a real face: the bytes sent come
    back, not a re-encoding (which for JPEG and WebP would lose quality)."""
    options = {"quality": 95} if fmt in ("jpeg", "webp") else {}
    faceless = encoded(picture(96, 128), fmt.upper(), **options)
    portrait = encoded(grace_hopper(), fmt.upper(), **options)
    headers = {"content-type": f"image/{fmt}"}
    async with running(weights=None, face_workers=0) as (_, client):
        r = await client.post("/v1/retouch", content=faceless, headers=headers)
        assert r.status_code == 200 and r.headers["x-faces"] == "0"
        assert r.content == faceless
        r = await client.post(
            "/v1/retouch", content=portrait, headers=headers, params={"strength": 0}
        )
        assert r.status_code == 200 and r.headers["x-faces"] == "1"
        assert r.content == portrait
        # Something changed, or another format was asked for: encoded afresh.
        r = await client.post("/v1/retouch", content=portrait, headers=headers)
        assert r.headers["x-faces"] == "1" and r.content != portrait
        other = "png" if fmt != "png" else "webp"
        r = await client.post(
            "/v1/retouch", content=faceless, headers=headers, params={"format": other}
        )
        assert r.headers["content-type"] == f"image/{other}" and r.content != faceless


async def test_orientation_icc_and_alpha_survive() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees: the output must be upright, 48 wide and 64 high
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    jpeg = encoded(picture(), "JPEG", exif=exif.tobytes(), icc_profile=icc)
    alpha = np.tile(np.arange(64, dtype=np.uint8) * 3, (48, 1))
    rgba = encoded(np.dstack([picture(), alpha]))
    async with running() as (_, client):
        r = await client.post("/v1/retouch", content=jpeg, headers={"content-type": "image/jpeg"})
        out = decoded(r.content)
        assert out.size == (48, 64)
        assert out.info.get("icc_profile") == icc
        assert out.getexif().get(0x0112) == 1
        r = await client.post("/v1/retouch", content=rgba, headers=PNG)
        out = decoded(r.content)
        assert out.mode == "RGBA"
        np.testing.assert_array_equal(np.asarray(out)[:, :, 3], alpha)


def _png_claiming(width: int, height: int) -> bytes:
    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 99))


async def test_every_error_has_its_status_and_json_shape() -> None:
    png = encoded(picture())
    cases = [
        ({"content": png}, 415, "unsupported_media_type"),
        ({"content": png, "headers": {"content-type": "text/plain"}}, 415, None),
        ({"content": encoded(picture(), "GIF"), "headers": PNG}, 415, None),
        ({"content": b"", "headers": PNG}, 400, "invalid_image"),
        ({"content": b"\x89PNG\r\n\x1a\nnonsense", "headers": PNG}, 400, "invalid_image"),
        ({"content": png[: len(png) // 2], "headers": PNG}, 400, "invalid_image"),
        ({"content": _png_claiming(100_000, 100_000), "headers": PNG}, 413, "image_too_large"),
        ({"content": b"x" * 30_000, "headers": PNG}, 413, "body_too_large"),
        ({"content": png, "headers": PNG, "params": {"strength": "2"}}, 422, "invalid_parameter"),
        ({"content": png, "headers": PNG, "params": {"strength": "nan"}}, 422, None),
        ({"content": png, "headers": PNG, "params": {"quality": "0"}}, 422, None),
        ({"content": png, "headers": PNG, "params": {"format": "gif"}}, 422, None),
        ({"content": png, "headers": PNG, "params": {"output": "both"}}, 422, None),
        ({"content": png, "headers": {"x-request-timeout": "-1"} | PNG}, 422, None),
        ({"files": {"other": ("a.png", png, "image/png")}}, 422, None),
        ({"files": {"image": ("a.txt", b"hi", "text/plain")}}, 415, None),
        (
            {"files": {"image": ("a.png", png, "image/png")}, "data": {"strength": "9"}},
            422,
            "invalid_parameter",
        ),
    ]
    async with running(max_body_bytes=20_000) as (_, client):
        for kwargs, status, code in cases:
            r = await client.post("/v1/retouch", **kwargs)
            assert r.status_code == status, (kwargs.get("params"), r.text)
            body = r.json()
            assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
            assert code is None or body["error"]["code"] == code, body
        r = await client.get("/nowhere")
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
        r = await client.get("/v1/retouch")
        assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"
        metrics = (await client.get("/metrics")).text
    assert metric_value(metrics, "abpn_requests_rejected_total", reason="body_too_large") == 1
    assert metric_value(metrics, "abpn_batch_size_count", device="cpu") == 0


async def test_body_limit_is_enforced_while_streaming() -> None:
    sent = 0

    async def chunks():
        nonlocal sent
        for _ in range(100):
            sent += 1000
            yield b"\0" * 1000

    async with running(max_body_bytes=4000) as (_, client):
        r = await client.post("/v1/retouch", content=chunks(), headers=PNG)
        assert r.status_code == 413
        assert r.json()["error"]["code"] == "body_too_large"
        r = await client.post(
            "/v1/retouch", files={"image": ("a.png", b"\0" * 10_000, "image/png")}
        )
        assert r.status_code == 413
        big = httpx.Request("POST", "http://abpn/v1/retouch", headers=PNG, content=b"")
        big.headers["content-length"] = str(10**9)
        r = await client.send(big)
        assert r.status_code == 413


async def test_concurrent_requests_form_batches() -> None:
    async with running(max_batch_size=8, max_batch_wait_ms=200) as (_, client):
        bodies = [encoded(picture(seed=i)) for i in range(8)]
        responses = await asyncio.gather(
            *(client.post("/v1/retouch", content=b, headers=PNG) for b in bodies)
        )
        assert [r.status_code for r in responses] == [200] * 8
        metrics = (await client.get("/metrics")).text
    count = metric_value(metrics, "abpn_batch_size_count", device="cpu")
    total = metric_value(metrics, "abpn_batch_size_sum", device="cpu")
    assert total == 8 and count < 8, (count, total)
    assert metric_value(metrics, "abpn_pixels_processed_total") == 8 * 64 * 48
    assert metric_value(metrics, "abpn_queue_depth") == 0
    assert metric_value(metrics, "abpn_in_flight_requests") == 0
    assert (
        metric_value(
            metrics, "abpn_requests_total", route="/v1/retouch", method="POST", status="200"
        )
        == 8
    )


async def test_queue_full_and_deadline_while_the_replica_is_busy() -> None:
    """A large portrait keeps the only replica busy; the one queue place is then taken by a small
    image, so a third request is refused at once, and a short deadline expires in the queue."""
    async with running(max_batch_size=1, max_queue=1) as (app, client):
        runtime = app.state.runtime
        big = asyncio.create_task(
            client.post("/v1/retouch", content=encoded(slow_portrait(600, 800)), headers=PNG)
        )
        await wait_until(lambda: runtime.lifecycle.in_flight == 1 and runtime.batcher.depth == 0)
        small = encoded(picture())
        late = await client.post(
            "/v1/retouch", content=small, headers={"x-request-timeout": "0.05"} | PNG
        )
        assert late.status_code == 504, late.text
        assert late.json()["error"]["code"] == "deadline_exceeded"
        queued = asyncio.create_task(client.post("/v1/retouch", content=small, headers=PNG))
        await wait_until(lambda: runtime.batcher.depth == 1)
        refused = await client.post("/v1/retouch", content=small, headers=PNG)
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "queue_full"
        assert refused.headers["retry-after"] == "1"
        assert not big.done(), "the large image finished too early for this test to hold"
        assert (await big).status_code == 200
        assert (await queued).status_code == 200
        metrics = (await client.get("/metrics")).text
    assert metric_value(metrics, "abpn_requests_timed_out_total") == 1
    assert metric_value(metrics, "abpn_requests_rejected_total", reason="queue_full") == 1
    assert metric_value(metrics, "abpn_batch_size_count", device="cpu") == 2


async def test_readiness_and_drain() -> None:
    app = create_app(Settings(weights="random", devices="cpu"))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://abpn") as client:
        r = await client.get("/readyz")
        assert r.status_code == 503 and r.json()["error"]["code"] == "not_ready"
        r = await client.post("/v1/retouch", content=encoded(picture()), headers=PNG)
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
        assert (await client.get("/healthz")).status_code == 200
        async with app.router.lifespan_context(app):
            lifecycle = app.state.runtime.lifecycle
            await wait_until(lambda: lifecycle.phase.value == "ready")
            assert (await client.get("/readyz")).json() == {"status": "ready"}
            lifecycle.begin_drain(30)
            r = await client.get("/readyz")
            assert r.status_code == 503 and r.json()["error"]["code"] == "draining"
            r = await client.post("/v1/retouch", content=encoded(picture()), headers=PNG)
            assert r.status_code == 503 and r.headers["connection"] == "close"
            assert (await client.get("/healthz")).status_code == 200


async def test_models_metrics_and_docs() -> None:
    async with running(max_batch_size=4) as (_, client):
        card = (await client.get("/v1/models")).json()
        assert card["name"] == "abpn-random" and card["devices"] == ["cpu"]
        assert card["batching"]["max_batch_size"] == 4
        assert card["weights_sha256"]
        metrics = await client.get("/metrics")
        assert metrics.headers["content-type"].startswith("text/plain")
        for name in (
            "abpn_requests_total",
            "abpn_request_duration_seconds",
            "abpn_queue_wait_seconds",
            "abpn_decode_seconds",
            "abpn_model_seconds",
            "abpn_encode_seconds",
            "abpn_batch_size",
            "abpn_queue_depth",
            "abpn_in_flight_requests",
            "abpn_pixels_processed_total",
            "abpn_requests_rejected_total",
            "abpn_requests_timed_out_total",
            "abpn_requests_cancelled_total",
            "abpn_model_info",
        ):
            types = (f"# TYPE {name} ", f"# TYPE {name.removesuffix('_total')} ")
            assert any(t in metrics.text for t in types), name
        assert 'abpn_model_info{name="abpn-random"' in metrics.text
        assert (await client.get("/docs")).status_code == 200
        spec = (await client.get("/openapi.json")).json()
    operation = spec["paths"]["/v1/retouch"]["post"]
    assert {"200", "400", "413", "415", "422", "503", "504"} <= set(operation["responses"])
    assert "multipart/form-data" in operation["requestBody"]["content"]
    assert {"/healthz", "/readyz", "/metrics", "/v1/models"} <= set(spec["paths"])


async def test_two_apps_in_one_process_have_their_own_metrics() -> None:
    async with running() as (_, first), running() as (_, second):
        await first.post("/v1/retouch", content=encoded(picture()), headers=PNG)
        text = (await second.get("/metrics")).text
    assert metric_value(text, "abpn_pixels_processed_total") == 0


async def test_log_lines_are_json_with_the_request_id(caplog) -> None:
    async with running() as (_, client):
        with caplog.at_level("INFO", logger="abpn.access"):
            await client.post(
                "/v1/retouch", content=b"", headers={"x-request-id": "trace-me"} | PNG
            )
    (record,) = [r for r in caplog.records if r.name == "abpn.access"]
    line = json.loads(JsonFormatter().format(record))
    assert line["request_id"] == "trace-me" and line["status"] == 400


@pytest.mark.parametrize("tune", [False, True])
async def test_replicas_loaded_line_says_whether_malloc_is_tuned(caplog, tune: bool) -> None:
    with caplog.at_level("INFO", logger="abpn.runtime"):
        async with running(tune_malloc=tune, face_workers=0):
            pass
    (record,) = [r for r in caplog.records if r.getMessage() == "replicas loaded"]
    assert record.malloc_tuned is (tune and platform.libc_ver()[0] == "glibc")


def test_settings_come_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("ABPN_MAX_BATCH_SIZE", "3")
    monkeypatch.setenv("ABPN_WEIGHTS", "")
    monkeypatch.setenv("ABPN_LOG_LEVEL", "DEBUG")
    settings = Settings()
    assert settings.max_batch_size == 3 and settings.weights is None
    assert settings.log_level == "debug"
    assert Settings().max_pixels == 7680 * 5120 and Settings().max_body_bytes == 32 << 20
    assert Settings(devices="cpu, cuda:1").device_list() == ["cpu", "cuda:1"]
    with pytest.raises(ValueError):
        Settings(devices="gpu0")
    with pytest.raises(ValueError):
        Settings(max_batch_size=0)


async def test_shipped_weights_are_served_by_default() -> None:
    recorded = DEFAULT_WEIGHTS.with_suffix(".sha256").read_text().split()[0]
    async with running(weights=None) as (_, client):
        card = (await client.get("/v1/models")).json()
        assert card["weights_sha256"] == recorded
        r = await client.post("/v1/retouch", content=encoded(picture()), headers=PNG)
        assert r.status_code == 200
        metrics = (await client.get("/metrics")).text
    assert metric_value(metrics, "abpn_model_info", weights_sha256=recorded) == 1


async def test_what_start_up_left_on_the_heap_is_frozen_once_ready(caplog) -> None:
    with caplog.at_level("INFO", logger="abpn.runtime"):
        async with running(face_workers=0) as (app, _):
            runtime = app.state.runtime
            reachable = any(obj is runtime for obj in gc.get_objects())
    (record,) = [r for r in caplog.records if r.getMessage() == "start-up heap frozen"]
    # torch alone leaves far more than this; the runtime itself is out of the collector's reach.
    assert record.objects > 50_000 and not reachable


async def test_a_finished_request_frees_its_arrays_without_the_collector(monkeypatch) -> None:
    # Start-up freezes the heap, after which full collections are rare: a request's arrays
    # (225 MiB at 8K) must go by reference counting alone, so no cycle may hold them.
    async with running(face_workers=0) as (app, client):
        batcher = app.state.runtime.batcher
        wait, held = batcher.wait, []

        async def watched(item, abandoned=None):
            result = await wait(item, abandoned)
            held.extend(weakref.ref(obj) for obj in (item, item.image, result.image))
            return result

        monkeypatch.setattr(batcher, "wait", watched)
        gc.collect()
        gc.disable()
        try:
            r = await client.post("/v1/retouch", content=encoded(picture()), headers=PNG)
            assert r.status_code == 200 and len(held) == 3
            # Bounded wait: the model thread lets go of its work a moment after answering.
            await wait_until(lambda: all(ref() is None for ref in held), timeout=10)
        finally:
            gc.enable()


def test_warnings_are_json_log_lines_once_per_source(capsys) -> None:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        configure()
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            for tag in range(3):  # Pillow warns like this once per oversized EXIF tag
                warnings.warn(f"tag {tag} is too large", UserWarning, stacklevel=1)
        lines = capsys.readouterr().err.splitlines()
    finally:
        logging.captureWarnings(False)
        root.handlers[:], root.level = handlers, level
    (line,) = [json.loads(text) for text in lines]
    assert line["logger"] == "py.warnings" and "tag 0 is too large" in line["message"]


async def test_every_response_says_nosniff_results_are_not_cached_redirects_not_reflected() -> None:
    async with running() as (_, client):
        answers = [
            await client.get(path) for path in ("/healthz", "/metrics", "/docs", "/nope", "/")
        ]
        answers.append(await client.post("/v1/retouch", content=b"", headers=PNG))
        result = await client.post("/v1/retouch", content=encoded(picture()), headers=PNG)
        slashed = await client.get("/healthz/", headers={"host": "evil.example"})
    assert all(r.headers["x-content-type-options"] == "nosniff" for r in [*answers, result])
    assert result.status_code == 200 and result.headers["cache-control"] == "no-store"
    assert "evil.example" not in slashed.headers.get("location", "")
