"""What must hold in the rendered manifests of each overlay, independent of the service code:
probes, graceful shutdown, resources, GPU scheduling, security, autoscaling."""

from __future__ import annotations

import re

import yaml

from .conftest import ADAPTER_RULE, Manifests

GPU = "nvidia.com/gpu"
# Weight loading and warm-up must fit in the startup probe's window (seconds).
MIN_STARTUP_WINDOW_S = {"cpu": 180, "gpu": 300}

_SUFFIX = {
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}


def quantity(value: str | int) -> float:
    """A Kubernetes resource quantity ("500m", "4", "8Gi") as a number."""
    m = re.fullmatch(r"([0-9.]+)([a-zA-Z]*)", str(value))
    assert m and (m[2] in _SUFFIX or m[2] == ""), f"bad quantity {value!r}"
    return float(m[1]) * _SUFFIX.get(m[2], 1)


def probe_window_s(probe: dict) -> int:
    return probe.get("initialDelaySeconds", 0) + probe.get("periodSeconds", 10) * probe.get(
        "failureThreshold", 3
    )


def test_probes_use_the_right_endpoints(overlay: Manifests):
    c = overlay.container
    assert c["startupProbe"]["httpGet"]["path"] == "/readyz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    # Liveness must not follow readiness: a draining or busy pod is alive, not to be killed.
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        probe = c[kind]
        assert probe["httpGet"].get("scheme", "HTTP") == "HTTP"
        assert overlay.container_port(probe["httpGet"]["port"]) == c["ports"][0]["containerPort"]
        assert probe.get("timeoutSeconds", 1) >= 2, f"{kind}: timeout too tight under load"


def test_startup_probe_is_generous_enough_for_loading(overlay: Manifests):
    c = overlay.container
    window = probe_window_s(c["startupProbe"])
    assert window >= MIN_STARTUP_WINDOW_S[overlay.name], window
    # Liveness only starts after the startup probe succeeded, so no initial delay is needed;
    # a big one would only slow down detection of a hung server.
    assert c["livenessProbe"].get("initialDelaySeconds", 0) <= 30


def test_graceful_shutdown(overlay: Manifests):
    """preStop sleeps (endpoints and load balancers catch up), then SIGTERM starts the drain;
    the grace period must cover both, or the kubelet kills requests in flight."""
    sleep_s = overlay.prestop_sleep_s()
    assert 3 <= sleep_s <= 30, sleep_s
    drain_s = float(overlay.config["ABPN_DRAIN_TIMEOUT_S"])
    grace = overlay.pod_spec["terminationGracePeriodSeconds"]
    assert grace > sleep_s + drain_s, (grace, sleep_s, drain_s)


def test_rollout_never_drops_below_capacity(overlay: Manifests):
    dep = overlay.deployment
    assert "replicas" not in dep["spec"], "the HPA owns replicas; apply would reset them"
    rolling = dep["spec"]["strategy"]["rollingUpdate"]
    assert dep["spec"]["strategy"]["type"] == "RollingUpdate"
    assert str(rolling["maxUnavailable"]) in {"0", "0%"}


def test_requests_and_limits(overlay: Manifests):
    res = overlay.container["resources"]
    for name in ("cpu", "memory"):
        assert name in res["requests"] and name in res["limits"], f"{name} requests/limits"
        assert quantity(res["requests"][name]) <= quantity(res["limits"][name]), name
    assert quantity(res["requests"]["memory"]) >= 2 * 2**30, "a model replica needs >= 2Gi"


def test_gpu_only_in_the_gpu_overlay(overlay: Manifests):
    res = overlay.container["resources"]
    tolerations = overlay.pod_spec.get("tolerations", [])
    devices = overlay.config.get("ABPN_DEVICES", "")
    if overlay.name == "gpu":
        assert str(res["limits"].get(GPU)) == "1", res
        assert str(res["requests"].get(GPU, res["limits"][GPU])) == "1", "requests must = limits"
        assert any(t.get("key") == GPU for t in tolerations), "GPU nodes' taint not tolerated"
        assert "cuda" in devices, devices
    else:
        assert GPU not in res.get("limits", {}) and GPU not in res.get("requests", {})
        assert not any(t.get("key") == GPU for t in tolerations)
        assert "cuda" not in devices, devices


def test_security_context(overlay: Manifests):
    pod_sc = overlay.pod_spec.get("securityContext", {})
    sc = overlay.container["securityContext"]
    assert (sc.get("runAsNonRoot") or pod_sc.get("runAsNonRoot")) is True
    uid = sc.get("runAsUser", pod_sc.get("runAsUser"))
    assert isinstance(uid, int) and uid > 0, uid
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc.get("privileged", False) is False
    assert "ALL" in sc["capabilities"]["drop"] and not sc["capabilities"].get("add")
    seccomp = sc.get("seccompProfile", pod_sc.get("seccompProfile", {}))
    assert seccomp.get("type") == "RuntimeDefault"
    assert overlay.pod_spec.get("automountServiceAccountToken") is False
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        assert not overlay.pod_spec.get(key)


def test_writable_tmp_on_a_read_only_root(overlay: Manifests):
    volumes = {v["name"]: v for v in overlay.pod_spec.get("volumes", [])}
    mounts = {m["mountPath"]: m for m in overlay.container.get("volumeMounts", [])}
    assert "/tmp" in mounts, "the process needs a writable /tmp"
    tmp = volumes[mounts["/tmp"]["name"]]
    assert "emptyDir" in tmp, tmp
    assert not mounts["/tmp"].get("readOnly", False)
    assert tmp["emptyDir"].get("sizeLimit"), "bound the scratch space"
    env = {e["name"]: e.get("value") for e in overlay.container.get("env", [])}
    home = env.get("HOME")
    assert home is None or home == "/tmp" or home.startswith("/tmp/"), home


