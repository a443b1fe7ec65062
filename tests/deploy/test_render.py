"""Each kustomize overlay renders, every object validates against the Kubernetes schemas (the
ServiceMonitor, a custom resource, against its CRD's required fields), and the objects refer
to each other correctly."""

from __future__ import annotations

import re

import kubernetes_validate
import pytest
from kubernetes_validate.utils import SchemaNotFoundError, all_versions

from .conftest import APP_NAME, K8S, Manifests, kustomize

# The oldest Kubernetes minor the manifests promise to work on, and the newest schemas shipped.
OLDEST_SUPPORTED = "1.29.0"
K8S_VERSIONS = sorted({OLDEST_SUPPORTED, all_versions()[-1]})

EXPECTED_KINDS = {
    "ConfigMap",
    "Deployment",
    "Service",
    "PodDisruptionBudget",
    "HorizontalPodAutoscaler",
    "ServiceMonitor",
}
CUSTOM_RESOURCES = {"monitoring.coreos.com/v1": {"ServiceMonitor"}}


def test_base_renders():
    kinds = {d["kind"] for d in kustomize(K8S / "base")}
    assert kinds == EXPECTED_KINDS


def test_overlay_renders_the_expected_objects(overlay: Manifests):
    kinds = sorted(d["kind"] for d in overlay.docs)
    assert set(kinds) == EXPECTED_KINDS, kinds
    assert len(kinds) == len(EXPECTED_KINDS), f"duplicate objects: {kinds}"
    for doc in overlay.docs:
        assert doc["metadata"]["name"].startswith(APP_NAME), doc["metadata"]["name"]
        assert doc["metadata"]["labels"]["app.kubernetes.io/name"] == APP_NAME


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_builtin_objects_validate_against_kubernetes_schema(overlay: Manifests, version: str):
    checked = 0
    for doc in overlay.docs:
        if doc["kind"] in CUSTOM_RESOURCES.get(doc["apiVersion"], set()):
            continue
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            where = ".".join(str(p) for p in e.path)
            pytest.fail(
                f"{overlay.name}: {doc['kind']} invalid for {version} at {where}: {e.message}"
            )
        except SchemaNotFoundError as e:
            pytest.fail(f"{overlay.name}: no schema ({e.message}); wrong apiVersion?")
        checked += 1
    assert checked == len(EXPECTED_KINDS) - 1


def test_validation_rejects_a_broken_object(overlay: Manifests):
    """The validator is really checking (strict: unknown fields are errors)."""
    broken = {**overlay.deployment, "spec": {**overlay.deployment["spec"], "replica": 2}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, OLDEST_SUPPORTED, strict=True)


# Field names of the ServiceMonitor CRD (prometheus-operator), to catch misspelt keys, which
# the API server would prune silently.
SERVICEMONITOR_SPEC_FIELDS = {
    "attachMetadata", "bodySizeLimit", "convertClassicHistogramsToNHCB", "endpoints",
    "fallbackScrapeProtocol", "jobLabel", "keepDroppedTargets", "labelLimit",
    "labelNameLengthLimit", "labelValueLengthLimit", "namespaceSelector",
    "nativeHistogramBucketLimit", "nativeHistogramMinBucketFactor", "podTargetLabels",
    "sampleLimit", "scrapeClass", "scrapeClassicHistograms", "scrapeProtocols", "selector",
    "selectorMechanism", "serviceDiscoveryRole", "targetLabels", "targetLimit",
}  # fmt: skip
SERVICEMONITOR_ENDPOINT_FIELDS = {
    "authorization", "basicAuth", "bearerTokenFile", "bearerTokenSecret", "enableHttp2",
    "filterRunning", "followRedirects", "honorLabels", "honorTimestamps", "interval",
    "metricRelabelings", "noProxy", "oauth2", "params", "path", "port", "proxyConnectHeader",
    "proxyFromEnvironment", "proxyUrl", "relabelings", "scheme", "scrapeTimeout", "targetPort",
    "tlsConfig", "trackTimestampsStaleness",
}  # fmt: skip


def test_servicemonitor_has_the_crd_required_fields(overlay: Manifests):
    """monitoring.coreos.com/v1 ServiceMonitor: spec and spec.selector are required (we also
    need endpoints); each endpoint names a port of the selected Service, with a valid path,
    scheme and durations; no unknown fields."""
    sm = overlay.one("ServiceMonitor")
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(sm) <= {"apiVersion", "kind", "metadata", "spec"}, set(sm)
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", sm["metadata"]["name"])
    spec = sm["spec"]
    assert set(spec) <= SERVICEMONITOR_SPEC_FIELDS, set(spec) - SERVICEMONITOR_SPEC_FIELDS
    selector = spec["selector"]
    assert isinstance(selector, dict) and selector.get("matchLabels"), "selector must be set"
    endpoints = spec["endpoints"]
    assert isinstance(endpoints, list) and endpoints
    service_ports = {p["name"] for p in overlay.one("Service")["spec"]["ports"]}
    for ep in endpoints:
        assert set(ep) <= SERVICEMONITOR_ENDPOINT_FIELDS, set(ep) - SERVICEMONITOR_ENDPOINT_FIELDS
        assert ("port" in ep) != ("targetPort" in ep), ep
        if "port" in ep:
            assert ep["port"] in service_ports, f"{ep['port']} not a Service port {service_ports}"
        assert ep.get("path", "/metrics").startswith("/")
        assert ep.get("scheme", "http") in {"http", "https"}
        for key in ("interval", "scrapeTimeout"):
            if key in ep:
                assert re.fullmatch(r"([0-9]+(ms|s|m|h))+", ep[key]), f"{key}={ep[key]!r}"
        if "interval" in ep and "scrapeTimeout" in ep:
            assert seconds(ep["scrapeTimeout"]) <= seconds(ep["interval"]), ep


def seconds(duration: str) -> float:
    unit = {"ms": 1e-3, "s": 1, "m": 60, "h": 3600}
    return sum(float(n) * unit[u] for n, u in re.findall(r"([0-9]+)(ms|s|m|h)", duration))


def _selects(selector: dict, labels: dict) -> bool:
    match = selector.get("matchLabels", selector)
    assert match, "empty selector selects everything"
    return all(labels.get(k) == v for k, v in match.items())


def test_objects_refer_to_each_other(overlay: Manifests):
    dep = overlay.deployment
    pods = overlay.pod_labels
    assert _selects(dep["spec"]["selector"], pods), "Deployment selector misses its own pods"
    service = overlay.one("Service")
    assert _selects(service["spec"]["selector"], pods), "Service selects no pod"
    assert _selects(overlay.one("PodDisruptionBudget")["spec"]["selector"], pods)
    sm = overlay.one("ServiceMonitor")
    assert _selects(sm["spec"]["selector"], service["metadata"]["labels"]), "ServiceMonitor"
    for port in service["spec"]["ports"]:
        overlay.container_port(port["targetPort"])  # resolves to a declared container port
    target = overlay.one("HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == (
        "apps/v1",
        "Deployment",
        dep["metadata"]["name"],
    )
    assert overlay.config, "the container's ConfigMap is empty"
