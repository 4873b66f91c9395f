"""ingest: one test per bad input (the table in docs/stages/data.md), on small hand-built EmoSet folders."""

import io
import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from emogen.config import parse_params
from emogen.data.emoset import read_info
from emogen.data.synthetic_world import World
from emogen.errors import DataError
from emogen.layout import Layout
from emogen.stages import ingest
from emogen.stages.prepare_data import info_json


def _jpeg(mode="RGB", size=(8, 6)) -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, {"RGB": (200, 30, 30), "L": 90, "CMYK": (0, 200, 200, 0)}[mode]).save(buf, "JPEG")
    return buf.getvalue()


def _png(mode) -> bytes:
    buf = io.BytesIO()
    img = Image.new("RGBA", (8, 8), (10, 200, 10, 128))
    (img if mode == "RGBA" else img.convert("RGB").convert("P", palette=Image.Palette.ADAPTIVE)).save(buf, "PNG")
    return buf.getvalue()


class EmoSetDir:
    """A tiny EmoSet folder: full info.json, two good train entries, helpers to add more."""

    def __init__(self, root):
        self.root = root
        self.entries = {"train": [], "val": [], "test": []}
        root.mkdir()
        (root / "info.json").write_text(json.dumps(info_json(World())))
        for n in (1, 2):
            self.add(f"awe_{n:05d}", "awe")

    def add(self, image_id, emotion, image=None, annotation=None, split="train", ext="jpg", folder=None):
        """Write an image (bytes; None = a good JPEG) and annotation (dict or raw str; None = good)."""
        folder = folder or emotion
        image_path, annotation_path = f"image/{folder}/{image_id}.{ext}", f"annotation/{folder}/{image_id}.json"
        if image is not False:
            (self.root / image_path).parent.mkdir(parents=True, exist_ok=True)
            (self.root / image_path).write_bytes(_jpeg() if image is None else image)
        if annotation is not False:
            if annotation is None:
                annotation = {
                    "emotion": emotion,
                    "brightness": 0.4,
                    "colorfulness": 0.7,
                    "scene": "sky",
                    "object": ["Tower"],
                }
            (self.root / annotation_path).parent.mkdir(parents=True, exist_ok=True)
            (self.root / annotation_path).write_text(
                annotation if isinstance(annotation, str) else json.dumps(annotation)
            )
        self.entries[split].append([emotion, image_id, image_path, annotation_path])
        return self

    def scan(self, decode=False, max_pixels=50_000_000):
        for split, entries in self.entries.items():
            (self.root / f"{split}.json").write_text(json.dumps(entries))
        rows, issues, _total = ingest.scan(self.root, read_info(self.root), decode, workers=1, max_pixels=max_pixels)
        return {r["id"]: r for r in rows}, {i.id: i for i in issues}


@pytest.fixture
def emoset(tmp_path):
    return EmoSetDir(tmp_path / "emoset")


# --- usable: kept in the manifest -------------------------------------------------------


@pytest.mark.parametrize("mode", ["L", "CMYK"])
def test_greyscale_and_cmyk_jpegs_are_kept(emoset, mode):
    rows, issues = emoset.add("fear_00001", "fear", image=_jpeg(mode)).scan()
    assert not issues and rows["fear_00001"]["image_mode"] == mode
    assert (rows["fear_00001"]["width"], rows["fear_00001"]["height"]) == (8, 6)


@pytest.mark.parametrize("mode", ["RGBA", "P"])
def test_rgba_and_palette_pngs_are_kept_and_load_as_rgb(emoset, mode):
    from emogen.images import load_rgb

    rows, issues = emoset.add("fear_00001", "fear", image=_png(mode), ext="png").scan()
    assert not issues and rows["fear_00001"]["image_mode"] == mode
    assert load_rgb(emoset.root / rows["fear_00001"]["image_path"]).mode == "RGB"


def test_png_saved_as_jpg_is_kept_with_its_real_format(emoset):
    rows, issues = emoset.add("fear_00001", "fear", image=_png("RGBA")).scan()
    assert not issues
    assert rows["fear_00001"]["image_path"].endswith(".jpg") and rows["fear_00001"]["image_format"] == "PNG"


