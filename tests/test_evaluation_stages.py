"""The evaluators and evaluate stages end to end on a tiny synthetic EmoSet, with real MLflow:
embedded stand-ins trained, Table 1 and the transfer table written with intervals, and the
pretrained profile's path with tiny random models built from configs."""

import csv
import json
import shutil

import mlflow
import numpy as np
import pytest
from PIL import Image

from emogen.config import parse_params
from emogen.data.tables import read_table
from emogen.emotions import EMOTIONS
from emogen.errors import MissingModelError, UserError
from emogen.evaluation.evaluators import load_evaluators
from emogen.evaluation.pretrained import torchvision_to_transformers_key
from emogen.layout import Layout
from emogen.pipelines.writer import ImageRecord, write_generated
from emogen.stages import evaluate as stage
from emogen.stages import evaluators as fit
from tests.helpers.tiny_sd import build_tiny_sd, write_base_json, write_clip_image_processor, write_tiny_classifier

TINY_EVAL = {
    "evaluators": {
        "embedded": {
            "num_images": 96,
            "held_out_images": 48,
            "probe_steps": 20,
            "channels": [8],
            "epochs": 1,
            "batch_size": 32,
        },
        "device": "cpu",
    },
    "evaluate": {"methods": ["emogen", "prompt"], "num_pairs": 3, "bootstrap_samples": 30, "device": "cpu"},
}


@pytest.fixture
def repo(tiny_emoset, tmp_path, mlflow_store):
    """A Layout root with the tiny dataset (copied) and a tiny random base model at 16 px."""
    root = tmp_path / "repo"
    for part in ("data/synthetic", "data/processed"):
        shutil.copytree(tiny_emoset.layout.root / part, root / part)
    sd = build_tiny_sd(tmp_path / "tiny", with_vae=False, resolution=16)
    write_base_json(sd, root / "models" / "base")
    return Layout(root)


def _real_test_images(layout: Layout) -> list[tuple[str, Image.Image]]:
    rows = read_table(layout.manifest, ["split", "emotion", "image_path"])
    rows = rows[rows["split"] == "test"]
    return [
        (e, Image.open(layout.synthetic / p).convert("RGB").resize((16, 16)))
        for e, p in zip(rows["emotion"], rows["image_path"])
    ]


def write_methods(layout: Layout) -> None:
    """(Re)write "emogen" = copies of real test images (close to the real set), "prompt" = noise,
    both 3 per emotion with the same seeds (as every method is generated), and transfer folders
    of both with two templates."""
    real = _real_test_images(layout)
    assert {e for e, _ in real} == set(EMOTIONS)
    chosen = [(e, [img for name, img in real if name == e][:3]) for e in EMOTIONS]
    write_generated(
        layout.generated / "emogen",
        "emogen",
        ((ImageRecord(e, e, k, "{}", "single"), img) for e, imgs in chosen for k, img in enumerate(imgs)),
        replace=True,
    )
    rng = np.random.default_rng(0)

    def noise(template: str, mode: str) -> list:
        return [
            (ImageRecord(e, e, k, template, mode), Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)))
            for e in EMOTIONS
            for k in range(3)
        ]

    write_generated(layout.generated / "prompt", "prompt", noise("{}", "prompt"), replace=True)
    transfer = [
        (ImageRecord(e, e, k, t, "single"), img)
        for t in ("{} box", "{} street")
        for e, imgs in chosen
        for k, img in enumerate(imgs)
    ]
    write_generated(layout.generated / "emogen_transfer", "emogen_transfer", transfer, replace=True)
    write_generated(
        layout.generated / "prompt_transfer",
        "prompt_transfer",
        noise("{} box", "prompt") + noise("{} street", "prompt"),
        replace=True,
    )


