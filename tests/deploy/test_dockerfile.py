"""deploy/Dockerfile and .dockerignore: hadolint-clean, non-root, exec-form entrypoint, one
torch per variant, dependencies cached before the code, and a build context that holds what
the COPYs need (the weights included) and nothing else."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from service.config import Settings

from .conftest import DOCKERFILE, DOCKERIGNORE, REPO, Instruction, Manifests, tool


def hadolint(path: Path) -> tuple[int, list[dict]]:
    proc = subprocess.run(
        [tool("hadolint"), "--no-color", "--format", "json", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert proc.stdout.strip(), f"hadolint printed nothing: {proc.stderr}"
    return proc.returncode, json.loads(proc.stdout)


def test_hadolint_passes():
    rc, findings = hadolint(DOCKERFILE)
    report = "\n".join(f"line {f['line']}: {f['code']} {f['message']}" for f in findings)
    assert rc == 0 and not findings, report


def test_hadolint_does_flag_a_bad_dockerfile(tmp_path: Path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:3.11-slim\nRUN pip install flask\nCMD python -m service\n")
    rc, findings = hadolint(bad)
    assert rc != 0
    assert {"DL3013", "DL3042", "DL3025"} <= {f["code"] for f in findings}


def named_stages(dockerfile) -> dict[str, list[Instruction]]:
    stages = {}
    for stage in dockerfile[1:]:
        m = re.search(r"\bAS (\S+)$", stage[0].args, flags=re.IGNORECASE)
        if m:
            stages[m[1]] = stage
    return stages


def global_args(dockerfile) -> dict[str, str]:
    args = {}
    for ins in dockerfile[0]:
        assert ins.keyword == "ARG", f"only ARGs may precede the first FROM: {ins}"
        key, _, default = ins.args.partition("=")
        args[key] = default.strip('"')
    return args


def final(dockerfile) -> list[Instruction]:
    return dockerfile[-1]


def last(stage: list[Instruction], keyword: str) -> Instruction:
    found = [i for i in stage if i.keyword == keyword]
    assert found, f"no {keyword} in the final stage"
    return found[-1]


def test_multi_stage_with_a_cpu_and_a_gpu_variant(dockerfile):
    args = global_args(dockerfile)
    stages = named_stages(dockerfile)
    assert len(stages) >= 3, "multi-stage: builder stages apart from the runtime"
    assert {"torch-gpu", "torch-cpu"} <= set(stages)
    assert args.get("VARIANT") in {"gpu", "cpu"}
    assert final(dockerfile)[0].args.split()[0] == "torch-${VARIANT}"

    # GPU: a CUDA PyTorch runtime image that already has torch (of the pinned version).
    gpu_from = stages["torch-gpu"][0].args
    assert re.match(r"pytorch/pytorch:\$\{TORCH_VERSION\}-\$\{CUDA_FLAVOUR\}-runtime ", gpu_from)
    assert "cudnn" in args["CUDA_FLAVOUR"] and args["CUDA_FLAVOUR"].startswith("cuda")
    assert not [i for i in stages["torch-gpu"] if i.keyword == "RUN" and "torch" in i.args]

    # CPU: slim Python, torch pinned from the CPU wheel index (never a bare "torch").
    assert stages["torch-cpu"][0].args.startswith("${PYTHON_IMAGE}")
    assert args["PYTHON_IMAGE"].startswith("python:3.") and args["PYTHON_IMAGE"].endswith("-slim")
    (install,) = [i for i in stages["torch-cpu"] if i.keyword == "RUN"]
    assert "--index-url https://download.pytorch.org/whl/cpu" in install.args
    assert '"torch==${TORCH_VERSION}"' in install.args


def test_torch_version_matches_the_one_the_project_pins(dockerfile):
    pinned = re.search(r"torch==([0-9][0-9.]*)", (REPO / "scripts" / "setup").read_text())
    assert pinned, "scripts/setup no longer pins torch"
    assert global_args(dockerfile)["TORCH_VERSION"] == pinned[1]


def test_dependencies_are_installed_before_the_code(dockerfile):
    stages = named_stages(dockerfile)
    # The requirements stage sees pyproject.toml only: code changes do not invalidate it.
    copies = [i.args for i in stages["requirements"] if i.keyword == "COPY"]
    assert copies == ["pyproject.toml ./"], copies
    runs = [i for i in final(dockerfile) if i.keyword == "RUN"]
    deps = [n for n, i in enumerate(runs) if "pip install" in i.args and " -r " in i.args]
    code = [n for n, i in enumerate(runs) if "pip install" in i.args and ".whl" in i.args]
    assert deps and code and deps[0] < code[0], runs
    assert "from=requirements" in runs[deps[0]].flags.get("mount", "")
    assert "from=wheel" in runs[code[0]].flags.get("mount", "")
    assert "--no-deps" in runs[code[0]].args, "the wheel install must not re-resolve torch"
    # The weights are checked at build time, inside the installed package.
    assert "sha256" in runs[code[0]].args and "safetensors" in runs[code[0]].args


def test_runs_as_a_numeric_non_root_user(dockerfile, rendered):
    user = last(final(dockerfile), "USER").args
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) > 0, f"USER {user}: numeric, so runAsNonRoot can check"
    assert not gid or (gid.isdigit() and int(gid) > 0), user
    # Nothing after USER switches back to root.
    stage = final(dockerfile)
    after = stage[stage.index(last(stage, "USER")) + 1 :]
    assert not [i for i in after if i.keyword in {"RUN", "USER"}], after
    for name, docs in rendered.items():
        m = Manifests(name, docs)
        sc = {**m.pod_spec.get("securityContext", {}), **m.container["securityContext"]}
        assert sc["runAsUser"] == int(uid), f"{name}: runAsUser differs from the image's USER"


def test_port_healthcheck_and_entrypoint(dockerfile):
    stage = final(dockerfile)
    assert last(stage, "EXPOSE").args == "8000"
    env = " ".join(i.args for i in stage if i.keyword == "ENV")
    assert "ABPN_PORT=8000" in env and "ABPN_HOST=0.0.0.0" in env
    health = last(stage, "HEALTHCHECK")
    cmd = health.exec_form()
    assert cmd, f"HEALTHCHECK should be exec form: {health}"
    assert "/healthz" in " ".join(cmd)
    entry = last(stage, "ENTRYPOINT").exec_form()
    assert entry in (["python", "-m", "service"], ["abpn-serve"]), entry
    assert not [i for i in stage if i.keyword == "CMD"], "no shell-form CMD to wrap the server"


def test_caches_and_home_point_at_the_writable_tmp(dockerfile):
    env = " ".join(i.args for i in final(dockerfile) if i.keyword == "ENV")
    for var in ("HOME", "XDG_CACHE_HOME", "TORCH_HOME", "TORCHINDUCTOR_CACHE_DIR"):
        m = re.search(rf"\b{var}=(\S+)", env)
        assert m and (m[1] == "/tmp" or m[1].startswith("/tmp/")), f"{var} must be under /tmp"
    assert "PYTHONDONTWRITEBYTECODE=1" in env


def test_the_cpu_image_has_the_compiler_its_compiled_lrl_needs(dockerfile):
    # CPU replicas compile the LRL by default; TorchInductor builds C++ at start-up.
    assert Settings.model_fields["compile_lrl"].default is True
    runs = [i.args for i in final(dockerfile) if i.keyword == "RUN"]
    (compiler,) = [r for r in runs if "g++" in r]
    assert '"${VARIANT}" = "cpu"' in compiler, "only the CPU image needs the compiler"
    assert any(i.keyword == "ARG" and i.args == "VARIANT" for i in final(dockerfile))


# --- .dockerignore -----------------------------------------------------------------------


def _pattern_regex(pattern: str) -> re.Pattern:
    """Docker's .dockerignore syntax (Go filepath.Match plus "**") as a regex."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[":
            j = pattern.index("]", i)
            body = pattern[i + 1 : j]
            out, i = out + "[" + ("^" + body[1:] if body.startswith("!") else body) + "]", j + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def dockerignored(path: str) -> bool:
    """Whether the build context leaves PATH out (the last matching pattern decides; a pattern
    matches a path or any of its parent directories)."""
    rules = []
    for line in DOCKERIGNORE.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        rules.append((negate, _pattern_regex(line.lstrip("!").strip("/"))))
    parts = path.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    ignored = False
    for negate, regex in rules:
        if any(regex.fullmatch(p) for p in prefixes):
            ignored = not negate
    return ignored


