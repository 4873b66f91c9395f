"""Register the trained generator and let the champion gate decide.

A new version gets the alias ``challenger``; ``champion`` moves to it only when its Emo-A
beats the champion's by more than ``registry.min_emo_a_gain`` and its FID is at most
``(1 + registry.fid_tolerance)`` × the champion's. Both numbers come from the evaluate
stage's ``metrics/table1.json`` (``methods.emogen``); the decision and its reason are tags
on the version, as are the metrics, so the next gate compares against them. Rolling back is
moving the alias (docs/operating.md).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from emogen.config import Params, RegistryParams
from emogen.errors import UserError
from emogen.jsonio import read_json
from emogen.layout import Layout
from emogen.registry.model import log_generator
from emogen.tracking import log_artifact, set_tags, stage_run, tracking_uri

log = logging.getLogger(__name__)

CHAMPION, CHALLENGER = "champion", "challenger"
METHOD = "emogen"  # the row of Table 1 that describes the registered generator


@dataclass(frozen=True)
class Scores:
    emo_a: float | None
    fid: float | None
    stand_in: bool = False  # measured with the embedded profile's stand-in evaluators


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str


def read_scores(path: Path) -> Scores:
    """EmoGen's Emo-A and FID from Table 1 (a null value: not computed)."""
    table = read_json(Path(path), "the evaluate stage writes it (`dvc repro evaluate`)")
    try:
        row = table["methods"][METHOD]
    except (KeyError, TypeError):
        raise UserError(f"{path}: no methods.{METHOD} entry (Table 1 of the evaluate stage)") from None
    values = []
    for metric in ("emo_a", "fid"):
        entry = row.get(metric)
        if not isinstance(entry, dict) or "value" not in entry:
            raise UserError(f"{path}: methods.{METHOD}.{metric} must be an object with a 'value'")
        value = entry["value"]
        if value is not None and not isinstance(value, (int, float)):
            raise UserError(f"{path}: methods.{METHOD}.{metric}.value must be a number or null, got {value!r}")
        values.append(None if value is None else float(value))
    return Scores(*values, stand_in=bool(table.get("stand_in", False)))


def decide(challenger: Scores, champion: Scores | None, params: RegistryParams) -> Decision:
    """The gate: pure, so every branch is tested on numbers."""
    if challenger.emo_a is None:
        return Decision(False, "challenger has no Emo-A (not computed): cannot beat the champion")
    if champion is None:
        return Decision(True, f"no champion yet; challenger Emo-A {challenger.emo_a:.4f}")
    if champion.emo_a is not None and challenger.emo_a <= champion.emo_a + params.min_emo_a_gain:
        return Decision(
            False,
            f"Emo-A {challenger.emo_a:.4f} does not beat the champion's "
            f"{champion.emo_a:.4f} by more than {params.min_emo_a_gain:g}",
        )
    gain = (
        f"Emo-A {challenger.emo_a:.4f} > champion {champion.emo_a:.4f}"
        if champion.emo_a is not None
        else f"Emo-A {challenger.emo_a:.4f} (the champion has none)"
    )
    if challenger.fid is None or champion.fid is None:
        return Decision(True, f"{gain}; FID not comparable (challenger {challenger.fid}, champion {champion.fid})")
    limit = champion.fid * (1 + params.fid_tolerance)
    if challenger.fid > limit:
        return Decision(
            False,
            f"{gain}, but FID {challenger.fid:.4f} regresses beyond "
            f"{limit:.4f} (champion {champion.fid:.4f} + {params.fid_tolerance:.0%})",
        )
    return Decision(True, f"{gain}; FID {challenger.fid:.4f} within {limit:.4f}")


def _tag_float(tags: dict[str, str], key: str) -> float | None:
    value = tags.get(key)
    return None if value in (None, "", "None") else float(value)


def champion_version(client: MlflowClient, name: str):
    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None


def champion_scores(version) -> Scores | None:
    if version is None:
        return None
    return Scores(_tag_float(version.tags, "emo_a"), _tag_float(version.tags, "fid"))


def gate(client: MlflowClient, name: str, version: str, challenger: Scores, params: RegistryParams) -> Decision:
    """Set ``challenger`` on ``version``, decide, move ``champion`` if it passes; tag the reason."""
    current = champion_version(client, name)
    decision = decide(challenger, champion_scores(current), params)
    client.set_registered_model_alias(name, CHALLENGER, version)
    if decision.promote:
        client.set_registered_model_alias(name, CHAMPION, version)
    tags = {
        "gate.decision": "promoted" if decision.promote else "rejected",
        "gate.reason": decision.reason,
        "gate.compared_with": f"version {current.version}" if current else "none",
    }
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    log.info("gate: version %s %s: %s", version, tags["gate.decision"], decision.reason)
    return decision


def register_inputs(params: Params) -> list[str]:
    """What :func:`register` reads, relative to the layout's root: Table 1 and the generator."""
    models = Layout(Path("."))
    return [
        Path(params.registry.table).as_posix(),
        *(models.model_dir(name).as_posix() for name in ("base", "stage2", "emotion_space")),
    ]


def register(
    params: Params, layout: Layout, extra_tags: dict[str, Any] | None = None, params_file: Path | None = None
) -> tuple[str, Decision]:
    """Log + register the generator in ``layout`` (one MLflow run, stage "register", with every
    param it was trained with), then gate it. → (version, decision). ``extra_tags`` (e.g.
    data/params fingerprints, ``dvc_experiment``) go on the version; ``dvc_experiment`` also on
    the run. ``params_file`` (the experiment's params.yaml) is logged as an artifact."""
    reg = params.registry
    scores = read_scores(layout.root / reg.table)
    extra_tags = dict(extra_tags or {})
    with stage_run("register", params) as run:
        if run is None or "fallback_from" in run.data.tags:  # never register into a stand-in store
            raise UserError(
                f"registering needs the MLflow store {tracking_uri()} to be reachable; see the warning above"
            )
        if "dvc_experiment" in extra_tags:  # the run belongs to the experiment, not the workspace
            set_tags({"dvc_experiment": str(extra_tags["dvc_experiment"])})
        if params_file is not None:
            log_artifact(str(params_file))
        info = log_generator(layout, params.generate, reg.model_name)
        version = str(info.registered_model_version)
        client = MlflowClient()
        tags = {
            "emo_a": scores.emo_a,
            "fid": scores.fid,
            "stand_in": scores.stand_in,
            "run_id": run.info.run_id,
            **run.data.tags,
            **extra_tags,
        }
        for key, value in tags.items():
            if not key.startswith("mlflow."):
                client.set_model_version_tag(reg.model_name, version, key, str(value))
        mlflow.log_metrics({k: v for k, v in (("emo_a", scores.emo_a), ("fid", scores.fid)) if v is not None})
        decision = gate(client, reg.model_name, version, scores, reg)
    return version, decision