@pytest.mark.slow  # over a minute on the busy 2-core machine: trains the stand-ins, evaluates 3 times
def test_embedded_evaluators_and_table1(repo):
    params = parse_params(TINY_EVAL)
    fit.run(params, repo)
    info = json.loads((repo.model_dir("evaluators") / "evaluators.json").read_text())
    assert info["profile"] == "embedded" and info["stand_in"] and info["resolution"] == 16
    assert all("embedded" in name for name in info["names"].values())
    assert "independent" in info["names"]["emo_a"] and "shares the generators' CLIP" in info["names"]["emo_a_clip"]
    report = json.loads((repo.metrics / "evaluators.json").read_text())
    for judge in ("emotion_judge", "emotion_probe"):  # the independent judge and the CLIP probe, beside Bayes
        probe = report[judge]
        assert probe["chance_accuracy"] == 0.125 and 0 < probe["bayes_accuracy"] <= 1
        assert (
            0 <= probe["held_out_accuracy"] <= 1 and "real_test_accuracy" in probe and "world_bayes_accuracy" in probe
        )
    assert report["scene_classifier"]["bayes_accuracy"] == 1.0

    evaluators = load_evaluators(repo.model_dir("evaluators"))
    big = Image.new("RGB", (32, 32), (200, 10, 10))
    assert evaluators.emotion_probs([big]).shape == (1, 8)  # resized to 16 px first
    np.testing.assert_allclose(
        evaluators.emotion_probs([big]), evaluators.emotion_probs([big.resize((16, 16), Image.BICUBIC)]), atol=1e-6
    )
    with pytest.raises(UserError, match="zebra"):
        evaluators.finds([big], "zebra")

    write_methods(repo)
    shutil.rmtree(repo.generated / "prompt")
    with pytest.raises(UserError, match="generated/prompt: no generated images of method 'prompt'"):
        stage.run(params, repo)
    write_methods(repo)
    stage.run(params, repo)
    table = json.loads((repo.metrics / "table1.json").read_text())
    assert table["stand_in"] and table["profile"] == "embedded" and set(table["methods"]) == {"emogen", "prompt"}
    assert (
        table["images_per_emotion"] == 3
        and table["bootstrap"]["samples"] == 30
        and table["bootstrap"]["confidence"] == 0.95
    )
    for method in table["methods"].values():
        for metric in (
            "emo_a",
            "emo_a_clip",
            "emo_a_target_prob",
            "emo_a_polarity",
            "lpips",
            "sem_c",
            "sem_d",
            "sem_d_cosine",
        ):
            cell = method[metric]
            assert cell["low"] <= cell["value"] <= cell["high"] and cell["se"] >= 0, (metric, cell)
        for metric in ("scene_entropy", "object_entropy"):  # 3 images per emotion: at most ln 3
            assert 0 <= method[metric]["value"] <= np.log(3) + 1e-9, (metric, method[metric])
        # FID: a point estimate (a resample duplicates images, which inflates FID); KID carries the interval
        assert method["fid"]["value"] >= 0 and set(method["fid"]) == {"value"}
        assert method["kid"]["low"] <= method["kid"]["high"]
    # copies of real test images are far closer to the real set than noise is
    emogen, prompt = table["methods"]["emogen"], table["methods"]["prompt"]
    assert emogen["fid"]["value"] < prompt["fid"]["value"] and emogen["kid"]["value"] < prompt["kid"]["value"]
    comparisons = table["comparisons"]["prompt"]
    assert table["comparisons_reference"] == "emogen" and set(table["comparisons"]) == {"prompt"}
    assert comparisons["kid"]["verdict"] == "lower" and comparisons["kid"]["high"] < 0
    for metric, c in comparisons.items():
        assert c["low"] <= c["high"] and c["verdict"] in {"higher", "lower", "no difference detected"}, metric
        assert c["difference"] == pytest.approx(emogen[metric]["value"] - prompt[metric]["value"], abs=2e-4), metric
    rows = list(csv.DictReader((repo.metrics / "table1_per_emotion.csv").open()))
    assert len(rows) == 2 * len(EMOTIONS) and rows[0]["method"] == "emogen" and rows[0]["emotion"] == "amusement"
    assert {row["evaluators"] for row in rows} == {"embedded stand-ins"}
    transfer = json.loads((repo.metrics / "transfer.json").read_text())
    assert set(transfer["templates"]) == {"{} box", "{} street"} and transfer["stand_in"]
    box = transfer["templates"]["{} box"]
    assert box["word"] == "box" and set(box["methods"]) == {"emogen", "prompt"}
    assert 0 <= transfer["templates"]["{} street"]["object_kept"]["value"] <= 1
    kept = box["comparisons"]["prompt"]["object_kept"]
    assert kept["difference"] == pytest.approx(
        box["methods"]["emogen"]["object_kept"]["value"] - box["methods"]["prompt"]["object_kept"]["value"], abs=2e-4
    )

    first = (repo.metrics / "table1.json").read_text()
    stage.run(params, repo)
    assert (repo.metrics / "table1.json").read_text() == first  # seeded: same numbers

    quirky = parse_params(
        {**TINY_EVAL, "evaluate": {**TINY_EVAL["evaluate"], "published_quirks": True, "transfer": False}}
    )
    stage.run(quirky, repo)
    quirk_table = json.loads((repo.metrics / "table1.json").read_text())
    assert quirk_table["published_quirks"] and quirk_table["methods"]["emogen"]["pairs"]["value"] == 80  # 10 × 8
    # near-black inputs (the double 1/255 rescale) shrink feature differences
    assert quirk_table["methods"]["prompt"]["sem_d"]["value"] < table["methods"]["prompt"]["sem_d"]["value"]

    mlflow.set_tracking_uri(mlflow.get_tracking_uri())
    runs = mlflow.search_runs(experiment_names=["emogen"], output_format="list")
    evaluate_runs = [r for r in runs if r.info.run_name == "evaluate" and "emogen.emo_a" in r.data.metrics]
    assert evaluate_runs and {r.info.run_name for r in runs} >= {"evaluators", "evaluate"}


