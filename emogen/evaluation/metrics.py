"""The metrics of Table 1 as pure functions over arrays (docs/method.md "Metrics").

Evaluators turn images into probabilities or features; everything here is numpy on those
arrays, so each definition can be checked by hand. ``published_quirks`` variants reproduce
the published code's defects for comparison (docs/method.md lists them).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from emogen.emotions import EMOTIONS, NUM_EMOTIONS, POSITIVE

PUBLISHED_PAIRS = 10  # pairs per emotion in the published LPIPS / Sem-D code


@dataclass(frozen=True)
class FeatureStats:
    """Sufficient statistics of a feature set: Σx, Σxxᵀ and n (they add across sets)."""

    total: np.ndarray  # (D,)
    outer: np.ndarray  # (D, D)
    count: int

    @classmethod
    def of(cls, features: np.ndarray) -> FeatureStats:
        x = np.asarray(features, dtype=np.float64)
        return cls(x.sum(0), x.T @ x, len(x))

    def __add__(self, other: FeatureStats) -> FeatureStats:
        return FeatureStats(self.total + other.total, self.outer + other.outer, self.count + other.count)

    def mean_cov(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean and unbiased covariance (needs at least two samples)."""
        if self.count < 2:
            raise ValueError(f"a covariance needs at least 2 feature vectors, got {self.count}")
        mean = self.total / self.count
        cov = (self.outer - self.count * np.outer(mean, mean)) / (self.count - 1)
        return mean, cov


