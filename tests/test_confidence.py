"""Emotion confidence α, the derived attribute vocabulary and per-sample α on hand-made tables."""

import numpy as np
import pandas as pd
import pytest

from emogen.emotions import EMOTIONS
from emogen.errors import DataError
from emogen.stages.confidence import attribute_alpha, attribute_vocabulary, sample_alpha


def _row(attribute, kind, count, **peaks):
    """An α row: the given peaks, the rest spread evenly."""
    rest = (1 - sum(peaks.values())) / (len(EMOTIONS) - len(peaks))
    return {"attribute": attribute, "kind": kind, "count": count, **{e: peaks.get(e, rest) for e in EMOTIONS}}


ALPHA = pd.DataFrame(
    [
        _row("cemetery", "scene", 40, sadness=0.8),
        _row("mausoleum", "scene", 3, sadness=0.95),  # too few images
        _row("street", "scene", 50),  # flat: below threshold
        _row("balloon", "object", 30, amusement=0.5),
        _row("clown", "object", 30, amusement=0.7),
        _row("balloon", "scene", 10, excitement=0.6),  # same word as an object: kept once
        _row("spider", "object", 20, fear=0.39, disgust=0.38),  # max below 0.4
    ]
)


def test_vocabulary_rule():
    vocab = attribute_vocabulary(ALPHA, threshold=0.4, min_count=5)
    assert vocab["attribute"].tolist() == ["clown", "balloon", "cemetery"]  # emotion order, then α
    assert vocab["emotion"].tolist() == ["amusement", "amusement", "sadness"]
    assert vocab["kind"].tolist() == ["object", "object", "scene"]  # the more frequent 'balloon'
    assert vocab["attribute"].is_unique


def test_vocabulary_threshold_and_min_count_are_inclusive():
    vocab = attribute_vocabulary(ALPHA, threshold=0.39, min_count=3)
    assert {"spider", "mausoleum"} <= set(vocab["attribute"])
    assert vocab.set_index("attribute").loc["spider", "emotion"] == "fear"


def test_alpha_is_mean_probability_per_attribute():
    probs = np.eye(len(EMOTIONS))[[0, 0, 1, 7, 7, 2]] * 0.6 + 0.4 / len(EMOTIONS)
    train = pd.DataFrame(
        {
            "attribute": ["beach", "beach", "beach", "tree", "tree", None],
            "attribute_kind": ["scene", "scene", "scene", "object", "object", None],
        }
    )
    alpha = attribute_alpha(probs, train)
    assert list(alpha.columns) == ["attribute", "kind", "count", *EMOTIONS]
    assert alpha["attribute"].tolist() == ["beach", "tree"] and alpha["count"].tolist() == [3, 2]
    np.testing.assert_allclose(alpha[list(EMOTIONS)].sum(axis=1), 1.0)
    np.testing.assert_allclose(alpha.iloc[0][list(EMOTIONS)].astype(float), probs[:3].mean(axis=0))


def test_sample_alpha_threshold_order_and_vocab_index():
    vocab = attribute_vocabulary(ALPHA, threshold=0.4, min_count=5)
    balanced = pd.DataFrame(
        {
            "id": ["a", "b", "c", "d"],
            "emotion_idx": [EMOTIONS.index("sadness"), EMOTIONS.index("awe"), EMOTIONS.index("amusement"), 0],
            "attribute": ["cemetery", "cemetery", "clown", "street"],
            "attribute_kind": ["scene", "scene", "object", "scene"],
        }
    )
    samples = sample_alpha(balanced, ALPHA, vocab, threshold=0.1)
    assert samples["id"].tolist() == ["a", "b", "c", "d"]
    assert samples["alpha"].tolist() == pytest.approx([0.8, 0.0, 0.7, 0.125])  # awe: 0.2/7 < 0.1 → 0
    assert samples["vocab_idx"].tolist() == [2, 2, 0, -1]


def test_sample_alpha_unknown_attribute_names_the_row():
    balanced = pd.DataFrame(
        {
            "id": ["a", "zz"],
            "emotion_idx": [0, 0],
            "attribute": ["clown", "unicorn"],
            "attribute_kind": ["object", "object"],
        }
    )
    with pytest.raises(DataError, match=r"row 1 \(id='zz'\).*'unicorn'"):
        sample_alpha(balanced, ALPHA, attribute_vocabulary(ALPHA, 0.4, 5), threshold=0.0)
