"""The package's layering: ARCHITECTURE.md's layer order, and no import cycle.

The cycle check counts module-level imports only (an import inside a function runs later,
when every module is loaded; `if TYPE_CHECKING:` blocks never run). The layer order counts
every import wherever it stands: a lazy import up the layers is still an arrow up.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
ARCHITECTURE = SRC.parent / "ARCHITECTURE.md"


def module_name(path: Path, src: Path = SRC) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _top_level(body: list[ast.stmt]) -> list[ast.Import | ast.ImportFrom]:
    """Imports that run when the module is imported, including those under try/if at the top."""
    found: list[ast.Import | ast.ImportFrom] = []
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        elif isinstance(node, ast.If):
            test = node.test
            if isinstance(test, ast.Name) and test.id == "TYPE_CHECKING":
                continue
            found += _top_level(node.body) + _top_level(node.orelse)
        elif isinstance(node, ast.Try):
            found += _top_level(node.body) + _top_level(node.orelse) + _top_level(node.finalbody)
            for handler in node.handlers:
                found += _top_level(handler.body)
    return found


def _every_import(body: list[ast.stmt]) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement of a module, wherever it stands."""
    tree = ast.Module(body=body, type_ignores=[])
    return [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]


def import_graph(src: Path = SRC, everywhere: bool = False) -> dict[str, set[str]]:
    """arnet module -> the arnet modules its module-level imports name (with `everywhere`:
    its imports anywhere, in functions and type-checking blocks too)."""
    files = {module_name(p, src): p for p in sorted((src / "arnet").rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    select = _every_import if everywhere else _top_level
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges: set[str] = set()
        for node in select(ast.parse(path.read_text(), str(path)).body):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - (node.level - 1)]
                    prefix = ".".join(base + ([node.module] if node.module else []))
                else:
                    prefix = node.module or ""
                # `from PKG import NAME` imports the submodule PKG.NAME when there is one.
                targets = [
                    f"{prefix}.{alias.name}" if f"{prefix}.{alias.name}" in files else prefix
                    for alias in node.names
                ]
            edges.update(t for t in targets if t in files and t != name)
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_graph_sees_relative_and_package_imports():
    graph = import_graph()
    assert "arnet.formats.catalog" in graph["arnet.formats.opening"]
    assert "arnet.errors" in graph["arnet.data.dataset"]
    assert graph["arnet.errors"] == set()


@pytest.mark.parametrize(
    "graph, cycle",
    [
        ({"a": {"b"}, "b": {"c"}, "c": set()}, None),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, ["a", "b", "c", "a"]),
        ({"a": {"b", "c"}, "b": {"c"}, "c": {"b"}}, ["b", "c", "b"]),
    ],
)
def test_find_cycle(graph, cycle):
    assert find_cycle(graph) == cycle


def test_no_import_cycle_among_arnet_modules():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def architecture_layers(text: str) -> list[tuple[str, list[str]]]:
    """(layer, arnet modules and packages) for each row of ARCHITECTURE.md's layer table, in
    order: `name` is the module arnet.name, `name/` the package arnet.name."""
    section = text.split("## Layers", 1)[1].split("\n## ", 1)[0]
    layers = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or cells[0] in ("layer", "") or set(cells[0]) <= {"-"}:
            continue
        names = ["arnet." + n.rstrip("/") for n in re.findall(r"`([\w_]+/?)`", cells[1])]
        layers.append((cells[0], names))
    return layers


def layer_of(module: str, layers: list[tuple[str, list[str]]]) -> int | None:
    for index, (_, names) in enumerate(layers):
        if any(module == n or module.startswith(n + ".") for n in names):
            return index
    return None


def arrows_up(graph: dict[str, set[str]], layers: list[tuple[str, list[str]]]) -> list[str]:
    """Imports from a layer of the table to a layer below it, as readable lines."""
    found = []
    for module, targets in sorted(graph.items()):
        here = layer_of(module, layers)
        for target in sorted(targets):
            there = layer_of(target, layers)
            if here is not None and there is not None and there > here:
                found.append(f"{module} ({layers[here][0]}) imports {target} ({layers[there][0]})")
    return found


def test_the_layer_table_covers_every_module():
    layers = architecture_layers(ARCHITECTURE.read_text())
    assert [name for name, _ in layers][:2] == ["foundations", "settings"]
    unplaced = [m for m in import_graph() if m != "arnet" and layer_of(m, layers) is None]
    assert not unplaced, f"modules in no layer of ARCHITECTURE.md: {unplaced}"


def test_arrows_up_are_found():
    layers = [("low", ["arnet.a"]), ("high", ["arnet.b"])]
    assert arrows_up({"arnet.b.x": {"arnet.a"}}, layers) == []
    assert arrows_up({"arnet.a": {"arnet.b.x"}}, layers) == [
        "arnet.a (low) imports arnet.b.x (high)"
    ]


def test_no_import_points_up_the_layers_of_architecture_md():
    """Wherever it stands; the public API (`arnet/__init__.py`) sits above every layer."""
    layers = architecture_layers(ARCHITECTURE.read_text())
    graph = import_graph(everywhere=True)
    graph.pop("arnet")
    assert arrows_up(graph, layers) == []


def test_no_import_cycle_even_for_type_checking():
    cycle = find_cycle(import_graph(everywhere=True))
    assert cycle is None, "import cycle: " + " -> ".join(cycle)
