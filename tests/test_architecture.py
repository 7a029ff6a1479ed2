"""
The shape of the package, checked from its source: module size, the runtime's
size, import direction and the absence of import cycles (every import counts,
including those under ``TYPE_CHECKING`` and inside functions).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "ron_metrics"
MAX_MODULE_LINES = 350
MAX_RUNTIME_LINES = 200


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _imports(name: str) -> Iterator[str]:
    modules = _modules()
    path = modules[name]
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".")
                anchor = anchor if is_package else anchor[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            # "from package import submodule" depends on the submodule.
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                for alias in node.names
            ]
        else:
            continue
        yield from (t for t in targets if t in modules and t != name)


def _graph() -> dict[str, set[str]]:
    return {name: set(_imports(name)) for name in _modules()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_import_graph_is_read() -> None:
    """The checker itself sees real edges (it would pass vacuously otherwise)."""
    graph = _graph()
    assert "ron_metrics.config.model" in graph["ron_metrics.config.parsing"]
    assert "ron_metrics._engine" in graph["ron_metrics._wiring"]
    assert _cycle({"a": {"b"}, "b": {"a"}}) == ["a", "b", "a"]


def test_no_import_cycle() -> None:
    """No module reaches itself through imports (package __init__ files excluded)."""
    graph = {
        name: {t for t in targets if _modules()[t].name != "__init__.py"}
        for name, targets in _graph().items()
        if _modules()[name].name != "__init__.py"
    }
    assert _cycle(graph) is None


@pytest.mark.parametrize(
    ("lower", "higher"),
    [
        ("ron_metrics.config.values", "ron_metrics.config.model"),
        ("ron_metrics.config.model", "ron_metrics.config.invariants"),
        ("ron_metrics.config.invariants", "ron_metrics.config.parsing"),
        ("ron_metrics.config.parsing", "ron_metrics.config.loader"),
        ("ron_metrics.config.sources", "ron_metrics.config.loader"),
        ("ron_metrics.config.environment", "ron_metrics.config.loader"),
    ],
)
def test_config_imports_run_one_way(lower: str, higher: str) -> None:
    """A lower config module never imports a higher one, directly or not."""
    graph = _graph()
    seen: set[str] = set()
    todo = [lower]
    while todo:
        for target in graph[todo.pop()] - seen:
            seen.add(target)
            todo.append(target)
    assert higher not in seen
    assert "ron_metrics.config" not in graph[lower]  # never through the package


@pytest.mark.parametrize(
    "generic",
    [
        "ron_metrics.runtime",
        "ron_metrics._engine",
        "ron_metrics._switch",
        "ron_metrics._supervision",
    ],
)
def test_generic_parts_know_no_sink_by_type(generic: str) -> None:
    """Only the wiring names sink classes; the rest sees the sink contract."""
    concrete = {
        "ron_metrics.exporters.otlp",
        "ron_metrics.exporters.prometheus.server",
    }
    assert not _graph()[generic] & concrete


def test_modules_stay_small() -> None:
    """Every module is at most MAX_MODULE_LINES lines: split by concern before that."""
    sizes = {
        name: len(path.read_text().splitlines()) for name, path in _modules().items()
    }
    assert {n: s for n, s in sizes.items() if s > MAX_MODULE_LINES} == {}


def test_runtime_class_stays_small() -> None:
    """The Runtime class keeps the state machine and the loop, nothing more."""
    tree = ast.parse(_modules()["ron_metrics.runtime"].read_text())
    (runtime,) = [
        node
        for node in tree.body
        if isinstance(node, ast.ClassDef) and node.name == "Runtime"
    ]
    assert runtime.end_lineno is not None
    assert runtime.end_lineno - runtime.lineno + 1 <= MAX_RUNTIME_LINES


def test_every_suppression_says_why() -> None:
    """Each type-checker or linter suppression comment carries a reason after it."""
    root = PACKAGE.parent.parent
    type_marker, lint_marker = (
        "type: " + "ignore",
        "no" + "qa",
    )  # spelled apart: not a suppression
    reasoned = re.compile(
        type_marker + r"\[[a-z, -]+\]  # \S|" + lint_marker + r": [A-Z0-9, ]+ (-|—) \S"
    )
    bare: list[str] = []
    for folder in ("src", "tests", "benchmarks", "scripts", "examples"):
        for path in sorted((root / folder).rglob("*.py")):
            for number, line in enumerate(path.read_text().splitlines(), 1):
                code = line.split("#", 1)[1] if "#" in line else ""
                marker = type_marker in code or lint_marker in code
                if marker and not reasoned.search(line):
                    bare.append(f"{path.relative_to(root)}:{number}")
    assert bare == []
