"""The api-keys component: an overlay with it mounts the Secret read-only and points
ABPN_API_KEYS at the mounted file, which the service then reads as its keys; the shipped
overlays stay without keys (off by default)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from service import auth

from .conftest import K8S, OVERLAYS, Manifests, kustomize, settings_from_env

SECRET = "abpn-serve-api-keys"


@pytest.fixture(params=OVERLAYS)
def with_keys(request, tmp_path: Path) -> Manifests:
    """An overlay plus the component, as an operator would write it (kustomize takes only
    relative paths)."""
    overlay = os.path.relpath(K8S / "overlays" / request.param, tmp_path)
    component = os.path.relpath(K8S / "components" / "api-keys", tmp_path)
    (tmp_path / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        f"resources:\n  - {overlay}\ncomponents:\n  - {component}\n"
    )
    return Manifests(request.param, kustomize(tmp_path))


def test_shipped_overlays_have_no_keys(overlay: Manifests) -> None:
    env = {e["name"] for e in overlay.container.get("env", [])}
    assert "ABPN_API_KEYS" not in env and "ABPN_API_KEYS" not in overlay.config


def test_the_component_mounts_the_secret_and_the_service_reads_it(
    with_keys: Manifests, monkeypatch, tmp_path: Path
) -> None:
    (value,) = [e["value"] for e in with_keys.container["env"] if e["name"] == "ABPN_API_KEYS"]
    (mount,) = [m for m in with_keys.container["volumeMounts"] if m["name"] == "api-keys"]
    (volume,) = [v for v in with_keys.pod_spec["volumes"] if v["name"] == "api-keys"]
    assert mount["readOnly"] is True
    assert volume["secret"]["secretName"] == SECRET
    assert not volume["secret"].get("optional", False)  # no Secret: no pod, never an open API
    assert Path(value).parent == Path(mount["mountPath"])
    # Everything else of the overlay is still there.
    assert with_keys.container["envFrom"] and with_keys.prestop_sleep_s() > 0

    # The file as the kubelet would lay it out, read by the service's own settings.
    key_file = tmp_path / Path(value).name
    key_file.write_text("first-key-0123456789\nsecond-key-0123456789\n")
    settings = settings_from_env(monkeypatch, {**with_keys.config, "ABPN_API_KEYS": str(key_file)})
    digests = auth.load_keys(settings.api_keys)
    assert digests is not None and len(digests) == 2
    assert auth.key_matches(b"second-key-0123456789", digests)
