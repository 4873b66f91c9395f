"""Intervals over generated images: by-hand cases, pairing, and coverage by simulation.

The coverage tests draw ≥ 200 synthetic data sets with a known true value and count how often
the 95 % interval covers it; a right interval covers it in about 95 % of them (90–99 % allows
for the binomial noise of 200-300 draws and for the percentile bootstrap's small-sample bias).
"""

import numpy as np
import pytest

from emogen.evaluation import statistics as st

EMOTIONS = 8
DRAWS = 240  # simulated data sets per coverage test
SAMPLES = 400  # bootstrap resamples per data set


def test_bootstrap_counts_resample_within_each_label():
    labels = np.repeat(np.arange(3), [2, 5, 4])
    counts = st.bootstrap_images(labels, 500, np.random.default_rng(0))
    assert counts.shape == (500, 11)
    for label, n in enumerate([2, 5, 4]):
        np.testing.assert_array_equal(counts[:, labels == label].sum(1), n)  # every label keeps its size
    assert (counts == 0).any() and (counts >= 2).any()  # with replacement
    np.testing.assert_array_equal(counts, st.bootstrap_images(labels, 500, np.random.default_rng(0)))


def test_pair_mean_weights_each_pair_by_its_images_draw_counts():
    distances = np.array([1.0, 2.0, 4.0, 10.0])
    pairs = np.array([[0, 1], [0, 2], [1, 2], [3, 4]])
    groups = np.array([0, 0, 0, 1])
    ones = np.ones((1, 5))
    assert st.pair_mean(distances, pairs, groups, ones)[0] == pytest.approx((7 / 3 + 10) / 2)
    # image 0 twice, image 1 once, image 2 never: pairs (0,1) weight 2, (0,2) 0, (1,2) 0 → 1.0;
    # group 1: image 3 twice, image 4 never → no pair of distinct images: skipped
    counts = np.array([[2.0, 1.0, 0.0, 2.0, 0.0]])
    assert st.pair_mean(distances, pairs, groups, counts)[0] == pytest.approx(1.0)


def test_kid_matches_the_unbiased_mmd_written_out():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(6, 3)), rng.normal(1.0, size=(5, 3))

    def k(a, b):
        return (a @ b / 3 + 1) ** 3

    xx = sum(k(x[i], x[j]) for i in range(6) for j in range(6) if i != j) / 30
    yy = sum(k(y[i], y[j]) for i in range(5) for j in range(5) if i != j) / 20
    xy = sum(k(a, b) for a in x for b in y) / 30
    assert st.kid(x, y) == pytest.approx(xx + yy - 2 * xy)
    # a draw that repeats image 0 equals the estimate on the set with image 0 written twice (ties left out)
    counts = np.array([[2.0, 1, 1, 1, 1, 0]])
    repeated = np.concatenate([x[:1], x[:5]])
    pairs = [(i, j) for i in range(6) for j in range(6) if i != j and {i, j} != {0, 1}]
    xx_r = sum(k(repeated[i], repeated[j]) for i, j in pairs) / len(pairs)
    xy_r = sum(k(a, b) for a in repeated for b in y) / 30
    assert st.kid_draws(x, y, counts, np.ones((1, 5)))[0] == pytest.approx(xx_r + yy - 2 * xy_r)


def test_verdict_words_follow_the_interval():
    assert st.verdict(0.01, 0.2) == "higher"
    assert st.verdict(-0.3, -0.02) == "lower"
    assert st.verdict(-0.1, 0.1) == "no difference detected"


def test_paired_interval_is_narrower_than_the_difference_of_independent_draws():
    """Two methods whose images share seeds (a common per-seed effect): the paired interval of the
    difference uses the shared counts and is much narrower than one from independent counts."""
    rng = np.random.default_rng(2)
    labels = np.repeat(np.arange(EMOTIONS), 24)
    seed_effect = rng.normal(size=len(labels))
    a = seed_effect + 0.3 + rng.normal(0, 0.2, len(labels))
    b = seed_effect + rng.normal(0, 0.2, len(labels))
    shared = st.bootstrap_images(labels, 1000, rng)
    paired = st.paired_bootstrap(a.mean(), b.mean(), st.weighted_mean(a, shared), st.weighted_mean(b, shared), 0.95)
    other = st.bootstrap_images(labels, 1000, rng)
    unpaired = st.paired_bootstrap(a.mean(), b.mean(), st.weighted_mean(a, shared), st.weighted_mean(b, other), 0.95)
    assert paired["verdict"] == "higher" and paired["low"] > 0
    assert paired["high"] - paired["low"] < 0.5 * (unpaired["high"] - unpaired["low"])
    assert paired["difference"] == pytest.approx(a.mean() - b.mean(), abs=1e-4)


def _coverage(truth: float, intervals: list[st.Estimate]) -> float:
    return float(np.mean([iv.low <= truth <= iv.high for iv in intervals]))