def test_missing_optional_fields_are_null(emoset):
    rows, issues = emoset.add("fear_00001", "fear", annotation={"emotion": "fear"}).scan()
    row = rows["fear_00001"]
    assert not issues
    assert row["scene"] is None and row["objects"] == [] and row["brightness"] is None
    assert row["attribute"] is None and row["attribute_kind"] is None


def test_numeric_string_levels_are_read_as_numbers(emoset):
    rows, issues = emoset.add("fear_00001", "fear", annotation={"emotion": "fear", "brightness": "0.5"}).scan()
    assert not issues and rows["fear_00001"]["brightness"] == 0.5


def test_object_is_the_attribute_when_there_is_no_scene(emoset):
    rows, _ = emoset.add(
        "fear_00001", "fear", annotation={"emotion": "fear", "object": ["Waste container", "Box"]}
    ).scan()
    assert (rows["fear_00001"]["attribute"], rows["fear_00001"]["attribute_kind"]) == ("waste_container", "object")
    assert (rows["awe_00001"]["attribute"], rows["awe_00001"]["attribute_kind"]) == ("sky", "scene")


def test_scene_outside_info_vocabulary_is_kept_for_validate(emoset):
    rows, issues = emoset.add("fear_00001", "fear", annotation={"emotion": "fear", "scene": "moon"}).scan()
    assert not issues and rows["fear_00001"]["scene"] == "moon"


def test_emotion_only_info_json_of_older_downloads(emoset):
    (emoset.root / "info.json").write_text(json.dumps({"emotion": info_json(World())["emotion"]}))
    assert read_info(emoset.root).vocabularies == {}
    rows, issues = emoset.scan()
    assert len(rows) == 2 and not issues


def test_three_field_entries_take_the_id_from_the_file_name(emoset):
    emoset.entries["train"] = [e[:1] + e[2:] for e in emoset.entries["train"]]
    rows, issues = emoset.scan()
    assert set(rows) == {"awe_00001", "awe_00002"} and not issues


# --- unusable: quarantined with a reason -------------------------------------------------


def _quarantined(emoset, reason, image_id="fear_00001", decode=False):
    rows, issues = emoset.scan(decode)
    assert image_id not in rows and set(rows) >= {"awe_00001", "awe_00002"}
    assert issues[image_id].reason == reason, issues[image_id]
    assert issues[image_id].split == "train" and issues[image_id].row == 2
    return issues[image_id]


