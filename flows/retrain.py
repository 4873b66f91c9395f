"""The retraining deployment: check the data, skip when nothing changed, else train as a DVC
experiment, register the generator and let the champion gate decide.

``emogen pipeline serve --cron "0 3 * * 1"`` serves it (schedule default: ``pipeline.cron``)
with a deployment concurrency limit of 1: a second trigger while one runs is queued, so two
runs never share the workspace, the DVC cache or the registry at once.

0. the overrides are checked against the params schema before anything runs (a bad one
   fails the run at once with a one-line reason);
1. the data stages up to ``validate`` (the GX suite) run through DVC; a failing suite stops
   the run with the reason;
2. fingerprints: the DVC hashes of the data stages' outputs, and params.yaml with the
   overrides applied; equal to the champion's → skipped (``force`` overrides);
3. ``dvc exp run --temp -n retrain-<id> -S key=value ...`` trains what the overrides change in
   a temporary copy of the repo: the workspace's params.yaml, dvc.lock and outputs are left
   as they are, promoted or not (promotion into the workspace is the user's
   ``dvc exp apply retrain-<id>``: docs/experiments.md);
4. the experiment's generator and Table 1, read from its commit and the DVC cache, are logged
   and registered (alias ``challenger``) with every param it was trained with; ``champion``
   moves to it only if the gate passes; the reason is a tag on the version.

Every MLflow run of a retrain (its data stages, the experiment's stages, the register run)
is tagged ``dvc_experiment=retrain-<id>`` and ``pipeline_run_id=<flow run id>``.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from mlflow import MlflowClient
from prefect import flow, get_run_logger, task
from prefect.runtime import flow_run

from emogen.config import DEFAULT_PARAMS, Params
from emogen.layout import Layout
from emogen.orchestration import (
    apply_overrides,
    dag_stages,
    exp_rev,
    exp_run,
    export_experiment,
    fingerprint,
    repro_stage,
    stage_env,
    stage_out_hashes,
)
from emogen.registry.gate import champion_version, register, register_inputs
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
def run_experiment(repo: Path, overrides: dict, name: str, env: dict[str, str]) -> str:
    """The experiment in a temporary copy (the workspace untouched); → its commit."""
    exp_run(repo, overrides, name, env, on_line=get_run_logger().info)
    return exp_rev(repo, name)


@task
def register_and_gate(repo: Path, rev: str, params: Params, tags: dict[str, str]) -> dict[str, str]:
    """Register the experiment's generator, read from its commit (git + DVC cache), and gate it."""
    with tempfile.TemporaryDirectory(prefix="emogen-experiment-") as tmp:
        folder = export_experiment(repo, rev, [DEFAULT_PARAMS.as_posix(), *register_inputs(params)], Path(tmp))
        version, decision = register(params, Layout(folder), tags, params_file=folder / DEFAULT_PARAMS)
    return {"version": version, "promoted": str(decision.promote), "reason": decision.reason}


@flow(name="emogen-retrain")
def retrain(root: str = ".", overrides: dict | None = None, force: bool = False) -> dict[str, str]:
    """One retraining; → {"status": skipped|registered, "reason", ["version", "promoted",
    "experiment"]}."""
    logger = get_run_logger()
    repo, overrides = Path(root).resolve(), dict(overrides or {})
    raw, params = apply_overrides(repo, overrides)  # a bad override fails here, before any stage
    apply_thread_policy(params, register_process=False)  # its stages count themselves
    run_id = str(flow_run.get_id() or "local")
    name = f"retrain-{run_id[:8]}"
    os.environ[PIPELINE_RUN_ENV] = run_id  # the register run's tag (each run: its own process)
    env = {**stage_env(run_id), "DVC_EXP_NAME": name}  # the data stages' runs name the retrain too
    data_stages = validate_data(repo, env)  # raises (run failed) with the suite's summary

    tags = {
        "data_fingerprint": fingerprint(stage_out_hashes(repo, data_stages)),
        "params_fingerprint": fingerprint(raw),
        "pipeline_run_id": run_id,
    }
    champion = champion_version(MlflowClient(tracking_uri()), params.registry.model_name)
    if (
        champion is not None
        and not force
        and all(champion.tags.get(key) == tags[key] for key in ("data_fingerprint", "params_fingerprint"))
    ):
        reason = f"data and params unchanged since champion version {champion.version} was trained"
        logger.info("skipped: %s", reason)
        return {"status": "skipped", "reason": reason}

    env.pop("DVC_EXP_NAME")  # dvc exp run sets it for the experiment's stages
    rev = run_experiment(repo, overrides, name, env)
    result = register_and_gate(
        repo,
        rev,
        params,
        {**tags, "dvc_experiment": name, "dvc_experiment_rev": rev, "overrides": json.dumps(overrides, sort_keys=True)},
    )
    logger.info(
        "version %s: %s (experiment %s; `dvc exp apply %s` puts its params and outputs in the workspace)",
        result["version"],
        result["reason"],
        name,
        name,
    )
    return {"status": "registered", "experiment": name, **result}
