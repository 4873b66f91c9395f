"""What the Prefect flows (``flows/``) do with DVC, as plain functions: read the stage DAG
from DVC, run one stage through ``dvc repro`` (DVC's cache decides whether it runs),
fingerprint the data and params a generator was trained on, run a DVC experiment.

Prefect only runs and schedules these; it never caches what DVC caches (docs/design.md).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from emogen.config import DEFAULT_PARAMS, parse_params, parse_yaml, read_params_yaml
from emogen.errors import UserError
from emogen.tracking import PIPELINE_RUN_ENV, tracking_uri

log = logging.getLogger(__name__)

_RAN = re.compile(r"Running stage '([^']+)'")


@dataclass(frozen=True)
class StageResult:
    stage: str
    ran: bool  # False: DVC found it unchanged (or restored it from the run cache) and skipped it
    output: str


def dag_stages(root: Path, target: str | None = None) -> list[str]:
    """Stage names of ``root``'s dvc.yaml in DAG order (dependencies first, ties by name),
    read from DVC's own graph; with ``target``: only it and the stages it depends on."""
    import networkx as nx
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        graph = repo.index.graph  # edges point from a stage to the stages it depends on
        if target is not None:
            nodes = [s for s in graph if s.addressing == target]
            if not nodes:
                raise UserError(f"{root / 'dvc.yaml'}: no stage named {target!r}")
            graph = graph.subgraph(nx.descendants(graph, nodes[0]) | {nodes[0]})
        order = nx.lexicographical_topological_sort(graph.reverse(), key=lambda s: s.addressing)
        return [stage.addressing for stage in order]


def stage_env(pipeline_run_id: str | None = None) -> dict[str, str]:
    """Environment of a stage run: one MLflow store for every stage and experiment workspace
    (an absolute URI), the pipeline-run id that groups the runs, the venv's commands on PATH."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri()}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    if pipeline_run_id:
        env[PIPELINE_RUN_ENV] = pipeline_run_id
    return env


def _stream(cmd: list[str], root: Path, env: dict[str, str], on_line: Callable[[str], None]) -> tuple[int, str]:
    """Run ``cmd``; every output line to ``on_line`` as it comes; → (exit code, output)."""
    lines = []
    with subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, bufsize=1) as proc:
        for line in proc.stdout:
            line = line.rstrip("\n")
            lines.append(line)
            on_line(line)
    return proc.returncode, "\n".join(lines)


def repro_stage(root: Path, stage: str, env: dict[str, str], on_line: Callable[[str], None] = log.info,
                force: bool = False) -> StageResult:
    """``dvc repro --single-item <stage>``: DVC reruns it only if its code, params or inputs
    changed. A failure raises :class:`StageFailed` with the end of the stage's log."""
    cmd = ["dvc", "repro", "--single-item", stage] + (["--force"] if force else [])
    code, output = _stream(cmd, root, env, on_line)
    if code != 0:
        raise StageFailed(stage, output)
    return StageResult(stage, ran=stage in _RAN.findall(output), output=output)


class StageFailed(RuntimeError):
    def __init__(self, stage: str, output: str):
        tail = "\n".join(output.splitlines()[-25:])
        super().__init__(f"stage {stage!r} failed (dvc repro exit code != 0):\n{tail}")
        self.stage = stage


def stage_out_hashes(root: Path, stages: Iterable[str]) -> dict[str, str]:
    """``{out path: DVC hash}`` of the stages' outputs as dvc.lock records them now."""
    from dvc.repo import Repo

    hashes = {}
    with Repo(str(root)) as repo:
        for name in stages:
            for stage in repo.stage.collect(name):
                for out in stage.outs:
                    hashes[str(out.def_path)] = str(out.hash_info.value)
    return dict(sorted(hashes.items()))


def fingerprint(value: object) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def parse_overrides(overrides: Iterable[str]) -> dict[str, object]:
    """``["stage2.lambda_attr=0.02"]`` → ``{"stage2.lambda_attr": 0.02}`` (values as YAML)."""
    parsed = {}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"override {item!r}: write KEY=VALUE, e.g. stage2.lambda_attr=0.02")
        parsed[key.strip()] = parse_yaml(value, f"override {item!r}")
    return parsed


