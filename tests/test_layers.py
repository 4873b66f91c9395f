"""The package imports only downward (docs/design.md "Layers"): a new upward import or a
package-level cycle fails here, before it makes DVC rerun stages that did not change."""

import ast
from pathlib import Path

import networkx as nx
import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "emogen"

# Lowest first; a module may import its own layer's packages (without cycles) and any below.
LAYERS = [
    {
        "errors",
        "emotions",
        "config",
        "layout",
        "seeding",
        "jsonio",
        "images",
        "devices",
        "caches",
        "checkpoints",
        "tracking",
        "threads",
        "orchestration",
        "timings",
        "limits",
        "__init__",
    },
    {"data"},
    {"pipelines"},
    {"base", "stage1", "stage2", "baselines", "evaluation", "registry", "report", "demo"},
    {"stages"},
    {"commands"},
    {"cli", "__main__"},
]
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def unit(path: Path) -> str:
    """The package (or top-level module) a file belongs to."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return parts[0]


def imported_units(path: Path) -> set[str]:
    """Every emogen package a file imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = (
                [node.module] + [f"{node.module}.{a.name}" for a in node.names]
                if node.module == "emogen"
                else [node.module]
            )
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "emogen":
                found.add(parts[1] if len(parts) > 1 else "__init__")
    return found


def import_graph() -> nx.DiGraph:
    graph = nx.DiGraph()
    for path in PACKAGE.rglob("*.py"):
        for target in imported_units(path) - {unit(path)}:
            graph.add_edge(unit(path), target, file=path.relative_to(PACKAGE.parent).as_posix())
    return graph


GRAPH = import_graph()


def test_every_package_has_a_layer():
    units = {unit(p) for p in PACKAGE.rglob("*.py")}
    assert not units - RANK.keys(), f"packages without a layer in tests/test_layers.py: {sorted(units - RANK.keys())}"


def test_no_package_level_cycle():
    cycles = list(nx.simple_cycles(GRAPH))
    assert not cycles, f"package import cycles: {cycles}"


@pytest.mark.parametrize("edge", sorted(GRAPH.edges), ids=lambda e: f"{e[0]}->{e[1]}")
def test_imports_go_only_downward(edge):
    source, target = edge
    assert RANK[target] <= RANK[source], (
        f"{GRAPH.edges[edge]['file']} imports emogen.{target} (layer {RANK[target]}) from layer {RANK[source]}: "
        "move the shared code down a layer instead"
    )


def test_a_known_upward_import_is_caught(tmp_path):
    """The walk sees lazy imports inside functions (how most upward imports sneak in)."""
    module = PACKAGE / "pipelines" / "jobs.py"
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from emogen.stages.generate import run\n")
    assert imported_units(probe) == {"stages"} and RANK["stages"] > RANK[unit(module)]
