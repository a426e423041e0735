"""The layers of docs/DESIGN.md: arrows only point down, no import cycles, planes free of their
forbidden packages. Checked on the project's own import statements (module level and inside
functions; ``if TYPE_CHECKING:`` blocks are not imports at run time) and, for the planes, by
importing them in a fresh interpreter."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("fedsimenv", "channels", "agents", "scenarios")

#: Bottom to top. A module may import modules of its own layer and of the layers below it.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "foundation",
        ("fedsimenv", "fedsimenv.registry", "fedsimenv.seeding", "fedsimenv.atomic", "fedsimenv.numeric"),
    ),
    ("channel models", ("channels",)),
    ("scenario schema", ("fedsimenv.config", "fedsimenv.config_system")),
    ("planes and round maths", ("fedsimenv.sim", "fedsimenv.learning", "fedsimenv.rewards")),
    ("scenario loading", ("fedsimenv.scenario",)),
    (
        "env",
        (
            "fedsimenv.env",
            "fedsimenv.env_round",
            "fedsimenv.wrappers",
            "fedsimenv.actions",
            "fedsimenv.observations",
            "fedsimenv.view",
            "fedsimenv.render",
            "fedsimenv.gantt",
        ),
    ),
    ("agents", ("agents",)),
    ("experiments", ("fedsimenv.experiments",)),
    ("applications", ("fedsimenv.cli", "fedsimenv.__main__", "scenarios")),
)

#: Package roots a plane must never load (checked statically and by importing in a subprocess).
PLANE_FORBIDDEN = {
    "channels": {"torch", "gymnasium"},
    "fedsimenv.sim": {"torch", "gymnasium"},
    "fedsimenv.learning": {"gymnasium", "simpy"},
}


def _modules() -> dict[str, Path]:
    modules = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


MODULES = _modules()


def _runtime_imports(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """``(line, imported name)`` of every import outside ``if TYPE_CHECKING:`` blocks."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module
            yield from ((node.lineno, f"{node.module}.{alias.name}") for alias in node.names)
        stack.extend(ast.iter_child_nodes(node))


def _project_module(name: str) -> str | None:
    """The deepest project module ``name`` refers to (``from a.b import c``: ``a.b.c`` or ``a.b``)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _edges() -> dict[str, set[tuple[str, int]]]:
    edges: dict[str, set[tuple[str, int]]] = {m: set() for m in MODULES}
    for module, path in MODULES.items():
        for line, name in _runtime_imports(ast.parse(path.read_text(encoding="utf-8"))):
            target = _project_module(name)
            if target is not None and target != module:
                edges[module].add((target, line))
    return edges


EDGES = _edges()


def _layer(module: str) -> int:
    best, rank = -1, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, rank = len(prefix), index
    return rank


def test_every_module_has_a_layer() -> None:
    assert len(MODULES) > 100
    assert [m for m in MODULES if _layer(m) < 0] == []


def test_imports_only_point_down() -> None:
    upward = [
        f"{module}:{line} ({LAYERS[_layer(module)][0]}) imports {target} ({LAYERS[_layer(target)][0]})"
        for module, targets in EDGES.items()
        for target, line in targets
        if _layer(target) > _layer(module)
    ]
    assert upward == []


def test_the_two_planes_do_not_import_each_other() -> None:
    crossing = [
        f"{module}:{line} imports {target}"
        for module, targets in EDGES.items()
        for target, line in targets
        for a, b in (("fedsimenv.sim", "fedsimenv.learning"), ("fedsimenv.learning", "fedsimenv.sim"))
        if module.startswith(a) and target.startswith(b)
    ]
    assert crossing == []


def _cycles() -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target, _ in EDGES[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(MODULES)))
    for module in MODULES:
        if module not in index:
            visit(module)
    return found


def test_no_import_cycles() -> None:
    assert _cycles() == []


def test_the_cycle_finder_finds_a_cycle(monkeypatch: pytest.MonkeyPatch) -> None:
    edges = {m: set(targets) for m, targets in EDGES.items()}
    # Two modules that import nothing of the project, made to import each other.
    assert not EDGES["channels.units"] and not EDGES["fedsimenv.seeding"]
    edges["channels.units"].add(("fedsimenv.seeding", 0))
    edges["fedsimenv.seeding"].add(("channels.units", 0))
    monkeypatch.setattr(sys.modules[__name__], "EDGES", edges)
    assert _cycles() == [["channels.units", "fedsimenv.seeding"]]


@pytest.mark.parametrize("plane", sorted(PLANE_FORBIDDEN))
def test_plane_files_do_not_import_forbidden_packages(plane: str) -> None:
    files = [path for module, path in MODULES.items() if module == plane or module.startswith(plane + ".")]
    assert files
    for path in files:
        roots = {name.split(".")[0] for _, name in _runtime_imports(ast.parse(path.read_text()))}
        bad = roots & PLANE_FORBIDDEN[plane]
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


@pytest.mark.parametrize("plane", sorted(PLANE_FORBIDDEN))
def test_importing_a_plane_loads_no_forbidden_package(plane: str) -> None:
    # Every module of the plane, in a fresh interpreter: what actually ends up in sys.modules.
    modules = [m for m in MODULES if m == plane or m.startswith(plane + ".")]
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        f"print(sorted(m for m in {sorted(PLANE_FORBIDDEN[plane])!r} if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"
