"""The learners' modules import one another in one direction only.

Every import counts, wherever it is written (inside a function, under ``TYPE_CHECKING``): an
import cycle broken by an import inside a function is still a cycle for a reader.  The graph is
that of ``oml_algorithms`` and of every ``oml`` module it reaches.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

PACKAGES = ("oml", "oml_algorithms")


def _path(module: str) -> Path | None:
    """The source file of ``module``, None if it is not a module (a name imported from one)."""
    try:
        spec = importlib.util.find_spec(module)
    except ModuleNotFoundError:
        return None
    return Path(spec.origin) if spec is not None and spec.origin else None


def _imports(module: str) -> set[str]:
    """The modules of our packages that ``module`` imports, anywhere in its source."""
    path = _path(module)
    assert path is not None, module
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = importlib.util.resolve_name("." * node.level + (node.module or ""), package)
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        out.update(n for n in names if n.split(".")[0] in PACKAGES and _path(n) is not None)
    out.discard(module)
    return out


def _graph(roots: list[str]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    todo = list(roots)
    while todo:
        module = todo.pop()
        if module not in graph:
            graph[module] = _imports(module)
            todo.extend(graph[module])
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` (as a path that ends where it starts), or None."""
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> list[str] | None:
        if module in path:
            return [*path[path.index(module) :], module]
        if module in done:
            return None
        for dep in sorted(graph[module]):
            found = visit(dep, [*path, module])
            if found:
                return found
        done.add(module)
        return None

    for module in sorted(graph):
        found = visit(module, [])
        if found:
            return found
    return None


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_the_learners_have_no_import_cycle() -> None:
    package = _path("oml_algorithms")
    assert package is not None
    modules = [f"oml_algorithms.{p.stem}" for p in package.parent.glob("*.py")]
    graph = _graph([m.removesuffix(".__init__") for m in modules])
    assert {"oml_algorithms.pa", "oml_algorithms.scw", "oml.bank", "oml.learner"} <= set(graph)
    assert _cycle(graph) is None


def test_each_learner_module_holds_its_bank() -> None:
    from oml_algorithms.pa import PAClassifier, PARegressor
    from oml_algorithms.scw import SCWClassifier

    for learner in (PAClassifier, PARegressor, SCWClassifier):
        bank = learner.make_bank(learner())
        assert type(bank).__module__ == learner.__module__
