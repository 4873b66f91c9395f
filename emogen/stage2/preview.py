"""Preview grids during stage-2 training: a minimal DDIM sampler with the current mapper.

Not the EmoGen pipeline (that is ``emogen.generation``): just enough to watch the mapper
learn — one row per emotion, e ~ N(mean, std²) of that emotion's Gaussian, classifier-free
guidance against the empty prompt.
"""

from __future__ import annotations

import torch
from diffusers import DDIMScheduler

from emogen.stage2.placeholder import encode_with_placeholders


@torch.no_grad()
def preview_images(
    base,
    mapper: torch.nn.Module,
    prompt_ids: torch.Tensor,
    token_id: int,
    vectors: torch.Tensor,
    num_inference_steps: int,
    guidance_scale: float,
    generator: torch.Generator,
) -> torch.Tensor:
    """Images in [-1, 1], ``(N, 3, H, W)``, for the ``(N, D)`` emotion ``vectors``."""
    device = base.unet.device
    dtype = base.unet.dtype
    count = vectors.shape[0]
    ids = prompt_ids.to(device).expand(count, -1)
    cond = encode_with_placeholders(base.text_encoder, ids, {token_id: mapper(vectors.to(device))})
    empty = base.tokenizer([""] * count, padding="max_length", max_length=ids.shape[1], truncation=True,
                           return_tensors="pt").input_ids.to(device)
    uncond = base.text_encoder(input_ids=empty).last_hidden_state
    context = torch.cat([uncond, cond]).to(dtype)

    scheduler = DDIMScheduler.from_config(base.noise_scheduler.config)
    scheduler.set_timesteps(num_inference_steps, device=device)
    shape = (count, base.latent_channels, base.latent_size, base.latent_size)
    latents = torch.randn(shape, generator=generator).to(device, dtype) * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        model_input = scheduler.scale_model_input(torch.cat([latents, latents]), t)
        uncond_out, cond_out = base.unet(model_input, t, encoder_hidden_states=context).sample.chunk(2)
        guided = uncond_out + guidance_scale * (cond_out - uncond_out)
        latents = scheduler.step(guided, t, latents).prev_sample
    return base.decode_latents(latents).float().clamp(-1, 1).cpu()
