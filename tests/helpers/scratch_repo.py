"""A scratch git + DVC repository to run `dvc` and `emogen` in, apart from the real one.

``scratch_repo(root)`` copies this project's dvc.yaml, params.yaml, emogen/ and profiles/ into
``root`` (params.yaml laid over with ``params``), runs `git init` and `dvc init`, and returns it
with the environment to run commands in. ``init_repo`` is the git + DVC part alone, for a test
that writes its own dvc.yaml.
"""

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from tests.helpers.paths import REPO

GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@t",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@t",
}


@dataclass(frozen=True)
class ScratchRepo:
    path: Path
    env: dict[str, str]

    def run(self, *cmd: str, timeout: float = 600) -> subprocess.CompletedProcess:
        """Run ``cmd`` in the repo; the completed process (the caller checks its return code)."""
        return subprocess.run(list(cmd), cwd=self.path, env=self.env, capture_output=True, text=True, timeout=timeout)


def lay_over(base: dict, update: Mapping) -> dict:
    """``base`` with ``update`` merged in, section by section (in place; returned)."""
    for key, value in update.items():
        base[key] = lay_over(base.get(key) or {}, value) if isinstance(value, Mapping) else value
    return base


def command_env(mlflow_db: Path | None, pythonpath: Path = REPO, **extra: str) -> dict[str, str]:
    """The environment for `dvc`, `emogen`, `git`: the venv's bin first on PATH (pytest may run
    without activating it), ``pythonpath``'s code, MLflow in ``mlflow_db`` (if given), a git
    identity; ``extra`` last."""
    env = {
        **os.environ,
        **GIT_IDENTITY,
        "PYTHONPATH": str(pythonpath),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    if mlflow_db is not None:
        env["MLFLOW_TRACKING_URI"] = f"sqlite:///{mlflow_db}"
    return {**env, **extra}


def init_repo(root: Path, env: Mapping[str, str], commit: str | None = None) -> None:
    """`git init` and `dvc init` in ``root``; with ``commit``, everything committed under that message."""
    cmds = [["git", "init", "-q"], ["dvc", "init", "-q"]]
    if commit:
        cmds += [["git", "add", "-A"], ["git", "commit", "-qm", commit]]
    for cmd in cmds:
        out = subprocess.run(cmd, cwd=root, env=dict(env), capture_output=True, text=True)
        assert out.returncode == 0, f"{' '.join(cmd)} in {root}:\n{out.stdout}{out.stderr}"


def scratch_repo(root: Path, params: Mapping | None = None, *, commit: str | None = None, **env: str) -> ScratchRepo:
    """This project's pipeline in ``root`` (created): dvc.yaml, params.yaml (as it is, or laid
    over with ``params``), emogen/ and profiles/; git and DVC initialised (committed with
    ``commit``); MLflow in ``root``'s parent folder (mlflow.db), outside the repo."""
    root.mkdir(parents=True)
    shutil.copy(REPO / "dvc.yaml", root)
    shutil.copytree(REPO / "emogen", root / "emogen", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "profiles", root / "profiles")  # dvc.yaml lists the selected profile's params
    if params is None:
        shutil.copy(REPO / "params.yaml", root)
    else:
        merged = lay_over(yaml.safe_load((REPO / "params.yaml").read_text()), params)
        (root / "params.yaml").write_text(yaml.safe_dump(merged, sort_keys=False))
    repo = ScratchRepo(root, command_env(root.parent / "mlflow.db", pythonpath=root, **env))
    init_repo(root, repo.env, commit)
    return repo