def params_with_overrides(root: Path, overrides: dict[str, object]) -> dict:
    """params.yaml with the dotted overrides applied, validated (a bad key names itself)."""
    path = root / DEFAULT_PARAMS
    raw = read_params_yaml(path)
    for key, value in overrides.items():
        node = raw
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise UserError(f"override {key}: {part} is not a section of {path}")
        node[leaf] = value
    parse_params(raw, f"{path} with overrides {overrides}")
    return raw


def exp_run(root: Path, overrides: dict[str, object], name: str, env: dict[str, str],
            on_line: Callable[[str], None] = log.info) -> str:
    """``dvc exp run -n NAME -S key=value ...`` in the workspace (its outputs stay there for
    registering); DVC reruns only what the overrides change. → the output."""
    cmd = ["dvc", "exp", "run", "-n", name]
    for key, value in overrides.items():
        cmd += ["-S", f"{key}={json.dumps(value) if not isinstance(value, str) else value}"]
    code, output = _stream(cmd, root, env, on_line)
    if code != 0:
        raise StageFailed(f"exp run {name}", output)
    return output


# --- experiments of the multi-seed study (flows/study.py, docs/study.md) ---------------------

def _git(root: Path, *args: str) -> str:
    out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise UserError(f"{root}: git {' '.join(args)} failed: {out.stderr.strip()}")
    return out.stdout


def experiments(root: Path) -> dict[str, str]:
    """``{name: commit}`` of every DVC experiment of the repository, whatever its baseline
    (refs/exps/<baseline>/<name>; a name kept by several baselines: any one of them)."""
    found = {}
    for line in _git(root, "for-each-ref", "--format=%(objectname) %(refname)", "refs/exps/").splitlines():
        sha, ref = line.split(" ", 1)
        if ref.count("/") >= 4 and not ref.startswith(("refs/exps/exec/", "refs/exps/celery/")):
            found[ref.rsplit("/", 1)[1]] = sha
    return found


def content_fingerprint(root: Path, exclude: Iterable[str] = (), params_exclude: Iterable[str] = ()) -> str:
    """A hash of what an experiment of the workspace would start from: the current content of
    every git-tracked file (uncommitted changes included; untracked files never reach an
    experiment), less the glob patterns ``exclude``, and params.yaml without the top-level
    sections ``params_exclude``. Independent of the commit: committing changes nothing."""
    import fnmatch

    exclude = list(exclude) + [str(DEFAULT_PARAMS)]
    digest = hashlib.sha256()
    for name in sorted(_git(root, "ls-files", "-z").split("\0")):
        if not name or any(fnmatch.fnmatch(name, pattern) for pattern in exclude):
            continue
        path = root / name
        digest.update(name.encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest() if path.is_file() else b"<deleted>")
    raw = read_params_yaml(root / DEFAULT_PARAMS)
    digest.update(json.dumps({k: v for k, v in raw.items() if k not in set(params_exclude)},
                             sort_keys=True, default=str).encode())
    return digest.hexdigest()[:16]


def exp_run_temp(root: Path, name: str, overrides: dict[str, object], targets: Iterable[str], env: dict[str, str],
                 on_line: Callable[[str], None] = log.info) -> str:
    """``dvc exp run --temp -n NAME -S key=value ... [targets]``: the experiment runs in a
    temporary copy (the workspace, params.yaml included, is left as it is); its commit is kept
    as refs/exps/…/NAME and its outputs in the DVC cache (the run cache restores unchanged
    stages). → the output."""
    cmd = ["dvc", "exp", "run", "--temp", "-n", name]
    for key, value in overrides.items():
        cmd += ["-S", f"{key}={json.dumps(value) if not isinstance(value, str) else value}"]
    code, output = _stream(cmd + list(targets), root, env, on_line)
    if code != 0:
        raise StageFailed(f"exp run {name}", output)
    return output


def read_at(root: Path, path: str, rev: str) -> dict:
    """A JSON file of the experiment (or any revision) ``rev``, git- or DVC-tracked; an error
    names the file and the revision."""
    import dvc.api

    try:
        text = dvc.api.read(path, repo=str(root), rev=rev)
    except Exception as error:  # DVC raises many kinds; the message names the file
        raise UserError(f"{path} at experiment revision {rev}: cannot read ({type(error).__name__}: {error})") from error
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise UserError(f"{path} at experiment revision {rev}: not JSON ({error})") from error