def test_shared_memory_holds_a_full_batch_of_8k_photos(overlay: Manifests):
    # Pixels reach the replica and face worker processes through /dev/shm, which a container
    # gets at 64 MB unless a volume replaces it: one 8K photo is 118 MB.
    volumes = {v["name"]: v for v in overlay.pod_spec.get("volumes", [])}
    mounts = {m["mountPath"]: m for m in overlay.container.get("volumeMounts", [])}
    assert "/dev/shm" in mounts, "mount a memory-backed /dev/shm"
    shm = volumes[mounts["/dev/shm"]["name"]]["emptyDir"]
    assert shm.get("medium") == "Memory", shm
    batch = 8 * 7680 * 5120 * (3 + 1 + 1)  # ABPN_MAX_PIXELS photos, skin and retouch masks
    assert quantity(shm["sizeLimit"]) >= batch
    assert quantity(shm["sizeLimit"]) < quantity(overlay.container["resources"]["limits"]["memory"])


def test_image_is_pinned_per_variant(overlay: Manifests):
    image = overlay.container["image"]
    name, _, tag = image.rpartition(":")
    assert name and "/" in name, f"{image}: push to a registry, not a bare local name"
    assert tag and tag != "latest", image
    assert tag.endswith(f"-{overlay.name}"), f"{image}: the {overlay.name} overlay's image"


def test_pdb_lets_nodes_drain(overlay: Manifests):
    pdb = overlay.one("PodDisruptionBudget")["spec"]
    hpa = overlay.one("HorizontalPodAutoscaler")["spec"]
    assert hpa["minReplicas"] >= 2, "one replica cannot survive a disruption"
    if "maxUnavailable" in pdb:
        assert str(pdb["maxUnavailable"]) not in {"0", "0%"}
    else:
        assert int(pdb["minAvailable"]) < hpa["minReplicas"], "PDB would block every eviction"


def test_hpa_scales_on_queue_depth_from_the_adapter(overlay: Manifests):
    hpa = overlay.one("HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    spec = hpa["spec"]
    assert spec["minReplicas"] <= spec["maxReplicas"]
    (metric,) = spec["metrics"]
    assert metric["type"] == "Pods", metric
    name = metric["pods"]["metric"]["name"]
    assert name == "abpn_queue_depth"
    target = metric["pods"]["target"]
    assert target["type"] == "AverageValue" and quantity(target["averageValue"]) > 0
    # Scale down slowly: a replica takes minutes to load and warm up.
    assert spec["behavior"]["scaleDown"]["stabilizationWindowSeconds"] >= 120

    # The documented prometheus-adapter rule serves exactly this metric, per pod.
    rules = yaml.safe_load(ADAPTER_RULE.read_text())["rules"]["custom"]
    served = [r for r in rules if r["name"].get("as") == name]
    assert len(served) == 1, f"no prometheus-adapter rule exposes {name}"
    rule = served[0]
    assert re.fullmatch(rule["name"]["matches"], name)
    assert rule["seriesQuery"].startswith(name + "{") or rule["seriesQuery"] == name
    overrides = rule["resources"]["overrides"]
    assert {v["resource"] for v in overrides.values()} >= {"namespace", "pod"}
    assert "<<.Series>>" in rule["metricsQuery"] and "<<.LabelMatchers>>" in rule["metricsQuery"]
    assert "by (<<.GroupBy>>)" in rule["metricsQuery"]


def test_threads_and_processes_are_stated_within_the_cpu_limit(overlay: Manifests):
    # Stated in each overlay, so that what a pod runs does not depend on what the service
    # makes of the node; together they must fit the CPU limit.
    config = overlay.config
    for name in ("ABPN_FACE_WORKERS", "ABPN_TORCH_THREADS", "ABPN_CODEC_THREADS"):
        assert name in config, f"{overlay.name}: {name} not set"
    limit = quantity(overlay.container["resources"]["limits"]["cpu"])
    face_workers = int(config["ABPN_FACE_WORKERS"])
    torch_threads = int(config["ABPN_TORCH_THREADS"])
    assert torch_threads >= 1
    assert face_workers + torch_threads <= limit, (face_workers, torch_threads, limit)
    assert int(config["ABPN_CODEC_THREADS"]) <= limit


def test_memory_budget_fits_the_memory_limit(overlay: Manifests):
    # The budget bounds the photos in flight; the processes at rest (about 1.5 GiB with one
    # 8K photo's working memory in the replica, README "Memory") and each face worker come on
    # top, and the photos' shared-memory copies (4 of their 12 bytes a pixel) live in /dev/shm.
    config = overlay.config
    assert "ABPN_MEMORY_BUDGET_MB" in config, f"{overlay.name}: ABPN_MEMORY_BUDGET_MB not set"
    budget = int(config["ABPN_MEMORY_BUDGET_MB"]) * 2**20
    at_rest = 1.5 * 2**30 + 0.3 * 2**30 * int(config["ABPN_FACE_WORKERS"])
    assert at_rest + budget <= quantity(overlay.container["resources"]["limits"]["memory"])
    volumes = {v["name"]: v for v in overlay.pod_spec.get("volumes", [])}
    mounts = {m["mountPath"]: m for m in overlay.container.get("volumeMounts", [])}
    shm = volumes[mounts["/dev/shm"]["name"]]["emptyDir"]
    assert budget * 4 / 12 <= quantity(shm["sizeLimit"])