def test_dockerignore_matcher():
    assert dockerignored(".venv/bin/python")
    assert not dockerignored("model/__init__.py")


@pytest.mark.parametrize(
    "path",
    [
        ".venv/bin/python",
        ".git/HEAD",
        "runs/x/ckpt.pt",
        "bench/results/a.json",
        "tests/x.py",
        "model/__pycache__/x.cpython-311.pyc",
        "service/__pycache__/app.cpython-311.pyc",
        "abpn_serve.egg-info/PKG-INFO",
        "docs/pictures/a.png",
    ],
)
def test_dockerignore_keeps_junk_out_of_the_context(path: str):
    assert dockerignored(path), path


def test_context_has_everything_the_copies_need(dockerfile):
    sources = []
    for stage in dockerfile[1:]:
        for ins in stage:
            if ins.keyword in {"COPY", "ADD"} and "from" not in ins.flags:
                sources += ins.args.split()[:-1]
    assert sources
    for src in sources:
        assert (REPO / src).exists(), f"COPY {src}: not in the repository"
        assert not dockerignored(src), f"COPY {src}: excluded by .dockerignore"
    for kept in (
        "model/weights/abpn.safetensors",
        "model/weights/abpn.json",
        "model/weights/abpn.safetensors.sha256",
        "service/app.py",
        "pyproject.toml",
    ):
        assert not dockerignored(kept), f"{kept} must reach the build"
    for shipped in (REPO / "model" / "weights").glob("*"):
        assert not dockerignored(shipped.relative_to(REPO).as_posix()), shipped
