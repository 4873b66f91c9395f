"""Samples/s of our stage-2 training step vs a step like the published one, in one run.

Both train the same mapper objective (L = (1 − α)·L_LDM + λ_attr·α·L_attr through the frozen
text encoder and UNet) on the same base model, at the same effective batch:
- ours (``emogen.stages.stage2.Trainer.train_step``, unchanged): the images' VAE latents and
  stage-1 emotion vectors were computed once beforehand (the latents and emotion_space
  stages) and are read per step (latents memory-mapped); ``--batch-size`` samples per UNet call;
- published-like: per sample, the image is encoded by the VAE and passed through the
  stage-1 ResNet-50 (+ its 2048 → vector head) to get the emotion vector, then mapper → text
  encoder → UNet at batch 1, gradients accumulated over ``--batch-size`` samples. The pixel
  images are already decoded in memory (file decoding is not timed: favours the published
  step).
Mixed precision (``--mixed-precision``, default fp16 on CUDA as published) and
``--gradient-checkpointing`` (stage2.gradient_checkpointing) apply to both.

    python benchmarks/stage2.py                    # tiny random VAE/UNet/ResNet, CPU: seconds
    python benchmarks/stage2.py --shape sd15       # SD 1.5 + ResNet-50 shapes (random weights), for a GPU

``--shape sd15`` builds random weights from the SD 1.5 configurations
(``benchmarks/generate.py``'s: UNet, VAE, CLIP ViT-L/14 text encoder, 512 px; nothing is
downloaded) and ResNet-50's (transformers' ``ResNetConfig()`` defaults).
"""

from __future__ import annotations

import argparse
import json
import runpy
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import torch
from accelerate import Accelerator

from emogen.config import parse_params
from emogen.devices import resolve_device
from emogen.layout import Layout
from emogen.pipelines.losses import attribute_logits, attribute_loss, diffusion_target, ldm_loss, total_loss
from emogen.pipelines.mapper import EmotionMapper
from emogen.pipelines.placeholder import encode_with_placeholders, placeholder_hidden_state
from emogen.pipelines.settings import quiet_libraries
from emogen.stages.stage2 import Trainer

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the repository root: tests.helpers
from tests.helpers.tiny_sd import build_tiny_sd, write_base_json, write_stage2_inputs  # noqa: E402

# shape → (resolution, emotion-vector width, mapper hidden width, ResNet config kwargs)
SHAPES = {
    "tiny": (16, 8, 16, {"embedding_size": 8, "hidden_sizes": [16, 32], "depths": [1, 1]}),
    "sd15": (512, 768, 1024, {}),  # ResNetConfig() defaults: ResNet-50
}


def sd15_base(root: Path) -> Path:
    """SD 1.5-shaped random pipeline folder (generate.py's) + a CLIP folder whose text tower is
    its text encoder (as CLIP ViT-L/14's is SD 1.5's), recorded in root/models/base/base.json."""
    from transformers import CLIPConfig, CLIPModel, CLIPTextModel, CLIPTokenizer, CLIPVisionConfig

    build = runpy.run_path(str(REPO / "benchmarks" / "generate.py"), run_name="benchmark")["build_random_pipeline"]
    pipeline = build("sd15", root / "sd15")
    text_encoder = CLIPTextModel.from_pretrained(pipeline, subfolder="text_encoder")
    vision = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_attention_heads=2,
        num_hidden_layers=1,
        image_size=32,
        patch_size=16,
        projection_dim=768,
    )
    clip = CLIPModel(
        CLIPConfig(text_config=text_encoder.config.to_dict(), vision_config=vision.to_dict(), projection_dim=768)
    )
    clip.text_model.load_state_dict(text_encoder.state_dict())
    clip.save_pretrained(root / "clip")
    CLIPTokenizer.from_pretrained(pipeline, subfolder="tokenizer").save_pretrained(root / "clip")
    base_dir = root / "models" / "base"
    base_dir.mkdir(parents=True)
    (base_dir / "base.json").write_text(
        json.dumps({"profile": "pretrained", "pipeline": str(pipeline), "clip": str(root / "clip"), "resolution": 512})
    )
    return base_dir


def build_repo(shape: str, root: Path, device: str, num_images: int) -> Layout:
    """A repo-like folder with everything stage 2 reads, the latents encoded by the latents stage."""
    resolution, vector_dim, _, _ = SHAPES[shape]
    if shape == "tiny":
        write_base_json(build_tiny_sd(root / "tiny", resolution=resolution), root / "models" / "base")
    else:
        sd15_base(root)
    write_stage2_inputs(root, num_images=num_images, vector_dim=vector_dim, image_size=resolution, latents=False)
    from tests.helpers.tiny_sd import write_latents

    write_latents(root, device=device, batch_size=8)
    return Layout(root)


