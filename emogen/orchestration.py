"""What the Prefect flows (``flows/``) do with DVC, as plain functions: read the stage DAG
from DVC, run one stage through ``dvc repro`` (DVC's cache decides whether it runs),
fingerprint the data and params a generator was trained on, run a DVC experiment.

Prefect only runs and schedules these; it never caches what DVC caches (docs/design.md).
"""

from __future__ import annotations

import copy
import difflib
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

from pydantic import ValidationError

from emogen.config import (
    DEFAULT_PARAMS,
    DEFAULT_PROFILE,
    Params,
    ParamsError,
    _section_model,
    lay_over,
    load_raw_params,
    parse_yaml,
    profile_keys,
    profile_path,
    read_params_yaml,
)
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
    with subprocess.Popen(
        cmd, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    ) as proc:
        for line in proc.stdout:
            line = line.rstrip("\n")
            lines.append(line)
            on_line(line)
    return proc.returncode, "\n".join(lines)


def repro_stage(
    root: Path, stage: str, env: dict[str, str], on_line: Callable[[str], None] = log.info, force: bool = False
) -> StageResult:
    """``dvc repro --single-item <stage>``: DVC reruns it only if its code, params or inputs
    changed. A failure raises :class:`StageFailed` with the end of the stage's log."""
    cmd = ["dvc", "repro", "--single-item", stage] + (["--force"] if force else [])
    code, output = _stream(cmd, root, env, on_line)
    if code != 0:
        raise StageFailed(stage, output)
    return StageResult(stage, ran=stage in _RAN.findall(output), output=output)


class StageFailed(RuntimeError):
    def __init__(self, stage: str, output: str):
        lines = [line for line in output.splitlines() if line.strip()]
        ours = [line for line in lines if line.startswith("error: ")]  # `emogen stage`'s own one line
        reason = (
            ours[-1]
            if ours
            else next((line for line in lines if line.startswith("ERROR")), lines[-1] if lines else "no output")
        )
        tail = "\n".join(lines[-25:])
        super().__init__(f"{stage!r} failed: {reason}\n{tail}")
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
    """``["stage2.lambda_attr=0.02"]`` → ``{"stage2.lambda_attr": 0.02}`` (values as YAML).
    Keys as ``dvc exp run -S`` takes them: ``FILE:key`` for another params file (a profile)."""
    parsed = {}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"-S {item}: write KEY=VALUE, e.g. -S stage2.lambda_attr=0.02")
        parsed[key.strip()] = parse_yaml(value, f"-S {item}")
    return parsed


def _show(key: str, value: object) -> str:
    return f"-S {key}={value if isinstance(value, str) else json.dumps(value)}"


def _set(mapping: dict, key: str, value: object, where: str, path: Path) -> None:
    node = mapping
    *parents, leaf = key.split(".")
    for depth, part in enumerate(parents):
        child = node.setdefault(part, {})
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ParamsError(f"{where}: {'.'.join(parents[: depth + 1])} is a value in {path}, not a section")
        node = child
    node[leaf] = value


def _one_line(error: ValidationError, overrides: dict[str, object], source: str) -> str:
    """The first problem as one line, naming the override that caused it (if one did)."""
    err = error.errors()[0]
    loc = ".".join(str(part) for part in err["loc"])
    culprit = next((k for k in overrides if k.rpartition(":")[2].lstrip("+") == loc), None)
    culprit = culprit or next((k for k in overrides if loc.startswith(k.rpartition(":")[2].lstrip("+") + ".")), None)
    where = _show(culprit, overrides[culprit]) if culprit else f"{source}: {loc or '(top level)'}"
    if err["type"] == "extra_forbidden":
        *section, leaf = loc.split(".")
        model = _section_model(tuple(section))
        allowed = sorted(f.alias or n for n, f in model.model_fields.items()) if model else []
        close = difflib.get_close_matches(leaf, allowed, n=1)
        hint = (
            f"; did you mean {'.'.join([*section, close[0]])}?"
            if close
            else (f"; keys under {'.'.join(section) or 'the top level'}: {', '.join(allowed)}" if allowed else "")
        )
        message = f"{where}: unknown key {loc}{hint}"
    else:
        message = f"{where}: {loc}: {err['msg']} (got {err.get('input')!r})"
    more = len(error.errors()) - 1
    return message + (f" (and {more} more problem{'s' * (more > 1)})" if more else "")


