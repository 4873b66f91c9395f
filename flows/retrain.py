"""The retraining deployment: check the data, skip when nothing changed, else train as a DVC
experiment, register the generator and let the champion gate decide.

``emogen pipeline serve --cron "0 3 * * 1"`` serves it (schedule default: ``pipeline.cron``)
with a deployment concurrency limit of 1: a second trigger while one runs is queued, so two
runs never share the workspace, the DVC cache or the registry at once.

1. the data stages up to ``validate`` (the GX suite) run through DVC; a failing suite stops
   the run with the reason;
2. fingerprints: the DVC hashes of the data stages' outputs, and params.yaml with the
   overrides applied; equal to the champion's → skipped (``force`` overrides);
3. ``dvc exp run -n retrain-<id> -S key=value ...`` trains what the overrides change;
4. the generator is logged and registered (alias ``challenger``); ``champion`` moves to it
   only if the gate passes; the reason is a tag on the version.
"""

from __future__ import annotations

import os
from pathlib import Path

from mlflow import MlflowClient
from prefect import flow, get_run_logger, task
from prefect.runtime import flow_run

from emogen.config import DEFAULT_PARAMS, load_params
from emogen.layout import Layout
from emogen.orchestration import (
    dag_stages, exp_run, fingerprint, params_with_overrides, repro_stage, stage_env, stage_out_hashes,
)
from emogen.registry.gate import champion_version, register
from emogen.threads import apply_thread_policy
from emogen.tracking import PIPELINE_RUN_ENV, tracking_uri

VALIDATE_STAGE = "validate"


@task
def validate_data(repo: Path, env: dict[str, str]) -> list[str]:
    """The data stages through DVC, ending with the GX suite; → their names."""
    logger = get_run_logger()
    stages = dag_stages(repo, VALIDATE_STAGE)
    for stage in stages:
        repro_stage(repo, stage, env, on_line=logger.info)
    return stages


@task
def run_experiment(repo: Path, overrides: dict, name: str, env: dict[str, str]) -> None:
    exp_run(repo, overrides, name, env, on_line=get_run_logger().info)


@task
def register_and_gate(repo: Path, tags: dict[str, str]) -> dict[str, str]:
    version, decision = register(load_params(repo / DEFAULT_PARAMS), Layout(repo), tags)
    return {"version": version, "promoted": str(decision.promote), "reason": decision.reason}


@flow(name="emogen-retrain")
def retrain(root: str = ".", overrides: dict | None = None, force: bool = False) -> dict[str, str]:
    """One retraining; → {"status": skipped|registered, "reason", ["version", "promoted"]}."""
    logger = get_run_logger()
    repo, overrides = Path(root).resolve(), dict(overrides or {})
    apply_thread_policy(load_params(repo / DEFAULT_PARAMS), register_process=False)  # its stages count themselves
    run_id = str(flow_run.get_id() or "local")
    os.environ[PIPELINE_RUN_ENV] = run_id  # the register run's tag (each run: its own process)
    env = stage_env(run_id)
    data_stages = validate_data(repo, env)  # raises (run failed) with the suite's summary

    params = params_with_overrides(repo, overrides)
    tags = {"data_fingerprint": fingerprint(stage_out_hashes(repo, data_stages)),
            "params_fingerprint": fingerprint(params), "pipeline_run_id": run_id}
    registry = load_params(repo / DEFAULT_PARAMS).registry
    champion = champion_version(MlflowClient(tracking_uri()), registry.model_name)
    if champion is not None and not force and all(
        champion.tags.get(key) == tags[key] for key in ("data_fingerprint", "params_fingerprint")
    ):
        reason = f"data and params unchanged since champion version {champion.version} was trained"
        logger.info("skipped: %s", reason)
        return {"status": "skipped", "reason": reason}

    name = f"retrain-{run_id[:8]}"
    run_experiment(repo, overrides, name, env)
    result = register_and_gate(repo, {**tags, "dvc_experiment": name})
    logger.info("version %s: %s", result["version"], result["reason"])
    return {"status": "registered", **result}
