"""Images/s of EmoGen's batched generation vs a per-image loop like the published script.

Both generate the same images (same seeds: 8 emotions × N) from one random pipeline folder:
- ours: the pipeline is loaded once, the mapper sits on the model's device, B images per call;
- published-like: the pipeline is reloaded for every emotion, the mapper runs on the host
  CPU with its output copied to the model's device for every image (on a CPU-only machine
  the copy is simulated by a NumPy round trip), one image per call.
It prints both rates, the ratio, and the largest pixel difference between the two image
sets (they must agree up to batching round-off, or the comparison would be unfair).

    python benchmarks/generate.py                      # tiny pixel-space shape, CPU: seconds
    python benchmarks/generate.py --shape tiny_sd --dtype float16   # tiny latent model (VAE), CPU
    python benchmarks/generate.py --shape sd15         # SD 1.5 shapes (random weights), for a GPU

``--shape tiny`` is about the embedded base model (pixel space: the project's own loop);
``tiny_sd`` adds a tiny VAE, so generation goes through diffusers' StableDiffusionPipeline as
for SD 1.5. ``--shape sd15`` builds random weights from the Stable Diffusion 1.5
configurations (UNet, VAE, CLIP ViT-L/14 text encoder; nothing is downloaded; the tokenizer
is a small BPE and the text encoder's vocabulary is shrunk to it, which changes no compute)
at 512 px.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from emogen.devices import resolve_device
from emogen.emotions import EMOTIONS
from emogen.pipelines.emogen_pipeline import EmoGenPipeline
from emogen.pipelines.jobs import ImageJob, run_jobs
from emogen.pipelines.sampling import EmotionGaussians
from emogen.pipelines.settings import quiet_libraries

WORDS = "a photo of a bag cup room street"


def _tokenizer(folder: Path, max_length: int):
    from emogen.pipelines.tokenizer import build_tokenizer

    return build_tokenizer([WORDS], folder, max_length)


def _special_ids(tokenizer) -> dict[str, int]:
    ids = (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id)
    return dict(zip(("bos_token_id", "eos_token_id", "pad_token_id"), ids))


def build_random_pipeline(shape: str, folder: Path) -> Path:
    """Write a random EmoGen pipeline of ``shape`` to ``folder`` (seeded)."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel, UniPCMultistepScheduler
    from transformers import CLIPTextConfig, CLIPTextModel

    from emogen.pipelines.mapper import EmotionMapper, MapperConfig

    torch.manual_seed(0)
    if shape == "sd15":
        tokenizer = _tokenizer(folder / "_tokenizer", 77)
        width, vector_dim, resolution = 768, 768, 512
        text = CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=768,
            intermediate_size=3072,
            num_attention_heads=12,
            num_hidden_layers=12,
            max_position_embeddings=77,
            hidden_act="quick_gelu",
            projection_dim=768,
            **_special_ids(tokenizer),
        )
        unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768)  # the defaults are SD 1.5's
        vae = AutoencoderKL(
            block_out_channels=(128, 256, 512, 512),
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            latent_channels=4,
            layers_per_block=2,
            sample_size=512,
        )
        mapper = MapperConfig(in_dim=vector_dim, out_dim=width)  # the published 768 → 1024 → 768
    else:  # about the embedded base model: 16 px pixel space (tiny_sd: 16 px latents of a 32 px VAE)
        tokenizer = _tokenizer(folder / "_tokenizer", 16)
        width, vector_dim = 64, 64
        channels, resolution = (4, 32) if shape == "tiny_sd" else (3, 16)
        text = CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=width,
            intermediate_size=128,
            num_attention_heads=4,
            num_hidden_layers=2,
            max_position_embeddings=16,
            **_special_ids(tokenizer),
        )
        unet = UNet2DConditionModel(
            sample_size=16,
            in_channels=channels,
            out_channels=channels,
            block_out_channels=(32, 64, 64),
            layers_per_block=1,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=width,
            attention_head_dim=8,
            norm_num_groups=8,
        )
        vae = None
        if shape == "tiny_sd":
            vae = AutoencoderKL(
                block_out_channels=(16, 32),
                down_block_types=("DownEncoderBlock2D",) * 2,
                up_block_types=("UpDecoderBlock2D",) * 2,
                latent_channels=4,
                layers_per_block=1,
                norm_num_groups=8,
                sample_size=resolution,
            )
        mapper = MapperConfig(in_dim=vector_dim, out_dim=width, hidden_dim=128)
    # SD 1.5's schedule; clip_sample only in pixel space (as the embedded model's)
    schedule = DDPMScheduler(
        beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, steps_offset=1, clip_sample=vae is None
    )
    generator = torch.Generator().manual_seed(0)
    gaussians = EmotionGaussians(
        torch.randn(8, vector_dim, generator=generator), 0.5 * torch.rand(8, vector_dim, generator=generator)
    )
    pipe = EmoGenPipeline(
        tokenizer=tokenizer,
        text_encoder=CLIPTextModel(text),
        unet=unet,
        scheduler=UniPCMultistepScheduler.from_config(schedule.config),
        vae=vae,
        mapper=EmotionMapper(mapper),
        gaussians=gaussians,
        resolution=resolution,
        num_inference_steps=50,
        guidance_scale=7.5,
    )  # the published sampler (profiles/sd15.yaml)
    pipe.save_pretrained(folder / "pipeline")
    return folder / "pipeline"


