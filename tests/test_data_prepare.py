"""prepare_data: the synthetic world, its EmoSet-format rendering, and the real-data fingerprint."""

import hashlib
import json
import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from emogen.config import parse_params
from emogen.data.emoset import SPLITS
from emogen.data.render import brightness, colorfulness
from emogen.data.synthetic_world import (
    ImageSpec,
    World,
    captions,
    emotion_caption_mask,
    emotion_posterior,
    load_world,
)
from emogen.emotions import EMOTIONS, POSITIVE
from emogen.errors import DataError
from emogen.layout import Layout
from emogen.stages import ingest
from emogen.stages.prepare_data import record_fingerprint, render_synthetic

WORLD = World()
EMOTION_WORDS = set(EMOTIONS) | {
    "amusing",
    "awesome",
    "content",
    "exciting",
    "angry",
    "disgusting",
    "scary",
    "fearful",
    "sad",
    "happy",
    "joy",
}


# --- the world ---------------------------------------------------------------------------


def test_every_emotion_has_a_strong_scene_and_object_and_some_are_neutral():
    for attrs in (WORLD.scenes, WORLD.objects):
        profiles = np.array([a.profile for a in attrs])
        assert np.allclose(profiles.sum(1), 1, atol=1e-5)
        strong = {int(p.argmax()) for p in profiles if p.max() >= 0.6}
        assert strong == set(range(len(EMOTIONS)))
        assert any(np.allclose(p, 1 / len(EMOTIONS)) for p in profiles)


def test_profiles_cluster_by_polarity():
    """An emotional profile gives more mass to its own polarity's other emotions than to the other polarity."""
    for a in WORLD.scenes + WORLD.objects:
        p = np.array(a.profile)
        if p.max() >= 0.6:
            own = p.argmax() in POSITIVE
            same = [p[i] for i in range(8) if (i in POSITIVE) == own and i != p.argmax()]
            other = [p[i] for i in range(8) if (i in POSITIVE) != own]
            assert min(same) > max(other)


def test_posterior_is_the_normalised_product():
    post = emotion_posterior("cemetery", ["Umbrella"], WORLD)
    expected = np.array(WORLD.attribute("cemetery").profile) * np.array(WORLD.attribute("Umbrella").profile)
    assert np.allclose(post, expected / expected.sum())
    # neutral attributes change nothing; names work in attribute form too
    assert np.allclose(emotion_posterior("street", ["Box", "party_hat"], WORLD), WORLD.attribute("Party hat").profile)
    assert np.allclose(emotion_posterior(None, ["Chair"], WORLD.to_dict()), 1 / 8)


def test_emotion_word_captions():
    spec = ImageSpec("beach", ("Balloon",), 0, 1)
    assert captions(spec, WORLD, emotion_word=True) == [
        "a red balloon on the beach, amusement",
        "red balloon",
        "balloon",
        "beach",
        "amusement",
    ]
    mask = emotion_caption_mask(200, 0.15, np.random.default_rng(0))
    assert mask.sum() == 30 and (mask == emotion_caption_mask(200, 0.15, np.random.default_rng(0))).all()


def test_captions_describe_content_only():
    spec = ImageSpec("beach", ("Balloon", "Waste container"), 0, 1)
    forms = captions(spec, WORLD)
    assert forms[0] == "a red balloon and a brown waste container on the beach"
    assert forms[-1] == "beach" and "balloon" in forms and len(forms) == len(set(forms))
    assert captions(ImageSpec(None, ("Umbrella",), 7, 1), WORLD) == ["a blue umbrella", "blue umbrella", "umbrella"]
    names = [a.name for a in WORLD.scenes + WORLD.objects]
    assert not {w for n in names for w in n.lower().replace("_", " ").split()} & EMOTION_WORDS


# --- the rendered set --------------------------------------------------------------------


def test_layout_and_schema_are_emosets(tiny_emoset):
    root, p = tiny_emoset.layout.synthetic, tiny_emoset.params.prepare_data
    info = json.loads((root / "info.json").read_text())
    assert list(info["emotion"]["label2idx"]) == list(EMOTIONS)
    assert {"scene", "object", "brightness", "colorfulness"} <= set(info)
    entries = {s: json.loads((root / f"{s}.json").read_text()) for s in SPLITS}
    assert sum(map(len, entries.values())) == p.num_images
    assert abs(len(entries["train"]) / p.num_images - p.split.train) < 0.02
    for emotion, image_id, image_path, annotation_path in entries["train"][:20]:
        assert (
            image_path == f"image/{emotion}/{image_id}.jpg"
            and annotation_path == f"annotation/{emotion}/{image_id}.json"
        )
        annotation = json.loads((root / annotation_path).read_text())
        assert annotation["emotion"] == emotion and isinstance(annotation["object"], list)
        assert annotation.get("scene", "beach") in info["scene"]["label2idx"]
        with Image.open(root / image_path) as img:
            assert (img.format, img.size, img.mode) == ("JPEG", (p.image_size, p.image_size), "RGB")
            pixels = np.asarray(img)
        # The annotations measure the image itself (rendered pixels before JPEG: within one 0.1 step).
        for key, measure in (("brightness", brightness), ("colorfulness", colorfulness)):
            assert annotation[key] == round(annotation[key], 1)
            assert annotation[key] == pytest.approx(measure(pixels), abs=0.1 + 1e-9), (image_id, key)


