"""The ``evaluate`` stage: Table 1 and the transfer table from the generated folders.

Reads ``models/evaluators`` and, for every method of ``evaluate.methods``,
``data/generated/<method>/`` (a missing folder is an error naming it); the real set is the
test split. Writes ``metrics/table1.json`` (DVC metric), ``metrics/table1_per_emotion.csv``
(DVC plots) and ``metrics/transfer.json``, and logs all of them to MLflow.
"""

from __future__ import annotations

import csv
import logging
import time
from pathlib import Path

import numpy as np

from emogen.config import Params
from emogen.devices import resolve_device
from emogen.emotions import NUM_EMOTIONS
from emogen.evaluation.data import iter_split, load_generated
from emogen.evaluation.evaluators import load_evaluators
from emogen.evaluation.table import evaluate_method, real_fid_stats
from emogen.evaluation.transfer import transfer_table
from emogen.pipelines.settings import TRANSFER_METHOD
from emogen.layout import Layout
from emogen.seeding import stage_seed
from emogen.tracking import log_artifact, log_metrics, set_tags, stage_run
from emogen.jsonio import write_json

log = logging.getLogger(__name__)

STAGE = "evaluate"
TABLE_FILE = "table1.json"
PER_EMOTION_FILE = "table1_per_emotion.csv"
TRANSFER_FILE = "transfer.json"
PER_EMOTION_COLUMNS = ("method", "emotion", "images", "emo_a", "emo_a_target_prob", "sem_c", "sem_d", "lpips", "evaluators")


def write_per_emotion(path: Path, rows: dict[str, dict[str, dict]], evaluators: str) -> None:
    """One row per method and emotion; ``evaluators`` says whose numbers they are (stand-ins or not)."""
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, PER_EMOTION_COLUMNS)
        writer.writeheader()
        for method, per_emotion in rows.items():
            for emotion, values in per_emotion.items():
                writer.writerow({"method": method, "emotion": emotion, "evaluators": evaluators,
                                 **{k: ("" if v is None else round(v, 4) if isinstance(v, float) else v)
                                    for k, v in values.items()}})


def run(params: Params, layout: Layout) -> None:
    p = params.evaluate
    evaluators = load_evaluators(layout.model_dir("evaluators"), resolve_device(p.device))
    generated = {method: load_generated(layout.generated / method, evaluators.resolution, method) for method in p.methods}
    transfer_set = None
    if p.transfer:
        transfer_set = load_generated(layout.generated / TRANSFER_METHOD, evaluators.resolution, TRANSFER_METHOD)
    rng = np.random.default_rng(stage_seed(params.seed, STAGE))

    with stage_run(STAGE, {"seed": params.seed, "evaluate": p}):
        start = time.perf_counter()
        real_stats = real_fid_stats(evaluators, iter_split(layout, params.data, "test", evaluators.resolution))
        results = {method: evaluate_method(evaluators, images, real_stats, p, rng) for method, images in generated.items()}
        counts = [int((images.labels == e).sum()) for images in generated.values() for e in range(NUM_EMOTIONS)]
        table = {
            "profile": evaluators.info["profile"],
            "stand_in": evaluators.stand_in,
            "evaluators": evaluators.names,
            "resolution": evaluators.resolution,
            "images_per_emotion": min(counts),
            "real_images": sum(s.count for s in real_stats) if real_stats else None,
            "bootstrap": {"samples": p.bootstrap_samples, "confidence": p.confidence},
            "published_quirks": p.published_quirks,
            "methods": {method: result.table for method, result in results.items()},
        }
        layout.metrics.mkdir(parents=True, exist_ok=True)
        write_json(layout.metrics / TABLE_FILE, table)
        label = f"{evaluators.info['profile']} stand-ins" if evaluators.stand_in else evaluators.info["profile"]
        write_per_emotion(layout.metrics / PER_EMOTION_FILE, {k: r.per_emotion for k, r in results.items()}, label)
        logged = {f"{method}.{metric}": v["value"] for method, r in results.items() for metric, v in r.table.items()
                  if v.get("value") is not None}
        if transfer_set is not None:
            transfer = transfer_table(evaluators, transfer_set, p, rng)
            write_json(layout.metrics / TRANSFER_FILE, transfer)
            log_artifact(str(layout.metrics / TRANSFER_FILE))
            logged.update({f"transfer.{t}.{k}": v["value"] for t, row in transfer["templates"].items()
                           for k, v in row.items() if isinstance(v, dict)})
        log_metrics({k.replace("{}", "_").replace(" ", "_"): float(v) for k, v in logged.items()})
        set_tags({"stand_in": str(evaluators.stand_in), "profile": evaluators.info["profile"]})
        log_artifact(str(layout.metrics / TABLE_FILE))
        log_artifact(str(layout.metrics / PER_EMOTION_FILE))
        log_metrics({"seconds": time.perf_counter() - start})
    for method, result in results.items():
        t = result.table
        log.info("%s: Emo-A %.3f [%.3f, %.3f], Sem-D %.4f, FID %s", method, t["emo_a"]["value"], t["emo_a"]["low"],
                 t["emo_a"]["high"], t["sem_d"]["value"], t["fid"]["value"])
