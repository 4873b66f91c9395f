"""``load_base``: the base text-to-image model as every stage uses it, whatever the profile.

``models/base/base.json`` says where the diffusers pipeline folder and the CLIP folder are
(the embedded ones under ``models/base/``, or SD 1.5 / CLIP ViT-L/14 in the HF cache), so
stage 2, generation and the baselines load the embedded model exactly as they load SD 1.5.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
from transformers import CLIPModel, CLIPTextModel, CLIPTokenizer

from emogen.errors import MissingModelError, UserError
from emogen.jsonio import read_json
from emogen.pipelines.tokenizer import load_tokenizer

BASE_JSON = "base.json"


@dataclass
class BaseComponents:
    tokenizer: CLIPTokenizer
    text_encoder: CLIPTextModel
    unet: UNet2DConditionModel
    noise_scheduler: DDPMScheduler  # the training noise schedule
    vae: AutoencoderKL | None  # None: pixel space (the embedded model)
    clip_model: CLIPModel  # text_projection and the attribute bank's text features
    clip_tokenizer: CLIPTokenizer
    resolution: int  # image side in pixels
    profile: str = "embedded"
    # Sampling defaults the base model was checked at (guidance_scale, num_inference_steps).
    sampling: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)

    @property
    def latent_size(self) -> int:
        """Side of the UNet's input: the resolution, divided by the VAE's downsampling."""
        if self.vae is None:
            return self.resolution
        return self.resolution // 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def latent_channels(self) -> int:
        return self.unet.config.in_channels

    def encode_images(
        self, pixels: torch.Tensor, generator: torch.Generator | None = None, noise: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Images in [-1, 1] (N, 3, H, W) → what the UNet denoises (latents × scaling factor).
        The VAE posterior sample uses ``noise`` (standard normal, the latents' shape) when
        given, so a caller can seed it per image; else a draw from ``generator``."""
        if self.vae is None:
            return pixels
        pixels = pixels.to(self.vae.device, self.vae.dtype)
        posterior = self.vae.encode(pixels).latent_dist
        if noise is None:
            latents = posterior.sample(generator)
        else:
            latents = posterior.mean + posterior.std * noise.to(posterior.mean.device, posterior.mean.dtype)
        return latents * self.vae.config.scaling_factor

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`encode_images`: → images in [-1, 1] (not clamped)."""
        if self.vae is None:
            return latents
        latents = latents.to(self.vae.device, self.vae.dtype)
        return self.vae.decode(latents / self.vae.config.scaling_factor).sample


def read_base_json(base_dir: str | Path) -> dict[str, Any]:
    path = Path(base_dir) / BASE_JSON
    info = read_json(
        path,
        "no base model here; run `emogen stage base_model` (or `dvc repro base_model`)",
        missing_error=MissingModelError,
    )
    missing = [k for k in ("profile", "pipeline", "clip", "resolution") if k not in info]
    if missing:
        raise UserError(f"{path}: missing key(s) {', '.join(missing)}")
    return info


def _locate(recorded: str, base_dir: Path) -> Path:
    """base.json paths are absolute, or relative to the root the stage wrote under
    (``<root>/models/base``: two levels up), which is the repo root under DVC."""
    path = Path(recorded)
    if path.is_absolute():
        return path
    return base_dir.resolve().parent.parent / path


def load_base(
    base_dir: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> BaseComponents:
    """Load every part of the base model recorded in ``base_dir/base.json``, frozen, eval mode."""
    base_dir = Path(base_dir)
    info = read_base_json(base_dir)
    pipeline, clip = _locate(info["pipeline"], base_dir), _locate(info["clip"], base_dir)
    for name, folder in (("pipeline", pipeline), ("clip", clip)):
        if not folder.is_dir():
            raise MissingModelError(
                f"{base_dir / BASE_JSON}: {name} folder {folder} does not exist; re-run `emogen stage base_model`"
            )
    model_index = json.loads((pipeline / "model_index.json").read_text())
    words = info.get("words", [])  # embedded: every caption word must stay one token

    text_encoder = CLIPTextModel.from_pretrained(pipeline, subfolder="text_encoder", dtype=dtype, local_files_only=True)
    tokenizer = load_tokenizer(pipeline / "tokenizer", text_encoder.config.vocab_size, words)
    unet = UNet2DConditionModel.from_pretrained(pipeline, subfolder="unet", torch_dtype=dtype, local_files_only=True)
    scheduler = DDPMScheduler.from_pretrained(pipeline, subfolder="scheduler", local_files_only=True)
    vae = None
    if (model_index.get("vae") or [None])[0] is not None:
        vae = AutoencoderKL.from_pretrained(pipeline, subfolder="vae", torch_dtype=dtype, local_files_only=True)
    clip_model = CLIPModel.from_pretrained(clip, dtype=dtype, local_files_only=True)
    clip_tokenizer = load_tokenizer(clip, clip_model.config.text_config.vocab_size, words)

    for module in (text_encoder, unet, vae, clip_model):
        if module is not None:
            module.to(device).eval().requires_grad_(False)
    return BaseComponents(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        unet=unet,
        noise_scheduler=scheduler,
        vae=vae,
        clip_model=clip_model,
        clip_tokenizer=clip_tokenizer,
        resolution=int(info["resolution"]),
        profile=info["profile"],
        sampling=dict(info.get("sampling", {})),
        sources=dict(info.get("sources", {})),
    )
