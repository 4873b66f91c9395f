"""balance: per-kind oversampling to the largest emotion, train only, seeded (docs/method.md)."""

import json
from collections import Counter

import pandas as pd
import pytest

from emogen.data.schema import BALANCED
from emogen.emotions import EMOTIONS
from emogen.errors import DataError
from emogen.stages.balance import balance


def _manifest(spec):
    """spec: [(split, emotion, kind, n)] → a manifest-like frame with unique ids."""
    rows = []
    for split, emotion, kind, n in spec:
        for _ in range(n):
            i = len(rows)
            attribute = None if kind is None else f"{kind}_{i % 3}"
            rows.append(
                {
                    "id": f"x{i}",
                    "split": split,
                    "emotion": emotion,
                    "emotion_idx": EMOTIONS.index(emotion),
                    "attribute": attribute,
                    "attribute_kind": kind,
                    "image_path": f"image/{emotion}/x{i}.jpg",
                }
            )
    return pd.DataFrame(rows)


MANIFEST = _manifest(
    [
        ("train", "awe", "scene", 5),
        ("train", "fear", "scene", 2),
        ("train", "awe", "object", 1),
        ("train", "anger", "object", 3),
        ("train", "fear", None, 4),
        ("test", "fear", "scene", 9),
    ]
)


def test_each_kind_oversampled_to_its_largest_emotion():
    table, counts = balance(MANIFEST, ("train",), seed=1)
    got = table.groupby(["attribute_kind", "emotion"]).size().to_dict()
    assert got == {("object", "anger"): 3, ("object", "awe"): 3, ("scene", "awe"): 5, ("scene", "fear"): 5}
    assert list(table.columns) == BALANCED.names
    assert list(dict.fromkeys(table["attribute_kind"])) == ["object", "scene"]  # kinds concatenated, objects first
    assert counts["samples"]["scene"]["fear"] == 5 and counts["images"]["scene"]["fear"] == 2
    assert counts["samples_total"] == 16 and counts["unique_images"] == 11


def test_cycles_through_every_image_before_repeating():
    table, _ = balance(MANIFEST, ("train",), seed=1)
    fear = table[(table["attribute_kind"] == "scene") & (table["emotion"] == "fear")]["id"].tolist()
    assert set(fear[:2]) == set(
        MANIFEST[(MANIFEST.split == "train") & (MANIFEST.emotion == "fear") & (MANIFEST.attribute_kind == "scene")][
            "id"
        ]
    )
    assert fear[2:4] == fear[:2] and sorted(Counter(fear).values()) == [2, 3]


def test_train_only_and_no_attributeless_images():
    table, _ = balance(MANIFEST, ("train",), seed=1)
    train_ids = set(MANIFEST[MANIFEST.split == "train"]["id"])
    assert set(table["id"]) <= train_ids and table["attribute"].notna().all()
    everything, _ = balance(MANIFEST, ("train", "val", "test"), seed=1)  # the published behaviour
    assert everything.groupby(["attribute_kind", "emotion"]).size()[("scene", "fear")] == 11


def test_seeded():
    a, _ = balance(MANIFEST, ("train",), seed=1)
    b, _ = balance(MANIFEST, ("train",), seed=1)
    c, _ = balance(MANIFEST, ("train",), seed=2)
    pd.testing.assert_frame_equal(a, b)
    assert not a["id"].equals(c["id"])


def test_nothing_to_balance_is_an_error():
    with pytest.raises(DataError, match="no image with an attribute"):
        balance(MANIFEST, ("val",), seed=1)


def test_stage_output_on_the_tiny_set(tiny_emoset):
    layout = tiny_emoset.layout
    table = pd.read_parquet(layout.balanced)
    manifest = pd.read_parquet(layout.manifest)
    assert list(table.columns) == BALANCED.names
    assert set(table["id"]) <= set(manifest.loc[manifest["split"] == "train", "id"])
    per = table.groupby(["attribute_kind", "emotion"]).size()
    for kind in ("object", "scene"):  # both kinds are populated (≈40% of images have no scene)
        assert per[kind].nunique() == 1 and len(per[kind]) == len(EMOTIONS)
    metrics = json.loads((layout.metrics / "balance.json").read_text())
    assert metrics["samples_total"] == len(table)