def test_emo_a_interval_covers_the_true_accuracy():
    rng = np.random.default_rng(10)
    per_emotion = 24
    labels = np.repeat(np.arange(EMOTIONS), per_emotion)
    p = np.linspace(0.2, 0.8, EMOTIONS)  # each emotion's true accuracy; Emo-A's truth is their mean
    intervals = []
    for _ in range(DRAWS):
        correct = (rng.random(len(labels)) < p[labels]).astype(float)
        counts = st.bootstrap_images(labels, SAMPLES, rng)
        intervals.append(st.percentile_interval(correct.mean(), st.weighted_mean(correct, counts), 0.95))
    assert 0.90 <= _coverage(p.mean(), intervals) <= 0.99


def _all_pairs(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pairs = [
        (i, j)
        for e in np.unique(labels)
        for i in np.flatnonzero(labels == e)
        for j in np.flatnonzero(labels == e)
        if i < j
    ]
    pairs = np.asarray(pairs)
    return pairs, labels[pairs[:, 0]]


def test_sem_d_interval_covers_the_true_pair_distance():
    """Features N(μ_e, s_e² I): the expected mean squared difference of two images is 2 s_e²."""
    rng = np.random.default_rng(11)
    per_emotion, dim = 12, 5
    labels = np.repeat(np.arange(EMOTIONS), per_emotion)
    scale = np.linspace(0.5, 1.5, EMOTIONS)
    truth = float(np.mean(2 * scale**2))
    pairs, groups = _all_pairs(labels)
    intervals = []
    for _ in range(DRAWS):
        features = rng.normal(size=(len(labels), dim)) * scale[labels, None] + labels[:, None]
        distances = ((features[pairs[:, 0]] - features[pairs[:, 1]]) ** 2).mean(1)
        value = st.pair_mean(distances, pairs, groups, np.ones((1, len(labels))))[0]
        counts = st.bootstrap_images(labels, SAMPLES, rng)
        intervals.append(st.percentile_interval(value, st.pair_mean(distances, pairs, groups, counts), 0.95))
    assert 0.90 <= _coverage(truth, intervals) <= 0.99


def _expected_kernel(a: np.ndarray, sa: float, b: np.ndarray, sb: float) -> float:
    """E (xᵀy/d + 1)³ for independent x ~ N(a, sa² I), y ~ N(b, sb² I), from the cumulants of xᵀy."""
    m1 = a * b
    m2 = (a**2 + sa**2) * (b**2 + sb**2)
    m3 = (a**3 + 3 * a * sa**2) * (b**3 + 3 * b * sb**2)
    k1, k2, k3 = m1.sum(), (m2 - m1**2).sum(), (m3 - 3 * m2 * m1 + 2 * m1**3).sum()
    s1, s2, s3 = k1, k2 + k1**2, k3 + 3 * k2 * k1 + k1**3
    d = len(a)
    return 1 + 3 * s1 / d + 3 * s2 / d**2 + s3 / d**3


def test_kid_closed_form_matches_a_large_sample():
    """Each kernel expectation by Monte Carlo over a million independent pairs."""
    rng = np.random.default_rng(12)
    a, b, n = np.array([0.5, 0.0, -0.5]), np.zeros(3), 1_000_000

    def mean_kernel(x, y):
        return float((((x * y).sum(1) / 3 + 1) ** 3).mean())

    for x, sx, y, sy in ((a, 1.0, a, 1.0), (b, 1.3, b, 1.3), (a, 1.0, b, 1.3)):
        sample = mean_kernel(rng.normal(size=(n, 3)) * sx + x, rng.normal(size=(n, 3)) * sy + y)
        assert sample == pytest.approx(_expected_kernel(x, sx, y, sy), rel=0.02)


def test_kid_interval_covers_the_true_mmd():
    rng = np.random.default_rng(13)
    per_emotion, num_real = 12, 80
    a, b = np.array([0.5, 0.0, -0.5]), np.zeros(3)
    truth = _expected_kernel(a, 1.0, a, 1.0) + _expected_kernel(b, 1.3, b, 1.3) - 2 * _expected_kernel(a, 1.0, b, 1.3)
    labels = np.repeat(np.arange(EMOTIONS), per_emotion)
    intervals = []
    for _ in range(DRAWS):
        gen = rng.normal(size=(len(labels), 3)) + a
        real = rng.normal(size=(num_real, 3)) * 1.3 + b
        gen_counts = st.bootstrap_images(labels, SAMPLES, rng)
        real_counts = st.bootstrap_images(np.zeros(num_real), SAMPLES, rng)
        intervals.append(
            st.percentile_interval(st.kid(gen, real), st.kid_draws(gen, real, gen_counts, real_counts), 0.95)
        )
    assert 0.90 <= _coverage(truth, intervals) <= 0.99


def test_pool_averages_values_and_draws():
    value, draws = st.pool([1.0, 3.0], [np.array([0.0, 2.0]), np.array([2.0, 4.0])])
    assert value == 2.0
    np.testing.assert_array_equal(draws, [1.0, 3.0])
