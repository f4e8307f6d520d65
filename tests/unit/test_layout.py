"""The layout keeps the architecture readable: packages of `processor/` import each other in one
direction only (no cycle), modules stay under `MAX_MODULE_LINES` and functions under
`MAX_FUNCTION_LINES`, unless the module says why it must be longer (`LONG_REASON`)."""

from __future__ import annotations

import ast
from collections import defaultdict
from itertools import pairwise
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "processor"
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80
# Written in a module (its docstring or a comment) that must be longer, followed by the reason.
LONG_REASON = "Longer than the limit because"


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _unit(path: Path) -> str:
    """The package (or top-level module) of `processor/` a file belongs to."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return parts[0]


def _imported_units(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "processor" and len(parts) > 1:
                found.add(parts[1])
    return found


def package_dependencies() -> dict[str, dict[str, set[str]]]:
    """unit -> imported unit -> the files that import it (type-checking imports included)."""
    deps: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for path in _modules():
        unit = _unit(path)
        for imported in _imported_units(path) - {unit}:
            deps[unit][imported].add(str(path.relative_to(PACKAGE.parent)))
    return deps


def _cycle(deps: dict[str, dict[str, set[str]]]) -> list[str] | None:
    """One cycle among the units, as a path, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(unit: str) -> list[str] | None:
        state[unit] = 1
        stack.append(unit)
        for nxt in sorted(deps.get(unit, {})):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[unit] = 2
        return None

    for unit in sorted(deps):
        if unit not in state and (found := visit(unit)):
            return found
    return None


def test_packages_import_each_other_without_a_cycle() -> None:
    deps = package_dependencies()
    cycle = _cycle(deps)
    if cycle is not None:
        steps = [f"{a} -> {b} ({', '.join(sorted(deps[a][b])[:3])})" for a, b in pairwise(cycle)]
        raise AssertionError("import cycle between packages: " + "; ".join(steps))


def test_the_cycle_check_finds_a_cycle() -> None:
    deps: dict[str, dict[str, set[str]]] = {"a": {"b": {"x"}}, "b": {"c": {"y"}}, "c": {"a": {"z"}}}
    assert _cycle(deps) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b": {"x"}}, "b": {}}) is None


def test_modules_and_functions_stay_small() -> None:
    too_long: list[str] = []
    for path in _modules():
        text = path.read_text()
        if LONG_REASON in text:
            continue
        lines = text.count("\n")
        name = str(path.relative_to(PACKAGE.parent))
        if lines > MAX_MODULE_LINES:
            too_long.append(f"{name}: {lines} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    too_long.append(f"{name}: {node.name}() {length} lines")
    assert not too_long, (
        f"over {MAX_MODULE_LINES} lines a module or {MAX_FUNCTION_LINES} a function (split it, "
        f"or write in the module '{LONG_REASON} ...'): " + "; ".join(too_long)
    )
