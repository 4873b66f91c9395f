"""The metric definitions on cases a person can compute by hand."""

import numpy as np
import pytest

from emogen.emotions import NUM_EMOTIONS
from emogen.evaluation import metrics as m


def test_identical_sets_have_fid_zero_and_known_gaussians_their_closed_form():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 3))
    stats = m.FeatureStats.of(x)
    assert m.fid_summed([stats], [stats]) == pytest.approx(0.0, abs=1e-8)
    # 1-D: N(0, 1) vs N(1, 4): (0-1)² + 1 + 4 - 2·√(1·4) = 2
    assert m.frechet_distance(np.zeros(1), np.eye(1), np.ones(1), 4 * np.eye(1)) == pytest.approx(2.0)
    # diagonal 2-D: means 3 apart on one axis, variances (1, 9) vs (4, 1): 9 + (1+4-4) + (9+1-6) = 14
    assert m.frechet_distance(
        np.array([0, 0.0]), np.diag([1, 9.0]), np.array([3, 0.0]), np.diag([4, 1.0])
    ) == pytest.approx(14.0)


def test_summed_statistics_equal_the_statistics_of_the_union():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(7, 2)), rng.normal(size=(5, 2)) + 3
    mean, cov = (m.FeatureStats.of(a) + m.FeatureStats.of(b)).mean_cov()
    both = np.concatenate([a, b])
    np.testing.assert_allclose(mean, both.mean(0))
    np.testing.assert_allclose(cov, np.cov(both, rowvar=False))
    with pytest.raises(ValueError, match="at least 2"):
        m.FeatureStats.of(a[:1]).mean_cov()


def test_identical_pair_has_sem_d_zero_and_orthogonal_pair_known_values():
    features = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    pairs = np.array([[0, 1], [0, 2]])
    np.testing.assert_allclose(m.pair_mse(features, pairs), [0.0, 1.0])  # ((1-0)² + (0-1)²) / 2
    np.testing.assert_allclose(m.pair_cosine_distance(features, pairs), [0.0, 1.0])


def test_labelled_set_gives_known_emo_a_target_probability_and_polarity():
    probs = np.zeros((4, NUM_EMOTIONS))
    probs[0, 0] = probs[1, 1] = probs[2, 2] = 1.0  # right, right, right
    probs[3, [1, 7]] = [0.6, 0.4]  # target 6 (fear): predicted 1 (awe), 0.6 positive mass
    targets = np.array([0, 1, 2, 6])
    got = m.emotion_accuracy(probs, targets)
    assert got["emo_a"] == 0.75
    assert got["emo_a_target_prob"] == pytest.approx(3 / 4)  # 1 + 1 + 1 + 0
    assert got["emo_a_polarity"] == 0.75  # image 3: judged positive, its target is negative
    assert m.per_emotion_accuracy(probs, targets) == {"amusement": 1.0, "awe": 1.0, "contentment": 1.0, "fear": 0.0}


def test_semantic_clarity_is_the_larger_top_probability():
    scene = np.array([[0.9, 0.1], [0.5, 0.5]])
    objects = np.array([[0.2, 0.3, 0.5], [0.1, 0.1, 0.8]])
    np.testing.assert_allclose(m.semantic_clarity(scene, objects), [0.9, 0.8])


def test_content_entropy_by_hand():
    labels = np.array([0, 0, 0, 0, 1, 1])
    # emotion 0: one class → 0; emotion 1: two classes, one image each → ln 2; mean of the two
    assert m.content_entropy(np.array([3, 3, 3, 3, 1, 2]), labels) == pytest.approx(np.log(2) / 2)
    # emotion 0: four classes equally → ln 4; emotion 1: one class → 0
    assert m.content_entropy(np.array([0, 1, 2, 3, 5, 5]), labels) == pytest.approx(np.log(4) / 2)


