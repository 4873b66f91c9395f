"""MLflow record of every stage run: one run per stage, tagged with the git commit, the DVC
stage and experiment, and the pipeline run that started it.

The store defaults to ``sqlite:///mlflow.db`` at the DVC repo root (``DVC_ROOT``, which DVC
points at the parent repo also inside ``dvc exp run --temp``/``--queue``, so experiments land
in the same store as workspace runs), artifacts in ``mlartifacts/`` beside it;
``MLFLOW_TRACKING_URI`` overrides.

Tracking is never on a stage's critical path: HTTP calls get a short timeout and few
retries; a store that cannot be reached when the stage starts is replaced by the local
default store (warned), and one that fails mid-stage turns the remaining logging calls
into no-ops (warned, once). Stages log through :func:`log_metrics` & co. for that reason.
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
from pydantic import BaseModel

EXPERIMENT = "emogen"
PIPELINE_RUN_ENV = "EMOGEN_PIPELINE_RUN_ID"  # set by flows/pipeline.py for every stage it runs
# Bounded HTTP behaviour (users may set their own): a dead server costs seconds, not minutes.
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "5",
}

log = logging.getLogger(__name__)


def repo_root() -> Path:
    """The DVC repo the stage belongs to (the parent repo for a temp/queued experiment)."""
    return Path(os.environ.get("DVC_ROOT") or ".").resolve()


def local_uri() -> str:
    return f"sqlite:///{repo_root() / 'mlflow.db'}"


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or local_uri()


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10)
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def run_tags(stage: str) -> dict[str, str]:
    """What groups a run with its code, its DVC stage/experiment and its pipeline execution."""
    return {
        "stage": stage,
        "git_commit": git_commit(),
        "dvc_stage": os.environ.get("DVC_STAGE", stage),
        "dvc_experiment": os.environ.get("DVC_EXP_NAME", "workspace"),
        "pipeline_run_id": os.environ.get(PIPELINE_RUN_ENV, "none"),
    }


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


class _State:
    stage: str | None = None
    failed: bool = False  # the store failed during this stage: further logging is skipped


_state = _State()


def _skip_warning(stage: str, exc: BaseException) -> None:
    log.warning(
        "MLflow tracking skipped for stage %r (%s: %s). The stage's outputs and metrics/ files "
        "are complete; to record it, start the tracking server (%s) and re-run "
        "`dvc repro -f -s %s`.",
        stage,
        type(exc).__name__,
        str(exc).splitlines()[0][:200],
        tracking_uri(),
        stage,
    )


def _open_store(uri: str) -> None:
    mlflow.set_tracking_uri(uri)
    if mlflow.get_experiment_by_name(EXPERIMENT) is None:
        artifacts = repo_root() / "mlartifacts" if uri.startswith("sqlite:") else None
        mlflow.create_experiment(EXPERIMENT, artifact_location=artifacts and artifacts.as_uri())
    mlflow.set_experiment(EXPERIMENT)


def _start(stage: str) -> mlflow.ActiveRun | None:
    uri = tracking_uri()
    try:
        _open_store(uri)
        return mlflow.start_run(run_name=stage, tags=run_tags(stage))
    except Exception as exc:
        if uri == local_uri():
            _skip_warning(stage, exc)
            return None
        log.warning(
            "MLflow store %s unreachable (%s); recording stage %r in the local store %s instead",
            uri,
            type(exc).__name__,
            stage,
            local_uri(),
        )
    try:
        _open_store(local_uri())
        return mlflow.start_run(run_name=stage, tags={**run_tags(stage), "fallback_from": uri})
    except Exception as exc:
        _skip_warning(stage, exc)
        return None


def _guarded(call: Callable[..., Any]) -> Callable[..., Any]:
    """``call`` inside a stage run; after the first store failure a no-op (warned once)."""

    def run(*args: Any, **kwargs: Any) -> Any:
        if _state.stage is None or _state.failed or mlflow.active_run() is None:
            return None
        try:
            return call(*args, **kwargs)
        except Exception as exc:
            _state.failed = True
            _skip_warning(_state.stage, exc)
            return None

    run.__name__ = call.__name__
    run.__doc__ = f"Guarded ``mlflow.{call.__name__}`` (a no-op when tracking is skipped)."
    return run


log_params = _guarded(mlflow.log_params)
log_metrics = _guarded(mlflow.log_metrics)
log_artifact = _guarded(mlflow.log_artifact)
log_artifacts = _guarded(mlflow.log_artifacts)
set_tags = _guarded(mlflow.set_tags)


@_guarded
def log_metric_history(metrics: list) -> None:
    """Many ``mlflow.entities.Metric`` (e.g. a loss curve with timestamps), in batches."""
    client, run_id = mlflow.MlflowClient(), mlflow.active_run().info.run_id
    for start in range(0, len(metrics), 1000):  # MLflow's batch limit
        client.log_batch(run_id, metrics=metrics[start : start + 1000])


@contextmanager
def stage_run(stage: str, params: Mapping[str, Any] | BaseModel | None = None) -> Iterator[mlflow.ActiveRun | None]:
    """An MLflow run for ``stage`` with its params logged (``None`` when tracking is skipped).

    Log inside it with this module's ``log_*`` helpers: they keep a failing store from
    failing the stage."""
    for key, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(key, value)
    _state.stage, _state.failed = stage, False
    run = _start(stage)
    started = time.perf_counter()
    try:
        if run is not None and params is not None:
            log_params(flatten(params))
        yield run
    except BaseException:
        _end(run, "FAILED")
        raise
    else:
        log_metrics({"stage_seconds": time.perf_counter() - started})  # the file: metrics/timings/
        _end(run, "FINISHED")
    finally:
        _state.stage = None


def _end(run: mlflow.ActiveRun | None, status: str) -> None:
    if run is None:
        return
    try:
        mlflow.end_run(status)  # pops the run first, so a failure here leaves no run active
    except Exception as exc:
        if not _state.failed:
            _skip_warning(_state.stage or "?", exc)
