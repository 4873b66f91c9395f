"""Stage 2 end to end on a tiny random SD-shaped model through the real-profile code path:
base.json (profile "pretrained", resolved local folders) → load_base → train → save → load."""

import csv
import json

import mlflow
import pytest
import torch

from emogen.config import parse_params
from emogen.errors import DataError
from emogen.layout import Layout
from emogen.pipelines.components import load_base
from emogen.pipelines.mapper import EmotionMapper
from emogen.pipelines.sampling import EmotionGaussians
from emogen.seeding import derived_seed
from emogen.stage2.data import read_samples
from emogen.stages import stage2 as stage2_train
from tests.helpers.tiny_sd import build_tiny_sd, write_base_json, write_stage2_inputs

STAGE2 = {
    "train_batch_size": 2,
    "gradient_accumulation_steps": 2,
    "mapper": {"hidden_dim": 16},
    "checkpointing_steps": 2,
    "sample_every": 2,
    "num_sample_images": 1,
    "sample_inference_steps": 2,
    "lambda_attr": 1.0,
    "work_dir": "work",
}


def _params(**overrides):
    return parse_params({"stage2": {**STAGE2, **overrides}})


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return {"vae": build_tiny_sd(root / "vae"), "pixel": build_tiny_sd(root / "pixel", with_vae=False)}


def _repo(tmp_path, sd):
    write_base_json(sd, tmp_path / "models" / "base")
    write_stage2_inputs(tmp_path)
    return Layout(tmp_path)


def test_stage2_trains_saves_and_logs_on_a_tiny_sd_model(tmp_path, mlflow_store, tiny_models):
    layout = _repo(tmp_path, tiny_models["vae"])
    metrics = stage2_train.run(_params(max_train_steps=3), layout)

    out = layout.model_dir("stage2")
    config = json.loads((out / "train_config.json").read_text())
    assert config["placeholder_token"] == "<emotion>" and config["prompt"] == "<emotion>"
    assert config["base_json"]["profile"] == "pretrained"
    assert (config["vector_dim"], config["text_width"]) == (8, tiny_models["vae"].text_width)
    mapper = EmotionMapper.from_pretrained(tmp_path / config["mapper"])
    assert mapper(torch.zeros(2, 8)).shape == (2, tiny_models["vae"].text_width)
    assert sorted(p.name for p in (out / "samples").iterdir()) == ["step_000002.png", "step_000003.png"]

    rows = list(csv.DictReader((layout.metrics / "stage2_loss.csv").open()))
    assert [int(r["step"]) for r in rows] == [1, 2, 3]
    saved = json.loads((layout.metrics / "stage2.json").read_text())
    assert saved["steps"] == 3
    # Expected values at the fixed seed (tiny SD-shaped model, 3 steps, CPU).
    assert {k: saved[k] for k in ("l_ldm", "attr_accuracy")} == pytest.approx(
        {"l_ldm": 1.08997518, "attr_accuracy": 1 / 3}, rel=1e-4
    ), json.dumps(saved)
    assert saved.keys() == metrics.keys() and saved["l_attr"] == pytest.approx(metrics["l_attr"])

    run = mlflow.search_runs(experiment_names=["emogen"], output_format="list")[0]
    assert run.data.tags["stage"] == "stage2"
    assert run.data.params["stage2.placeholder_token"] == "<emotion>"
    assert "final_attr_accuracy" in run.data.metrics and "l_ldm" in run.data.metrics
    assert not list((tmp_path / "work").glob("run-*")), "checkpoints are removed after a finished run"


def test_only_the_mapper_receives_gradients_through_the_placeholder(tmp_path, tiny_models):
    from accelerate import Accelerator

    layout = _repo(tmp_path, tiny_models["vae"])
    trainer = stage2_train.Trainer(_params(), layout, Accelerator(cpu=True))
    outputs = []
    trainer.mapper.register_forward_hook(lambda module, args, out: outputs.append(out) or out.retain_grad())
    step = trainer.losses(step=0, micro=0)
    # L_attr alone must reach the mapper output through the placeholder's hidden state.
    (grad_attr,) = torch.autograd.grad(step.attr.sum(), outputs[0], retain_graph=True)
    assert grad_attr.abs().sum() > 0
    step.loss.backward()
    assert outputs[0].grad.abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in trainer.mapper.parameters())
    base = trainer.base
    for module in (base.text_encoder, base.unet, base.vae, base.clip_model):
        assert all(not p.requires_grad and p.grad is None for p in module.parameters())
    base.unet.conv_in.weight.requires_grad_(True)
    with pytest.raises(RuntimeError, match="unet must be frozen"):
        stage2_train.assert_only_mapper_trains(base, trainer.mapper)