def test_pairs_stay_within_an_emotion_are_seeded_and_capped():
    labels = np.repeat(np.arange(NUM_EMOTIONS), 4)  # 4 images per emotion: 6 possible pairs each
    pairs = m.sample_pairs(labels, 5, np.random.default_rng(3))
    assert len(pairs) == 5 * NUM_EMOTIONS
    assert (labels[pairs[:, 0]] == labels[pairs[:, 1]]).all() and (pairs[:, 0] != pairs[:, 1]).all()
    assert len({tuple(p) for p in pairs}) == len(pairs)  # no pair twice
    np.testing.assert_array_equal(pairs, m.sample_pairs(labels, 5, np.random.default_rng(3)))
    assert len(m.sample_pairs(labels, 100, np.random.default_rng(3))) == 6 * NUM_EMOTIONS


def test_published_quirks_mix_emotions_in_ten_unseeded_pairs():
    labels = np.repeat(np.arange(NUM_EMOTIONS), 4)
    pairs = m.sample_pairs(labels, 64, np.random.default_rng(3), published_quirks=True)
    assert len(pairs) == m.PUBLISHED_PAIRS * NUM_EMOTIONS
    assert (labels[pairs[:, 0]] != labels[pairs[:, 1]]).any()  # the pool was never reset
    first = pairs[: m.PUBLISHED_PAIRS]
    assert (labels[first] == 0).all()  # the first emotion's pool holds only its own images


def test_bootstrap_interval_brackets_the_value_and_is_seeded():
    values = np.arange(10, dtype=float)
    a = m.bootstrap(lambda idx: float(values[idx].mean()), 10, 200, 0.95, np.random.default_rng(0))
    b = m.bootstrap(lambda idx: float(values[idx].mean()), 10, 200, 0.95, np.random.default_rng(0))
    assert a == b and a.value == 4.5 and a.low < 4.5 < a.high
    assert m.per_emotion_mean(np.array([1.0, 3.0, 10.0]), np.array([0, 0, 1])) == 6.0  # (2 + 10) / 2


def test_published_quirks_group_pairs_by_the_loop_block_computed_by_hand():
    """The official loop's image list grows across emotions; block k's pairs are averaged together
    whatever their images' emotions. Toy: images 0, 1 (emotion 0) and 2, 3 (emotion 1); 1-D
    features 0, 0, 1, 3; Sem-D of a pair = the squared difference."""
    features = np.array([[0.0], [0.0], [1.0], [3.0]])
    labels = np.array([0, 0, 1, 1])
    pairs = np.array([[0, 1], [0, 2], [2, 3]])  # block 0 drew (0, 1); block 1 drew (0, 2) and (2, 3)
    blocks = np.array([0, 1, 1])
    values = m.pair_mse(features, pairs)
    np.testing.assert_allclose(values, [0.0, 1.0, 4.0])
    # by block: block 0 → 0, block 1 → (1 + 4) / 2 = 2.5; mean 1.25
    assert m.per_emotion_mean(values, blocks) == pytest.approx(1.25)
    # the old grouping (first image's emotion): emotion 0 → (0 + 1) / 2, emotion 1 → 4; mean 2.25
    assert m.per_emotion_mean(values, labels[pairs[:, 0]]) == pytest.approx(2.25)
    # the sampler: ten pairs per block, block k from the images of emotions 0..k only
    many = np.repeat(np.arange(NUM_EMOTIONS), 3)
    drawn, drawn_blocks = m.sample_pair_blocks(many, 64, None, published_quirks=True)
    np.testing.assert_array_equal(drawn_blocks, np.repeat(np.arange(NUM_EMOTIONS), m.PUBLISHED_PAIRS))
    assert (many[drawn].max(1) <= drawn_blocks).all()
    assert (drawn[:, 0] != drawn[:, 1]).all()


def test_corrected_pairs_default_to_every_within_emotion_pair():
    labels = np.repeat(np.arange(NUM_EMOTIONS), 5)
    pairs, blocks = m.sample_pair_blocks(labels, None, np.random.default_rng(0))
    assert len(pairs) == 10 * NUM_EMOTIONS and (labels[pairs[:, 0]] == blocks).all()
    assert (labels[pairs[:, 1]] == blocks).all() and len({tuple(p) for p in pairs}) == len(pairs)
