"""Optional API keys: off by default; when set, /v1/* needs a valid bearer key (401 otherwise,
before the body is read) while probes, metrics and docs stay open; keys from the variable or a
file; bad key settings refused at start-up without showing the keys."""

from __future__ import annotations

import logging

import pytest
from asgi_support import metric_value, running
from images import encoded, picture
from pydantic import SecretStr

from service import auth
from service.app import create_app
from service.config import Settings

pytestmark = pytest.mark.anyio

KEY = "k" * 8 + "-0123456789abcdef"
OTHER = "second-key-0123456789"
PNG = {"content-type": "image/png"}


async def test_keys_are_off_by_default() -> None:
    async with running() as (_, client):
        assert (await client.get("/v1/models")).status_code == 200


async def test_v1_needs_a_valid_bearer_key_and_the_rest_stays_open(caplog) -> None:
    png = encoded(picture())
    async with running(api_keys=f"{KEY}, {OTHER}") as (_, client):
        with caplog.at_level(logging.DEBUG):
            for headers in (
                {},
                {"authorization": f"Basic {KEY}"},
                {"authorization": "Bearer wrong-key-0123456789"},
                {"authorization": f"Bearer {KEY}x"},
                {"authorization": "Bearer "},
            ):
                for r in (
                    await client.get("/v1/models", headers=headers),
                    await client.post("/v1/retouch", content=png, headers=PNG | headers),
                    await client.get("/v1/nowhere", headers=headers),
                ):
                    assert r.status_code == 401, (headers, r.text)
                    assert r.json()["error"]["code"] == "unauthorized"
                    assert r.headers["www-authenticate"] == "Bearer"
            for key in (KEY, OTHER):
                ok = await client.post(
                    "/v1/retouch", content=png, headers=PNG | {"authorization": f"bearer {key}"}
                )
                assert ok.status_code == 200, ok.text
            for path in ("/healthz", "/readyz", "/metrics", "/openapi.json", "/docs"):
                assert (await client.get(path)).status_code == 200, path
            metrics = (await client.get("/metrics")).text
    assert metric_value(metrics, "abpn_requests_rejected_total", reason="unauthorized") == 15
    assert metric_value(metrics, "abpn_batch_size_count", device="cpu") == 2
    logged = "\n".join(r.getMessage() + str(r.__dict__) for r in caplog.records)
    assert KEY not in logged and OTHER not in logged


async def test_keys_from_a_file(tmp_path) -> None:
    path = tmp_path / "keys"
    path.write_text(f"# rotated monthly\n{KEY}\n\n{OTHER}  # the old one\n")
    async with running(api_keys=str(path)) as (_, client):
        good = await client.get("/v1/models", headers={"authorization": f"Bearer {OTHER}"})
        bad = await client.get("/v1/models", headers={"authorization": "Bearer # the old one"})
    assert good.status_code == 200 and bad.status_code == 401


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("short", "shorter than 16"),
        ("  ", None),  # blank: unset
        (" , ,", "holds no key"),  # set, but to nothing: refused, not silently open
        ("/nonexistent/abpn-keys", "cannot read the key file /nonexistent/abpn-keys"),
        (f"{KEY},has space inside-0123", "white space"),
    ],
)
def test_bad_key_settings_are_refused_without_showing_keys(value: str, says: str | None) -> None:
    settings = Settings(weights="random", devices="cpu", api_keys=value)
    if says is None:
        assert settings.api_keys is None
        return
    with pytest.raises(auth.ApiKeyError) as caught:
        create_app(settings)
    assert says in str(caught.value)
    assert KEY not in str(caught.value)


def test_the_setting_is_secret_and_matching_is_exact() -> None:
    settings = Settings(api_keys=KEY)
    assert KEY not in repr(settings) and KEY not in str(settings.model_dump())
    digests = auth.load_keys(SecretStr(KEY))
    assert digests is not None
    assert auth.key_matches(KEY.encode(), digests)
    assert not auth.key_matches(KEY.encode()[:-1], digests)
    assert not auth.key_matches(None, digests)


def test_openapi_declares_the_bearer_key_on_v1_when_keys_are_on() -> None:
    spec = create_app(Settings(weights="random", devices="cpu", api_keys=KEY)).openapi()
    schemes = spec["components"]["securitySchemes"]
    assert schemes[auth.SECURITY_SCHEME] == {
        "type": "http",
        "scheme": "bearer",
        "description": schemes[auth.SECURITY_SCHEME]["description"],
    }
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            required = operation.get("security")
            if path.startswith("/v1/"):
                assert required == [{auth.SECURITY_SCHEME: []}], (method, path)
            else:
                assert required is None, (method, path)  # probes, metrics and docs stay open


def test_openapi_declares_no_key_when_keys_are_off() -> None:
    spec = create_app(Settings(weights="random", devices="cpu")).openapi()
    assert "securitySchemes" not in spec.get("components", {})
    assert not any("security" in op for ops in spec["paths"].values() for op in ops.values())


async def test_metrics_keep_the_weights_hash_behind_the_key_like_the_model_card() -> None:
    async with running(api_keys=KEY) as (_, client):
        text = (await client.get("/metrics")).text
    assert metric_value(text, "abpn_model_info", name="abpn-random") == 1
    assert "weights_sha256" not in text
