"""The ``evaluate`` stage: Table 1 and the transfer table from the generated folders.

Reads ``models/evaluators`` and, for every method of ``evaluate.methods``,
``data/generated/<method>/`` (a missing folder is an error naming it); the real set is the
test split. Writes ``metrics/table1.json`` (DVC metric: every method's metrics with
intervals over images, and ``comparisons``: EmoGen minus each baseline, paired over the
shared seeds), ``metrics/table1_per_emotion.csv`` (DVC plots) and ``metrics/transfer.json``
(EmoGen's transfer images beside ``<method>_transfer`` of ``evaluate.transfer_baselines``),
and logs all of them to MLflow.
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
from emogen.errors import UserError
from emogen.evaluation import metrics as m
from emogen.evaluation import statistics as st
from emogen.evaluation.data import ImageSet, iter_split, load_generated
from emogen.evaluation.evaluators import load_evaluators
from emogen.evaluation.table import RealReference, compare, evaluate_method, real_fid_stats
from emogen.evaluation.transfer import transfer_table
from emogen.jsonio import write_json
from emogen.layout import Layout
from emogen.pipelines.settings import TRANSFER_METHOD
from emogen.seeding import stage_seed
from emogen.tracking import log_artifact, log_metrics, set_tags, stage_run

log = logging.getLogger(__name__)

STAGE = "evaluate"
TABLE_FILE = "table1.json"
PER_EMOTION_FILE = "table1_per_emotion.csv"
TRANSFER_FILE = "transfer.json"
PER_EMOTION_COLUMNS = (
    "method",
    "emotion",
    "images",
    "emo_a",
    "emo_a_clip",
    "emo_a_target_prob",
    "sem_c",
    "sem_d",
    "lpips",
    "evaluators",
)
REFERENCE = "emogen"  # comparisons: this method minus each other one


def run(params: Params, layout: Layout) -> None:
    p = params.evaluate
    evaluators = load_evaluators(layout.model_dir("evaluators"), resolve_device(p.device))
    generated = {
        method: load_generated(layout.generated / method, evaluators.resolution, method) for method in p.methods
    }
    check_shared_seeds(generated)
    transfer_sets = {}
    if p.transfer:
        transfer_sets[REFERENCE] = load_generated(
            layout.generated / TRANSFER_METHOD, evaluators.resolution, TRANSFER_METHOD
        )
        baselines = (
            p.transfer_baselines if p.transfer_baselines is not None else [m for m in p.methods if m != REFERENCE]
        )
        for method in baselines:
            folder = f"{method}_transfer"
            transfer_sets[method] = load_generated(layout.generated / folder, evaluators.resolution, folder)
    rng = np.random.default_rng(stage_seed(params.seed, STAGE))
    reference = REFERENCE if REFERENCE in generated else next(iter(generated))

    with stage_run(STAGE, {"seed": params.seed, "evaluate": p}):
        start = time.perf_counter()
        real = real_fid_stats(evaluators, iter_split(layout, params.data, "test", evaluators.resolution))
        if real and p.kid_real_images and len(real.features) > p.kid_real_images:
            keep = np.sort(rng.choice(len(real.features), p.kid_real_images, replace=False))
            real = RealReference(real.stats, real.features[keep])  # KID's real side; FID keeps all
        # One set of draws (and pairs) for every method: image k shares its seed across methods.
        labels = generated[reference].labels
        draw_counts = st.bootstrap_images(labels, p.bootstrap_samples, rng)
        real_counts = st.bootstrap_images(np.zeros(len(real.features)), p.bootstrap_samples, rng) if real else None
        pairs = m.sample_pair_blocks(labels, p.num_pairs, rng, p.published_quirks)
        results = {
            method: evaluate_method(evaluators, images, real, p, rng, draw_counts, real_counts, pairs)
            for method, images in generated.items()
        }
        counts = [int((images.labels == e).sum()) for images in generated.values() for e in range(NUM_EMOTIONS)]
        table = {
            "profile": evaluators.info["profile"],
            "stand_in": evaluators.stand_in,
            "evaluators": evaluators.names,
            "headline": {
                "emo_a": evaluators.names["emo_a"],
                **({"emo_a_clip": evaluators.names["emo_a_clip"]} if "emo_a_clip" in evaluators.names else {}),
            },
            "resolution": evaluators.resolution,
            "images_per_emotion": min(counts),
            "real_images": sum(s.count for s in real.stats) if real else None,
            "kid_real_images": len(real.features) if real else None,
            "bootstrap": {
                "samples": p.bootstrap_samples,
                "confidence": p.confidence,
                "unit": "generated image, resampled within its target emotion (pairs recomputed on the "
                "resampled images; KID: real images resampled too); FID: point estimate only",
            },
            "published_quirks": p.published_quirks,
            "methods": {method: result.table for method, result in results.items()},
            "comparisons_reference": reference,
            "comparisons": {
                method: compare(results[reference], result, p.confidence)
                for method, result in results.items()
                if method != reference
            },
        }
        layout.metrics.mkdir(parents=True, exist_ok=True)
        write_json(layout.metrics / TABLE_FILE, table)
        label = f"{evaluators.info['profile']} stand-ins" if evaluators.stand_in else evaluators.info["profile"]
        write_per_emotion(layout.metrics / PER_EMOTION_FILE, {k: r.per_emotion for k, r in results.items()}, label)
        logged = {
            f"{method}.{metric}": v["value"]
            for method, r in results.items()
            for metric, v in r.table.items()
            if v.get("value") is not None
        }
        logged.update(
            {
                f"compare.{method}.{metric}": c["difference"]
                for method, row in table["comparisons"].items()
                for metric, c in row.items()
            }
        )
        if transfer_sets:
            transfer = transfer_table(evaluators, transfer_sets, p, rng, REFERENCE)
            write_json(layout.metrics / TRANSFER_FILE, transfer)
            log_artifact(str(layout.metrics / TRANSFER_FILE))
            logged.update(
                {
                    f"transfer.{t}.{method}.{k}": v["value"]
                    for t, row in transfer["templates"].items()
                    for method, cells in row["methods"].items()
                    for k, v in cells.items()
                }
            )
        log_metrics({k.replace("{}", "_").replace(" ", "_"): float(v) for k, v in logged.items()})
        set_tags({"stand_in": str(evaluators.stand_in), "profile": evaluators.info["profile"]})
        log_artifact(str(layout.metrics / TABLE_FILE))
        log_artifact(str(layout.metrics / PER_EMOTION_FILE))
        log_metrics({"seconds": time.perf_counter() - start})
    for method, result in results.items():
        t = result.table
        log.info(
            "%s: Emo-A %.3f [%.3f, %.3f] (CLIP probe %s), Sem-D %.4f, FID %s, KID %s",
            method,
            t["emo_a"]["value"],
            t["emo_a"]["low"],
            t["emo_a"]["high"],
            t.get("emo_a_clip", {}).get("value"),
            t["sem_d"]["value"],
            t["fid"]["value"],
            t["kid"]["value"],
        )


def check_shared_seeds(generated: dict[str, ImageSet]) -> None:
    """Paired comparisons resample image k of every method together: each method's image k must
    have the same target emotion and seed. An error names the first method that differs."""
    first, *others = generated
    key = [(e.get("emotion"), e.get("seed")) for e in generated[first].entries]
    for method in others:
        if [(e.get("emotion"), e.get("seed")) for e in generated[method].entries] != key:
            raise UserError(
                f"data/generated/{method}/index.json: its images' emotions and seeds differ from "
                f"{first}'s; paired comparisons need every method generated from the same seeds "
                "(same generate params): regenerate it (`dvc repro`)"
            )


def write_per_emotion(path: Path, rows: dict[str, dict[str, dict]], evaluators: str) -> None:
    """One row per method and emotion; ``evaluators`` says whose numbers they are (stand-ins or not)."""
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, PER_EMOTION_COLUMNS)
        writer.writeheader()
        for method, per_emotion in rows.items():
            for emotion, values in per_emotion.items():
                writer.writerow(
                    {
                        "method": method,
                        "emotion": emotion,
                        "evaluators": evaluators,
                        **{
                            k: ("" if v is None else round(v, 4) if isinstance(v, float) else v)
                            for k, v in values.items()
                        },
                    }
                )
