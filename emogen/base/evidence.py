"""Evidence that the embedded base model learned concrete content.

For held-out (test split) captions it generates one image each and asks the embedded CLIP
(image tower vs text tower) three questions, each compared with chance and with the real
held-out images the captions describe:
- caption retrieval: is the image's own caption the most similar among all N candidates?
- scene: is the image's scene the most similar scene word ("beach", "forest", ...)?
- object: is the most similar object word ("balloon", "spider", ...) one of its objects?
Plus a grid: per held-out caption the real image, samples for the full caption and for
its shortest form (one or two words, as EmoGen's placeholder-only prompts are).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from PIL import Image, ImageDraw, ImageFont

from emogen.base.data import CaptionedImages
from emogen.base.embedded_clip import image_features, text_features, tokenize
from emogen.data.synthetic_world import World
from emogen.images import to_pil
from emogen.pipelines.components import BaseComponents
from emogen.pipelines.grid import make_grid
from emogen.pipelines.settings import sampler_components
from emogen.pipelines.text_pipeline import TextConditionedPipeline

GRID_FULL, GRID_SHORT, CELL = 3, 2, 64


@dataclass(frozen=True)
class Evidence:
    metrics: dict[str, float | int]
    grid: Image.Image


def pick_held_out(test: CaptionedImages, count: int, generator: torch.Generator) -> list[int]:
    """Up to ``count`` test images with distinct full captions, in a seeded random order."""
    seen: set[str] = set()
    picked = []
    for i in torch.randperm(len(test), generator=generator).tolist():
        if test.captions[i][0] not in seen:
            seen.add(test.captions[i][0])
            picked.append(i)
    return picked[:count]


def _generate(base: BaseComponents, prompts: Sequence[str], generator: torch.Generator) -> torch.Tensor:
    """Images in [-1, 1] for ``prompts``, sampled (base.json's sampling settings) by the
    same pipeline code as generation."""
    pipe = TextConditionedPipeline(**sampler_components(base))
    pipe.set_progress_bar_config(disable=True)
    return pipe.denoise(pipe.encode_prompts(prompts), generator=generator, output_type="pt")


def _top1(image_feats: torch.Tensor, text_feats: torch.Tensor) -> torch.Tensor:
    return (image_feats @ text_feats.T).argmax(dim=1)


def _zero_shot(
    base: BaseComponents, feats: dict[str, torch.Tensor], names: list[str], truth: list[set[int]]
) -> dict[str, float]:
    """Accuracy of picking a true class word per image set; chance = mean |truth| / |names|."""
    words = text_features(base.clip_model, tokenize(base.clip_tokenizer, names))
    result = {
        kind: sum(int(p) in t for p, t in zip(_top1(f, words).tolist(), truth)) / len(truth)
        for kind, f in feats.items()
    }
    result["chance"] = sum(len(t) for t in truth) / len(truth) / len(names)
    result["n"] = len(truth)
    return result


@torch.no_grad()
def measure(
    base: BaseComponents, test: CaptionedImages, world: World, count: int, grid_rows: int, seed: int
) -> Evidence:
    generator = torch.Generator().manual_seed(seed)
    held = pick_held_out(test, count, generator)
    captions = [test.captions[i][0] for i in held]
    generated = _generate(base, captions, generator)
    real = test.images[held]
    feats = {"generated": image_features(base.clip_model, generated), "real": image_features(base.clip_model, real)}

    metrics: dict[str, float | int] = {"eval_captions": len(held)}
    texts = text_features(base.clip_model, tokenize(base.clip_tokenizer, captions))
    for kind, f in feats.items():
        metrics[f"caption_retrieval_{kind}"] = (_top1(f, texts) == torch.arange(len(held))).float().mean().item()
    metrics["caption_retrieval_chance"] = 1 / len(held)

    scene_names = [a.name for a in world.scenes]
    with_scene = [j for j, i in enumerate(held) if test.scenes[i]]
    scene = _zero_shot(
        base,
        {k: f[with_scene] for k, f in feats.items()},
        [world.attribute(n).noun for n in scene_names],
        [{scene_names.index(test.scenes[held[j]])} for j in with_scene],
    )
    object_names = [a.name for a in world.objects]
    obj = _zero_shot(
        base,
        feats,
        [world.attribute(n).noun for n in object_names],
        [{object_names.index(o) for o in test.objects[i]} for i in held],
    )
    metrics.update({f"scene_{k}": v for k, v in scene.items()})
    metrics.update({f"object_{k}": v for k, v in obj.items()})
    return Evidence(metrics, sample_grid(base, test, held[:grid_rows], generator))


def sample_grid(
    base: BaseComponents, test: CaptionedImages, rows: list[int], generator: torch.Generator
) -> Image.Image:
    """Per row: the real image | GRID_FULL samples of its full caption | GRID_SHORT of its shortest form."""
    full = [test.captions[i][0] for i in rows]
    short = [test.captions[i][-1] for i in rows]
    prompts = [p for f, s in zip(full, short) for p in [f] * GRID_FULL + [s] * GRID_SHORT]
    samples = _generate(base, prompts, generator).view(len(rows), GRID_FULL + GRID_SHORT, *test.images.shape[1:])
    tiles = []
    for r, i in enumerate(rows):
        tiles += to_pil(torch.cat([test.images[i : i + 1], samples[r]]))
    images = make_grid(tiles, columns=1 + GRID_FULL + GRID_SHORT, cell=CELL)
    row_h = (images.height - 2) / len(rows)
    font = ImageFont.load_default()
    panel = Image.new("RGB", (340, images.height + 20), "white")
    draw = ImageDraw.Draw(panel)
    for r, (f, s) in enumerate(zip(full, short)):
        y = 20 + r * row_h + row_h / 2 - 12
        draw.text((4, y), f, fill="black", font=font)
        draw.text((4, y + 13), f"short: {s}", fill="dimgray", font=font)
    canvas = Image.new("RGB", (panel.width + images.width, panel.height), "white")
    canvas.paste(panel, (0, 0))
    canvas.paste(images, (panel.width, 20))
    header = ImageDraw.Draw(canvas)
    step = images.width / (1 + GRID_FULL + GRID_SHORT)
    for c, label in enumerate(["real"] + ["full caption"] * GRID_FULL + ["short form"] * GRID_SHORT):
        header.text((panel.width + c * step + 4, 4), label, fill="black", font=font)
    return canvas
