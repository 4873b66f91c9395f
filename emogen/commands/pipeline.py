"""``emogen pipeline ...``: run the flows of ``flows/`` (by Prefect entrypoint, so the
library never imports them), serve the retraining deployment, register and gate by hand,
show the registry's champion.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from emogen.errors import UserError

PIPELINE_FLOW = "flows/pipeline.py:pipeline"
RETRAIN_FLOW = "flows/retrain.py:retrain"
DEPLOYMENT = "emogen-retrain"


# Prefect's own default (20 s) for its temporary server to answer is too short on a busy 2-core
# machine (measured: a study failed at start beside a training stage); a user's value wins.
EPHEMERAL_STARTUP_TIMEOUT_S = "180"


def load_flow(entrypoint: str):
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", EPHEMERAL_STARTUP_TIMEOUT_S)
    from prefect.flows import load_flow_from_entrypoint

    if not Path(entrypoint.partition(":")[0]).is_file():
        raise UserError(f"{entrypoint}: not found; run `emogen pipeline` in the repository root")
    return load_flow_from_entrypoint(entrypoint, use_placeholder_flow=False)


def check_before_running(overrides: list[str], target: str | None = None) -> dict[str, object]:
    """params.yaml (+ profile) with the ``-S`` overrides applied in memory, validated, and the
    ``--target`` stage looked up in dvc.yaml: before any flow or stage starts, a bad value is a
    one-line error naming it. → the parsed overrides."""
    from emogen.orchestration import apply_overrides, dag_stages, parse_overrides

    parsed = parse_overrides(overrides)
    apply_overrides(Path("."), parsed)
    if target is not None:
        dag_stages(Path("."), target)
    return parsed


def _run(args: argparse.Namespace) -> None:
    check_before_running([], args.target)
    states = load_flow(PIPELINE_FLOW)(root=".", target=args.target, force=args.force)
    print(json.dumps(states, indent=1))


def _retrain(args: argparse.Namespace) -> None:
    overrides = check_before_running(args.set)
    result = load_flow(RETRAIN_FLOW)(root=".", overrides=overrides, force=args.force)
    print(json.dumps(result, indent=1))


def _serve(args: argparse.Namespace) -> None:
    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy

    from emogen.config import load_params

    settings = load_params(args.params).pipeline
    cron = args.cron if args.cron is not None else settings.cron
    schedule = {"cron": cron} if cron else {}
    # One retrain at a time; a second trigger waits in the queue (never runs beside it).
    limit = ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.ENQUEUE)
    flow = load_flow(RETRAIN_FLOW)
    pool = args.work_pool or settings.work_pool
    if pool:
        # A worker of this pool (`prefect worker start --pool POOL`) runs the flow from this folder.
        type(flow).from_source(str(Path.cwd()), RETRAIN_FLOW).deploy(
            name=DEPLOYMENT, work_pool_name=pool, concurrency_limit=limit, **schedule
        )
        print(
            f"deployment emogen-retrain/{DEPLOYMENT} on work pool {pool!r}; start a worker: "
            f"prefect worker start --pool {pool}"
        )
        return
    flow.serve(name=DEPLOYMENT, global_limit=limit, **schedule)


def _register(args: argparse.Namespace) -> None:
    from emogen.config import load_params
    from emogen.layout import Layout
    from emogen.registry.gate import register

    version, decision = register(load_params(args.params), Layout())
    print(f"version {version}: {'champion' if decision.promote else 'challenger only'} — {decision.reason}")


def _champion(args: argparse.Namespace) -> None:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from emogen.config import load_params
    from emogen.tracking import tracking_uri

    name = load_params(args.params).registry.model_name
    uri = tracking_uri()
    make_one = (
        "Make one: `emogen pipeline retrain` (train, register and gate), or `emogen pipeline register` "
        "(register the workspace's trained generator)"
    )
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        raise UserError(f"no champion yet: there is no MLflow store at {uri}. {make_one}")
    client = MlflowClient(uri)
    try:
        model = client.get_registered_model(name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise UserError(f"registry at {uri}: {exc.message.splitlines()[0]}") from None
        model = None
    versions = client.search_model_versions(f"name='{name}'", order_by=["version_number DESC"]) if model else []
    if not versions:
        raise UserError(f"no champion yet: the registry at {uri} has no model {name!r}. {make_one}")
    aliases: dict[str, list[str]] = {}
    for alias, number in model.aliases.items():  # search omits them
        aliases.setdefault(str(number), []).append(alias)
    for version in versions:
        tags = version.tags
        print(
            f"{name} v{version.version} {','.join(aliases.get(str(version.version), [])) or '-':<20} "
            f"emo_a={tags.get('emo_a')} fid={tags.get('fid')} exp={tags.get('dvc_experiment', '-')} "
            f"{tags.get('gate.decision', '')}: {tags.get('gate.reason', '')}"
        )
    if "champion" not in model.aliases:
        print(f"no champion yet: no version of {name!r} has passed the gate")
        return
    champion = client.get_model_version(name, model.aliases["champion"])
    experiment = champion.tags.get("dvc_experiment", "")
    if experiment.startswith("retrain-"):
        print(
            f"the champion v{champion.version} was trained by experiment {experiment}; put its params and "
            f"outputs in the workspace with `dvc exp apply {experiment}`"
        )


def add_pipeline(parser: argparse.ArgumentParser) -> None:
    from emogen.config import DEFAULT_PARAMS

    sub = parser.add_subparsers(dest="action", required=True)
    run = sub.add_parser("run", help="every DVC stage as a Prefect task in DAG order (unchanged ones skipped)")
    run.add_argument("--target", default=None, help="only this stage and the stages it depends on")
    run.add_argument("--force", action="store_true", help="rerun stages even if DVC finds them unchanged")
    run.set_defaults(func=_run)

    retrain = sub.add_parser(
        "retrain", help="one retraining now (validate, skip if unchanged, dvc exp run, register, gate)"
    )
    retrain.add_argument(
        "-S",
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="params override for the experiment, e.g. -S stage2.lambda_attr=0.02",
    )
    retrain.add_argument("--force", action="store_true", help="train even if data and params are unchanged")
    retrain.set_defaults(func=_retrain)

    serve = sub.add_parser("serve", help="serve the scheduled retraining deployment (needs PREFECT_API_URL)")
    serve.add_argument("--cron", default=None, help="schedule (default: pipeline.cron); '' for none (trigger by hand)")
    serve.add_argument("--work-pool", default=None, help="deploy to this Prefect work pool instead of serving here")
    serve.set_defaults(func=_serve)

    register = sub.add_parser("register", help="register the workspace's generator and run the champion gate")
    register.set_defaults(func=_register)
    champion = sub.add_parser("champion", help="list the registered versions, their aliases and gate reasons")
    champion.set_defaults(func=_champion)
    for action in (serve, register, champion):
        action.add_argument("--params", default=DEFAULT_PARAMS)
