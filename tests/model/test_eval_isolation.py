"""The evaluation painter and training stay apart, checked by parsing imports (nothing imported).

Training must never see the evaluation painter (`model.evalpaint`), or the evaluation would
measure how well the model learnt the very painter it is scored with; and the evaluation painter
must not share code with the training painter (`model.data`), or it would not be independent.
"""

from __future__ import annotations

import ast
from collections import deque
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGE = "model"
EVAL_PAINTER = "model.evalpaint"
TRAINING_DATA = "model.data"


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
    """Every module of the package reachable from `start`, with the (importer, where) that
    first reached it (None for `start`). Modules that are not files under `root` (the standard
    library, third-party packages, forbidden names that do not exist yet) are recorded but not
    followed."""
    reached: dict[str, tuple[str, str] | None] = {start: None}
    queue = deque([start])
    while queue:
        name = queue.popleft()
        path = module_file(root, name)
        if path is None:
            continue
        edges = [(parent, "its parent package") for parent in _parents(name)]
        for module, where in edges + imports_of(root, name, path):
            if not inside(PACKAGE)(module):
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


def test_training_never_imports_the_eval_painter() -> None:
    reached = import_graph(REPO, "model.train")
    # Guard against a checker that silently parses nothing.
    assert len(set(reached) - {"model", "model.train"}) > 0, reached
    chain = forbidden_chain(REPO, "model.train", inside(EVAL_PAINTER))
    assert chain is None, _explain(chain or [])


def _eval_painter_modules() -> list[str]:
    folder = REPO / "model" / "evalpaint"
    names = []
    for path in sorted(folder.rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def test_there_is_an_eval_painter_to_check() -> None:
    assert {"model.evalpaint", "model.evalpaint.painter"} <= set(_eval_painter_modules())


@pytest.mark.parametrize("module", _eval_painter_modules())
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
        "import model.evalpaint.painter",
        "from model.evalpaint import painter",
        "from model import evalpaint",
        "from .evalpaint.painter import paint_face",
        "from . import evalpaint",
        "def later():\n    from model.evalpaint import paint_face\n",
        "import importlib\nimportlib.import_module('model.evalpaint')",
    ],
)
def test_checker_names_the_chain_of_a_bad_import(tmp_path: Path, bad_import: str) -> None:
    """The checker itself can fail: a fake package where training reaches the eval painter
    through a helper module, spelt in each way Python allows."""
    _write(
        tmp_path,
        {
            "model/__init__.py": "",
            "model/train.py": "import numpy\nfrom model.helper import thing\n",
            "model/helper.py": f"import os\n{bad_import}\nthing = 1\n",
            "model/evalpaint/__init__.py": "",
            "model/evalpaint/painter.py": "def paint_face():\n    pass\n",
        },
    )
    chain = forbidden_chain(tmp_path, "model.train", inside(EVAL_PAINTER))
    assert chain is not None
    assert chain[0] == "model.train"
    assert chain[1].startswith("model.helper (line 2")
    assert chain[-1].startswith(EVAL_PAINTER)


def test_checker_follows_relative_imports_and_parent_packages(tmp_path: Path) -> None:
    """A training-data import hidden in a relative import two levels up, and an eval-painter
    import hidden in a package's __init__, are both found."""
    _write(
        tmp_path,
        {
            "model/__init__.py": "",
            "model/train.py": "from model.data.dataset import Sampler\n",
            "model/data/__init__.py": "from .. import evalpaint\n",
            "model/data/dataset.py": "Sampler = 1\n",
            "model/evalpaint/__init__.py": "from .painter import paint_face\n",
            "model/evalpaint/painter.py": "from ..data import dataset\n",
        },
    )
    to_painter = forbidden_chain(tmp_path, "model.train", inside(EVAL_PAINTER))
    assert to_painter is not None
    assert [step.split(" ")[0] for step in to_painter] == [
        "model.train",
        "model.data",
        "model.evalpaint",
    ]
    to_data = forbidden_chain(tmp_path, "model.evalpaint.painter", inside(TRAINING_DATA))
    assert to_data is not None
    assert to_data[-1].startswith("model.data (line 1: `from ..data import dataset`)")
