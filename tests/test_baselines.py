"""The Table 1 baselines end to end on a tiny random SD-shaped model: stage 2's budget and
data, EmoGen's seeds and generation settings, the shared output layout, MLflow records."""

import csv
import json

import mlflow
import pytest
import torch
from safetensors.torch import load_file

from emogen.baselines.train import stage2_budget
from emogen.config import Stage2Params, parse_params
from emogen.emotions import EMOTIONS
from emogen.errors import DataError, UserError
from emogen.layout import Layout
from emogen.pipelines.components import load_base
from emogen.pipelines.prompt_pipeline import PromptPipeline
from emogen.pipelines.settings import emotion_jobs, scheduler_from_name, transfer_jobs
from emogen.pipelines.writer import read_index
from emogen.seeding import stage_seed
from emogen.stages import baseline as baselines
from tests.helpers.generation_inputs import TINY_GENERATE
from tests.helpers.tiny_sd import build_tiny_sd, write_base_json, write_stage2_inputs

# Stage 2: batch 2 × accumulation 2 = 4 per optimizer step, 3 steps.
STAGE2 = {"train_batch_size": 2, "gradient_accumulation_steps": 2, "max_train_steps": 3, "work_dir": "work"}
BASELINES = {"textual_inversion": {"init": "mean"}, "dreambooth": {"num_class_images": 2}, "log_every": 1}


def _params(**baselines):
    return parse_params({"stage2": STAGE2, "generate": TINY_GENERATE, "baseline": {**BASELINES, **baselines}})


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory):
    return build_tiny_sd(tmp_path_factory.mktemp("sd") / "pixel", with_vae=False)


@pytest.fixture
def layout(tmp_path, tiny_sd, mlflow_store):
    write_base_json(tiny_sd, tmp_path / "models" / "base")
    write_stage2_inputs(tmp_path)
    return Layout(tmp_path)


def test_budget_is_stage2s_steps_times_effective_batch():
    one_epoch = stage2_budget(Stage2Params(train_batch_size=8), 3744)
    assert (one_epoch.steps, one_epoch.batch_size, one_epoch.samples_seen) == (468, 8, 3744)
    capped = stage2_budget(Stage2Params(train_batch_size=2, gradient_accumulation_steps=4, max_train_steps=5), 100)
    assert (capped.steps, capped.batch_size, capped.samples_seen) == (5, 8, 40)
    assert stage2_budget(Stage2Params(train_batch_size=8), 10).steps == 2  # a partial last batch counts


