"""The manifests and the image agree with the service itself: the probed and scraped paths are
routes of the app, the ports are the app's port, the ConfigMap holds real settings, the grace
period covers the drain timeout, the autoscaling metric is one the app exports, and the
image's entrypoint and the console scripts resolve. These import service.app and service.config."""

from __future__ import annotations

import importlib.metadata
import importlib.util

import yaml

from .conftest import (
    ADAPTER_RULE,
    Manifests,
    exported_metric_names,
    route_matches,
    settings_from_env,
)


def _probe_paths(m: Manifests) -> set[str]:
    c = m.container
    return {c[k]["httpGet"]["path"] for k in ("startupProbe", "readinessProbe", "livenessProbe")}


def test_probe_and_scrape_paths_are_routes_of_the_app(overlay: Manifests, app):
    paths = _probe_paths(overlay)
    paths |= {
        ep.get("path", "/metrics") for ep in overlay.one("ServiceMonitor")["spec"]["endpoints"]
    }
    assert {"/healthz", "/readyz", "/metrics"} <= paths
    missing = sorted(p for p in paths if not route_matches(app, p, "GET"))
    assert not missing, f"{overlay.name}: GET {missing} not served by service.app"


def test_dockerfile_healthcheck_path_is_a_route(dockerfile, app):
    health = [i for i in dockerfile[-1] if i.keyword == "HEALTHCHECK"][-1]
    assert route_matches(app, "/healthz", "GET")
    assert "/healthz" in " ".join(health.exec_form() or [])


def test_configmap_holds_only_real_settings(overlay: Manifests, monkeypatch):
    from service.config import Settings

    prefix = Settings.model_config.get("env_prefix", "")
    assert prefix.upper() == "ABPN_", prefix
    fields = set(Settings.model_fields)
    unknown = [
        key
        for key in overlay.config
        if key.upper().startswith("ABPN_") and key[len(prefix) :].lower() not in fields
    ]
    assert not unknown, f"{overlay.name}: ConfigMap keys Settings does not know: {unknown}"
    # And Settings accepts the values, as the container will read them.
    settings_from_env(monkeypatch, overlay.config)


def test_container_port_is_the_apps_port(overlay: Manifests, monkeypatch, dockerfile):
    settings = settings_from_env(monkeypatch, overlay.config)
    ports = overlay.container["ports"]
    assert [p["containerPort"] for p in ports] == [settings.port]
    assert settings.host == "0.0.0.0", "listen on all interfaces inside the pod"
    expose = [i.args for i in dockerfile[-1] if i.keyword == "EXPOSE"]
    assert expose == [str(settings.port)]
    # The image's defaults (no ConfigMap) listen on the same port.
    assert settings_from_env(monkeypatch, {}).port == settings.port


def test_grace_period_exceeds_preStop_plus_drain_timeout(overlay: Manifests, monkeypatch):
    settings = settings_from_env(monkeypatch, overlay.config)
    grace = overlay.pod_spec["terminationGracePeriodSeconds"]
    budget = overlay.prestop_sleep_s() + settings.drain_timeout_s
    assert grace > budget, f"{overlay.name}: grace {grace}s <= preStop + drain {budget}s"
    # A request admitted just before SIGTERM may take request_timeout_s: the drain covers it.
    assert settings.drain_timeout_s >= settings.request_timeout_s


def test_autoscaling_metric_is_exported_by_the_app(overlay: Manifests, app):
    (metric,) = overlay.one("HorizontalPodAutoscaler")["spec"]["metrics"]
    name = metric["pods"]["metric"]["name"]
    exported = exported_metric_names(app)
    assert name in exported, f"HPA metric {name} not exported; abpn_* seen: " + str(
        sorted(n for n in exported if n.startswith("abpn_"))
    )
    # The adapter discovers the series by its Prometheus name: that must be exported too.
    rule = next(
        r
        for r in yaml.safe_load(ADAPTER_RULE.read_text())["rules"]["custom"]
        if r["name"]["as"] == name
    )
    series = rule["seriesQuery"].split("{")[0]
    assert series in exported, series


def test_entrypoints_resolve(dockerfile):
    """The image's `python -m <module>` has a __main__ to run, and each console script the
    installed project declares loads as a callable."""
    (entry,) = [i for i in dockerfile[-1] if i.keyword == "ENTRYPOINT"]
    command = entry.exec_form()
    module = command[command.index("-m") + 1]
    spec = importlib.util.find_spec(module)
    assert spec is not None, f"the image runs `python -m {module}`, which does not exist"
    if spec.submodule_search_locations is not None:
        assert importlib.util.find_spec(f"{module}.__main__") is not None, module
    scripts = {
        ep.name: ep
        for ep in importlib.metadata.distribution("abpn-serve").entry_points
        if ep.group == "console_scripts"
    }
    assert {"abpn-serve", "abpn-retouch"} <= set(scripts), scripts
    for name, ep in scripts.items():
        assert callable(ep.load()), f"console script {name} -> {ep.value} is not a callable"