def apply_overrides(root: Path, overrides: dict[str, object]) -> tuple[dict, Params]:
    """params.yaml (and its profile) with the ``-S`` overrides applied in memory, validated
    before anything runs: → (params.yaml's mapping with the overrides, the effective Params).
    A bad override is a one-line :class:`ParamsError` naming it, its key and what is wrong;
    so is an override of a key the selected profile sets (the profile would win over it)."""
    path = root / DEFAULT_PARAMS
    raw, _, _ = load_raw_params(path)
    raw = copy.deepcopy(raw)
    files: dict[Path, dict] = {}
    for key, value in overrides.items():
        where = _show(key, value)
        file, _, dotted = key.rpartition(":")
        dotted = dotted.lstrip("+")
        if not dotted or dotted.startswith("~"):
            raise ParamsError(f"{where}: write KEY=VALUE with a dotted key, e.g. -S stage2.lambda_attr=0.02")
        target = root / file if file else path
        if target == path:
            _set(raw, dotted, value, where, path)
            continue
        if target not in files:
            if not target.is_file():
                raise ParamsError(f"{where}: no params file {target}")
            files[target] = copy.deepcopy(read_params_yaml(target))
        _set(files[target], dotted, value, where, target)
    try:
        Params.model_validate(raw)  # params.yaml alone first: a profile's section must not hide a bad value
    except ValidationError as exc:
        raise ParamsError(_one_line(exc, overrides, str(path))) from None
    name = raw.get("profile", DEFAULT_PROFILE)
    profile = profile_path(path, name)
    overlay = files.get(profile)
    if overlay is None and profile.is_file():
        overlay = read_params_yaml(profile)
    elif overlay is None and name != DEFAULT_PROFILE:
        known = sorted(p.stem for p in profile.parent.glob("*.yaml"))
        culprit = next((k for k in overrides if k.lstrip("+") == "profile"), None)
        where = _show(culprit, overrides[culprit]) if culprit else f"{path}: profile"
        raise ParamsError(f"{where}: there is no {profile} (profiles: {', '.join(known) or 'none'})")
    overlay = overlay or {}  # the default profile may have no file (a params.yaml without profiles/)
    shadowed = [k for k in overrides if ":" not in k and k.lstrip("+") in profile_keys(overlay)]
    if shadowed:
        key = shadowed[0]
        raise ParamsError(
            f"{_show(key, overrides[key])}: the profile {profile} sets {key.lstrip('+')}, and a "
            f"profile wins over params.yaml: override it there (-S {profile.relative_to(root)}:"
            f"{key.lstrip('+')}=...)"
        )
    for other, mapping in files.items():  # an overridden profile that is not selected: checked all the same
        if other != profile:
            try:
                Params.model_validate(lay_over(raw, mapping or {}))
            except ValidationError as exc:
                raise ParamsError(_one_line(exc, overrides, f"{path} + {other}")) from None
    try:
        params = Params.model_validate(lay_over(raw, overlay or {}))
    except ValidationError as exc:
        raise ParamsError(_one_line(exc, overrides, f"{path} + {profile}")) from None
    return raw, params


def params_with_overrides(root: Path, overrides: dict[str, object]) -> dict:
    """params.yaml with the dotted overrides applied, validated (a bad key names itself)."""
    return apply_overrides(root, overrides)[0]


def exp_run(
    root: Path, overrides: dict[str, object], name: str, env: dict[str, str], on_line: Callable[[str], None] = log.info
) -> str:
    """``dvc exp run --temp -n NAME -S key=value ...``: the experiment runs in a temporary copy
    of the repo, so the workspace's params.yaml, dvc.lock and outputs stay as they are; its
    outputs go to the DVC cache and its commit to ``refs/exps`` (``dvc exp apply NAME`` brings
    them into the workspace). DVC reruns only what the overrides change. → the output."""
    return exp_run_temp(root, name, overrides, (), env, on_line)


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
    digest.update(
        json.dumps({k: v for k, v in raw.items() if k not in set(params_exclude)}, sort_keys=True, default=str).encode()
    )
    return digest.hexdigest()[:16]


def exp_run_temp(
    root: Path,
    name: str,
    overrides: dict[str, object],
    targets: Iterable[str],
    env: dict[str, str],
    on_line: Callable[[str], None] = log.info,
) -> str:
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
        raise UserError(
            f"{path} at experiment revision {rev}: cannot read ({type(error).__name__}: {error})"
        ) from error
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise UserError(f"{path} at experiment revision {rev}: not JSON ({error})") from error


def exp_rev(root: Path, name: str) -> str:
    """The commit of experiment ``name`` (its ref ``refs/exps/<baseline>/<name>``)."""
    try:
        return experiments(root)[name]
    except KeyError:
        raise UserError(f"{root}: no DVC experiment named {name!r} (`dvc exp list`)") from None


def export_experiment(root: Path, rev: str, paths: Iterable[str], dest: Path) -> Path:
    """Copy ``paths`` (files or folders, git- or DVC-tracked) as they are in commit ``rev`` of
    ``root`` into ``dest``, from git and the DVC cache: the workspace is not touched. → dest."""
    from dvc.api import DVCFileSystem

    fs = DVCFileSystem(str(root), rev=rev)
    for path in paths:
        if not fs.exists(path):
            raise UserError(f"experiment {rev[:7]}: {path} is not in it (was it produced by `dvc exp run`?)")
        target = dest / path
        target.parent.mkdir(parents=True, exist_ok=True)
        fs.get(path, str(target), recursive=fs.isdir(path))
    return dest