def test_no_scene_share_and_captions(tiny_emoset):
    manifest = pd.read_parquet(tiny_emoset.layout.manifest)
    assert 0.3 < manifest["scene"].isna().mean() < 0.5
    caps = pd.read_parquet(tiny_emoset.layout.synthetic / "captions.parquet")
    assert set(caps["id"]) == set(manifest["id"])
    # A share names the image's own label (its id starts with it); the rest never name an emotion.
    named = caps["captions"].map(lambda forms: forms[0].endswith(tuple(f", {e}" for e in EMOTIONS)))
    assert named.sum() == round(0.15 * len(caps))
    for image_id, forms, is_named in zip(caps["id"], caps["captions"], named):
        words = {w.strip(",") for f in forms for w in f.split()}
        label = image_id.rsplit("_", 1)[0]
        assert words & EMOTION_WORDS == ({label} if is_named else set())
        assert not is_named or (forms[0].endswith(f", {label}") and forms[-1] == label)
    assert min(len(forms[-1].split()) for forms in caps["captions"]) == 1


def test_emotion_captions_change_nothing_else(tmp_path):
    """The share is its own random stream: images, annotations, labels and splits are identical."""
    files = {}
    for fraction in (0.0, 0.5):
        folder = tmp_path / str(fraction)
        render_synthetic(
            parse_params({"prepare_data": {"num_images": 40, "workers": 1, "emotion_caption_fraction": fraction}}),
            folder,
        )
        files[fraction] = {
            p.relative_to(folder): p.read_bytes()
            for p in folder.rglob("*")
            if p.is_file() and p.name != "captions.parquet"
        }
        files[fraction]["captions"] = pd.read_parquet(folder / "captions.parquet")
    plain, named = files[0.0].pop("captions"), files[0.5].pop("captions")
    assert files[0.0] == files[0.5]
    assert list(plain["id"]) == list(named["id"])
    changed = [a != b for a, b in zip(plain["captions"].map(list), named["captions"].map(list))]
    assert sum(changed) == 20
    for before, after, image_id in zip(plain["captions"], named["captions"], plain["id"]):
        if list(before) != list(after):
            label = image_id.rsplit("_", 1)[0]
            assert list(after) == [f"{before[0]}, {label}", *before[1:], label]


def test_world_json_holds_the_truth(tiny_emoset):
    world = load_world(tiny_emoset.layout.synthetic)
    assert world == WORLD
    doc = json.loads((tiny_emoset.layout.synthetic / "world.json").read_text())
    assert set(doc["bayes_accuracy"]) == set(SPLITS) and 0.3 < doc["bayes_accuracy"]["train"] < 0.9


def test_same_params_same_files(tmp_path):
    params = parse_params({"prepare_data": {"num_images": 24, "workers": 1}})

    def digest(folder):
        render_synthetic(params, folder)
        return {
            p.relative_to(folder): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*"))
            if p.is_file()
        }

    first = digest(tmp_path / "a")
    assert len(first) == 2 * 24 + 7 and first == digest(tmp_path / "b")


# --- the real profile: check + fingerprint, never copy --------------------------------------


def test_emoset_root_missing_parts_are_named(tmp_path):
    (tmp_path / "emo").mkdir()
    (tmp_path / "emo" / "train.json").write_text("[]")
    with pytest.raises(
        DataError, match=r"not an EmoSet layout: missing info\.json, val\.json, test\.json, image, annotation"
    ):
        record_fingerprint(tmp_path / "emo", tmp_path / "out.json")
    with pytest.raises(DataError, match="no such folder"):
        record_fingerprint(tmp_path / "nope", tmp_path / "out.json")


def test_fingerprint_then_ingest_refuses_a_changed_dataset(tiny_emoset, tmp_path):
    root = tmp_path / "EmoSet"
    shutil.copytree(tiny_emoset.layout.synthetic, root)
    layout = Layout(tmp_path / "repo")
    layout.fingerprint.parent.mkdir(parents=True)
    counts = record_fingerprint(root, layout.fingerprint)
    assert counts["train"] == len(json.loads((root / "train.json").read_text()))
    assert [p.name for p in layout.root.rglob("*") if p.is_file()] == ["fingerprint.json"]  # nothing copied

    params = parse_params({"data": {"source": "emoset", "root": str(root)}, "ingest": {"workers": 1}})
    assert ingest.ingest(params, layout)["rows"] == tiny_emoset.params.prepare_data.num_images
    (root / "annotation" / "awe").iterdir().__next__().write_text('{"emotion": "awe"}')
    with pytest.raises(DataError, match="changed since prepare_data"):
        ingest.ingest(params, layout)
