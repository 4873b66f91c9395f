"""The embedded base model at a tiny size: trains, saves, loads back identically, reports evidence."""

import csv
import json

import mlflow
import pytest
import torch

from emogen.base.data import load_split
from emogen.base.embedded import save_embedded, train_embedded
from emogen.config import BaseModelParams, parse_params
from emogen.layout import Layout
from emogen.pipelines.components import load_base
from emogen.stages.base_model import run

# base_model's evidence at the fixed seed (8 held-out captions; 3 with a scene; 8 with objects).
EXPECTED_EVIDENCE = {
    "caption_retrieval_generated": 1 / 8,
    "caption_retrieval_real": 1 / 8,
    "caption_retrieval_chance": 1 / 8,
    "scene_generated": 1 / 3,
    "scene_real": 1 / 3,
    "scene_chance": 1 / 9,
    "object_generated": 1 / 8,
    "object_real": 2 / 8,
    "object_chance": 7 / 48,
}
TINY = {
    "resolution": 8,
    "contrastive": {
        "text_width": 16,
        "text_layers": 1,
        "vision_width": 16,
        "vision_layers": 1,
        "heads": 2,
        "patch_size": 4,
        "projection_dim": 16,
        "steps": 4,
        "batch_size": 16,
    },
    "unet": {
        "block_channels": [16, 32],
        "attention_levels": 1,
        "norm_groups": 8,
        "steps": 6,
        "batch_size": 8,
        "warmup_steps": 1,
        "snr_gamma": 5.0,
    },
    "sampling": {"num_inference_steps": 3},
    "eval_captions": 8,
    "grid_rows": 2,
}


@pytest.fixture
def layout(tiny_emoset, tmp_path):
    """A fresh root whose data/ is the shared tiny EmoSet (read-only) and whose outputs are ours."""
    (tmp_path / "data").symlink_to(tiny_emoset.layout.root / "data", target_is_directory=True)
    return Layout(tmp_path)


def test_stage_trains_saves_and_reports(layout, mlflow_store):
    params = parse_params({"base_model": TINY})
    run(params, layout)

    info = json.loads((layout.model_dir("base") / "base.json").read_text())
    assert info["profile"] == "embedded"
    assert (info["pipeline"], info["clip"]) == ("models/base/pipeline", "models/base/clip")
    assert info["resolution"] == 8 and info["sampling"]["guidance_scale"] == 3.0
    assert set(info["sources"]) == {"captions.parquet", "manifest.parquet"}
    assert not (layout.model_dir("base") / "pipeline" / "vae").exists()

    metrics = json.loads((layout.metrics / "base_model.json").read_text())
    # Expected values at the fixed seed (params.yaml's seed, TINY above): a change to the data, the
    # training or the evidence code moves them.
    got = {
        f"{key}_{kind}": metrics[f"{key}_{kind}"]
        for key in ("caption_retrieval", "scene", "object")
        for kind in ("generated", "real", "chance")
    }
    assert got == pytest.approx(EXPECTED_EVIDENCE, abs=1e-6), json.dumps(got)
    assert metrics["caption_retrieval_chance"] == pytest.approx(1 / metrics["eval_captions"])
    assert (layout.metrics / "base_model_samples.png").stat().st_size > 0
    with open(layout.metrics / "base_model_unet_loss.csv") as fh:
        assert len(list(csv.DictReader(fh))) == TINY["unet"]["steps"]

    client = mlflow.tracking.MlflowClient()
    [run_info] = client.search_runs(client.get_experiment_by_name("emogen").experiment_id)
    assert run_info.data.tags["stage"] == "base_model"
    assert len(client.get_metric_history(run_info.info.run_id, "unet_loss")) == TINY["unet"]["steps"]
    assert "base_model_samples.png" in {a.path for a in client.list_artifacts(run_info.info.run_id)}

    base = load_base(layout.model_dir("base"))
    assert base.vae is None and base.latent_size == 8 and base.latent_channels == 3
    assert len(base.tokenizer) == base.text_encoder.config.vocab_size
    assert base.unet.config.cross_attention_dim == base.text_encoder.config.hidden_size == 16
    pixels = torch.rand(1, 3, 8, 8) * 2 - 1
    assert torch.equal(base.decode_latents(base.encode_images(pixels)), pixels)


def test_same_seed_same_weights_and_load_base_gives_identical_outputs(layout, tmp_path):
    params = BaseModelParams.model_validate(TINY)
    train = load_split(layout.manifest, layout.synthetic, "train", params.resolution)
    first = train_embedded(params, train, tmp_path / "a", seed=7)
    second = train_embedded(params, train, tmp_path / "b", seed=7)
    for a, b in ((first.unet, second.unet), (first.clip_model, second.clip_model)):
        for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
            assert torch.equal(x, y), name

    out = tmp_path / "models" / "base"
    (out / "pipeline").mkdir(parents=True)
    (tmp_path / "a" / "pipeline" / "tokenizer").rename(out / "pipeline" / "tokenizer")
    save_embedded(first, out)
    (out / "base.json").write_text(
        json.dumps(
            {
                "profile": "embedded",
                "pipeline": "models/base/pipeline",
                "clip": "models/base/clip",
                "resolution": 8,
                "words": first.words,
            }
        )
    )
    base = load_base(out)
    ids = base.tokenizer(["a red balloon", ""], padding="max_length", return_tensors="pt").input_ids
    assert ids.shape[1] == params.max_length
    states = base.text_encoder(input_ids=ids).last_hidden_state
    assert torch.equal(states, first.text_encoder(input_ids=ids).last_hidden_state)
    x, t = torch.randn(2, 3, 8, 8), torch.tensor([10, 900])
    assert torch.equal(
        base.unet(x, t, encoder_hidden_states=states).sample, first.unet(x, t, encoder_hidden_states=states).sample
    )
    assert torch.equal(
        base.clip_model.get_image_features(pixel_values=x).pooler_output,
        first.clip_model.get_image_features(pixel_values=x).pooler_output,
    )
    assert base.clip_model.text_projection.weight.shape == (16, 16)
