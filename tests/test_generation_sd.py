"""Latent models are sampled by diffusers' StableDiffusionPipeline (tiny SD with a VAE): seeds,
callbacks, schedulers, bf16 and guidance as diffusers documents them; pixel space keeps its loop."""

import pytest
import torch
from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline

from emogen.pipelines.settings import build_pipeline
from tests.helpers.generation_inputs import tiny_generate_params, write_upstream

STEPS = 3


def _build(root, **overrides):
    models = root / "models"
    pipe = build_pipeline(
        models / "base",
        models / "stage2",
        models / "emotion_space" / "gaussians.safetensors",
        tiny_generate_params(num_inference_steps=STEPS, **overrides),
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def upstream(tmp_path_factory):
    return write_upstream(tmp_path_factory.mktemp("sd"), with_vae=True)


@pytest.fixture(scope="module")
def pipe(upstream):
    return _build(upstream)


def gens(*seeds):
    return [torch.Generator().manual_seed(s) for s in seeds]


def images(pipe, **kwargs):
    return pipe(["awe", "fear"], generator=gens(3, 4), output_type="pt", **kwargs).images


def test_sd_pipeline_is_diffusers_own_without_safety_checker(pipe):
    sd = pipe.stable_diffusion()
    assert type(sd) is StableDiffusionPipeline
    assert sd.safety_checker is None and sd.feature_extractor is None
    assert sd.unet is pipe.unet and sd.vae is pipe.vae and sd.scheduler is pipe.scheduler


def test_seeded_images_are_identical_twice_and_differ_by_seed(pipe):
    first, second = images(pipe), images(pipe)
    assert first.shape == (2, 3, 16, 16) and torch.isfinite(first).all()
    assert torch.equal(first, second)
    other = pipe(["awe", "fear"], generator=gens(5, 6), output_type="pt").images
    assert not torch.allclose(first, other)


def test_callback_runs_every_step_and_can_replace_the_latents(pipe):
    calls = []

    def record(sd, i, t, tensors):
        calls.append((type(sd).__name__, i, tuple(tensors["latents"].shape)))
        return {}

    plain = images(pipe, callback_on_step_end=record)
    assert calls == [("StableDiffusionPipeline", i, (2, 4, 8, 8)) for i in range(STEPS)]

    def zero_at_the_end(sd, i, t, tensors):
        return {"latents": torch.zeros_like(tensors["latents"])} if i == STEPS - 1 else {}

    zeroed = images(pipe, callback_on_step_end=zero_at_the_end)
    assert not torch.allclose(plain, zeroed)
    assert torch.allclose(zeroed[0], zeroed[1])  # both decoded from the same zero latents


def test_another_scheduler_works(upstream, pipe):
    euler = _build(upstream)
    euler.scheduler = EulerDiscreteScheduler.from_config(euler.scheduler.config)
    out = images(euler)
    assert torch.isfinite(out).all() and not torch.allclose(out, images(pipe))


def test_guidance_against_the_empty_prompt_is_what_diffusers_encodes_itself(pipe):
    cond = pipe.encode_prompts(["a photo of a cup", "a red cat"])
    ours = pipe.denoise(cond, generator=gens(1, 2), guidance_scale=4.0, output_type="pt")
    theirs = (
        pipe.stable_diffusion()(  # negative_prompt_embeds=None: diffusers encodes "" itself
            prompt_embeds=cond,
            generator=gens(1, 2),
            guidance_scale=4.0,
            num_inference_steps=STEPS,
            height=16,
            width=16,
            output_type="pt",
        ).images
        * 2
        - 1
    )
    assert torch.allclose(ours, theirs.clamp(-1, 1), atol=1e-6)
    unguided = pipe.denoise(cond, generator=gens(1, 2), guidance_scale=1.0, output_type="pt")
    assert not torch.allclose(ours, unguided)


def test_bfloat16_generates_close_to_float32(upstream, pipe):
    half = _build(upstream, dtype="bfloat16")
    assert half.unet.dtype == torch.bfloat16 and half.vae.dtype == torch.bfloat16
    out = images(half)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    reference = images(pipe)
    assert (out - reference).abs().mean() < 0.1 * reference.abs().mean()


def test_latents_argument_is_the_initial_noise(pipe):
    latents = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(9))
    a = pipe(["awe", "fear"], generator=gens(3, 4), latents=latents, output_type="pt").images
    b = pipe(["awe", "fear"], generator=gens(3, 4), latents=latents.clone(), output_type="pt").images
    assert torch.equal(a, b) and not torch.allclose(a, images(pipe))
    with pytest.raises(ValueError, match=r"latents must have shape \(2, 4, 8, 8\)"):
        pipe(["awe", "fear"], generator=gens(3, 4), latents=torch.zeros(2, 4, 4, 4))


def test_pixel_space_keeps_its_loop_with_the_same_callback(tmp_path):
    pixel = _build(write_upstream(tmp_path, with_vae=False))
    assert pixel.vae is None
    seen = []
    out = pixel(
        ["awe"],
        generator=gens(0),
        output_type="pt",
        callback_on_step_end=lambda p, i, t, tensors: seen.append((p is pixel, i)) or {},
    )
    assert seen == [(True, i) for i in range(STEPS)] and out.images.shape == (1, 3, 16, 16)
    with pytest.raises(ValueError, match="only 'latents'"):
        pixel(
            ["awe"],
            generator=gens(0),
            callback_on_step_end=lambda *a: {},
            callback_on_step_end_tensor_inputs=["prompt_embeds"],
        )
