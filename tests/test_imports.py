"""The package's import graph: no circle between its modules, and every public name importable.

The graph is built from the source with :mod:`ast`, not by importing: an edge
``a -> b`` is an import of ``b`` that runs when ``a`` is imported (a statement
at module level, in a class body or in a non-``TYPE_CHECKING`` ``if`` /
``try``). Imports inside functions run later, and ``if TYPE_CHECKING:`` blocks
never run, so neither can make an import-time circle. Importing ``a.b`` also
runs ``a/__init__.py`` first; that implicit edge to the parent package is left
out, as every submodule would otherwise close a circle with the package that
re-exports it.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

import negsample
import negsample.functional
import negsample.losses
import negsample.samplers
import negsample.thresholds

PACKAGE_DIR = Path(negsample.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in sorted(PACKAGE_DIR.rglob("*.py")) if path.is_file()}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_time_statements(body: list[ast.stmt]) -> list[ast.Import | ast.ImportFrom]:
    """The import statements of ``body`` that run when the module is imported."""
    found: list[ast.Import | ast.ImportFrom] = []
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        elif isinstance(node, ast.If):
            if not _is_type_checking(node.test):
                found += _import_time_statements(node.body)
            found += _import_time_statements(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody, *(h.body for h in node.handlers)):
                found += _import_time_statements(block)
        elif isinstance(node, (ast.With, ast.ClassDef)):
            found += _import_time_statements(node.body)
    return found


def imports_of(source: str, module: str, *, is_package: bool, known: set[str]) -> set[str]:
    """The modules of ``known`` that ``module`` imports at import time."""
    package = module if is_package else module.rpartition(".")[0]
    targets: set[str] = set()
    for node in _import_time_statements(ast.parse(source).body):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
            continue
        base = package
        for _ in range(node.level - 1):
            base = base.rpartition(".")[0]
        if node.level:
            base = f"{base}.{node.module}" if node.module else base
        else:
            base = node.module or ""
        for alias in node.names:
            # ``from pkg import name`` imports the submodule pkg.name if there is one.
            submodule = f"{base}.{alias.name}"
            targets.add(submodule if submodule in known else base)
    return {target for target in targets if target in known and target != module}


def import_graph() -> dict[str, set[str]]:
    known = set(MODULES)
    return {
        module: imports_of(
            path.read_text(), module, is_package=path.name == "__init__.py", known=known
        )
        for module, path in MODULES.items()
    }


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A circle of ``graph`` as the list of its modules (first repeated last), or ``None``."""
    done: set[str] = set()
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        if node in path:
            return [*path[path.index(node) :], node]
        if node in done:
            return None
        path.append(node)
        for target in sorted(graph[node]):
            cycle = visit(target)
            if cycle is not None:
                return cycle
        path.pop()
        done.add(node)
        return None

    for node in sorted(graph):
        cycle = visit(node)
        if cycle is not None:
            return cycle
    return None


def test_the_graph_builder_follows_import_time_statements_only() -> None:
    source = """
from typing import TYPE_CHECKING
import a.b
from a import c, not_a_module
from .d import x
from . import e
if TYPE_CHECKING:
    from a import f
else:
    import a.g
try:
    import a.h
except ImportError:
    pass
def later():
    import a.i
class K:
    import a.j
"""
    known = {"a", "a.b", "a.c", "a.d", "a.e", "a.f", "a.g", "a.h", "a.i", "a.j", "a.k"}
    found = imports_of(source, "a.k", is_package=False, known=known)
    assert found == {"a", "a.b", "a.c", "a.d", "a.e", "a.g", "a.h", "a.j"}


def test_find_cycle_finds_a_circle_and_only_a_circle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set(), "d": {"b", "c"}}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_the_package_import_graph_has_no_circle() -> None:
    graph = import_graph()
    # The walk sees the package: guards against a test that passes on an empty graph.
    assert "negsample.samplers._hard" in graph["negsample.samplers"]
    assert "negsample.samplers" in graph["negsample"]
    assert "negsample.index" in graph["negsample.samplers._base"]
    cycle = find_cycle(graph)
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


@pytest.mark.parametrize(
    "module",
    [negsample, negsample.samplers, negsample.functional, negsample.losses, negsample.thresholds],
    ids=lambda m: m.__name__,
)
def test_every_public_name_is_importable(module: ModuleType) -> None:
    names = module.__all__
    assert len(set(names)) == len(names)
    namespace: dict[str, object] = {}
    exec(f"from {module.__name__} import *", namespace)
    assert set(names) <= set(namespace)
    for name in names:
        assert getattr(module, name) is namespace[name]


def test_the_samplers_keep_the_names_they_had_before_the_split() -> None:
    before = {
        "HardDraws",
        "HardNegativeSampler",
        "NegativeSample",
        "Scorer",
        "SharedNegativeSampler",
        "SharedNegatives",
        "UniformSampler",
        "hard_negatives",
    }
    assert before <= set(negsample.samplers.__all__)
    for name in ("HardNegativeSampler", "SharedNegativeSampler", "UniformSampler"):
        assert getattr(negsample, name) is getattr(negsample.samplers, name)


def test_the_losses_and_the_threshold_estimate_are_public_at_the_top_level() -> None:
    for name in negsample.losses.__all__:
        assert getattr(negsample, name) is getattr(negsample.losses, name)
    assert negsample.estimate_topk_thresholds is negsample.thresholds.estimate_topk_thresholds
    assert {"pairwise_softmax_loss", "softmax_at_k_loss", "softmax_at_k_loss_from_vectors"} <= set(
        negsample.functional.__all__
    )


def test_every_module_imports_first_in_a_fresh_interpreter() -> None:
    """A circle the static graph misses would fail here, with the module that enters it first."""
    # A ``__main__`` module is the command itself: importing it runs the command.
    modules = sorted(name for name in MODULES if name.rpartition(".")[2] != "__main__")
    script = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    for loaded in [m for m in sys.modules if m.split('.')[0] == 'negsample']:\n"
        "        del sys.modules[loaded]\n"
        "    importlib.import_module(name)\n"
    )
    _fresh_python(script)


def test_importing_the_package_and_its_command_does_not_import_dynamo() -> None:
    """``torch._dynamo`` takes about 2 s to import: only ``torch.compile`` should pay it."""
    script = (
        "import sys\n"
        "import negsample, negsample.cli, negsample.data, negsample.metrics\n"
        "print('torch._dynamo' in sys.modules)\n"
    )
    assert _fresh_python(script).strip() == "False"


def _fresh_python(script: str) -> str:
    """``script``'s standard output in a fresh interpreter; it must exit with status 0."""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    return result.stdout
