"""The embedded text-conditional UNet: a small diffusers ``UNet2DConditionModel`` trained in
pixel space on the synthetic images, conditioned on the frozen embedded CLIP text encoder.

Pixel space, no VAE: at 16–24 px a VAE would leave a 2–3 px latent with nothing to draw
on, and training one would eat the stage's whole time budget (docs/design.md "The embedded
world": the UNet alone fills it). ``encode_images``/``decode_latents`` are the identity.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from diffusers import DDPMScheduler, UNet2DConditionModel
from diffusers.optimization import get_cosine_schedule_with_warmup
from diffusers.training_utils import EMAModel, compute_snr
from tqdm.auto import tqdm

from emogen.config import EmbeddedUnetParams
from emogen.threads import recheck_threads


def build_unet(params: EmbeddedUnetParams, resolution: int, cross_attention_dim: int) -> UNet2DConditionModel:
    """Cross-attention only in the ``attention_levels`` lowest resolutions (and the middle)."""
    n = len(params.block_channels)
    first_attn = n - params.attention_levels
    return UNet2DConditionModel(
        sample_size=resolution,
        in_channels=3,
        out_channels=3,
        block_out_channels=tuple(params.block_channels),
        layers_per_block=params.layers_per_block,
        down_block_types=tuple("CrossAttnDownBlock2D" if i >= first_attn else "DownBlock2D" for i in range(n)),
        up_block_types=tuple("CrossAttnUpBlock2D" if i < params.attention_levels else "UpBlock2D" for i in range(n)),
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=params.attention_head_dim,
        norm_num_groups=params.norm_groups,
    )


def build_scheduler(params: EmbeddedUnetParams) -> DDPMScheduler:
    return DDPMScheduler(
        num_train_timesteps=params.num_train_timesteps,
        beta_schedule=params.noise_schedule,
        prediction_type="epsilon",  # what stage 2's L_LDM assumes (docs/method.md)
        clip_sample=True,  # pixel space: images stay in [-1, 1]
        # Samplers built from_config start at the last timestep: with the cosine schedule
        # "leading" spacing would start where some signal is left that was never there.
        timestep_spacing="trailing",
    )


def draw_captions(
    choices: Sequence[Sequence[int]],
    image_idx: torch.Tensor,
    empty: int,
    params: EmbeddedUnetParams,
    generator: torch.Generator,
) -> torch.Tensor:
    """Per sampled image, the caption index to condition on: empty (CFG) with ``uncond_prob``,
    the full caption (``choices[i][0]``) with ``full_caption_prob``, else a shorter form."""
    u = torch.rand(len(image_idx), 3, generator=generator)
    picks = []
    for (drop, full, which), i in zip(u.tolist(), image_idx.tolist()):
        options = choices[i]
        if drop < params.uncond_prob:
            picks.append(empty)
        elif full < params.full_caption_prob or len(options) == 1:
            picks.append(options[0])
        else:
            picks.append(options[1 + int(which * (len(options) - 1))])
    return torch.tensor(picks)


def train_unet(
    unet: UNet2DConditionModel,
    scheduler: DDPMScheduler,
    images: torch.Tensor,
    text_states: torch.Tensor,
    choices: Sequence[Sequence[int]],
    empty: int,
    params: EmbeddedUnetParams,
    generator: torch.Generator,
) -> list[float]:
    """ε-prediction training; the EMA weights end up in ``unet``. Returns the loss per step.

    ``text_states`` (U, L, W) are the frozen text encoder's outputs for every distinct
    caption (computed once: the encoder is frozen), ``choices[i]`` image i's caption
    indices (full first), ``empty`` the index of the empty prompt.
    """
    accelerator = Accelerator(mixed_precision=params.mixed_precision)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=params.lr, weight_decay=0.0)
    lr_schedule = get_cosine_schedule_with_warmup(optimizer, params.warmup_steps, params.steps)
    unet.train()
    unet, optimizer, lr_schedule = accelerator.prepare(unet, optimizer, lr_schedule)
    ema = EMAModel(accelerator.unwrap_model(unet).parameters(), decay=params.ema_decay)
    device = accelerator.device
    images, text_states = images.to(device), text_states.to(device)
    losses: list[float] = []
    bar = tqdm(range(params.steps), desc="base_model: UNet", unit="step", mininterval=2)
    for _ in bar:
        recheck_threads()  # another emogen process started or ended: share the cores anew
        # Every random draw from the one CPU generator: same seed, same weights.
        idx = torch.randint(len(images), (params.batch_size,), generator=generator)
        caps = draw_captions(choices, idx, empty, params, generator)
        x0 = images[idx.to(device)]
        noise = torch.randn(x0.shape, generator=generator).to(device)
        t = torch.randint(scheduler.config.num_train_timesteps, (params.batch_size,), generator=generator).to(device)
        noisy = scheduler.add_noise(x0, noise, t)
        with accelerator.autocast():
            pred = unet(noisy, t, encoder_hidden_states=text_states[caps.to(device)]).sample
        loss = F.mse_loss(pred.float(), noise, reduction="none").mean(dim=(1, 2, 3))
        if params.snr_gamma:
            # Min-SNR-γ weighting (Hang et al. 2023): easy low-noise steps stop dominating.
            snr = compute_snr(scheduler, t)
            loss = loss * snr.clamp(max=params.snr_gamma) / snr
        loss = loss.mean()
        optimizer.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        accelerator.clip_grad_norm_(unet.parameters(), 1.0)
        optimizer.step()
        lr_schedule.step()
        ema.step(accelerator.unwrap_model(unet).parameters())
        losses.append(loss.item())
        bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
    unet = accelerator.unwrap_model(unet)
    ema.copy_to(unet.parameters())
    unet.to("cpu").eval().requires_grad_(False)
    return losses