def _noise(fmt) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, fmt)
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
@pytest.mark.parametrize("decode", [False, True])
def test_truncated_image(emoset, fmt, decode):
    data = _noise(fmt)
    emoset.add("fear_00001", "fear", image=data[: len(data) // 2])
    assert "end marker" in _quarantined(emoset, "truncated_image", decode=decode).detail


def test_corrupt_pixel_data_is_caught_by_full_decode_only(emoset):
    data = bytearray(_noise("PNG"))
    data[len(data) // 2 : len(data) // 2 + 64] = bytes(64)  # header and end marker intact
    emoset.add("fear_00001", "fear", image=bytes(data))
    assert "fear_00001" in emoset.scan(decode=False)[0]
    assert "do not decode" in _quarantined(emoset, "unreadable_image", decode=True).detail


def test_corrupt_image(emoset):
    emoset.add("fear_00001", "fear", image=b"this is not an image at all")
    assert "fear_00001.jpg" in _quarantined(emoset, "unreadable_image").detail


def test_zero_byte_image(emoset):
    emoset.add("fear_00001", "fear", image=b"")
    _quarantined(emoset, "empty_image")


def test_split_entry_pointing_to_missing_image(emoset):
    emoset.add("fear_00001", "fear", image=False)
    _quarantined(emoset, "missing_image")


def test_missing_annotation_file(emoset):
    emoset.add("fear_00001", "fear", annotation=False)
    _quarantined(emoset, "missing_annotation")


def test_malformed_annotation_json(emoset):
    emoset.add("fear_00001", "fear", annotation='{"emotion": "fear", ')
    _quarantined(emoset, "malformed_annotation")


def test_annotation_field_of_wrong_type(emoset):
    emoset.add("fear_00001", "fear", annotation={"emotion": "fear", "object": "Spider"})
    assert "'object'" in _quarantined(emoset, "invalid_annotation").detail


def test_non_numeric_level(emoset):
    emoset.add("fear_00001", "fear", annotation={"emotion": "fear", "colorfulness": "vivid"})
    assert "'colorfulness'" in _quarantined(emoset, "invalid_annotation").detail


def test_annotation_emotion_differs_from_folder(emoset):
    emoset.add("fear_00001", "fear", annotation={"emotion": "sadness"})
    assert "annotation says 'sadness'" in _quarantined(emoset, "emotion_mismatch").detail


def test_emotion_absent_from_info_json(emoset):
    emoset.add("joy_00001", "joy")
    assert "not in info.json" in _quarantined(emoset, "unknown_emotion", "joy_00001").detail


def test_malformed_split_entry(emoset):
    emoset.entries["train"].append({"emotion": "fear"})
    rows, issues = emoset.scan()
    assert len(rows) == 2 and issues[None].reason == "malformed_entry" and issues[None].row == 2


def test_duplicate_id_keeps_the_first_entry(emoset):
    emoset.add("awe_00001", "awe", split="test")
    rows, issues = emoset.scan()
    assert rows["awe_00001"]["split"] == "train"
    assert issues["awe_00001"].reason == "duplicate_id" and issues["awe_00001"].split == "test"
    assert "train.json row 0" in issues["awe_00001"].detail


# --- the stage: outputs, metrics and the two on_error modes ------------------------------


def _stage_layout(emoset, tmp_path):
    for split, entries in emoset.entries.items():
        (emoset.root / f"{split}.json").write_text(json.dumps(entries))
    layout = Layout(tmp_path)
    layout.synthetic.parent.mkdir(parents=True)
    emoset.root.rename(layout.synthetic)
    return layout


def test_quarantine_mode_writes_manifest_quarantine_and_metrics(emoset, tmp_path, mlflow_store):
    emoset.add("fear_00001", "fear", image=b"").add("fear_00002", "fear", annotation=False)
    layout = _stage_layout(emoset, tmp_path)
    ingest.run(parse_params({}), layout)
    manifest, quarantine = pd.read_parquet(layout.manifest), pd.read_parquet(layout.quarantine)
    assert sorted(manifest["id"]) == ["awe_00001", "awe_00002"]
    assert dict(zip(quarantine["id"], quarantine["reason"])) == {
        "fear_00001": "empty_image",
        "fear_00002": "missing_annotation",
    }
    metrics = json.loads((layout.metrics / "ingest.json").read_text())
    assert metrics["rows"] == 2 and metrics["quarantined"] == 2
    assert metrics["quarantined_by_reason"]["empty_image"] == 1 and metrics["per_split"]["train"] == 2

    import mlflow

    run = mlflow.search_runs(experiment_names=["emogen"]).iloc[0]
    assert run["tags.mlflow.runName"] == "ingest" and run["metrics.quarantined_empty_image"] == 1


def test_fail_mode_names_file_and_row(emoset, tmp_path):
    emoset.add("fear_00001", "fear", annotation="not json")
    layout = _stage_layout(emoset, tmp_path)
    with pytest.raises(DataError, match=r"train\.json row 2 \(id fear_00001.*malformed_annotation"):
        ingest.ingest(parse_params({"ingest": {"on_error": "fail"}}), layout)
    assert not layout.manifest.exists()


# --- too large: refused from the header, never decoded ------------------------------------


def _huge_png(side: int) -> bytes:
    buf = io.BytesIO()
    Image.new("1", (side, side)).save(buf, "PNG")  # 1 bit per pixel: small to make, huge to decode
    return buf.getvalue()


@pytest.mark.parametrize("decode", [False, True])
def test_images_above_max_pixels_are_quarantined_as_too_large(emoset, decode):
    emoset.add("fear_00001", "fear", image=_huge_png(12_000), ext="png")  # 144 Mpx, the issue's case
    emoset.add("fear_00002", "fear", image=_huge_png(14_000), ext="png")  # above PIL's own bomb limit
    emoset.add("fear_00003", "fear", image=_jpeg(size=(10, 10)))
    rows, issues = emoset.scan(decode, max_pixels=100)
    assert (
        issues["fear_00001"].reason == "too_large"
        and "144,000,000 pixels > ingest.max_pixels 100" in issues["fear_00001"].detail
    )
    assert issues["fear_00002"].reason == "too_large"
    assert "fear_00003" in rows  # exactly at the limit
    assert "fear_00001" in emoset.scan(decode=False, max_pixels=150_000_000)[0]