@pytest.mark.slow
def test_every_baseline_trains_on_stage2s_budget_and_generates_like_emogen(layout, tiny_sd):
    params = _params()
    base = load_base(layout.model_dir("base"))
    first_seed = stage_seed(params.seed, "generate")
    expected = emotion_jobs(first_seed, TINY_GENERATE["num_images"], "{}")
    for method in baselines.METHODS:
        metrics = baselines.run(params, layout, method)

        index = read_index(layout.generated / method)
        assert index["method"] == method
        assert [(i["emotion"], i["seed"], i["template"], i["mode"]) for i in index["images"]] == [
            (j.emotion, j.seed, j.template, method) for j in expected
        ]
        assert index["settings"]["scheduler"] == "UniPCMultistepScheduler"
        assert index["settings"]["num_inference_steps"] == 3 and index["settings"]["guidance_scale"] == 2.0
        assert all((layout.generated / method / i["file"]).is_file() for i in index["images"])
        # transfer images: EmoGen's transfer seeds and templates, the method's own emotion prompt in them
        transfer = read_index(layout.generated / f"{method}_transfer")
        expected_transfer = transfer_jobs(
            first_seed + len(expected), tuple(params.generate.transfer_templates), params.generate.transfer_images
        )
        assert [(i["emotion"], i["seed"], i["template"], i["mode"]) for i in transfer["images"]] == [
            (j.emotion, j.seed, j.template, method) for j in expected_transfer
        ] and expected_transfer

        saved = json.loads((layout.metrics / "baselines" / f"{method}.json").read_text())
        assert saved["prompts"] == metrics["prompts"] == index["settings"]["emotion_prompts"]
        with (layout.metrics / "baselines" / f"{method}_loss.csv").open() as fh:
            rows = list(csv.DictReader(fh))
        run = mlflow.search_runs(
            experiment_names=["emogen"], filter_string=f"tags.stage = 'baseline@{method}'", output_format="list"
        )
        assert len(run) == 1 and run[0].data.params["method"] == method
        pipe_dir = layout.model_dir("baselines") / method
        unet = load_file(str(pipe_dir / "unet" / "diffusion_pytorch_model.safetensors"))
        unet_changed = any(not torch.equal(unet[k], v) for k, v in base.unet.state_dict().items())
        if method == "prompt":
            assert saved["prompts"] == {e: e for e in EMOTIONS}
            assert saved["budget"]["steps"] == 0 and rows == [] and not unet_changed
            continue
        # Stage 2's budget: 3 optimizer steps × (2 per device × 2 accumulated) = 12 samples.
        assert saved["budget"] | {"matched_to": "stage2"} == {
            "steps": 3,
            "batch_size": 4,
            "num_samples": 24,
            "samples_seen": 12,
            "epochs": 0.5,
            "matched_to": "stage2",
        }
        assert [int(r["step"]) for r in rows] == [1, 2, 3]
        # The loss curve written is the one logged (MLflow keeps each metric's last value).
        assert run[0].data.metrics["l_ldm"] == pytest.approx(float(rows[-1]["l_ldm"]))
        table = load_file(str(pipe_dir / "text_encoder" / "model.safetensors"))
        table = next(v for k, v in table.items() if k.endswith("token_embedding.weight"))
        old = base.text_encoder.get_input_embeddings().weight
        # The base vocabulary's rows never change; 8 rows are added, one per emotion.
        assert table.shape[0] == old.shape[0] + 8 and torch.equal(table[: old.shape[0]], old)
        if method == "textual_inversion":
            assert saved["prompts"] == {e: f"<{e}>" for e in EMOTIONS}
            assert not unet_changed  # only the 8 embeddings train
            mean = old.mean(dim=0)
            assert all(not torch.allclose(row, mean) for row in table[old.shape[0] :])  # they moved
        else:
            assert saved["prompts"] == {e: f"<v_{e}> {e}" for e in EMOTIONS}
            assert unet_changed and "l_prior" in rows[0]
            assert len({tuple(r.tolist()) for r in table[old.shape[0] :]}) == 8  # distinct identifiers


def test_prompt_pipeline_same_seed_same_image_and_clear_errors(tiny_sd, tmp_path):
    write_base_json(tiny_sd, tmp_path / "base")
    base = load_base(tmp_path / "base")
    pipe = PromptPipeline(
        base.tokenizer,
        base.text_encoder,
        base.unet,
        scheduler_from_name("DDIMScheduler", base.noise_scheduler.config),
        resolution=base.resolution,
        num_inference_steps=2,
        guidance_scale=2.0,
    )
    pipe.set_progress_bar_config(disable=True)

    def images(emotions, seeds):
        gens = [torch.Generator().manual_seed(s) for s in seeds]
        return pipe(emotions, generator=gens, output_type="pt").images

    batch = images(["awe", "fear"], [1, 2])
    assert torch.allclose(batch[1], images(["fear"], [2])[0], atol=1e-5)  # batching changes nothing
    assert not torch.allclose(batch[0], images(["fear"], [1])[0])  # the prompt matters
    with pytest.raises(UserError, match="fusion"):
        pipe(["awe"], fuse_with=["fear"])
    with pytest.raises(UserError, match="joy"):
        pipe(["joy"])
    with pytest.raises(UserError, match="eight emotions"):
        PromptPipeline(base.tokenizer, base.text_encoder, base.unet, base.noise_scheduler, emotion_prompts={"awe": "x"})


def test_textual_inversion_from_the_emotion_word_needs_it_to_be_one_token(layout):
    # tiny_sd's vocabulary has no emotion words (the embedded one has them: emotion_caption_fraction).
    with pytest.raises(DataError, match="emotion_caption_fraction"):
        baselines.run(_params(textual_inversion={"init": "emotion_word"}), layout, "textual_inversion")