class PublishedStep:
    """One optimiser step the published way: per sample VAE encode + ResNet-50 + UNet, batch 1."""

    def __init__(self, trainer: Trainer, shape: str) -> None:
        from transformers import ResNetConfig, ResNetModel

        self.trainer, acc = trainer, trainer.accelerator
        base, dtype = trainer.base, trainer.base.unet.dtype
        self.resnet = ResNetModel(ResNetConfig(**SHAPES[shape][3])).to(acc.device, dtype).eval().requires_grad_(False)
        width = self.resnet.config.hidden_sizes[-1]
        self.head = torch.nn.Linear(width, trainer.vector_dim).to(acc.device, dtype).requires_grad_(False)
        mapper = EmotionMapper(trainer.mapper_config)
        optimizer = torch.optim.AdamW(mapper.parameters(), lr=trainer.p.learning_rate)
        self.mapper, self.optimizer = acc.prepare(mapper, optimizer)
        generator = torch.Generator().manual_seed(0)
        count = trainer.p.train_batch_size  # images decoded in memory beforehand (not timed)
        self.images = torch.rand(count, 3, base.resolution, base.resolution, generator=generator) * 2 - 1
        self.crop = min(224, base.resolution)
        self.generator = generator

    def micro_step(self, i: int) -> None:
        trainer, acc, base = self.trainer, self.trainer.accelerator, self.trainer.base
        image = self.images[i : i + 1].to(acc.device, base.unet.dtype)
        with torch.no_grad():
            latents = base.encode_images(image)
            vector = self.head(self.resnet(image[..., : self.crop, : self.crop]).pooler_output.flatten(1))
        noise = torch.randn_like(latents)
        timesteps = torch.randint(0, base.noise_scheduler.config.num_train_timesteps, (1,), device=acc.device)
        noisy = base.noise_scheduler.add_noise(latents, noise, timesteps)
        target = diffusion_target(base.noise_scheduler, latents, noise, timesteps)
        vocab_idx = torch.zeros(1, dtype=torch.long, device=acc.device)
        alpha = torch.full((1,), 0.5, device=acc.device)
        with acc.autocast():
            hidden = encode_with_placeholders(
                base.text_encoder, trainer.prompt_ids, {trainer.token_id: self.mapper(vector.float())}
            )
            ldm = ldm_loss(base.unet(noisy, timesteps, encoder_hidden_states=hidden).sample, target)
            logits = attribute_logits(
                placeholder_hidden_state(hidden, trainer.prompt_ids, trainer.token_id),
                base.clip_model.text_projection,
                trainer.bank,
                trainer.p.attr_temperature,
            )
            loss = total_loss(ldm, attribute_loss(logits, vocab_idx), alpha, trainer.p.lambda_attr)
        acc.backward(loss / len(self.images))

    def step(self, _: int) -> None:
        for i in range(len(self.images)):
            self.micro_step(i)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)


@contextmanager
def timed(device: torch.device, out: dict[str, float]):
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    yield
    if device.type == "cuda":
        torch.cuda.synchronize()
        out["peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
    out["seconds"] = time.perf_counter() - start


def rate(step, steps: int, warmup: int, device: torch.device) -> dict[str, float]:
    for s in range(warmup):
        step(s)
    out: dict[str, float] = {}
    with timed(device, out):
        for s in range(warmup, warmup + steps):
            step(s)
    return out


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="tiny")
    parser.add_argument("--steps", type=int, default=None, help="timed optimizer steps (default: 30 tiny, 10 sd15)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed optimizer steps first")
    parser.add_argument(
        "--batch-size", type=int, default=8, help="effective batch: ours per UNet call, published 1 × this accumulation"
    )
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument(
        "--mixed-precision",
        choices=("no", "fp16", "bf16"),
        default=None,
        help="default: fp16 on CUDA (published), else no",
    )
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--num-images", type=int, default=16, help="training images (encoded by the latents stage)")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    precision = args.mixed_precision or ("fp16" if device.type == "cuda" else "no")
    steps = args.steps or (10 if args.shape == "sd15" else 30)
    quiet_libraries()
    _, _, hidden_dim, _ = SHAPES[args.shape]
    params = parse_params(
        {
            "stage2": {
                "train_batch_size": args.batch_size,
                "mixed_precision": precision,
                "mapper": {"hidden_dim": hidden_dim},
                "gradient_checkpointing": args.gradient_checkpointing,
                "work_dir": "work",
            }
        }
    )
    with tempfile.TemporaryDirectory() as tmp:
        layout = build_repo(args.shape, Path(tmp), device.type, args.num_images)
        trainer = Trainer(params, layout, Accelerator(mixed_precision=precision, cpu=device.type == "cpu"))
        published = PublishedStep(trainer, args.shape)
        ours = rate(trainer.train_step, steps, args.warmup, device)
        theirs = rate(published.step, steps, args.warmup, device)
    samples = steps * args.batch_size
    ratio = theirs["seconds"] / ours["seconds"]
    print(
        f"shape {args.shape}, device {device}, mixed precision {precision}, gradient checkpointing "
        f"{args.gradient_checkpointing}, {steps} optimizer steps × {args.batch_size} samples (+{args.warmup} warm-up)"
    )
    for name, r, how in (
        ("ours", ours, f"batch {args.batch_size}, precomputed latents + vectors"),
        ("published-like", theirs, f"batch 1 × {args.batch_size}, VAE + ResNet per sample"),
    ):
        memory = f", peak {r['peak_gib']:.2f} GiB" if "peak_gib" in r else ""
        print(f"{name + ':':16} {samples / r['seconds']:9.2f} samples/s ({r['seconds']:.2f} s; {how}{memory})")
    print(f"speed-up: {ratio:.2f}x")
    return ratio


if __name__ == "__main__":
    main()
