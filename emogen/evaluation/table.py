"""Table 1 for one method: every metric of its generated images, each with a bootstrap interval.

Intervals are percentile bootstraps over images (Emo-A, Sem-C, FID: the generated images
are resampled, the real set is fixed) or over the sampled pairs (LPIPS, Sem-D).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from emogen.config import EvaluateParams
from emogen.emotions import EMOTIONS, NUM_EMOTIONS
from emogen.evaluation import metrics as m
from emogen.evaluation.data import ImageSet
from emogen.evaluation.evaluators import Evaluators


@dataclass(frozen=True)
class MethodResult:
    table: dict[str, dict]  # metric → {"value", "low", "high"} or {"value": None, "note"}
    per_emotion: dict[str, dict[str, float]]  # emotion → metric → value


def real_fid_stats(evaluators: Evaluators, real: Iterable[ImageSet]) -> list[m.FeatureStats] | None:
    """Per-emotion feature statistics of the real set, accumulated chunk by chunk
    (None, without reading an image: no FID network here)."""
    if evaluators.missing("fid"):
        return None
    per_emotion: list[list[m.FeatureStats]] = [[] for _ in range(NUM_EMOTIONS)]
    for part in real:
        features = evaluators.fid_features(part.images)
        for e, stats in enumerate(per_emotion):
            stats.append(m.FeatureStats.of(features[part.labels == e]))
    return [sum(stats[1:], stats[0]) for stats in per_emotion]


def _not_computed(evaluators: Evaluators, metric: str) -> dict:
    return {"value": None, "note": evaluators.missing(metric) or "not computed"}


def evaluate_method(
    evaluators: Evaluators,
    generated: ImageSet,
    real_stats: list[m.FeatureStats] | None,
    params: EvaluateParams,
    rng: np.random.Generator,
) -> MethodResult:
    labels = generated.labels
    n = len(labels)

    def interval(statistic) -> dict:
        return m.bootstrap(statistic, n, params.bootstrap_samples, params.confidence, rng).to_dict()

    table: dict[str, dict] = {}
    probs = evaluators.emotion_probs(generated.images)
    for key in ("emo_a", "emo_a_target_prob", "emo_a_polarity"):
        table[key] = interval(lambda idx, key=key: m.emotion_accuracy(probs[idx], labels[idx])[key])
    scene_probs, object_probs = evaluators.scene_probs(generated.images), evaluators.object_probs(generated.images)
    clarity = m.semantic_clarity(scene_probs, object_probs)
    table["sem_c"] = interval(lambda idx: float(clarity[idx].mean()))
    # Which content a method draws per emotion, as the Sem-C classifiers see it (a diagnostic
    # beside Sem-D: docs/results.md). No bootstrap: resampled sets repeat images,
    # which biases entropy down, and drawing here would move every later metric's draws.
    for kind, class_probs in (("scene", scene_probs), ("object", object_probs)):
        table[f"{kind}_entropy"] = {"value": round(m.content_entropy(class_probs.argmax(1), labels), 4)}

    features = evaluators.fid_features(generated.images)
    if features is None or real_stats is None:
        table["fid"] = _not_computed(evaluators, "fid")
    else:
        def fid(idx: np.ndarray) -> float:
            chosen = features[idx]
            stats = [m.FeatureStats.of(chosen[labels[idx] == e]) for e in range(NUM_EMOTIONS)]
            return m.fid_summed(real_stats, stats)

        table["fid"] = interval(fid)

    pairs = m.sample_pairs(labels, params.num_pairs, rng, params.published_quirks)
    pair_labels = labels[pairs[:, 0]]

    def pair_interval(values: np.ndarray) -> dict:
        def stat(idx: np.ndarray) -> float:
            return m.per_emotion_mean(values[idx], pair_labels[idx])

        return m.bootstrap(stat, len(values), params.bootstrap_samples, params.confidence, rng).to_dict()

    first = [generated.images[i] for i in pairs[:, 0]]
    second = [generated.images[i] for i in pairs[:, 1]]
    distances = evaluators.lpips(first, second, params.published_quirks)
    table["lpips"] = _not_computed(evaluators, "lpips") if distances is None else pair_interval(distances)
    clip_features = evaluators.semd_features(generated.images, params.published_quirks)
    semd = m.pair_mse(clip_features, pairs)
    table["sem_d"] = pair_interval(semd)
    table["sem_d_cosine"] = pair_interval(m.pair_cosine_distance(clip_features, pairs))
    table["images"] = {"value": n}
    table["pairs"] = {"value": len(pairs)}

    accuracy = m.per_emotion_accuracy(probs, labels)
    per_emotion = {}
    for e, name in enumerate(EMOTIONS):
        mine = labels == e
        row = {
            "images": int(mine.sum()),
            "emo_a": accuracy.get(name),
            "emo_a_target_prob": float(probs[mine, e].mean()) if mine.any() else None,
            "sem_c": float(clarity[mine].mean()) if mine.any() else None,
            "sem_d": float(semd[pair_labels == e].mean()) if (pair_labels == e).any() else None,
        }
        if distances is not None and (pair_labels == e).any():
            row["lpips"] = float(distances[pair_labels == e].mean())
        per_emotion[name] = row
    return MethodResult(table, per_emotion)
