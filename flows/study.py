"""The multi-seed study (docs/study.md): every report seed of ``study.seeds`` as a DVC
experiment, pooled into ``metrics/study.json``. Start it with ``emogen study seeds``.

1. each seed runs as ``dvc exp run --temp -n study-<seed>-<fingerprint> -S seed=<seed>
   -S <study.overrides> <study.targets>``: in a temporary copy, so the workspace (params.yaml,
   outputs) is left as it is; a seed whose experiment name already exists is not run again
   (the fingerprint hashes the tracked code and params the experiment starts from, the seed
   and the overrides), and DVC's run cache restores any stage it has run before;
2. each experiment's Table 1 (and frontier, when a target runs it) is read from its commit;
3. per-seed values, means over seeds and the pooled paired comparisons go to ``study.output``
   (:mod:`emogen.evaluation.study`), with each seed's and the whole study's wall time.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.runtime import flow_run

from emogen.config import DEFAULT_PARAMS, load_params
from emogen.errors import UserError
from emogen.evaluation.study import study_summary
from emogen.orchestration import (
    content_fingerprint,
    dag_stages,
    exp_run_temp,
    experiments,
    fingerprint,
    read_at,
    stage_env,
)
from emogen.threads import apply_thread_policy

# Tracked files that never change an experiment's result (the fingerprint leaves them out).
NOT_INPUTS = (
    "dvc.lock",
    "*.md",
    "docs/*",
    "tests/*",
    "benchmarks/*",
    ".github/*",
    "mkdocs.yml",
    ".pre-commit-config.yaml",
)
FRONTIER_STAGE = "frontier"
EVALUATE_STAGE = "evaluate"  # writes study.table


def experiment_name(code: str, seed: int, overrides: dict, targets: list[str]) -> str:
    return f"study-{seed}-{fingerprint({'code': code, 'seed': seed, 'overrides': overrides, 'targets': targets})[:10]}"


@task(task_run_name="seed-{seed}")
def run_seed(repo: Path, seed: int, name: str, overrides: dict, targets: list[str], env: dict[str, str]) -> dict:
    logger = get_run_logger()
    existing = experiments(repo)
    if name in existing:
        logger.info("seed %s: experiment %s exists (same code, params and overrides): not run again", seed, name)
        return {"seed": seed, "experiment": name, "rev": existing[name], "ran": False}
    start = time.perf_counter()
    exp_run_temp(repo, name, {"seed": seed, **overrides}, targets, env, on_line=logger.info)
    seconds = round(time.perf_counter() - start, 1)
    logger.info("seed %s: experiment %s in %.1f s", seed, name, seconds)
    return {"seed": seed, "experiment": name, "rev": experiments(repo)[name], "ran": True, "seconds": seconds}


@task
def aggregate(repo: Path, runs: list[dict], table_path: str, frontier_path: str | None, confidence: float) -> dict:
    tables = {run["seed"]: read_at(repo, table_path, run["rev"]) for run in runs}
    frontiers = {run["seed"]: read_at(repo, frontier_path, run["rev"]) for run in runs} if frontier_path else {}
    return study_summary(tables, frontiers, confidence)


@flow(name="emogen-study")
def study(
    root: str = ".", seeds: list[int] | None = None, overrides: dict | None = None, targets: list[str] | None = None
) -> dict:
    """Run (or reuse) every report seed's experiment and write study.output; → the summary."""
    logger = get_run_logger()
    repo = Path(root).resolve()
    params = load_params(repo / DEFAULT_PARAMS)
    apply_thread_policy(params, register_process=False)  # waits on dvc: the seeds' stages count themselves
    settings = params.study
    seeds = list(settings.seeds if seeds is None else seeds)
    if params.seed in seeds:
        raise UserError(f"seed {params.seed} is the development seed (params.yaml `seed`): not a report seed")
    overrides = {**settings.overrides, **(overrides or {})}
    targets = list(settings.targets if targets is None else targets)
    stages = set(dag_stages(repo, None)) if not targets else {s for t in targets for s in dag_stages(repo, t)}
    if EVALUATE_STAGE not in stages:
        raise UserError(
            f"{repo / DEFAULT_PARAMS}: study.targets {targets} do not run the {EVALUATE_STAGE} stage, "
            f"which writes {settings.table} (add it: --target {EVALUATE_STAGE})"
        )
    frontier_path = settings.frontier if FRONTIER_STAGE in stages else None

    start = time.perf_counter()
    code = content_fingerprint(repo, exclude=(settings.output, *NOT_INPUTS), params_exclude=("study",))
    env = stage_env(str(flow_run.get_id() or ""))
    output = repo / settings.output
    try:  # each reused seed's time, from the study.json that ran it
        previous = json.loads(output.read_text()).get("seeds", {}) if output.is_file() else {}
    except (json.JSONDecodeError, AttributeError):
        logger.warning("%s: not a study.json; the reused seeds' times are unknown", output)
        previous = {}
    runs = []
    for seed in seeds:  # one at a time: each experiment already uses every core
        run = run_seed(repo, seed, experiment_name(code, seed, overrides, targets), overrides, targets, env)
        if not run["ran"]:  # the time it took when it ran (kept from the last study.json)
            before = previous.get(str(seed), {})
            run["seconds"] = before.get("seconds") if before.get("experiment") == run["experiment"] else None
        runs.append(run)
    summary = aggregate(repo, runs, settings.table, frontier_path, settings.confidence)
    wall = round(time.perf_counter() - start, 1)
    result = {
        "development_seed": params.seed,
        "report_seeds": seeds,
        "overrides": overrides,
        "targets": targets,
        "seeds": {str(r["seed"]): {k: r[k] for k in ("experiment", "rev", "ran", "seconds")} for r in runs},
        "seconds": {
            "this_run": wall,
            "experiments": round(sum(r["seconds"] or 0 for r in runs), 1),
            "all_timed": all(r["seconds"] is not None for r in runs),
        },
        **summary,
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=1) + "\n")
    logger.info("study: %d seeds (%d run now) in %.1f s → %s", len(runs), sum(r["ran"] for r in runs), wall, output)
    return result
