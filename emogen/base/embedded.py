"""Train the embedded base model and save it in the diffusers/transformers formats.

Order (as SD's parts came to be): tokenizer from the captions → CLIP trained contrastively
→ its text tower frozen as the text encoder → UNet trained on the frozen text states.
Written as ``<out>/pipeline`` (model_index.json, tokenizer/, text_encoder/, unet/,
scheduler/; no vae/: pixel space) and ``<out>/clip`` (CLIPModel + tokenizer), so
:func:`emogen.pipelines.components.load_base` loads it exactly as it loads SD 1.5.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import diffusers
import torch
from diffusers import DDPMScheduler, UNet2DConditionModel
from transformers import CLIPModel, CLIPTextModel, CLIPTokenizer

from emogen.base.data import CaptionedImages
from emogen.base.embedded_clip import clip_config, tokenize, train_clip
from emogen.base.embedded_unet import build_scheduler, build_unet, train_unet
from emogen.config import BaseModelParams
from emogen.jsonio import write_json
from emogen.pipelines.tokenizer import build_tokenizer, caption_words
from emogen.seeding import seed_everything

log = logging.getLogger(__name__)

PIPELINE_DIR, CLIP_DIR = "pipeline", "clip"
TOKENIZER_FILES = ("vocab.json", "merges.txt", "tokenizer_config.json")


@dataclass
class EmbeddedModel:
    tokenizer: CLIPTokenizer
    clip_model: CLIPModel
    text_encoder: CLIPTextModel
    unet: UNet2DConditionModel
    scheduler: DDPMScheduler
    words: list[str]  # caption vocabulary: each must stay one token (checked on load)
    clip_losses: list[float] = field(default_factory=list)
    unet_losses: list[float] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)


def caption_table(captions: list[list[str]]) -> tuple[list[str], list[list[int]]]:
    """Distinct caption strings (the empty prompt last) and, per image, its captions' indices."""
    texts = list(dict.fromkeys(c for caps in captions for c in caps))
    index = {t: i for i, t in enumerate(texts)}
    return texts + [""], [[index[c] for c in caps] for caps in captions]


@torch.no_grad()
def text_states(text_encoder: CLIPTextModel, token_ids: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """The text encoder's last hidden states (N, L, W): what the UNet cross-attends to."""
    return torch.cat(
        [text_encoder(input_ids=token_ids[i : i + batch]).last_hidden_state for i in range(0, len(token_ids), batch)]
    )


def train_embedded(params: BaseModelParams, train: CaptionedImages, out: Path, seed: int) -> EmbeddedModel:
    """Train every part; the tokenizer's files are written at once to ``out/pipeline/tokenizer``."""
    seed_everything(seed)  # weight initialisation
    generator = torch.Generator().manual_seed(seed)  # every training draw
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    all_captions = [c for caps in train.captions for c in caps]
    tokenizer = build_tokenizer(all_captions, out / PIPELINE_DIR / "tokenizer", params.max_length)
    texts, choices = caption_table(train.captions)
    token_ids = tokenize(tokenizer, texts)
    log.info("tokenizer: %d tokens; %d distinct captions of %d images", len(tokenizer), len(texts) - 1, len(train))

    clip_model = CLIPModel(clip_config(params.contrastive, tokenizer, params.resolution))
    seconds["tokenizer"] = time.perf_counter() - start
    clip_losses = train_clip(clip_model, train.images, token_ids, choices, params.contrastive, generator)
    seconds["clip"] = time.perf_counter() - start - sum(seconds.values())

    text_encoder = clip_model.text_model  # frozen from here on, like SD's CLIP text encoder
    states = text_states(text_encoder, token_ids)
    unet = build_unet(params.unet, params.resolution, text_encoder.config.hidden_size)
    scheduler = build_scheduler(params.unet)
    log.info("UNet: %.2f M parameters", sum(p.numel() for p in unet.parameters()) / 1e6)
    unet_losses = train_unet(unet, scheduler, train.images, states, choices, len(texts) - 1, params.unet, generator)
    seconds["unet"] = time.perf_counter() - start - sum(seconds.values())
    return EmbeddedModel(
        tokenizer=tokenizer,
        clip_model=clip_model,
        text_encoder=text_encoder,
        unet=unet,
        scheduler=scheduler,
        words=caption_words(all_captions),
        clip_losses=clip_losses,
        unet_losses=unet_losses,
        seconds=seconds,
    )


def save_embedded(model: EmbeddedModel, out: Path) -> tuple[Path, Path]:
    """Write ``out/pipeline`` and ``out/clip`` (the tokenizer is already in ``pipeline/tokenizer``)."""
    pipeline, clip = out / PIPELINE_DIR, out / CLIP_DIR
    model.text_encoder.save_pretrained(pipeline / "text_encoder")
    model.unet.save_pretrained(pipeline / "unet")
    model.scheduler.save_pretrained(pipeline / "scheduler")
    model_index = {
        # Not a StableDiffusionPipeline (that one needs a VAE): each part loads with
        # from_pretrained(pipeline, subfolder=...), as load_base does.
        "_class_name": "EmbeddedPixelDiffusion",
        "_diffusers_version": diffusers.__version__,
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "scheduler": ["diffusers", "DDPMScheduler"],
        "vae": [None, None],
    }
    write_json(pipeline / "model_index.json", model_index)
    model.clip_model.save_pretrained(clip)
    for name in TOKENIZER_FILES:
        shutil.copy2(pipeline / "tokenizer" / name, clip / name)
    return pipeline, clip
