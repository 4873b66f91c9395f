"""The pipeline flow: every DVC stage of dvc.yaml as a Prefect task, in DAG order.

The stages are read from DVC's own graph (``dvc.yaml`` is the only list of them) and each
runs as ``dvc repro --single-item <stage>``, so DVC's cache decides what reruns: a stage it
finds unchanged ends in the Prefect state "Skipped". Transient failures are retried with
exponential back-off (``pipeline.retries``, ``pipeline.retry_delay_seconds``); every line a
stage prints goes to the Prefect log. Start it with ``emogen pipeline run``.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.runtime import flow_run
from prefect.states import Completed
from prefect.tasks import exponential_backoff

from emogen.config import DEFAULT_PARAMS, load_params
from emogen.orchestration import dag_stages, repro_stage, stage_env
from emogen.threads import apply_thread_policy

SKIPPED = "Skipped"


@task(task_run_name="{stage}")
def run_stage(root: Path, stage: str, env: dict[str, str], force: bool = False):
    logger = get_run_logger()
    result = repro_stage(root, stage, env, on_line=logger.info, force=force)
    if not result.ran:
        return Completed(name=SKIPPED, message=f"{stage}: unchanged (DVC cache)", data=result.stage)
    return result.stage


@flow(name="emogen-pipeline", log_prints=True)
def pipeline(root: str = ".", target: str | None = None, force: bool = False) -> dict[str, str]:
    """Run every stage (or ``target`` and its upstream) in DAG order; → {stage: Ran | Skipped}."""
    repo = Path(root).resolve()
    params = load_params(repo / DEFAULT_PARAMS)
    apply_thread_policy(params, register_process=False)  # waits on dvc: its stages count themselves
    settings = params.pipeline
    env = stage_env(str(flow_run.get_id() or ""))
    stage_task = run_stage.with_options(
        retries=settings.retries,
        retry_delay_seconds=exponential_backoff(settings.retry_delay_seconds) if settings.retries else 0,
    )
    states = {}
    for stage in dag_stages(repo, target):
        state = stage_task(repo, stage, env, force, return_state=True)
        if state.is_failed():
            state.result()  # raises the stage's error: later stages must not run on stale inputs
        states[stage] = state.name if state.name == SKIPPED else "Ran"
    get_run_logger().info("stages: %s", ", ".join(f"{k}={v}" for k, v in states.items()))
    return states