class HostMapper(nn.Module):
    """The published placement: the mapper on the host CPU, its output copied out per image."""

    def __init__(self, mapper: nn.Module):
        super().__init__()
        # Reported to the pipeline as its component's device: where the output is copied to.
        self.device, self.dtype = mapper.device, mapper.dtype
        self.inner = mapper.float().cpu()

    def forward(self, vectors: torch.Tensor) -> torch.Tensor:
        host = self.inner(vectors.float().cpu()).numpy()
        return torch.from_numpy(np.array(host))  # the pipeline moves it to the model's device


def _load(folder: Path, device: torch.device, dtype: torch.dtype) -> EmoGenPipeline:
    pipe = EmoGenPipeline.from_pretrained(folder, dtype=dtype).to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def ours(folder, jobs, batch_size, steps, device, dtype) -> tuple[list, float]:
    start = time.perf_counter()
    pipe = _load(folder, device, dtype)
    images = [img for _, img in run_jobs(pipe, jobs, batch_size, desc="batched", num_inference_steps=steps)]
    return images, time.perf_counter() - start


def published_loop(folder, jobs, steps, device, dtype) -> tuple[list, float]:
    start = time.perf_counter()
    images, loaded_for = [], None
    for job in jobs:
        if job.emotion != loaded_for:  # the published script rebuilds everything per emotion
            pipe = _load(folder, device, dtype)
            pipe.mapper = HostMapper(pipe.mapper)
            loaded_for = job.emotion
        images += [img for _, img in run_jobs(pipe, [job], 1, desc=f"loop {job.emotion}", num_inference_steps=steps)]
    return images, time.perf_counter() - start


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=("tiny", "tiny_sd", "sd15"), default="tiny")
    parser.add_argument("--images-per-emotion", type=int, default=4)
    parser.add_argument(
        "--emotions",
        type=int,
        default=8,
        choices=range(1, 9),
        metavar="1..8",
        help="how many of the eight emotions (the loop reloads the model for each)",
    )
    parser.add_argument("--steps", type=int, default=None, help="default: 25 (tiny), 50 (sd15, published)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument(
        "--dtype",
        choices=("float32", "float16", "bfloat16"),
        default=None,
        help="default: float16 on CUDA (published), else float32 (float16 also runs on CPU)",
    )
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    dtype = getattr(torch, args.dtype or ("float16" if device.type == "cuda" else "float32"))
    steps = args.steps or (50 if args.shape == "sd15" else 25)
    quiet_libraries()
    emotions = EMOTIONS[: args.emotions]
    jobs = [ImageJob(name, 1000 + i, "{}") for name in emotions for i in range(args.images_per_emotion)]
    with tempfile.TemporaryDirectory() as tmp:
        folder = build_random_pipeline(args.shape, Path(tmp))
        batched, t_ours = ours(folder, jobs, args.batch_size, steps, device, dtype)
        looped, t_loop = published_loop(folder, jobs, steps, device, dtype)
    diff = max(int(np.abs(np.asarray(a, np.int16) - np.asarray(b, np.int16)).max()) for a, b in zip(batched, looped))
    n = len(jobs)
    ratio = t_loop / t_ours
    print(
        f"shape {args.shape}, {n} images ({args.images_per_emotion} per emotion × {len(emotions)}), {steps} steps, "
        f"device {device}, {dtype}, batch {args.batch_size}"
    )
    print(
        "sampled by: "
        + ("the pixel-space loop (no VAE)" if args.shape == "tiny" else "diffusers' StableDiffusionPipeline")
    )
    print(f"batched (ours):      {n / t_ours:8.2f} images/s ({t_ours:.1f} s, model loaded once)")
    print(f"per-image loop:      {n / t_loop:8.2f} images/s ({t_loop:.1f} s, reload per emotion, host mapper)")
    print(f"same images: largest pixel difference {diff} (of 255)")
    print(f"speed-up: {ratio:.2f}x")
    return ratio


if __name__ == "__main__":
    main()
