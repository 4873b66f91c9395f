"""The embedded "CLIP space": a tiny transformers ``CLIPModel`` trained contrastively on the
synthetic images and their captions.

Its text tower becomes the base model's text encoder (frozen before the UNet trains, as SD's
CLIP is), its ``text_projection`` and text features serve the attribute bank of stage 2, and
its image tower measures whether the trained UNet draws the content a caption names.
Images go in as they are everywhere else in the pipeline: RGB in [-1, 1] at the base
resolution (no CLIP mean/std normalisation: this model was trained on exactly that).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm
from transformers import CLIPConfig, CLIPModel, CLIPTextConfig, CLIPTokenizer, CLIPVisionConfig

from emogen.config import EmbeddedClipParams
from emogen.threads import recheck_threads


def clip_config(params: EmbeddedClipParams, tokenizer: CLIPTokenizer, resolution: int) -> CLIPConfig:
    text = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=params.text_width,
        intermediate_size=4 * params.text_width,
        num_hidden_layers=params.text_layers,
        num_attention_heads=params.heads,
        max_position_embeddings=tokenizer.model_max_length,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,  # pooled output = first end-of-text position
        pad_token_id=tokenizer.pad_token_id,
    )
    vision = CLIPVisionConfig(
        hidden_size=params.vision_width,
        intermediate_size=4 * params.vision_width,
        num_hidden_layers=params.vision_layers,
        num_attention_heads=params.heads,
        image_size=resolution,
        patch_size=params.patch_size,
        num_channels=3,
    )
    return CLIPConfig(text_config=text.to_dict(), vision_config=vision.to_dict(), projection_dim=params.projection_dim)


def tokenize(tokenizer: CLIPTokenizer, texts: Sequence[str]) -> torch.Tensor:
    """Token ids padded to the tokenizer's full length, as SD pipelines feed the text encoder."""
    return tokenizer(
        list(texts),
        padding="max_length",
        truncation=True,
        max_length=tokenizer.model_max_length,
        return_tensors="pt",
    ).input_ids


def train_clip(
    model: CLIPModel,
    images: torch.Tensor,
    caption_ids: torch.Tensor,
    choices: Sequence[Sequence[int]],
    params: EmbeddedClipParams,
    generator: torch.Generator,
) -> list[float]:
    """Contrastive training; returns the loss per step.

    ``caption_ids`` (U, L) are the token ids of every distinct caption; ``choices[i]`` the
    indices of image i's captions. Pairs in a batch that drew the same caption string (short
    forms such as "beach" are shared by many images) are all positives: a soft target
    instead of CLIP's one-hot, so the model is not taught that "beach" misdescribes every
    other beach in the batch.
    """
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=params.lr, weight_decay=0.01)
    losses: list[float] = []
    bar = tqdm(range(params.steps), desc="base_model: CLIP", unit="step", mininterval=2)
    for _ in bar:
        recheck_threads()
        idx = torch.randint(len(images), (params.batch_size,), generator=generator)
        picks = torch.tensor(
            [choices[i][torch.randint(len(choices[i]), (1,), generator=generator).item()] for i in idx.tolist()]
        )
        out = model(input_ids=caption_ids[picks], pixel_values=images[idx])
        same = (picks[:, None] == picks[None, :]).float()
        target = same / same.sum(dim=1, keepdim=True)
        loss = 0.5 * (F.cross_entropy(out.logits_per_text, target) + F.cross_entropy(out.logits_per_image, target))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    model.eval().requires_grad_(False)
    return losses


@torch.no_grad()
def text_features(model: CLIPModel, token_ids: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """L2-normalised projected text features (N, projection_dim)."""
    feats = [
        model.get_text_features(input_ids=token_ids[i : i + batch]).pooler_output
        for i in range(0, len(token_ids), batch)
    ]
    return F.normalize(torch.cat(feats), dim=-1)


@torch.no_grad()
def image_features(model: CLIPModel, pixels: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """L2-normalised projected image features (N, projection_dim); pixels in [-1, 1]."""
    feats = [
        model.get_image_features(pixel_values=pixels[i : i + batch]).pooler_output for i in range(0, len(pixels), batch)
    ]
    return F.normalize(torch.cat(feats), dim=-1)
