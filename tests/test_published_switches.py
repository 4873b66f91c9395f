"""Every documented switch that restores a published behaviour (params.yaml / docs/switches.md
"published: ...") runs end to end, and no new one is documented without a test here."""

import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from emogen.config import BalanceParams, Params, Stage2Params
from emogen.emotions import EMOTIONS
from emogen.layout import Layout
from emogen.stages import balance, confidence, emotion_space, latents
from emogen.stages import stage1 as stage1_train
from emogen.stages import stage2 as stage2_train
from emogen.stages.emotion_space import emotion_gaussians
from emogen.stages.generate import run as run_generate
from tests.helpers.generation_inputs import tiny_generate_params, write_upstream
from tests.helpers.paths import REPO
from tests.helpers.stage1_inputs import tiny_params
from tests.helpers.tiny_sd import build_tiny_sd, write_base_json

# Switches exercised below: params key → published value.
SWITCHED = {
    "balance.splits": ["train", "val", "test"],
    "stage2.train_batch_size": 1,  # with gradient_accumulation_steps: 8
    "generate.num_images": 10,
    "generate.scheduler": "UniPCMultistepScheduler",
    "generate.num_inference_steps": 50,
    "generate.guidance_scale": 7.5,
    "generate.resolution": 512,
}
# Documented as published where the default already is the published value.
DEFAULT_IS_PUBLISHED = {
    "stage1.vector_dim": 768,
    "emotion_space.covariance": "diag",
    "emotion_space.weights": "uniform",
    "stage2.prompt_template": "{}",
    "stage2.attr_temperature": 1.0,
    "stage2.learning_rate": 1e-3,
    "stage2.max_train_steps": None,
    "generate.template": "{}",
}
# fp16 autocast needs a CUDA device, which CI lacks: NOT exercised by any test (docs/switches.md says so).
GPU_ONLY = {"stage2.mixed_precision"}
# Switches exercised by a test of their own module: key → (test file, test function).
ELSEWHERE = {
    "evaluate.published_quirks": (
        "test_evaluation_metrics.py",
        "test_published_quirks_mix_emotions_in_ten_unseeded_pairs",
    ),
    "evaluate.num_pairs": ("test_evaluation_metrics.py", "test_published_quirks_mix_emotions_in_ten_unseeded_pairs"),
    "evaluators.profile": ("test_evaluation_stages.py", "test_pretrained_profile_with_tiny_random_models"),
}


def _documented_published_keys() -> set[str]:
    """Every params.yaml key whose comment names a published value."""
    keys, section = set(), None
    for line in (REPO / "params.yaml").read_text().splitlines():
        if match := re.match(r"^(\w+):", line):
            section = match[1]
        elif (match := re.match(r"^  (\w+):", line)) and "published" in line.partition("#")[2]:
            keys.add(f"{section}.{match[1]}")
    return keys


def test_every_documented_published_switch_is_covered():
    documented = _documented_published_keys()
    assert {"balance.splits", "generate.scheduler"} <= documented  # the scan finds them
    assert not documented - set(SWITCHED) - set(DEFAULT_IS_PUBLISHED) - GPU_ONLY - set(ELSEWHERE), (
        "a published switch without a test"
    )
    for key, (file, test) in ELSEWHERE.items():
        assert f"def {test}(" in (Path(__file__).parent / file).read_text(), (key, file, test)
    defaults = Params()
    for key, value in DEFAULT_IS_PUBLISHED.items():
        section, name = key.split(".")
        assert getattr(getattr(defaults, section), name) == value, key


@pytest.mark.slow
def test_published_balancing_runs_through_stage2(tiny_emoset, tmp_path, mlflow_store):
    """balance.splits: [train, val, test] → emotion_space embeds every balanced image →
    confidence → stage 2 trains (it crashed when only train images had vectors); with the
    published batch recipe, 1 × 8 accumulated."""
    layout = Layout(tmp_path / "repo")
    layout.synthetic.parent.mkdir(parents=True)
    layout.synthetic.symlink_to(tiny_emoset.layout.synthetic, target_is_directory=True)
    layout.processed.mkdir(parents=True)
    shutil.copy(tiny_emoset.layout.manifest, layout.manifest)
    stage2 = Stage2Params(
        train_batch_size=1,
        gradient_accumulation_steps=8,
        max_train_steps=2,
        mapper={"hidden_dim": 16},
        checkpointing_steps=0,
        sample_every=0,
        num_sample_images=1,
        sample_inference_steps=2,
        work_dir="work",
    )
    params = tiny_params(
        tiny_emoset.params.model_copy(
            update={"balance": BalanceParams(splits=("train", "val", "test")), "stage2": stage2}
        ),
        tmp_path / "ckpt",
    )
    write_base_json(build_tiny_sd(tmp_path / "sd", with_vae=False), layout.model_dir("base"))

    balance.run(params, layout)
    for stage in (stage1_train, emotion_space, confidence, latents, stage2_train):
        stage.run(params, layout)

    balanced = pd.read_parquet(layout.balanced)
    manifest = pd.read_parquet(layout.manifest).set_index("id")
    assert set(manifest.loc[balanced["id"], "split"]) == {"train", "val", "test"}
    space = layout.model_dir("emotion_space")
    ids = pd.read_parquet(space / "vector_ids.parquet")["id"]
    assert set(balanced["id"]) <= set(ids)
    vectors = load_file(space / "vectors.safetensors")["vectors"]
    is_train = torch.from_numpy((manifest.loc[ids, "split"] == "train").to_numpy())
    labels = torch.tensor(manifest.loc[ids[is_train.numpy()], "emotion_idx"].to_numpy())
    expected = emotion_gaussians(vectors[is_train], labels)  # the Gaussians stay train-only
    assert torch.equal(load_file(space / "gaussians.safetensors")["mean"], expected["mean"])
    assert json.loads((layout.metrics / "stage2.json").read_text())["steps"] == 2


@pytest.mark.slow
def test_published_sampling_settings_generate(tmp_path, mlflow_store):
    layout = Layout(write_upstream(tmp_path / "repo"))
    published = tiny_generate_params(
        num_images=10, scheduler="UniPCMultistepScheduler", num_inference_steps=50, guidance_scale=7.5, batch_size=40
    )
    run_generate(Params(generate=published), layout)
    index = json.loads((layout.generated / "emogen" / "index.json").read_text())
    assert len(index["images"]) == 10 * len(EMOTIONS)
    assert {k: index["settings"][k] for k in ("scheduler", "num_inference_steps", "guidance_scale")} == {
        "scheduler": "UniPCMultistepScheduler",
        "num_inference_steps": 50,
        "guidance_scale": 7.5,
    }

    # resolution: the switch itself (published 512 is SD 1.5's size; the tiny CPU model at
    # 512 px takes minutes, so 64 px shows the override works).
    shutil.rmtree(layout.generated)
    run_generate(Params(generate=tiny_generate_params(num_images=1, num_inference_steps=1, resolution=64)), layout)
    first = json.loads((layout.generated / "emogen" / "index.json").read_text())["images"][0]["file"]
    assert Image.open(layout.generated / "emogen" / first).size == (64, 64)
