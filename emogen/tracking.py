"""MLflow record of every stage run: one run per stage, tagged with the git commit.

The store defaults to ``sqlite:///mlflow.db`` in the working directory (the repo root
under ``dvc repro``) with artifacts in ``mlartifacts/``; ``MLFLOW_TRACKING_URI`` overrides.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
from pydantic import BaseModel

EXPERIMENT = "emogen"


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path('mlflow.db').resolve()}"


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def flatten(params: Mapping[str, Any] | BaseModel, prefix: str = "") -> dict[str, Any]:
    """Nested params → ``{"a.b": value}`` as MLflow wants them."""
    if isinstance(params, BaseModel):
        params = params.model_dump(by_alias=True)
    flat: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


@contextmanager
def stage_run(stage: str, params: Mapping[str, Any] | BaseModel | None = None) -> Iterator[mlflow.ActiveRun]:
    """An MLflow run for ``stage`` with its params logged; artifacts live beside the DB."""
    mlflow.set_tracking_uri(tracking_uri())
    if mlflow.get_experiment_by_name(EXPERIMENT) is None:
        artifacts = Path("mlartifacts").resolve()
        mlflow.create_experiment(EXPERIMENT, artifact_location=artifacts.as_uri())
    mlflow.set_experiment(EXPERIMENT)
    with mlflow.start_run(run_name=stage, tags={"stage": stage, "git_commit": git_commit()}) as run:
        if params is not None:
            mlflow.log_params(flatten(params))
        yield run
