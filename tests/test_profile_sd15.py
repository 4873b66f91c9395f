"""The sd15 profile selected the documented way, and the whole DAG under it: `dvc exp run -S
profile=sd15` in a temp git + DVC repo, with tiny random SD-shaped models built from configs (VAE,
UNet, CLIP text and vision, a bottleneck ResNet trunk for stage 1, ResNet classifiers for Sem-C)
on a tiny EmoSet-layout folder at data/raw/emoset. The test changes only sizes, counts, steps and
model paths in profiles/sd15.yaml, so every other value (EmoSet source, pretrained base model and
evaluators, streamed stage-1 images, mixed precision, the published sampler) is the profile's."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import mlflow
import pytest
import yaml

from emogen.cli import STAGES
from emogen.config import PROFILES_DIR, lay_over, load_params, load_raw_params, profile_keys, read_params_yaml
from emogen.emotions import EMOTIONS
from tests.helpers.paths import REPO
from tests.helpers.tiny_sd import (
    WORDS,
    build_tiny_sd,
    write_clip_image_processor,
    write_tiny_classifier,
    write_tiny_resnet_trunk,
)

RESOLUTION = 16
# Laid over profiles/sd15.yaml in the test repo: sizes, counts, steps and model paths only
# (SIZE_KEYS says which); {models} is the temp folder of the tiny models.
TINY = {
    "validate": {"min_images_per_emotion": 2},
    "ingest": {"workers": 2},
    "stage1": {
        "pretrained": "{models}/resnet",
        "resize": 24,
        "crop": RESOLUTION,
        "epochs": 1,
        "batch_size": 16,
        "eval_batch_size": 64,
        "vector_dim": 16,
        "workers": 2,
        "checkpoint_dir": "{models}/stage1-checkpoints",
    },
    "emotion_space": {"batch_size": 64, "workers": 2},
    "base_model": {
        "pretrained": "{models}/sd/pipeline",
        "clip": "{models}/sd/clip",
        "sampling": {"num_inference_steps": 2},
    },
    "stage2": {
        "max_train_steps": 3,
        "checkpointing_steps": 2,
        "sample_every": 0,
        "num_sample_images": 1,
        "sample_inference_steps": 2,
        "mapper": {"hidden_dim": 16},
        "work_dir": "{models}/stage2-work",
    },
    "generate": {
        "num_images": 2,
        "num_inference_steps": 2,
        "resolution": RESOLUTION,
        "transfer_templates": ["{} box"],
        "transfer_images": 2,
    },
    "evaluators": {
        "clip": "{models}/sd/clip",
        "object_model": "{models}/objects",
        "scene_model": "{models}/scenes",
        "probe_steps": 10,
    },
    "evaluate": {"num_pairs": 2, "bootstrap_samples": 20},
    "baseline": {"dreambooth": {"num_class_images": 1}},
    "intensity": {"num_images": 1, "intensities": [0.0, 1.0]},
    "frontier": {"num_images": 2, "guidance_scales": [1.0, 3.0]},
    "report": {"images_per_method": 1},
}
SIZE_KEYS = {
    "min_images_per_emotion",
    "workers",
    "pretrained",
    "clip",
    "object_model",
    "scene_model",
    "resize",
    "crop",
    "resolution",
    "epochs",
    "batch_size",
    "eval_batch_size",
    "vector_dim",
    "hidden_dim",
    "checkpoint_dir",
    "work_dir",
    "num_inference_steps",
    "max_train_steps",
    "checkpointing_steps",
    "sample_every",
    "num_sample_images",
    "sample_inference_steps",
    "num_images",
    "transfer_templates",
    "transfer_images",
    "probe_steps",
    "num_pairs",
    "bootstrap_samples",
    "num_class_images",
    "intensities",
    "images_per_method",
    "guidance_scales",
}
DVC_STAGES = set(STAGES)


def _filled(node, models: Path):
    if isinstance(node, dict):
        return {k: _filled(v, models) for k, v in node.items()}
    return node.replace("{models}", str(models)) if isinstance(node, str) and "{models}" in node else node


def _tiny_models(models: Path) -> None:
    # Single tokens, as in SD's tokenizer: the emotion words (Textual Inversion starts from them;
    # first, so that no other word's merges split them) and "box".
    sd = build_tiny_sd(models / "sd", with_vae=True, resolution=RESOLUTION, words=EMOTIONS + ("box",) + WORDS)
    write_clip_image_processor(sd.clip, RESOLUTION)
    write_tiny_resnet_trunk(models / "resnet")
    write_tiny_classifier(models / "objects", ["cardboard box", "folding chair", "tabby cat"])
    write_tiny_classifier(models / "scenes", ["street", "beach", "forest_path"])


def _git(repo: Path, env: dict, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True)


def test_the_shipped_sd15_profile_loads_over_params_yaml(tmp_path):
    shutil.copy(REPO / "params.yaml", tmp_path)
    embedded = load_params(tmp_path / "params.yaml")  # embedded needs no profile file (nothing laid over)
    assert embedded == load_params(REPO / "params.yaml") and embedded.profile == "embedded"
    shutil.copytree(REPO / PROFILES_DIR, tmp_path / PROFILES_DIR)
    assert load_params(tmp_path / "params.yaml") == embedded
    # What `dvc exp run -S profile=sd15` writes: only the profile key changes in params.yaml.
    raw = yaml.safe_load((tmp_path / "params.yaml").read_text())
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({**raw, "profile": "sd15"}, sort_keys=False))
    sd15 = load_params(tmp_path / "params.yaml")
    assert (sd15.data.source, sd15.data.root) == ("emoset", "data/raw/emoset")
    assert (
        sd15.base_model.profile == "pretrained"
        and sd15.base_model.pretrained == "stable-diffusion-v1-5/stable-diffusion-v1-5"
    )
    assert sd15.base_model.clip == "openai/clip-vit-large-patch14" and sd15.evaluators.profile == "pretrained"
    assert (sd15.stage1.pretrained, sd15.stage1.resize, sd15.stage1.crop) == ("microsoft/resnet-50", 256, 224)
    assert not sd15.stage1.cache_images and sd15.stage1.workers > 0
    # The published sampler is the base model's own; generate leaves it (null) for every method.
    assert sd15.base_model.sampling.model_dump() == {
        "scheduler": "UniPCMultistepScheduler",
        "num_inference_steps": 50,
        "guidance_scale": 7.5,
    }
    assert (sd15.generate.resolution, sd15.generate.scheduler) == (512, None)
    assert (sd15.generate.num_inference_steps, sd15.generate.guidance_scale) == (None, None)
    assert sd15.stage2.mixed_precision == "fp16" and sd15.generate.dtype == "float16"
    # Keys the profile does not set are params.yaml's: a user's edit there stays in effect.
    assert sd15.stage2.lambda_attr == embedded.stage2.lambda_attr and sd15.seed == embedded.seed
    _, overlay, _ = load_raw_params(tmp_path / "params.yaml")
    assert "stage2.lambda_attr" not in profile_keys(overlay)


def test_a_bad_profile_names_the_file_and_key(tmp_path):
    from emogen.config import ParamsError

    shutil.copytree(REPO / PROFILES_DIR, tmp_path / PROFILES_DIR)
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({**raw, "profile": "sd21"}))
    with pytest.raises(ParamsError, match=r"profile: 'sd21'.*profiles/sd21.yaml.*profiles: embedded, sd15"):
        load_params(tmp_path / "params.yaml")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({**raw, "profile": "sd15"}))
    (tmp_path / PROFILES_DIR / "sd15.yaml").write_text("stage1: {resise: 256}\n")
    with pytest.raises(ParamsError, match=r"profiles/sd15.yaml: stage1.resise: unknown key"):
        load_params(tmp_path / "params.yaml")
    (tmp_path / PROFILES_DIR / "sd15.yaml").write_text("seed: 1\n")
    with pytest.raises(ParamsError, match=r"sd15.yaml: seed: set it in .*params.yaml"):
        load_params(tmp_path / "params.yaml")


@pytest.mark.slow  # 3.5-5.6 min on the shared 2-core machine (≈ 165 s of CPU; the embedded DAG test: 3.7 min): 16 stage processes' imports dominate
def test_whole_dag_under_the_sd15_profile_with_tiny_sd_shaped_models(tmp_path, tiny_emoset, scratch_repo):
    models = tmp_path / "models"
    _tiny_models(models)
    scratch = scratch_repo(OMP_NUM_THREADS="1")  # params.yaml as it is: the user's file
    repo, env, uri = scratch.path, scratch.env, scratch.env["MLFLOW_TRACKING_URI"]
    # A tiny folder in EmoSet's layout where the profile looks for EmoSet.
    shutil.copytree(tiny_emoset.layout.synthetic, repo / "data/raw/emoset")
    shutil.copy(REPO / "data/raw/.gitignore", repo / "data/raw")  # git ignores the dataset
    tiny = _filled(TINY, models)
    assert {key.rsplit(".", 1)[-1] for key in profile_keys(tiny)} <= SIZE_KEYS
    sd15_path = repo / PROFILES_DIR / "sd15.yaml"
    sd15_path.write_text(yaml.safe_dump(lay_over(yaml.safe_load(sd15_path.read_text()), tiny), sort_keys=False))

    _git(repo, env, "add", "-A")
    _git(repo, env, "commit", "-qm", "embedded")

    # The one documented command.
    out = subprocess.run(
        ["dvc", "exp", "run", "-S", "profile=sd15"], cwd=repo, env=env, capture_output=True, text=True, timeout=900
    )
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-4000:]
    ran = re.findall(r"Running stage '([\w@]+)'", out.stdout)
    assert set(ran) == DVC_STAGES, ran
    # params.yaml: only the profile key changed (the user's file, never regenerated). Read as
    # DVC writes it (YAML 1.2: its unquoted `no` stays a string).
    before = read_params_yaml(REPO / "params.yaml")
    assert read_params_yaml(repo / "params.yaml") == {**before, "profile": "sd15"}

    fingerprint = json.loads((repo / "data/fingerprint.json").read_text())
    assert fingerprint["root"] == str(repo / "data/raw/emoset") and fingerprint["counts"]["image_files"] > 0
    base = json.loads((repo / "models/base/base.json").read_text())
    assert base["profile"] == "pretrained" and base["resolution"] == RESOLUTION
    stage1 = json.loads((repo / "models/stage1/config.json").read_text())
    assert stage1["pretrained"] == str(models / "resnet")
    index = json.loads((repo / "data/generated/emogen/index.json").read_text())
    assert {entry["emotion"] for entry in index["images"]} == set(EMOTIONS)
    table = json.loads((repo / "metrics/table1.json").read_text())
    assert table["stand_in"] is False and set(table["methods"]) == {
        "emogen",
        "prompt",
        "textual_inversion",
        "dreambooth",
    }
    emo_a, images = table["methods"]["emogen"]["emo_a"], table["methods"]["emogen"]["images"]["value"]
    # An accuracy over the generated images: a whole number of them, inside its own interval.
    assert emo_a["value"] == pytest.approx(round(emo_a["value"] * images) / images, abs=1e-4)
    assert emo_a["low"] <= emo_a["value"] <= emo_a["high"]
    assert (repo / "metrics/report.html").is_file()
    assert json.loads((repo / "metrics/frontier.json").read_text())["stand_in"] is False

    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=["emogen"])
    assert (runs["status"] == "FINISHED").all()
    assert set(runs["params.stage1.pretrained"].dropna()) == {str(models / "resnet")}
