"""The pretrained profile: offline resolution, recorded revisions, clear messages when missing."""

import json
import shutil
import time
from pathlib import Path

import pytest
import torch
from huggingface_hub import constants

from emogen.cli import main
from emogen.errors import MissingModelError
from emogen.pipelines.components import load_base
from emogen.pipelines.resolve import PIPELINE_FILES, resolve_model
from tests.helpers.tiny_sd import build_tiny_sd


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory):
    return build_tiny_sd(tmp_path_factory.mktemp("tiny_sd"), with_vae=True, resolution=16)


def test_missing_hub_model_is_a_fast_clear_error():
    start = time.perf_counter()
    with pytest.raises(MissingModelError) as info:
        resolve_model("runwayml/stable-diffusion-v1-5", PIPELINE_FILES, "base_model.pretrained")
    assert time.perf_counter() - start < 5
    message = str(info.value)
    for needle in (
        "base_model.pretrained",
        "'runwayml/stable-diffusion-v1-5'",
        constants.HF_HUB_CACHE,
        "HF_HUB_CACHE",
        "hf download runwayml/stable-diffusion-v1-5",
        "local folder",
    ):
        assert needle in message


def test_cli_prints_the_message_without_a_traceback(tmp_path, mlflow_store, capsys):
    params = tmp_path / "params.yaml"
    params.write_text("base_model:\n  profile: pretrained\n  pretrained: nobody/no-such-model\n")
    previous = tmp_path / "models" / "base" / "base.json"  # the cwd is tmp_path
    previous.parent.mkdir(parents=True)
    previous.write_text("{}")
    assert main(["stage", "base_model", "--params", str(params)]) == 2
    err = capsys.readouterr().err
    assert "error: base_model.pretrained: model 'nobody/no-such-model' is neither a local folder" in err
    assert "Traceback" not in err
    assert previous.read_text() == "{}"  # a failed resolve leaves the last base model alone


def test_local_folder_records_a_content_hash(tiny_sd, tmp_path):
    first = resolve_model(str(tiny_sd.pipeline), PIPELINE_FILES, "base_model.pretrained")
    assert first.path == tiny_sd.pipeline
    assert first.revision.startswith("sha256:") and len(first.revision) == len("sha256:") + 64
    assert resolve_model(str(tiny_sd.pipeline), PIPELINE_FILES, "p").revision == first.revision
    copy = shutil.copytree(tiny_sd.pipeline, tmp_path / "copy")
    config = copy / "unet" / "config.json"
    config.write_text(config.read_text() + " ")
    assert resolve_model(str(copy), PIPELINE_FILES, "p").revision != first.revision
    config.unlink()
    with pytest.raises(MissingModelError, match=r"lacks unet/config.json"):
        resolve_model(str(copy), PIPELINE_FILES, "base_model.pretrained")


@pytest.fixture
def cached_hub_model(tiny_sd):
    """tiny_sd's pipeline as the HF cache holds a download of hub id ``acme/tiny-sd``."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = Path(constants.HF_HUB_CACHE) / "models--acme--tiny-sd"
    shutil.copytree(tiny_sd.pipeline, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    yield "acme/tiny-sd", commit
    shutil.rmtree(repo)


def test_pretrained_stage_records_revisions_and_loads(tiny_sd, cached_hub_model, tmp_path, mlflow_store):
    hub_id, commit = cached_hub_model
    params = tmp_path / "params.yaml"
    params.write_text(f"base_model:\n  profile: pretrained\n  pretrained: {hub_id}\n  clip: {tiny_sd.clip}\n")
    assert main(["stage", "base_model", "--params", str(params)]) == 0

    info = json.loads((tmp_path / "models" / "base" / "base.json").read_text())
    assert info["profile"] == "pretrained"
    assert info["sources"][hub_id] == commit
    assert info["sources"][str(tiny_sd.clip)].startswith("sha256:")
    assert Path(info["pipeline"]).name == commit and Path(info["pipeline"]).is_absolute()
    assert info["resolution"] == 16  # latent 8 × the VAE's 2× downsampling
    assert json.loads((tmp_path / "metrics" / "base_model.json").read_text())["profile"] == "pretrained"

    base = load_base(tmp_path / "models" / "base")
    assert base.vae is not None and base.latent_size == 8 and base.latent_channels == 4
    pixels = torch.rand(2, 3, 16, 16) * 2 - 1
    latents = base.encode_images(pixels, generator=torch.Generator().manual_seed(0))
    assert latents.shape == (2, 4, 8, 8)
    assert base.decode_latents(latents).shape == pixels.shape
    assert not any(p.requires_grad for p in base.unet.parameters())
