"""dvc.yaml cannot drift from the code: each stage's project-code deps are exactly the emogen
modules its entry point imports (transitively), and no stage runs on unvalidated data."""

import re

import networkx as nx
import pytest
from dvc.repo import Repo

from emogen.caches import code_files
from emogen.cli import STAGES
from tests.helpers.paths import REPO

# What every stage needs from the data stages before it may run.
UPSTREAM = {"prepare_data": set(), "ingest": {"prepare_data"}, "validate": {"prepare_data", "ingest"}}


def code_deps(entry_module: str) -> set[str]:
    return {path.relative_to(REPO).as_posix() for path in code_files(entry_module)}


def _stages():
    with Repo(str(REPO)) as repo:
        graph = repo.index.graph
        return [(stage, {s.name for s in nx.descendants(graph, stage)}) for stage in repo.index.stages]


STAGE_GRAPH = _stages()


def test_the_import_walk_sees_lazy_and_relative_imports():
    deps = code_deps("emogen.data.placement")  # imports dvc lazily, emogen.layout at the top
    assert {"emogen/data/placement.py", "emogen/layout.py", "emogen/config.py", "emogen/errors.py"} <= deps
    assert "emogen/cli.py" not in deps and "emogen/__init__.py" not in deps


@pytest.mark.parametrize(("stage", "upstream"), STAGE_GRAPH, ids=[s.name for s, _ in STAGE_GRAPH])
def test_code_deps_are_exactly_the_entry_modules_imports(stage, upstream):
    match = re.match(r"emogen stage ([\w@]+)", stage.cmd or "")
    assert match and match[1] in STAGES, f"dvc.yaml stage {stage.name}: cmd {stage.cmd!r} is not `emogen stage <name>`"
    expected = code_deps(STAGES[match[1]].partition(":")[0])
    listed = {dep.def_path for dep in stage.deps if dep.def_path.startswith("emogen/")}
    assert not expected - listed, f"dvc.yaml stage {stage.name} lacks code deps: {sorted(expected - listed)}"
    assert not listed - expected, (
        f"dvc.yaml stage {stage.name} lists code it does not import: {sorted(listed - expected)}"
    )


@pytest.mark.parametrize(("stage", "upstream"), STAGE_GRAPH, ids=[s.name for s, _ in STAGE_GRAPH])
def test_every_stage_runs_after_the_data_check_and_validation(stage, upstream):
    """prepare_data first (it refuses a data.root inside any output before DVC deletes one);
    nothing trains or measures on data that has not passed validate."""
    required = UPSTREAM.get(stage.name, {"prepare_data", "ingest", "validate"})
    assert required <= upstream, f"dvc.yaml stage {stage.name} does not depend on {sorted(required - upstream)}"
