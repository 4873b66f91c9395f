"""The stage-2 losses (docs/method.md "Stage 2"): L_LDM, L_attr and their α-weighted sum.

Everything is per sample so a batch > 1 is the average of the published per-sample
(batch 1) objective: L_i = (1 − α_i)·L_LDM,i + λ_attr·α_i·L_attr,i.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def diffusion_target(scheduler, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
    """What the UNet predicts under the base model's schedule: ε (SD 1.5) or v."""
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        return noise
    if kind == "v_prediction":
        return scheduler.get_velocity(latents, noise, timesteps)
    raise ValueError(f"unsupported scheduler prediction_type {kind!r} (expected epsilon or v_prediction)")


def noisy_batch(
    latents: torch.Tensor, scheduler, generator: torch.Generator, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(noisy latents, timesteps, target) for clean ``latents``: noise (drawn in float32, then cast
    to the latents' dtype) and t uniform over the schedule, both from ``generator`` on the CPU, so
    every device and precision draws the same values. Stage 2 and every baseline train with it."""
    noise = torch.randn(latents.shape, generator=generator, dtype=torch.float32).to(latents.dtype)
    timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (latents.shape[0],), generator=generator)
    latents, noise, timesteps = latents.to(device), noise.to(device), timesteps.to(device)
    return (
        scheduler.add_noise(latents, noise, timesteps),
        timesteps,
        diffusion_target(scheduler, latents, noise, timesteps),
    )


def ldm_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample MSE, ``(B,)``, computed in float32."""
    return F.mse_loss(prediction.float(), target.float(), reduction="none").flatten(1).mean(dim=1)


def bank_text(attribute: str) -> str:
    """Vocabulary entry → the text CLIP reads (``amusement_park`` → ``amusement park``)."""
    return " ".join(attribute.replace("_", " ").replace("/", " ").split())


@torch.no_grad()
def attribute_bank(clip_model, clip_tokenizer, attributes: Sequence[str], batch_size: int = 256) -> torch.Tensor:
    """L2-normalised CLIP text features of every vocabulary attribute, ``(V, P)``; computed once."""
    device = clip_model.text_projection.weight.device
    features = []
    for start in range(0, len(attributes), batch_size):
        texts = [bank_text(a) for a in attributes[start : start + batch_size]]
        tokens = clip_tokenizer(texts, padding=True, truncation=True, return_tensors="pt").to(device)
        out = clip_model.get_text_features(input_ids=tokens.input_ids, attention_mask=tokens.attention_mask)
        features.append(out.pooler_output.float())
    return F.normalize(torch.cat(features), dim=-1)


def attribute_logits(
    placeholder_hidden: torch.Tensor, text_projection: nn.Module, bank: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Cosine similarity of the projected placeholder state with every bank entry / T, ``(B, V)``."""
    projected = text_projection(placeholder_hidden.to(text_projection.weight.dtype)).float()
    return F.normalize(projected, dim=-1) @ bank.T / temperature


def attribute_loss(logits: torch.Tensor, vocab_idx: torch.Tensor) -> torch.Tensor:
    """Per-sample cross-entropy against the sample's attribute, ``(B,)``; 0 where ``vocab_idx`` is -1."""
    known = vocab_idx >= 0
    loss = F.cross_entropy(logits, vocab_idx.clamp(min=0), reduction="none")
    return torch.where(known, loss, torch.zeros_like(loss))


def total_loss(ldm: torch.Tensor, attr: torch.Tensor, alpha: torch.Tensor, lambda_attr: float) -> torch.Tensor:
    """Mean over the batch of (1 − α)·L_LDM + λ_attr·α·L_attr."""
    alpha = alpha.to(ldm.dtype)
    return ((1 - alpha) * ldm + lambda_attr * alpha * attr).mean()
