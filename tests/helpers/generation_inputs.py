"""Test helper: the generate stage's inputs without any training (tiny random models).

``write_upstream(root)`` writes, under ``root`` (a Layout root): ``models/base/base.json``
(pointing at a tiny random SD-shaped model from ``tiny_sd``, with its closed word list),
``models/stage2/`` (``train_config.json`` + a random mapper saved with
``EmotionMapper.save_pretrained``) and ``models/emotion_space/gaussians.safetensors``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from emogen.config import GenerateParams
from emogen.pipelines.mapper import EmotionMapper, MapperConfig
from emogen.pipelines.sampling import EmotionGaussians
from tests.helpers.tiny_sd import WORDS, build_tiny_sd, write_base_json

VECTOR_DIM = 12
# Tiny and fast: 16 px pixel space, 3 UniPC steps (the published scheduler).
TINY_GENERATE = dict(
    num_images=2,
    batch_size=8,
    num_inference_steps=3,
    guidance_scale=2.0,
    device="cpu",
    scheduler="UniPCMultistepScheduler",
    transfer_templates=("{} bag", "{} cup"),
    transfer_images=2,
    grid_cell=16,
)


def tiny_generate_params(**overrides) -> GenerateParams:
    return GenerateParams(**{**TINY_GENERATE, **overrides})


def write_upstream(root: Path, with_vae: bool = False, seed: int = 0) -> Path:
    root = Path(root)
    sd = build_tiny_sd(root / "tiny", with_vae=with_vae, seed=seed)
    base_json = write_base_json(sd, root / "models" / "base")
    info = json.loads(base_json.read_text())
    # A closed vocabulary, as the embedded model's ("tree" is not one token in tiny_sd's BPE).
    info.update(profile="embedded", words=[w for w in WORDS if w != "tree"])
    base_json.write_text(json.dumps(info))

    stage2 = root / "models" / "stage2"
    torch.manual_seed(seed)
    EmotionMapper(MapperConfig(in_dim=VECTOR_DIM, out_dim=sd.text_width, hidden_dim=16)).save_pretrained(
        stage2 / "mapper"
    )
    (stage2 / "train_config.json").write_text(json.dumps({"placeholder_token": "<emotion>", "prompt_template": "{}"}))

    space = root / "models" / "emotion_space"
    space.mkdir(parents=True)
    generator = torch.Generator().manual_seed(seed)
    EmotionGaussians(
        mean=3 * torch.randn(8, VECTOR_DIM, generator=generator),
        std=0.1 + torch.rand(8, VECTOR_DIM, generator=generator),
    ).save(space / "gaussians.safetensors")
    return root


def saved_pipeline(root: Path, **generate_overrides) -> Path:
    """A saved EmoGen pipeline folder under ``root``, built from random upstream outputs by the
    generate stage's own builder."""
    from emogen.pipelines.settings import build_pipeline

    models = write_upstream(root) / "models"
    pipe = build_pipeline(
        models / "base",
        models / "stage2",
        models / "emotion_space" / "gaussians.safetensors",
        tiny_generate_params(**generate_overrides),
    )
    pipe.save_pretrained(models / "emogen")
    return models / "emogen"
