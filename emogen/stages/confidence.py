"""Emotion confidence α and the attribute vocabulary (docs/method.md "Emotion confidence").

α[attribute, emotion] = mean, over the train images whose primary attribute it is, of the
stage-1 softmax probability of the emotion (computed from the stored emotion vectors
through the encoder's head, so no image is decoded again). The vocabulary of the
attribute loss is derived, not hand-curated: an attribute joins it for the emotion of its
row maximum when that maximum is ≥ ``vocab_threshold`` and it has ≥ ``vocab_min_count``
train images; each word once.

Writes ``models/confidence/``: ``alpha.parquet``, ``vocabulary.json``,
``sample_alpha.parquet`` (one row per balanced.parquet row, same order), and
``metrics/confidence.json``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from emogen.config import ConfidenceParams, Params
from emogen.data.tables import read_table, split_rows
from emogen.emotions import EMOTIONS
from emogen.errors import DataError
from emogen.jsonio import write_json
from emogen.layout import Layout
from emogen.stage1.encoder import emotion_probabilities, load_encoder
from emogen.stage1.ground_truth import alpha_vs_truth, find_world
from emogen.stage1.reporting import log_metrics
from emogen.stage1.space_files import read_vectors, rows_of
from emogen.timings import record
from emogen.tracking import log_artifact, stage_run

log = logging.getLogger(__name__)

EMOTION_COLUMNS = list(EMOTIONS)
MANIFEST_COLUMNS = ("id", "split", "emotion_idx", "image_path", "attribute", "attribute_kind")
BALANCED_COLUMNS = ("id", "emotion_idx", "attribute", "attribute_kind")


def run(params: Params, layout: Layout) -> None:
    """``emogen stage confidence``."""
    cfg = params.confidence
    started = time.perf_counter()
    train = split_rows(read_table(layout.manifest, MANIFEST_COLUMNS), "train")
    balanced = read_table(layout.balanced, BALANCED_COLUMNS)
    with stage_run("confidence", {"data": params.data.model_dump(), "confidence": cfg.model_dump()}):
        probs = train_probabilities(layout.model_dir("emotion_space"), layout.model_dir("stage1"), train)
        alpha, vocabulary, samples = compute_confidence(cfg, probs, train, balanced)
        write_confidence(layout.model_dir("confidence"), alpha, vocabulary, samples)
        metrics = confidence_summary(alpha, vocabulary, samples)
        world = find_world(layout.dataset_root(params.data))
        if world is not None:
            metrics["synthetic_world"] = alpha_vs_truth(alpha, train, world)
        seconds = record(seconds=time.perf_counter() - started)["seconds"]  # metrics/timings/confidence.json
        write_json(layout.metrics / "confidence.json", metrics)
        log_metrics(metrics)
        for name in ("alpha.parquet", "vocabulary.json"):
            log_artifact(str(layout.model_dir("confidence") / name))
        log_artifact(str(layout.metrics / "confidence.json"))
    log.info("confidence: %d attributes, vocabulary of %d, in %.1fs", len(alpha), len(vocabulary), seconds)


def train_probabilities(space_dir: Path, stage1_dir: Path, train: pd.DataFrame) -> np.ndarray:
    """Stage-1 softmax (N, 8) of every train row, in ``train`` order, from the stored vectors."""
    vectors, ids = read_vectors(space_dir)
    rows = rows_of(space_dir, ids, train["id"].tolist(), "train image(s)").numpy()
    probs = emotion_probabilities(load_encoder(stage1_dir), vectors).double().numpy()
    return probs[rows]


def attribute_alpha(probs: np.ndarray, train: pd.DataFrame) -> pd.DataFrame:
    """α table: ``attribute``, ``kind``, ``count``, then the 8 emotions (rows sum to 1)."""
    frame = pd.DataFrame(probs, columns=EMOTION_COLUMNS)
    frame["attribute"] = train["attribute"].to_numpy()
    frame["kind"] = train["attribute_kind"].to_numpy()
    frame = frame[frame["attribute"].notna()]
    groups = frame.groupby(["attribute", "kind"], sort=True)
    table = groups[EMOTION_COLUMNS].mean()
    table = table.div(table.sum(axis=1), axis=0)  # exact row sums despite float rounding
    table.insert(0, "count", groups.size())
    return table.reset_index()


def attribute_vocabulary(alpha: pd.DataFrame, threshold: float, min_count: int) -> pd.DataFrame:
    """Vocabulary rows (``attribute``, ``kind``, ``emotion``, ``alpha``), ordered by emotion then α.

    A word that qualifies as both a scene and an object is kept once (the more frequent).
    """
    values = alpha[EMOTION_COLUMNS].to_numpy()
    best = values.argmax(axis=1)
    chosen = alpha.assign(emotion_idx=best, alpha=values.max(axis=1))
    chosen = chosen[(chosen["alpha"] >= threshold) & (chosen["count"] >= min_count)]
    chosen = chosen.sort_values(["count", "kind"], ascending=[False, True]).drop_duplicates("attribute")
    chosen = chosen.sort_values(["emotion_idx", "alpha", "attribute"], ascending=[True, False, True])
    chosen["emotion"] = [EMOTIONS[i] for i in chosen["emotion_idx"]]
    return chosen[["attribute", "kind", "emotion", "alpha", "count"]].reset_index(drop=True)


def sample_alpha(
    balanced: pd.DataFrame, alpha: pd.DataFrame, vocabulary: pd.DataFrame, threshold: float
) -> pd.DataFrame:
    """Per balanced row: α[attribute][own emotion] (0 below ``threshold`` or without an attribute)."""
    lookup = alpha.set_index(["attribute", "kind"])[EMOTION_COLUMNS]
    has_attr = balanced["attribute"].notna().to_numpy()
    keys = pd.MultiIndex.from_arrays([balanced["attribute"], balanced["attribute_kind"]])
    known = keys.isin(lookup.index) | ~has_attr
    if not known.all():
        row = int(np.flatnonzero(~known)[0])
        raise DataError(
            f"balanced.parquet row {row} (id={balanced['id'].iloc[row]!r}): attribute "
            f"{balanced['attribute'].iloc[row]!r} has no train image in the manifest"
        )
    values = np.zeros(len(balanced))
    rows = lookup.reindex(keys[has_attr]).to_numpy()
    values[has_attr] = rows[np.arange(len(rows)), balanced["emotion_idx"].to_numpy()[has_attr]]
    values[values < threshold] = 0.0
    index = {a: i for i, a in enumerate(vocabulary["attribute"])}
    return pd.DataFrame(
        {
            "id": balanced["id"].to_numpy(),
            "emotion_idx": balanced["emotion_idx"].to_numpy(),
            "attribute": balanced["attribute"].to_numpy(),
            "alpha": values,
            "vocab_idx": [index.get(a, -1) for a in balanced["attribute"]],
        }
    )


def confidence_summary(alpha: pd.DataFrame, vocabulary: pd.DataFrame, samples: pd.DataFrame) -> dict[str, Any]:
    row_max = alpha[EMOTION_COLUMNS].max(axis=1)
    return {
        "num_attributes": len(alpha),
        "median_row_max": {
            kind: float(row_max[alpha["kind"] == kind].median()) for kind in sorted(alpha["kind"].unique())
        },
        "vocabulary_size": len(vocabulary),
        "vocabulary_per_emotion": {e: int((vocabulary["emotion"] == e).sum()) for e in EMOTIONS},
        "samples": len(samples),
        "samples_with_alpha": float((samples["alpha"] > 0).mean()) if len(samples) else 0.0,
        "samples_in_vocabulary": float((samples["vocab_idx"] >= 0).mean()) if len(samples) else 0.0,
        "mean_sample_alpha": float(samples["alpha"].mean()) if len(samples) else 0.0,
    }


def write_confidence(out_dir: Path, alpha: pd.DataFrame, vocabulary: pd.DataFrame, samples: pd.DataFrame) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    alpha.to_parquet(out_dir / "alpha.parquet", index=False)
    write_json(
        out_dir / "vocabulary.json",
        {
            "attributes": vocabulary["attribute"].tolist(),
            "emotions": vocabulary["emotion"].tolist(),
            "kinds": vocabulary["kind"].tolist(),
        },
    )
    samples.to_parquet(out_dir / "sample_alpha.parquet", index=False)


def compute_confidence(
    cfg: ConfidenceParams, probs: np.ndarray, train: pd.DataFrame, balanced: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """α table, vocabulary and per-sample α from the train images' stage-1 probabilities."""
    alpha = attribute_alpha(probs, train)
    vocabulary = attribute_vocabulary(alpha, cfg.vocab_threshold, cfg.vocab_min_count)
    return alpha, vocabulary, sample_alpha(balanced, alpha, vocabulary, cfg.alpha_threshold)