def _sqrt_psd(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def frechet_distance(mean_a: np.ndarray, cov_a: np.ndarray, mean_b: np.ndarray, cov_b: np.ndarray) -> float:
    """‖μa − μb‖² + tr(Σa + Σb − 2 (Σa Σb)^½), with tr (Σa Σb)^½ = tr (Σa^½ Σb Σa^½)^½ (exact for PSD)."""
    root_a = _sqrt_psd(cov_a)
    cross = np.linalg.eigvalsh(root_a @ cov_b @ root_a)
    trace_sqrt = float(np.sqrt(np.clip(cross, 0, None)).sum())
    diff = mean_a - mean_b
    return max(0.0, float(diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_sqrt))


def fid_summed(real: Sequence[FeatureStats], generated: Sequence[FeatureStats]) -> float:
    """The published aggregation: per-emotion statistics summed (real and generated), one distance."""
    real_mean, real_cov = sum(real[1:], real[0]).mean_cov()
    gen_mean, gen_cov = sum(generated[1:], generated[0]).mean_cov()
    return frechet_distance(gen_mean, gen_cov, real_mean, real_cov)


def sample_pair_blocks(
    labels: Sequence[int], num_pairs: int | None, rng: np.random.Generator | None, published_quirks: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (P, 2) of distinct images for LPIPS / Sem-D, and each pair's block (P,): the
    emotion whose loop iteration drew it, the group the pair metric averages over first.

    Corrected: both images of a pair share the target emotion (block = that emotion); distinct
    pairs without replacement, ``num_pairs`` per emotion (None, or more than there are: all of
    them). ``published_quirks``, as the official ``Semantic_diversity`` loop: the image list is
    not reset between emotions (block k draws from the images of emotions 0..k), 10 pairs per
    block drawn with replacement and unseeded (``rng`` ignored); block k's pairs are averaged
    together whatever the emotions of their images.
    """
    labels = np.asarray(labels)
    pairs: list[tuple[int, int]] = []
    blocks: list[int] = []
    if published_quirks:
        rng, num_pairs = np.random.default_rng(), PUBLISHED_PAIRS
    pool: list[int] = []
    for emotion in range(NUM_EMOTIONS):
        members = np.flatnonzero(labels == emotion).tolist()
        pool = pool + members if published_quirks else members
        if len(pool) < 2:
            continue
        if published_quirks:
            for _ in range(num_pairs):
                a, b = rng.choice(len(pool), size=2, replace=False)
                pairs.append((pool[a], pool[b]))
                blocks.append(emotion)
            continue
        n = len(pool)
        total = n * (n - 1) // 2
        # Pair number k ↔ (i, j), i < j, in row-major order of the upper triangle.
        first = np.repeat(np.arange(n), np.arange(n - 1, -1, -1))
        second = np.concatenate([np.arange(i + 1, n) for i in range(n)])
        picks = (
            np.arange(total)
            if num_pairs is None or num_pairs >= total
            else np.sort(rng.choice(total, size=num_pairs, replace=False))
        )
        pairs.extend((pool[first[k]], pool[second[k]]) for k in picks)
        blocks.extend([emotion] * len(picks))
    return np.asarray(pairs, dtype=np.int64).reshape(-1, 2), np.asarray(blocks, dtype=np.int64)


def sample_pairs(
    labels: Sequence[int], num_pairs: int | None, rng: np.random.Generator | None, published_quirks: bool = False
) -> np.ndarray:
    """The pairs of :func:`sample_pair_blocks` (group them by its blocks, not by an image's emotion)."""
    return sample_pair_blocks(labels, num_pairs, rng, published_quirks)[0]


def pair_mse(features: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Sem-D per pair: mean over dimensions of the squared feature difference."""
    return ((features[pairs[:, 0]] - features[pairs[:, 1]]) ** 2).mean(1)


def pair_cosine_distance(features: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """1 − cosine similarity per pair."""
    a, b = features[pairs[:, 0]], features[pairs[:, 1]]
    cos = (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)
    return 1.0 - cos


def per_emotion_mean(values: np.ndarray, labels: np.ndarray) -> float:
    """Average per group (a pair's block), then over the groups present (the published averaging)."""
    return float(np.mean([values[labels == e].mean() for e in np.unique(labels)]))


def emotion_accuracy(probs: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """Emo-A (top-1 against the target), the mean target probability and polarity accuracy."""
    predicted = probs.argmax(1)
    positive = np.array(sorted(POSITIVE))
    predicted_positive = probs[:, positive].sum(1) > 0.5
    return {
        "emo_a": float((predicted == targets).mean()),
        "emo_a_target_prob": float(probs[np.arange(len(targets)), targets].mean()),
        "emo_a_polarity": float((predicted_positive == np.isin(targets, positive)).mean()),
    }


def per_emotion_accuracy(probs: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    predicted = probs.argmax(1)
    return {EMOTIONS[e]: float((predicted[targets == e] == e).mean()) for e in np.unique(targets)}


def content_entropy(predicted: np.ndarray, labels: np.ndarray) -> float:
    """Content diversity: the entropy (nats) of the predicted class (scene or object) among
    each emotion's images, averaged over the emotions present. 0 = one class per emotion."""
    entropies = []
    for e in np.unique(labels):
        counts = np.unique(predicted[labels == e], return_counts=True)[1]
        share = counts / counts.sum()
        entropies.append(float(-(share * np.log(share)).sum()))
    return float(np.mean(entropies))


def semantic_clarity(scene_probs: np.ndarray, object_probs: np.ndarray) -> np.ndarray:
    """Sem-C per image: max(top scene probability, top object probability)."""
    return np.maximum(scene_probs.max(1), object_probs.max(1))


@dataclass(frozen=True)
class Interval:
    value: float
    low: float
    high: float

    def to_dict(self, digits: int = 4) -> dict[str, float]:
        return {k: round(float(v), digits) for k, v in (("value", self.value), ("low", self.low), ("high", self.high))}


def bootstrap(
    statistic: Callable[[np.ndarray], float], size: int, samples: int, confidence: float, rng: np.random.Generator
) -> Interval:
    """``statistic(indices)`` on all ``size`` items, and its percentile interval over
    ``samples`` resamples of the items with replacement."""
    value = statistic(np.arange(size))
    draws = np.array([statistic(rng.integers(size, size=size)) for _ in range(samples)])
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(draws, [tail, 100 - tail])
    return Interval(value, float(low), float(high))
