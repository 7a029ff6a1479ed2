"""
Bounds on a declarative YAML file, checked before anything expands it.

A YAML alias refers to a node defined once; expanding aliases of aliases grows
exponentially (a "billion laughs" file of a few hundred bytes expands to gigabytes,
and the schema validation then runs for minutes). The file is composed into its
node graph — linear in the text, aliases not expanded — and refused when its
nesting is deeper than :data:`MAX_DEPTH` or its expanded size (each alias counted
as often as it is used) exceeds :data:`MAX_NODES`. Error messages give the line and
column, never a fragment of the file's text.
"""

from __future__ import annotations

import re

import yaml  # type: ignore[import-untyped]  # PyYAML ships no type hints

__all__ = ["MAX_DEPTH", "MAX_NODES", "check_yaml_bounds", "without_values"]

MAX_DEPTH = 64
MAX_NODES = 100_000
_QUOTED = re.compile(r"'[^'\n]*'|\"[^\"\n]*\"")


def without_values(text: str) -> str:
    """``text`` with every quoted fragment (a value from the file) replaced by ``…``."""
    return _QUOTED.sub("…", text.splitlines()[0] if text else text)


def _where(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    if mark is None:
        return "not valid YAML"
    return f"not valid YAML at line {mark.line + 1}, column {mark.column + 1}"


def check_yaml_bounds(data: bytes) -> None:
    """
    Raises:
        ValueError: The text is not UTF-8 or not YAML (with line and column), nests
            deeper than :data:`MAX_DEPTH`, or expands past :data:`MAX_NODES` nodes.
    """
    try:
        text = data.decode("utf-8")
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except UnicodeDecodeError as exc:
        raise ValueError(f"is not UTF-8 (at byte {exc.start})") from None
    except yaml.YAMLError as exc:
        raise ValueError(_where(exc)) from None
    if root is not None:
        _expanded_size(root)


def _expanded_size(root: yaml.Node) -> int:
    # Sizes are memoised per node, so shared (aliased) nodes cost one visit each:
    # the count grows exponentially for a bomb, the work does not.
    sizes: dict[int, int] = {}
    # (node, depth, children visited?) — iterative, so nesting cannot overflow.
    stack: list[tuple[yaml.Node, int, bool]] = [(root, 1, False)]
    open_nodes: set[int] = set()
    while stack:
        node, depth, expanded = stack.pop()
        if depth > MAX_DEPTH:
            raise ValueError(_at(node, f"nests deeper than {MAX_DEPTH} levels"))
        key = id(node)
        if key in sizes:
            continue
        children = _children(node)
        if not expanded:
            if key in open_nodes:
                raise ValueError(_at(node, "has an alias that refers to itself"))
            open_nodes.add(key)
            stack.append((node, depth, True))
            stack.extend((child, depth + 1, False) for child in children)
            continue
        open_nodes.discard(key)
        size = 1 + sum(sizes[id(child)] for child in children)
        if size > MAX_NODES:
            raise ValueError(_at(node, f"expands to more than {MAX_NODES} nodes"))
        sizes[key] = size
    return sizes[id(root)]


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _at(node: yaml.Node, why: str) -> str:
    mark = node.start_mark
    return f"{why} (at line {mark.line + 1}, column {mark.column + 1})"
