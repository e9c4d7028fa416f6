"""Every import points down the flow: capture -> store -> features and detectors -> engine -> pages.

The test reads every module of the project (imports inside functions included: a cycle hidden by a
lazy import is still a cycle) and fails on an import a layer may not make, and on any import cycle
between modules. docs/architecture.md draws the same layers.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("app", "store", "detectors", "simulators", "pages", "bench")

#: layer (a module or package) -> what its modules may import besides themselves. The longest
#: matching layer applies: `app.engine.pipeline` is in `app.engine`.
MAY_IMPORT: dict[str, tuple[str, ...]] = {
    "store": (),
    "simulators": ("store",),
    "detectors": (),
    "app.settings": (),
    "app.engine": ("app.settings", "detectors", "store", "simulators"),
    "app.capture": ("app.engine", "app.settings", "store"),
    "app.cli": ("app.engine", "app.settings", "detectors", "store", "simulators"),
    "app.web": ("app.engine", "app.capture", "app.settings", "detectors", "store", "simulators"),
    "app": ("app.cli",),  # the package itself and `python -m app`
    "pages": ("app.web", "app.engine", "app.capture", "app.settings", "detectors", "store", "simulators"),
    "bench": ("app", "detectors", "store", "simulators"),
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))}


def project_module(name: str) -> str | None:
    """The project module `name` refers to (a module, or the package it names), None when outside."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in MODULES:
            return ".".join(parts[:end])
    return None


def imports_of(path: Path) -> Iterator[tuple[str, int]]:
    """(project module imported, line) for every import statement of the file, at any depth."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            target = project_module(name)
            if target is not None:
                yield target, node.lineno


def layer_of(module: str) -> str:
    return max((layer for layer in MAY_IMPORT if module == layer or module.startswith(layer + ".")), key=len)


def within(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == prefix or module.startswith(prefix + ".") for prefix in prefixes)


def test_every_module_belongs_to_a_layer() -> None:
    assert {"app.engine.pipeline", "app.web.main", "store.db", "detectors.features", "pages.overview",
            "bench.latency"} <= set(MODULES)
    for module in MODULES:
        assert layer_of(module) in MAY_IMPORT


def test_no_import_points_up_the_flow() -> None:
    wrong = []
    for module, path in MODULES.items():
        layer = layer_of(module)
        for target, line in imports_of(path):
            if not within(target, (layer, *MAY_IMPORT[layer])):
                wrong.append(f"{path.relative_to(ROOT)}:{line}: {module} ({layer}) imports {target}")
    assert not wrong, "imports against the flow:\n" + "\n".join(wrong)


def test_no_import_cycle_between_modules() -> None:
    graph = {module: {target for target, _ in imports_of(path) if target != module}
             for module, path in MODULES.items()}
    # a package's __init__ re-exporting its modules is not a cycle with them
    for module in graph:
        graph[module] -= {m for m in graph[module] if module.startswith(m + ".")}
    state: dict[str, int] = {}  # 1 visiting, 2 done
    trail: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        trail.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                cycle = [*trail[trail.index(target):], target]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        trail.pop()
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)


def test_the_checks_catch_an_import_against_the_flow(tmp_path: Path) -> None:
    upward = tmp_path / "upward.py"
    upward.write_text("def f():\n    from app.engine.policy import decide\n")
    [(target, line)] = list(imports_of(upward))
    assert (target, line) == ("app.engine.policy", 2)
    assert not within(target, ("store", *MAY_IMPORT["store"]))