@pytest.mark.slow  # about a minute on the busy 2-core machine
def test_pretrained_profile_with_tiny_random_models(repo, tmp_path):
    clip = tmp_path / "tiny" / "clip"
    write_clip_image_processor(clip, 16)
    write_tiny_classifier(tmp_path / "objects", ["cardboard box", "folding chair", "tabby cat"])
    write_tiny_classifier(tmp_path / "scenes", ["street", "beach", "forest_path"])
    raw = {
        **TINY_EVAL,
        "evaluators": {
            "profile": "pretrained",
            "clip": str(clip),
            "object_model": str(tmp_path / "objects"),
            "scene_model": str(tmp_path / "scenes"),
            "probe_steps": 10,
            "device": "cpu",
        },
    }
    params = parse_params(raw)
    fit.run(params, repo)
    report = json.loads((repo.metrics / "evaluators.json").read_text())
    assert report["stand_in"] is False and "val_accuracy" in report["emotion_probe"]
    write_methods(repo)
    stage.run(params, repo)
    table = json.loads((repo.metrics / "table1.json").read_text())
    assert table["stand_in"] is False and "CLIP ViT-L/14" in table["evaluators"]["emo_a"]
    emogen = table["methods"]["emogen"]
    for metric in ("fid", "lpips"):  # torchvision-based packages are not installed here
        assert emogen[metric]["value"] is None and "install" in emogen[metric]["note"]
    assert 0 <= emogen["emo_a"]["value"] <= 1 and 0 < emogen["sem_c"]["value"] <= 1
    transfer = json.loads((repo.metrics / "transfer.json").read_text())["templates"]
    assert set(transfer) == {"{} box", "{} street"}  # "box" ↔ "cardboard box", "street" ↔ the scene


def test_missing_pretrained_weights_fail_fast_naming_the_model(repo):
    params = parse_params({"evaluators": {"profile": "pretrained", "clip": "nobody/no-such-clip"}})
    with pytest.raises(MissingModelError, match=r"(?s)evaluators.clip.*nobody/no-such-clip.*hf download"):
        fit.run(params, repo)
    params = parse_params(
        {"evaluators": {"profile": "pretrained", "clip": str(repo.root / "nowhere"), "scene_model": None}}
    )
    with pytest.raises(MissingModelError, match=r"evaluators.clip"):
        fit.run(params, repo)


def test_torchvision_resnet_keys_map_to_transformers():
    assert torchvision_to_transformers_key("module.conv1.weight") == "resnet.embedder.embedder.convolution.weight"
    assert torchvision_to_transformers_key("bn1.running_mean") == "resnet.embedder.embedder.normalization.running_mean"
    assert (
        torchvision_to_transformers_key("layer1.0.conv2.weight")
        == "resnet.encoder.stages.0.layers.0.layer.1.convolution.weight"
    )
    assert (
        torchvision_to_transformers_key("layer4.2.bn3.bias")
        == "resnet.encoder.stages.3.layers.2.layer.2.normalization.bias"
    )
    assert (
        torchvision_to_transformers_key("layer2.0.downsample.0.weight")
        == "resnet.encoder.stages.1.layers.0.shortcut.convolution.weight"
    )
    assert (
        torchvision_to_transformers_key("layer2.0.downsample.1.weight")
        == "resnet.encoder.stages.1.layers.0.shortcut.normalization.weight"
    )
    assert torchvision_to_transformers_key("fc.bias") == "classifier.1.bias"
    with pytest.raises(UserError, match="avgpool"):
        torchvision_to_transformers_key("avgpool.weight")
