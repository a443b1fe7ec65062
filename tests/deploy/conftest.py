"""Shared fixtures for the deployment checks: rendered kustomize overlays, the Dockerfile, and
the service's own view of itself (settings, routes, exported metrics).

Everything runs offline: kubectl (kustomize) and hadolint come from the dev extras as binaries
beside the interpreter, kubernetes-validate ships its schemas.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import yaml
from starlette.routing import Match

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
DOCKERFILE = DEPLOY / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
ADAPTER_RULE = K8S / "prometheus-adapter-rule.yaml"
OVERLAYS = ("cpu", "gpu")
APP_NAME = "abpn-serve"


def tool(name: str) -> str:
    """A binary from the virtualenv (beside sys.executable), else from PATH; fails if absent."""
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} not found: install the dev extras (bash scripts/setup dev)")
    return found


def kustomize(path: Path) -> list[dict]:
    """`kubectl kustomize PATH`, parsed into a list of objects."""
    proc = subprocess.run(
        [tool("kubectl"), "kustomize", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "KUBECONFIG": os.devnull},
    )
    assert proc.returncode == 0, f"kubectl kustomize {path} failed:\n{proc.stderr}"
    docs = [d for d in yaml.safe_load_all(proc.stdout) if d]
    assert docs, f"kubectl kustomize {path} rendered nothing"
    return docs


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[dict]]:
    """Each overlay rendered once per session: {"cpu": [objects...], "gpu": [...]}."""
    return {name: kustomize(K8S / "overlays" / name) for name in OVERLAYS}


@pytest.fixture(params=OVERLAYS)
def overlay(request, rendered) -> Manifests:
    return Manifests(request.param, rendered[request.param])


class Manifests:
    """Accessors for one rendered overlay."""

    def __init__(self, name: str, docs: list[dict]):
        self.name = name
        self.docs = docs

    def all(self, kind: str) -> list[dict]:
        return [d for d in self.docs if d.get("kind") == kind]

    def one(self, kind: str) -> dict:
        found = self.all(kind)
        assert len(found) == 1, f"{self.name}: expected one {kind}, found {len(found)}"
        return found[0]

    @property
    def deployment(self) -> dict:
        return self.one("Deployment")

    @property
    def pod_spec(self) -> dict:
        return self.deployment["spec"]["template"]["spec"]

    @property
    def pod_labels(self) -> dict:
        return self.deployment["spec"]["template"]["metadata"].get("labels", {})

    @property
    def container(self) -> dict:
        containers = self.pod_spec["containers"]
        named = [c for c in containers if c["name"] == APP_NAME]
        assert len(named) == 1, f"{self.name}: no container named {APP_NAME}"
        return named[0]

    @property
    def config(self) -> dict[str, str]:
        """The data of the ConfigMap the container takes its environment from."""
        refs = [
            e["configMapRef"]["name"]
            for e in self.container.get("envFrom", [])
            if "configMapRef" in e
        ]
        assert len(refs) == 1, f"{self.name}: expected one envFrom configMapRef, got {refs}"
        maps = [m for m in self.all("ConfigMap") if m["metadata"]["name"] == refs[0]]
        assert maps, f"{self.name}: envFrom refers to ConfigMap {refs[0]!r}, not rendered"
        return {k: str(v) for k, v in maps[0].get("data", {}).items()}

    def container_port(self, port: int | str) -> int:
        """A probe's or Service's port (a number or a port name) as the container port number."""
        if isinstance(port, int):
            return port
        if port.isdigit():
            return int(port)
        for p in self.container.get("ports", []):
            if p.get("name") == port:
                return int(p["containerPort"])
        raise AssertionError(f"{self.name}: port name {port!r} not declared by the container")

    def prestop_sleep_s(self) -> int:
        """Seconds the preStop hook sleeps (exec `sleep N` or the `sleep` action)."""
        pre = self.container.get("lifecycle", {}).get("preStop", {})
        if "sleep" in pre:
            return int(pre["sleep"]["seconds"])
        cmd = pre.get("exec", {}).get("command", [])
        assert cmd and Path(cmd[0]).name == "sleep", f"{self.name}: preStop is not a sleep: {pre}"
        return int(cmd[-1])


def settings_from_env(monkeypatch, env: dict[str, str]):
    """service.config.Settings built from exactly these environment variables (others with
    the ABPN_ prefix removed), as the container would build it."""
    from service.config import Settings

    for key in list(os.environ):
        if key.startswith("ABPN_"):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return Settings()


@pytest.fixture(scope="session")
def app():
    """The FastAPI app built by the service's own factory (lifespan not started: no weights
    are loaded, only the routes and metric definitions are needed)."""
    from service.app import create_app
    from service.config import Settings

    return create_app(Settings())


def route_matches(app, path: str, method: str = "GET") -> bool:
    """Whether a request METHOD PATH is fully matched by one of the app's routes, asked the way
    Starlette's router asks (included routers and mounts included)."""
    scope = {"type": "http", "path": path, "method": method, "root_path": "", "headers": []}
    return any(route.matches(scope)[0] is Match.FULL for route in app.routes)