def test_resume_after_interruption_matches_an_uninterrupted_run(tmp_path, mlflow_store, tiny_models, monkeypatch):
    layout = _repo(tmp_path, tiny_models["pixel"])
    params = _params(max_train_steps=4, sample_every=0)
    stage2_train.run(params, layout)
    uninterrupted = EmotionMapper.from_pretrained(layout.model_dir("stage2") / "mapper").state_dict()
    curve = (layout.metrics / "stage2_loss.csv").read_text()

    real_step = stage2_train.Trainer.train_step

    def interrupted(self, step):
        if step == 3:
            raise KeyboardInterrupt  # killed after the step-2 checkpoint, mid-way through
        return real_step(self, step)

    monkeypatch.setattr(stage2_train.Trainer, "train_step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        stage2_train.run(params, layout)
    assert len(list((tmp_path / "work").glob("run-*/checkpoint-*"))) == 1
    monkeypatch.setattr(stage2_train.Trainer, "train_step", real_step)

    metrics = stage2_train.run(params, layout)
    assert metrics["resumed_from_step"] == 2
    resumed = EmotionMapper.from_pretrained(layout.model_dir("stage2") / "mapper").state_dict()
    assert all(torch.equal(resumed[k], uninterrupted[k]) for k in uninterrupted)
    assert (layout.metrics / "stage2_loss.csv").read_text() == curve


def test_previews_sample_the_full_covariance_as_generation_does(tmp_path, tiny_models):
    from accelerate import Accelerator

    layout = _repo(tmp_path, tiny_models["vae"])
    path = layout.model_dir("emotion_space") / "gaussians.safetensors"
    diagonal = EmotionGaussians.load(path)
    correlated = torch.stack([torch.diag(s**2) + 0.5 for s in diagonal.std])  # positive definite
    EmotionGaussians(diagonal.mean, diagonal.std, correlated).save(path)
    trainer = stage2_train.Trainer(_params(), layout, Accelerator(cpu=True))
    mapper = trainer.accelerator.unwrap_model(trainer.mapper)
    seen = []
    mapper.register_forward_hook(lambda module, args, out: seen.append(args[0].clone()))
    grid = trainer.preview(5, tmp_path / "samples")
    assert mapper.training, "the preview hands the mapper back in training mode"
    # One image per emotion (num_sample_images 1), image i seeded first + i, as generate seeds its jobs.
    first = derived_seed(trainer.seed, 2)
    gaussians = EmotionGaussians.load(path)
    expected = torch.stack([gaussians.sample(e, torch.Generator().manual_seed(first + e)) for e in range(8)])
    assert torch.equal(seen[0], expected)
    assert not torch.allclose(
        expected, torch.stack([diagonal.sample(e, torch.Generator().manual_seed(first + e)) for e in range(8)])
    )
    assert grid.read_bytes() == trainer.preview(5, tmp_path / "again").read_bytes()


def test_misaligned_sample_alpha_is_a_clear_error(tmp_path, tiny_models):
    import pandas as pd

    layout = _repo(tmp_path, tiny_models["pixel"])
    inputs = stage2_train.stage_inputs(_params(), layout)
    table = pd.read_parquet(inputs.sample_alpha)
    table.iloc[::-1].to_parquet(inputs.sample_alpha, index=False)
    with pytest.raises(DataError, match="row 0 has id"):
        read_samples(inputs, vocabulary_size=4)


def test_tiny_base_loads_through_load_base(tiny_models, tmp_path):
    base = load_base(write_base_json(tiny_models["pixel"], tmp_path / "base").parent)
    assert base.vae is None and base.latent_channels == 3 and base.latent_size == 16


@pytest.mark.slow
def test_attribute_accuracy_rises_with_training(tmp_path, mlflow_store, tiny_models):
    """A tiny seeded run learns L_attr: the placeholder's attribute accuracy over the last
    steps clearly beats the first steps' (about chance, 1/4): a bug that cuts the gradient
    from L_attr to the mapper fails this."""
    layout = _repo(tmp_path, tiny_models["pixel"])
    stage2_train.run(
        _params(
            max_train_steps=40,
            train_batch_size=8,
            gradient_accumulation_steps=1,
            learning_rate=1e-2,
            sample_every=0,
            checkpointing_steps=0,
        ),
        layout,
    )
    accuracy = [float(r["attr_acc"]) for r in csv.DictReader((layout.metrics / "stage2_loss.csv").open())]
    first, last = sum(accuracy[:5]) / 5, sum(accuracy[-5:]) / 5
    print(f"stage2 tiny attribute accuracy: first 5 steps {first:.2f}, last 5 steps {last:.2f}")
    assert last >= first + 0.3 and last >= 0.6


def test_gradient_checkpointing_changes_memory_not_the_gradients(tmp_path, tiny_models):
    from accelerate import Accelerator

    layout = _repo(tmp_path, tiny_models["vae"])
    grads = []
    for checkpointing in (False, True):
        trainer = stage2_train.Trainer(_params(gradient_checkpointing=checkpointing), layout, Accelerator(cpu=True))
        assert trainer.base.unet.is_gradient_checkpointing == checkpointing
        trainer.losses(step=0, micro=0).loss.backward()
        grads.append([p.grad.clone() for p in trainer.mapper.parameters()])
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(*grads))
