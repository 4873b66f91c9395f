"""balance: the attribute-balanced training list (docs/method.md "Balancing") → ``balanced.parquet``.

Separately for the object-attributed and the scene-attributed images of ``balance.splits``
(default: train only; the published code used every image), every emotion is oversampled
by cycling through a seeded shuffle of its images up to the size of the largest emotion
of that kind; the object list then the scene list are concatenated (published order).
Images without an attribute are left out. ``metrics/balance.json`` holds the emotion ×
kind counts of images before and samples after balancing.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from emogen.config import Params
from emogen.data.schema import ATTRIBUTE_KINDS, BALANCED
from emogen.emotions import EMOTIONS
from emogen.errors import DataError
from emogen.jsonio import write_json
from emogen.layout import Layout
from emogen.seeding import stage_seed
from emogen.tracking import log_artifact, log_metrics, stage_run

log = logging.getLogger(__name__)


def run(params: Params, layout: Layout) -> None:
    with stage_run("balance", {"seed": params.seed, "balance": params.balance.model_dump()}):
        manifest = pd.read_parquet(layout.manifest)
        table, counts = balance(manifest, params.balance.splits, stage_seed(params.seed, "balance"))
        pq.write_table(pa.Table.from_pandas(table, schema=BALANCED, preserve_index=False), layout.balanced)
        layout.metrics.mkdir(parents=True, exist_ok=True)
        write_json(layout.metrics / "balance.json", counts)
        log_metrics(
            {
                "samples_total": counts["samples_total"],
                "unique_images": counts["unique_images"],
                **{
                    f"{table_name}_{kind}_{e}": n
                    for table_name in ("images", "samples")
                    for kind, row in counts[table_name].items()
                    for e, n in row.items()
                },
            }
        )
        log_artifact(str(layout.metrics / "balance.json"))
    log.info("balance: %d samples over %d images", counts["samples_total"], counts["unique_images"])


def balance(manifest: pd.DataFrame, splits: tuple[str, ...], seed: int) -> tuple[pd.DataFrame, dict[str, Any]]:
    """(balanced rows in BALANCED's columns, counts); deterministic for a given ``seed``."""
    rng = np.random.default_rng(seed)
    pool = manifest[manifest["split"].isin(splits) & manifest["attribute"].notna()]
    parts: list[pd.DataFrame] = []
    images: dict[str, dict[str, int]] = {}
    samples: dict[str, dict[str, int]] = {}
    for kind in ATTRIBUTE_KINDS:
        group = pool[pool["attribute_kind"] == kind]
        by_emotion = {e: group[group["emotion"] == e] for e in EMOTIONS}
        target = max(len(g) for g in by_emotion.values())
        images[kind] = {e: len(g) for e, g in by_emotion.items()}
        samples[kind] = {}
        for emotion, members in by_emotion.items():
            if members.empty:
                if target:
                    log.warning(
                        "balance: no %s-attributed %s image in %s; it stays empty", kind, emotion, "/".join(splits)
                    )
                samples[kind][emotion] = 0
                continue
            order = rng.permutation(len(members))
            parts.append(members.iloc[order[np.arange(target) % len(members)]])
            samples[kind][emotion] = target
    if not parts:
        raise DataError(f"balance: no image with an attribute in split(s) {', '.join(splits)} of the manifest")
    table = pd.concat(parts, ignore_index=True)[BALANCED.names]
    counts = {
        "samples_total": len(table),
        "unique_images": int(table["id"].nunique()),
        "images": images,
        "samples": samples,
    }
    return table, counts
