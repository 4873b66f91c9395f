"""Intervals and paired comparisons over generated images (docs/evaluation.md "Intervals").

The resampling unit is the generated image, within its target emotion: a bootstrap draw is a
vector of counts, how often each image is drawn (:func:`bootstrap_images`; every emotion keeps
its number of images). Every statistic is computed from counts, vectorised over the draws:

- per-image metrics (Emo-A, Sem-C): the count-weighted mean (:func:`weighted_mean`);
- pair metrics (Sem-D, LPIPS): the pairs are fixed (all within-emotion pairs by default) and
  each pair (i, j) of distinct images weighs ``c_i · c_j`` in a draw — the pair statistic
  recomputed on the resampled images, pairs of an image with its own copy left out
  (:func:`pair_mean`);
- KID: the unbiased MMD² with the cubic polynomial kernel, its three terms count-weighted,
  the real set resampled too (:func:`kid_draws`). FID has no interval (a bootstrap duplicates
  images, which inflates FID): it is a point estimate.

Paired comparisons (:func:`paired_bootstrap`) use the *same* counts for both methods: every
method generates image k of an emotion from the same seed, so image k's draw count is shared.
Pooling over independent seeds (:func:`pool`): the mean of the per-seed values and of their
draws.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

HIGHER, LOWER, NO_DIFFERENCE = "higher", "lower", "no difference detected"


@dataclass(frozen=True)
class Estimate:
    """A point estimate, its percentile interval and bootstrap standard error (None: point only)."""

    value: float
    low: float | None = None
    high: float | None = None
    se: float | None = None

    def to_dict(self, digits: int = 4) -> dict[str, float | None]:
        def r(v: float | None) -> float | None:
            return None if v is None else round(float(v), digits)

        out = {"value": r(self.value)}
        if self.low is not None:
            out.update(low=r(self.low), high=r(self.high), se=r(self.se))
        return out


def bootstrap_images(labels: Sequence[int] | np.ndarray, samples: int, rng: np.random.Generator) -> np.ndarray:
    """(samples, N) draw counts: each draw resamples, with replacement, the images of every
    label among themselves (N per label kept). Share it between methods to pair them."""
    labels = np.asarray(labels)
    counts = np.zeros((samples, len(labels)), dtype=np.float64)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        n = len(members)
        draws = rng.integers(n, size=(samples, n)) + (np.arange(samples) * n)[:, None]
        counts[:, members] = np.bincount(draws.ravel(), minlength=samples * n).reshape(samples, n)
    return counts


def percentile_interval(value: float, draws: np.ndarray, confidence: float) -> Estimate:
    """The percentile interval of ``draws`` around ``value`` and their standard deviation (the se)."""
    draws = np.asarray(draws, dtype=np.float64)
    draws = draws[np.isfinite(draws)]
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(draws, [tail, 100 - tail])
    return Estimate(float(value), float(low), float(high), float(draws.std(ddof=1)))


def weighted_mean(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """(B,) the mean of per-image ``values`` (N,) in each draw of ``counts`` (B, N)."""
    return counts @ np.asarray(values, dtype=np.float64) / counts.sum(1)


def pair_mean(distances: np.ndarray, pairs: np.ndarray, groups: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """(B,) pair metric per draw: per group the mean of ``distances`` (P,) over its ``pairs``
    (P, 2), pair (i, j) weighted ``c_i · c_j``; then the mean over groups. ``counts`` all ones
    gives the point estimate. A group left with no pair of distinct images in a draw is skipped."""
    distances = np.asarray(distances, dtype=np.float64)
    weights = counts[:, pairs[:, 0]] * counts[:, pairs[:, 1]]  # (B, P)
    per_group = []
    for g in np.unique(groups):
        mine = groups == g
        w = weights[:, mine]
        total = w.sum(1)
        with np.errstate(invalid="ignore", divide="ignore"):
            per_group.append(np.where(total > 0, w @ distances[mine] / total, np.nan))
    return np.nanmean(np.stack(per_group, 1), axis=1)


def polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """KID's kernel (Bińkowski et al. 2018): (xᵀy / d + 1)³."""
    return (np.asarray(x, np.float64) @ np.asarray(y, np.float64).T / x.shape[1] + 1.0) ** 3


def _within(kernel: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Σ_{i≠j} c_i c_j k_ij / Σ_{i≠j} c_i c_j per draw (the unbiased within-set term)."""
    off = kernel - np.diag(np.diag(kernel))
    total = counts.sum(1)
    return np.einsum("bi,bi->b", counts @ off, counts) / (total**2 - (counts**2).sum(1))


def kid_draws(generated: np.ndarray, real: np.ndarray, gen_counts: np.ndarray, real_counts: np.ndarray) -> np.ndarray:
    """(B,) unbiased KID (MMD², cubic polynomial kernel) of count-weighted generated and real
    features; all-ones counts give the usual estimate (:func:`kid`)."""
    cross = np.einsum("bi,bi->b", gen_counts @ polynomial_kernel(generated, real), real_counts)
    cross = cross / (gen_counts.sum(1) * real_counts.sum(1))
    return (
        _within(polynomial_kernel(generated, generated), gen_counts)
        + _within(polynomial_kernel(real, real), real_counts)
        - 2 * cross
    )


def kid(generated: np.ndarray, real: np.ndarray) -> float:
    """The unbiased KID of two feature sets (N, D) and (M, D)."""
    return float(kid_draws(generated, real, np.ones((1, len(generated))), np.ones((1, len(real))))[0])


def verdict(low: float, high: float) -> str:
    """How a difference's interval may be worded: "higher" (it excludes 0 from above), "lower", or
    "no difference detected"."""
    if low > 0:
        return HIGHER
    if high < 0:
        return LOWER
    return NO_DIFFERENCE


def paired_bootstrap(
    value_a: float, value_b: float, draws_a: np.ndarray, draws_b: np.ndarray, confidence: float, digits: int = 4
) -> dict:
    """A − B with its percentile interval over shared draws (the same counts for both), the
    bootstrap se and the verdict: the ``comparisons`` entry of ``metrics/table1.json``."""
    diff = percentile_interval(value_a - value_b, np.asarray(draws_a) - np.asarray(draws_b), confidence)
    return {
        "difference": round(diff.value, digits),
        "low": round(diff.low, digits),
        "high": round(diff.high, digits),
        "se": round(diff.se, digits),
        "verdict": verdict(diff.low, diff.high),
    }


def pool(values: Sequence[float], draws: Sequence[np.ndarray]) -> tuple[float, np.ndarray]:
    """Independent seeds pooled: the mean of the per-seed values and the mean of their draws
    (draw b of every seed; the seeds' resamples are independent)."""
    return float(np.mean(values)), np.mean(np.stack([np.asarray(d, np.float64) for d in draws]), axis=0)
