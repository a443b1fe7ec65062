"""The layout's arrows point one way, checked by parsing imports (nothing is imported).

- `model` (the network and the inference runtime) knows nothing of the service, training or
  evaluation; `service` reaches `model` and nothing of training or evaluation, so the image
  copies only those two packages.
- Training never reaches evaluation: above all not the evaluation painter
  (`evaluation.evalpaint`), or the evaluation would measure how well the model learnt the very
  painter it is scored with.
- The evaluation painter shares no code with the training painter (`training.data`), or it
  would not be independent.
"""

from __future__ import annotations

import ast
from collections import deque
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("model", "service", "training", "evaluation", "bench")
EVAL_PAINTER = "evaluation.evalpaint"
TRAINING_DATA = "training.data"


def module_file(root: Path, name: str) -> Path | None:
    """The source file of module `name` under `root`, or None if it is not a file there."""
    base = root.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def inside(package: str) -> Callable[[str], bool]:
    """Whether a module name is `package` or one of its submodules."""
    return lambda name: name == package or name.startswith(package + ".")


def _parents(name: str) -> list[str]:
    """Packages that importing `name` runs first: a.b.c -> [a, a.b]."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _from_base(name: str, path: Path, node: ast.ImportFrom) -> str:
    """The absolute module a `from ... import` statement in module `name` imports from."""
    if node.level == 0:
        return node.module or ""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for _ in range(node.level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{node.module}" if node.module else package


def _dynamic_import(node: ast.Call) -> str | None:
    """The module of `importlib.import_module("x")` or `__import__("x")`, if spelt out."""
    func = node.func
    called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    if called not in ("import_module", "__import__") or not node.args:
        return None
    first = node.args[0]
    return first.value if isinstance(first, ast.Constant) and isinstance(first.value, str) else None


def imports_of(root: Path, name: str, path: Path) -> list[tuple[str, str]]:
    """(module, where) for everything module `name` (source at `path`) may import.

    Every import statement counts, including ones inside functions; `from a import b` counts
    both `a` and, when it is a module, `a.b`.
    """
    source = path.read_text(encoding="utf-8")
    found: list[tuple[str, str]] = []
    lines = source.splitlines()

    def where(node: ast.stmt | ast.expr) -> str:
        return f"line {node.lineno}: `{lines[node.lineno - 1].strip()}`"

    for node in ast.walk(ast.parse(source, filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, where(node)) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _from_base(name, path, node)
            found.append((base, where(node)))
            for alias in node.names:
                if module_file(root, f"{base}.{alias.name}") is not None:
                    found.append((f"{base}.{alias.name}", where(node)))
        elif isinstance(node, ast.Call) and (dynamic := _dynamic_import(node)):
            found.append((dynamic, where(node)))
    return found


def import_graph(root: Path, start: str) -> dict[str, tuple[str, str] | None]:
    """Every module of the project's packages reachable from `start`, with the (importer,
    where) that first reached it (None for `start`). Modules that are not files under `root`
    (the standard library, third-party packages, forbidden names that do not exist yet) are
    recorded but not followed."""
    reached: dict[str, tuple[str, str] | None] = {start: None}
    queue = deque([start])
    while queue:
        name = queue.popleft()
        path = module_file(root, name)
        if path is None:
            continue
        edges = [(parent, "its parent package") for parent in _parents(name)]
        for module, where in edges + imports_of(root, name, path):
            if not any(inside(package)(module) for package in PACKAGES):
                continue
            for target in [*_parents(module), module]:
                if target not in reached:
                    reached[target] = (name, where)
                    queue.append(target)
    return reached


def forbidden_chain(root: Path, start: str, forbidden: Callable[[str], bool]) -> list[str] | None:
    """The import chain from `start` to the first forbidden module it reaches, or None."""
    reached = import_graph(root, start)
    bad = next((name for name in reached if forbidden(name)), None)
    if bad is None:
        return None
    chain = [bad]
    while (step := reached[chain[-1]]) is not None:
        chain[-1] = f"{chain[-1]} ({step[1]})"
        chain.append(step[0])
    return chain[::-1]


def _explain(chain: list[str]) -> str:
    """The failure message: the chain, one import per line."""
    return "forbidden import chain:\n  " + "\n  -> ".join(chain)


def modules_of(root: Path, package: str) -> list[str]:
    """Every module of `package` (a folder under `root`), the package itself included."""
    names = []
    for path in sorted((root / package).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def outside(*packages: str) -> Callable[[str], bool]:
    """Whether a module name lies inside one of `packages`."""
    return lambda name: any(inside(package)(name) for package in packages)


def test_the_checker_sees_each_package() -> None:
    """Guard against a checker that silently parses nothing."""
    assert {"model.engine", "model.net.lrl"} <= set(modules_of(REPO, "model"))
    assert {"service.app", "service.runtime"} <= set(modules_of(REPO, "service"))
    assert {"evaluation.evalpaint", "evaluation.evalpaint.painter"} <= set(
        modules_of(REPO, "evaluation")
    )
    reached = import_graph(REPO, "service.runtime")
    assert {"model.engine", "model.net.abpn", "service.batcher"} <= set(reached), reached
    assert {"training.data.dataset", "model.net.abpn"} <= set(import_graph(REPO, "training.train"))


@pytest.mark.parametrize("module", modules_of(REPO, "service"))
def test_the_service_reaches_no_training_or_evaluation(module: str) -> None:
    chain = forbidden_chain(REPO, module, outside("training", "evaluation", "bench"))
    assert chain is None, _explain(chain or [])


@pytest.mark.parametrize("module", modules_of(REPO, "model"))
def test_inference_knows_nothing_of_http_training_or_evaluation(module: str) -> None:
    chain = forbidden_chain(REPO, module, outside("service", "training", "evaluation", "bench"))
    assert chain is None, _explain(chain or [])


@pytest.mark.parametrize("module", modules_of(REPO, "training"))
def test_training_never_reaches_evaluation(module: str) -> None:
    chain = forbidden_chain(REPO, module, outside("evaluation", "bench"))
    assert chain is None, _explain(chain or [])


@pytest.mark.parametrize("module", modules_of(REPO, "evaluation/evalpaint"))
def test_eval_painter_shares_nothing_with_training_data(module: str) -> None:
    chain = forbidden_chain(REPO, module, inside(TRAINING_DATA))
    assert chain is None, _explain(chain or [])


def _write(root: Path, files: dict[str, str]) -> None:
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


@pytest.mark.parametrize(
    "bad_import",
    [
        "import evaluation.evalpaint.painter",
        "from evaluation.evalpaint import painter",
        "from evaluation import evalpaint",
        "from .evalpaint.painter import paint_face",
        "from . import evalpaint",
        "def later():\n    from evaluation.evalpaint import paint_face\n",
        "import importlib\nimportlib.import_module('evaluation.evalpaint')",
    ],
)
def test_checker_names_the_chain_of_a_bad_import(tmp_path: Path, bad_import: str) -> None:
    """The checker itself can fail: a fake project where training reaches the eval painter
    through a helper module, spelt in each way Python allows."""
    _write(
        tmp_path,
        {
            "evaluation/__init__.py": "",
            "training/train.py": "import numpy\nfrom evaluation.helper import thing\n",
            "evaluation/helper.py": f"import os\n{bad_import}\nthing = 1\n",
            "evaluation/evalpaint/__init__.py": "",
            "evaluation/evalpaint/painter.py": "def paint_face():\n    pass\n",
        },
    )
    chain = forbidden_chain(tmp_path, "training.train", inside(EVAL_PAINTER))
    assert chain is not None
    assert chain[0] == "training.train"
    assert chain[1].startswith("evaluation.helper (line 2")
    assert chain[-1].startswith(EVAL_PAINTER)


def test_checker_follows_relative_imports_and_parent_packages(tmp_path: Path) -> None:
    """A training-data import hidden in a relative import two levels up, and an eval-painter
    import hidden in a package's __init__, are both found; so is the service reaching
    training through the `__init__` of a parent package."""
    _write(
        tmp_path,
        {
            "training/train.py": "from training.data.dataset import Sampler\n",
            "training/data/__init__.py": "from evaluation import evalpaint\n",
            "training/data/dataset.py": "Sampler = 1\n",
            "evaluation/evalpaint/__init__.py": "from .painter import paint_face\n",
            "evaluation/evalpaint/painter.py": "from ..scores import psnr\n",
            "evaluation/scores.py": "from training.data import dataset\n",
            "service/app.py": "from service.routes.retouch import router\n",
            "service/routes/__init__.py": "from training.data.dataset import Sampler\n",
            "service/routes/retouch.py": "router = 1\n",
        },
    )
    to_painter = forbidden_chain(tmp_path, "training.train", inside(EVAL_PAINTER))
    assert to_painter is not None
    assert [step.split(" ")[0] for step in to_painter] == [
        "training.train",
        "training.data",
        "evaluation.evalpaint",
    ]
    to_data = forbidden_chain(tmp_path, "evaluation.evalpaint.painter", inside(TRAINING_DATA))
    assert to_data is not None
    assert to_data[1].startswith("evaluation.scores (line 1: `from ..scores import psnr`)")
    assert to_data[-1].startswith("training.data (line 1")
    from_service = forbidden_chain(tmp_path, "service.app", outside("training", "evaluation"))
    assert from_service is not None
    assert [step.split(" ")[0] for step in from_service] == [
        "service.app",
        "service.routes",
        "training",
    ]
