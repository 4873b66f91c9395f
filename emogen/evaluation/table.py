"""Table 1 for one method: every metric of its generated images, with intervals over images.

The resampling unit is the generated image within its target emotion
(:mod:`emogen.evaluation.statistics`): one matrix of draw counts gives every metric's
interval, pair metrics (LPIPS, Sem-D) recomputed on the resampled images, KID with the real
set resampled too. FID is a point estimate (no interval: resampling duplicates images, which
inflates it); KID carries the distance's interval. Passing the same ``counts`` (and pairs) to
two methods whose image k shares its seed gives draws that :func:`statistics.paired_bootstrap`
turns into paired comparisons.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from emogen.config import EvaluateParams
from emogen.emotions import EMOTIONS, NUM_EMOTIONS, POSITIVE
from emogen.evaluation import metrics as m
from emogen.evaluation import statistics as st
from emogen.evaluation.data import ImageSet
from emogen.evaluation.evaluators import Evaluators

# Metrics with an interval, in Table 1's order (the comparisons block covers these).
INTERVAL_METRICS = (
    "emo_a",
    "emo_a_clip",
    "emo_a_target_prob",
    "emo_a_polarity",
    "sem_c",
    "kid",
    "lpips",
    "sem_d",
    "sem_d_cosine",
)


@dataclass(frozen=True)
class RealReference:
    """The real set as the distances need it: per-emotion FID statistics and all features (KID)."""

    stats: list[m.FeatureStats]
    features: np.ndarray


@dataclass(frozen=True)
class MethodResult:
    table: dict[str, dict]  # metric → {"value", "low", "high", "se"} or {"value"} or {"value": None, "note"}
    per_emotion: dict[str, dict[str, float]]  # emotion → metric → value
    draws: dict[str, np.ndarray] = field(default_factory=dict)  # metric → (B,) bootstrap values
    values: dict[str, float] = field(default_factory=dict)  # metric → unrounded point estimate


def real_fid_stats(evaluators: Evaluators, real: Iterable[ImageSet]) -> RealReference | None:
    """The real set's features, read chunk by chunk (None, without reading an image, when there
    is no FID network)."""
    if evaluators.missing("fid"):
        return None
    per_emotion: list[list[m.FeatureStats]] = [[] for _ in range(NUM_EMOTIONS)]
    chunks = []
    for part in real:
        features = evaluators.fid_features(part.images)
        chunks.append(features)
        for e, stats in enumerate(per_emotion):
            stats.append(m.FeatureStats.of(features[part.labels == e]))
    return RealReference([sum(stats[1:], stats[0]) for stats in per_emotion], np.concatenate(chunks))


def _not_computed(evaluators: Evaluators, metric: str) -> dict:
    return {"value": None, "note": evaluators.missing(metric) or "not computed"}


def evaluate_method(
    evaluators: Evaluators,
    generated: ImageSet,
    real: RealReference | None,
    params: EvaluateParams,
    rng: np.random.Generator,
    counts: np.ndarray | None = None,
    real_counts: np.ndarray | None = None,
    pairs: tuple[np.ndarray, np.ndarray] | None = None,
) -> MethodResult:
    """Every metric of one method. ``counts`` (B, N): bootstrap draw counts of the generated
    images (drawn here from ``rng`` when None); ``real_counts`` (B, M) those of the real set
    (KID); ``pairs``: (pairs, blocks) of :func:`metrics.sample_pair_blocks` (drawn when None)."""
    labels = generated.labels
    n = len(labels)
    if counts is None:
        counts = st.bootstrap_images(labels, params.bootstrap_samples, rng)
    ones = np.ones((1, n))
    table: dict[str, dict] = {}
    draws: dict[str, np.ndarray] = {}
    values: dict[str, float] = {}

    def record(key: str, value: float, key_draws: np.ndarray) -> None:
        values[key], draws[key] = float(value), key_draws
        table[key] = st.percentile_interval(value, key_draws, params.confidence).to_dict()

    def per_image(key: str, per: np.ndarray) -> None:
        record(key, float(per.mean()), st.weighted_mean(per, counts))

    rows = np.arange(n)
    probs = evaluators.emotion_probs(generated.images)
    positive = np.array(sorted(POSITIVE))
    per_image("emo_a", (probs.argmax(1) == labels).astype(float))
    clip_probs = evaluators.clip_emotion_probs(generated.images)
    if clip_probs is not None:
        per_image("emo_a_clip", (clip_probs.argmax(1) == labels).astype(float))
    per_image("emo_a_target_prob", probs[rows, labels])
    per_image("emo_a_polarity", ((probs[:, positive].sum(1) > 0.5) == np.isin(labels, positive)).astype(float))
    scene_probs, object_probs = evaluators.scene_probs(generated.images), evaluators.object_probs(generated.images)
    clarity = m.semantic_clarity(scene_probs, object_probs)
    per_image("sem_c", clarity)
    # Which content a method draws per emotion, as the Sem-C classifiers see it (a diagnostic
    # beside Sem-D: docs/results.md). No interval: resampled sets repeat images, which biases entropy down.
    for kind, class_probs in (("scene", scene_probs), ("object", object_probs)):
        table[f"{kind}_entropy"] = {"value": round(m.content_entropy(class_probs.argmax(1), labels), 4)}

    features = evaluators.fid_features(generated.images)
    if features is None or real is None:
        table["fid"] = _not_computed(evaluators, "fid")
        table["kid"] = _not_computed(evaluators, "kid")
    else:
        stats = [m.FeatureStats.of(features[labels == e]) for e in range(NUM_EMOTIONS)]
        table["fid"] = {"value": round(m.fid_summed(real.stats, stats), 4)}  # point estimate only
        if real_counts is None:
            real_counts = st.bootstrap_images(np.zeros(len(real.features)), len(counts), rng)
        value = st.kid(features, real.features)
        record("kid", value, st.kid_draws(features, real.features, counts, real_counts))

    if pairs is None:
        pairs = m.sample_pair_blocks(labels, params.num_pairs, rng, params.published_quirks)
    pair_idx, blocks = pairs

    def pair_metric(key: str, distances: np.ndarray) -> None:
        record(
            key, st.pair_mean(distances, pair_idx, blocks, ones)[0], st.pair_mean(distances, pair_idx, blocks, counts)
        )

    first = [generated.images[i] for i in pair_idx[:, 0]]
    second = [generated.images[i] for i in pair_idx[:, 1]]
    distances = evaluators.lpips(first, second, params.published_quirks)
    if distances is None:
        table["lpips"] = _not_computed(evaluators, "lpips")
    else:
        pair_metric("lpips", distances)
    semd_features = evaluators.semd_features(generated.images, params.published_quirks)
    semd = m.pair_mse(semd_features, pair_idx)
    pair_metric("sem_d", semd)
    pair_metric("sem_d_cosine", m.pair_cosine_distance(semd_features, pair_idx))
    table["images"] = {"value": n}
    table["pairs"] = {"value": len(pair_idx)}

    accuracy = m.per_emotion_accuracy(probs, labels)
    per_emotion = {}
    for e, name in enumerate(EMOTIONS):
        mine, block = labels == e, blocks == e
        row = {
            "images": int(mine.sum()),
            "emo_a": accuracy.get(name),
            "emo_a_clip": float((clip_probs[mine].argmax(1) == e).mean())
            if clip_probs is not None and mine.any()
            else None,
            "emo_a_target_prob": float(probs[mine, e].mean()) if mine.any() else None,
            "sem_c": float(clarity[mine].mean()) if mine.any() else None,
            "sem_d": float(semd[block].mean()) if block.any() else None,
        }
        if distances is not None and block.any():
            row["lpips"] = float(distances[block].mean())
        per_emotion[name] = row
    return MethodResult(table, per_emotion, draws, values)


def compare(reference: MethodResult, other: MethodResult, confidence: float) -> dict[str, dict]:
    """``reference`` minus ``other`` per metric both have draws of (they must share counts)."""
    return {
        key: st.paired_bootstrap(
            reference.values[key], other.values[key], reference.draws[key], other.draws[key], confidence
        )
        for key in INTERVAL_METRICS
        if key in reference.draws and key in other.draws
    }