def exported_metric_names(app) -> set[str]:
    """Metric family and sample names the app exports: from the default Prometheus registry,
    any registry the service's modules or app.state hold, and the app's own /metrics."""
    import prometheus_client
    from prometheus_client.registry import CollectorRegistry

    registries: dict[int, CollectorRegistry] = {
        id(prometheus_client.REGISTRY): prometheus_client.REGISTRY
    }
    holders = [vars(m) for n, m in list(sys.modules.items()) if n.split(".")[0] == "service"]
    holders.append(getattr(app.state, "_state", {}))
    for holder in holders:
        for value in list(holder.values()):
            if isinstance(value, CollectorRegistry):
                registries[id(value)] = value

    names: set[str] = set()
    for registry in registries.values():
        try:
            families = list(registry.collect())
        except Exception:  # a collector that needs the running lifespan
            continue
        for family in families:
            names.add(family.name)
            names.update(sample.name for sample in family.samples)

    if any(n.startswith("abpn_") for n in names):
        return names
    # Metrics kept elsewhere: ask the app's own /metrics (without its lifespan).
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from fastapi.testclient import TestClient

            response = TestClient(app).get("/metrics")
        if response.status_code == 200:
            names.update(re.findall(r"^# TYPE (\S+) ", response.text, flags=re.MULTILINE))
            names.update(re.findall(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)", response.text, re.MULTILINE))
    except Exception:
        pass
    return names


class Instruction:
    """One Dockerfile instruction: keyword (upper case), its arguments, and its flags."""

    def __init__(self, keyword: str, rest: str):
        self.keyword = keyword.upper()
        self.flags: dict[str, str] = {}
        while rest.startswith("--"):
            flag, _, rest = rest.partition(" ")
            key, _, value = flag[2:].partition("=")
            self.flags[key] = value
            rest = rest.lstrip()
        self.args = rest

    def exec_form(self) -> list[str] | None:
        """The JSON array of an exec-form instruction, else None."""
        import json

        text = self.args
        if self.keyword == "HEALTHCHECK":
            text = text.partition("CMD")[2].strip()
        try:
            value = json.loads(text)
        except ValueError:
            return None
        return value if isinstance(value, list) and all(isinstance(v, str) for v in value) else None

    def __repr__(self) -> str:
        return f"{self.keyword} {self.args}"


def parse_dockerfile(text: str) -> list[list[Instruction]]:
    """Stages of a Dockerfile (instructions before the first FROM, i.e. global ARGs, form
    stage 0); line continuations joined, comment lines dropped."""
    logical: list[str] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and not current):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    if current:
        logical.append(current)
    stages: list[list[Instruction]] = [[]]
    for line in logical:
        keyword, _, rest = line.partition(" ")
        ins = Instruction(keyword, re.sub(r"\s+", " ", rest).strip())
        if ins.keyword == "FROM":
            stages.append([])
        stages[-1].append(ins)
    return stages


@pytest.fixture(scope="session")
def dockerfile() -> list[list[Instruction]]:
    return parse_dockerfile(DOCKERFILE.read_text())
