"""The embedded profile's evaluators: stand-ins for the published ones, trained here.

Trained on a fresh, independent render of the synthetic world (``world.json`` of the
dataset, the ``evaluators`` stage seed): no generated image, no weight of stage 1 or the
mapper, and not even the images the generators saw.

- **content net** — the independent judge: a small CNN trained from scratch here, sharing no
  weight, training step or code path with any generator part (base model, stage 1, mapper).
  Heads: emotion (softmax over the 8 emotions, trained on the render's labels, which are
  drawn from the world's label rule as EmoSet's are noisy: **the headline Emo-A**), scene
  (softmax over the world's scenes, trained on images that have one), object (softmax; an
  image with two objects has target ½ on each) and object presence (one sigmoid per object:
  "does the image show a box", for the transfer table). Its pooled features are the FID / KID
  features (Inception's role) and the Sem-D features (CLIP's role in the published Sem-D);
  its per-block activations, unit-normalised over channels, give an LPIPS-style distance
  with equal layer weights (AlexNet's role, no learned weights).
- **CLIP probe** (``emo_a_clip``, the second Emo-A column): a linear layer on the embedded
  CLIP's image features (a copy of ``models/base/clip``), as the published probe is linear
  on CLIP ViT-L/14 features. That CLIP's text tower is every method's text encoder and the
  space of stage 2's attribute loss: this judge shares the generators' CLIP.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import CLIPModel

from emogen.config import EmbeddedEvaluatorParams
from emogen.data.render import render
from emogen.data.schema import attribute_key
from emogen.data.synthetic_world import World, emotion_posterior, sample_specs
from emogen.emotions import NUM_EMOTIONS
from emogen.errors import UserError
from emogen.evaluation.evaluators import Evaluators, unit_images

log = logging.getLogger(__name__)

CLIP_FOLDER = "clip"
PROBE_FILE = "emotion_probe.safetensors"
CONTENT_FILE = "content_net.safetensors"


class ContentNet(nn.Module):
    """conv blocks (two 3×3 convs each, 2× average pooling between blocks) → pooled features → four heads."""

    def __init__(self, channels: Sequence[int], num_scenes: int, num_objects: int) -> None:
        super().__init__()
        blocks, width = [], 3
        for c in channels:
            blocks.append(
                nn.Sequential(
                    nn.Conv2d(width, c, 3, padding=1),
                    nn.GroupNorm(min(8, c), c),
                    nn.ReLU(),
                    nn.Conv2d(c, c, 3, padding=1),
                    nn.GroupNorm(min(8, c), c),
                    nn.ReLU(),
                )
            )
            width = c
        self.blocks = nn.ModuleList(blocks)
        self.scene = nn.Linear(width, num_scenes)
        self.object = nn.Linear(width, num_objects)
        self.presence = nn.Linear(width, num_objects)
        self.emotion = nn.Linear(width, NUM_EMOTIONS)

    def activations(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Each block's output; ``x`` in [-1, 1], (N, 3, H, W)."""
        out = []
        for i, block in enumerate(self.blocks):
            x = block(F.avg_pool2d(x, 2) if i else x)
            out.append(x)
        return out

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Pooled features, scene, object, presence and emotion logits."""
        features = self.activations(x)[-1].mean((2, 3))
        return features, self.scene(features), self.object(features), self.presence(features), self.emotion(features)


def to_pixels(images: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) in [0, 1] → (N, 3, H, W) in [-1, 1]."""
    return torch.from_numpy(images * 2 - 1).permute(0, 3, 1, 2).contiguous()


@torch.no_grad()
def clip_features(clip: CLIPModel, pixels: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """L2-normalised projected image features (the probe's input); the embedded CLIP takes [-1, 1] pixels."""
    from emogen.base.embedded_clip import image_features

    return image_features(clip, pixels, batch)


@dataclass
class RenderedSet:
    pixels: torch.Tensor  # (N, 3, r, r) in [-1, 1] at the evaluation resolution
    emotions: torch.Tensor  # (N,) labels drawn by the world's label rule
    posteriors: np.ndarray  # (N, 8) the true label distributions
    scenes: torch.Tensor  # (N,) scene index, -1 without a scene
    objects: torch.Tensor  # (N, objects) 1 where the object is shown


def render_set(
    world: World, num_images: int, image_size: int, resolution: int, rng: np.random.Generator
) -> RenderedSet:
    """A fresh render at the dataset's ``image_size``, resized to ``resolution`` like every evaluated image."""
    specs = sample_specs(world, num_images, rng)
    scene_idx = {s.name: i for i, s in enumerate(world.scenes)}
    object_idx = {o.name: i for i, o in enumerate(world.objects)}
    size = (resolution, resolution)
    images = np.stack(
        [
            np.asarray(Image.fromarray(render(s, world, image_size)).resize(size, Image.BICUBIC), np.float32) / 255.0
            for s in specs
        ]
    )
    objects = torch.zeros(len(specs), len(world.objects))
    for i, s in enumerate(specs):
        objects[i, [object_idx[name] for name in s.objects]] = 1.0
    return RenderedSet(
        pixels=to_pixels(images),
        emotions=torch.tensor([s.emotion_idx for s in specs]),
        posteriors=np.stack([emotion_posterior(s.scene, s.objects, world) for s in specs]),
        scenes=torch.tensor([scene_idx[s.scene] if s.scene else -1 for s in specs]),
        objects=objects,
    )


def train_probe(features: torch.Tensor, labels: torch.Tensor, l2: float, steps: int) -> nn.Linear:
    """Multinomial logistic regression (L-BFGS, L2 penalty on the weights): the linear probe."""
    probe = nn.Linear(features.shape[1], NUM_EMOTIONS)
    nn.init.zeros_(probe.weight)
    nn.init.zeros_(probe.bias)
    optimizer = torch.optim.LBFGS(probe.parameters(), lr=1.0, max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(probe(features), labels) + l2 * probe.weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return probe.eval().requires_grad_(False)


def train_content_net(data: RenderedSet, params: EmbeddedEvaluatorParams, num_scenes: int, seed: int) -> ContentNet:
    torch.manual_seed(seed)
    net = ContentNet(params.channels, num_scenes, data.objects.shape[1])
    optimizer = torch.optim.AdamW(net.parameters(), lr=params.lr, weight_decay=1e-4)
    steps = params.epochs * -(-len(data.pixels) // params.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, params.lr, total_steps=steps, pct_start=0.1)
    soft_objects = data.objects / data.objects.sum(1, keepdim=True)
    generator = torch.Generator().manual_seed(seed)
    net.train()
    for _ in range(params.epochs):
        for batch in torch.randperm(len(data.pixels), generator=generator).split(params.batch_size):
            x = data.pixels[batch]
            flip = torch.rand(len(batch), generator=generator) < 0.5  # the world is left-right symmetric
            x = torch.where(flip[:, None, None, None], x.flip(3), x)
            _, scene_logits, object_logits, presence_logits, emotion_logits = net(x)
            has_scene = data.scenes[batch] >= 0
            loss = F.cross_entropy(object_logits, soft_objects[batch]) + F.cross_entropy(
                emotion_logits, data.emotions[batch]
            )
            loss = loss + F.binary_cross_entropy_with_logits(presence_logits, data.objects[batch])
            if has_scene.any():
                loss = loss + F.cross_entropy(scene_logits[has_scene], data.scenes[batch][has_scene])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    return net.eval().requires_grad_(False)


def emotion_report(probs: np.ndarray, data: RenderedSet, judge: str) -> dict[str, Any]:
    """An emotion classifier's held-out accuracy beside Bayes (the render's true posteriors) and chance."""
    predicted = probs.argmax(1)
    labels = data.emotions.numpy()
    return {
        "judge": judge,
        "held_out_accuracy": round(float((predicted == labels).mean()), 4),
        # label noise averaged out: the mean true probability of the predicted emotion
        "held_out_expected_accuracy": round(float(data.posteriors[np.arange(len(labels)), predicted].mean()), 4),
        "bayes_accuracy": round(float(data.posteriors.max(1).mean()), 4),
        "chance_accuracy": round(1 / NUM_EMOTIONS, 4),
        "held_out_images": len(labels),
    }


def held_out_report(
    probe_probs: np.ndarray,
    net: ContentNet,
    data: RenderedSet,
    real_probs: dict[str, np.ndarray] | None,
    real_labels: np.ndarray | None,
) -> dict[str, Any]:
    """Each evaluator's held-out accuracy beside what is attainable (Bayes) and chance.
    ``real_probs``: {"emotion_judge": ..., "emotion_probe": ...} on the dataset's test split."""
    _, scene_logits, object_logits, presence_logits, emotion_logits = net(data.pixels)
    has_scene = data.scenes >= 0
    scene_pred = scene_logits.argmax(1)
    object_pred = object_logits.argmax(1)
    presence = (presence_logits > 0).float()
    report = {
        "emotion_judge": emotion_report(
            emotion_logits.softmax(1).numpy(), data, "content net emotion head (independent: the headline emo_a)"
        ),
        "emotion_probe": emotion_report(
            probe_probs, data, "linear probe on the embedded CLIP (emo_a_clip: shares the generators' CLIP)"
        ),
        "scene_classifier": {
            "held_out_accuracy": round(float((scene_pred[has_scene] == data.scenes[has_scene]).float().mean()), 4),
            "bayes_accuracy": 1.0,  # the scene is drawn, not sampled: a perfect classifier gets all
            "chance_accuracy": round(1 / scene_logits.shape[1], 4),
        },
        "object_classifier": {
            # top-1 is right when it is one of the image's objects
            "held_out_accuracy": round(float(data.objects[torch.arange(len(object_pred)), object_pred].mean()), 4),
            "presence_accuracy": round(float((presence == data.objects).float().mean()), 4),
            "bayes_accuracy": 1.0,
            "chance_accuracy": round(float(data.objects.sum(1).mean() / data.objects.shape[1]), 4),
        },
    }
    for key, probs in (real_probs or {}).items():
        report[key]["real_test_accuracy"] = round(float((probs.argmax(1) == real_labels).mean()), 4)
    return report


def save_embedded(out: Path, clip: CLIPModel, probe: nn.Linear, net: ContentNet) -> None:
    clip.save_pretrained(out / CLIP_FOLDER)  # a copy: the evaluators stand alone
    save_file({k: v.contiguous() for k, v in probe.state_dict().items()}, out / PROBE_FILE)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, out / CONTENT_FILE)


def fit_embedded(
    world: World, image_size: int, resolution: int, params: EmbeddedEvaluatorParams, clip: CLIPModel, seed: int
) -> tuple[nn.Linear, ContentNet, RenderedSet, np.ndarray]:
    """Render, split, train both evaluators; returns them, the held-out set and its probe probabilities."""
    rng = np.random.default_rng(seed)
    train = render_set(world, params.num_images, image_size, resolution, rng)
    held = render_set(world, params.held_out_images, image_size, resolution, rng)
    probe = train_probe(clip_features(clip, train.pixels), train.emotions, params.probe_l2, params.probe_steps)
    net = train_content_net(train, params, len(world.scenes), seed)
    with torch.no_grad():
        held_probs = probe(clip_features(clip, held.pixels)).softmax(1).numpy()
    return probe, net, held, held_probs


class EmbeddedEvaluators(Evaluators):
    """The stand-ins trained by :func:`fit_embedded` (see the module docstring)."""

    def __init__(self, folder: Path, info: dict[str, Any], device: torch.device) -> None:
        super().__init__(info, device)
        self.clip = CLIPModel.from_pretrained(folder / CLIP_FOLDER, local_files_only=True).to(device).eval()
        self.probe = nn.Linear(self.clip.config.projection_dim, NUM_EMOTIONS)
        self.probe.load_state_dict(load_file(folder / PROBE_FILE))
        self.net = ContentNet(info["content_net"]["channels"], len(self.scene_names), len(self.object_names))
        self.net.load_state_dict(load_file(folder / CONTENT_FILE))
        for module in (self.probe, self.net):
            module.to(device).eval().requires_grad_(False)
        self.batch_size = int(info.get("batch_size", 256))

    def _pixels(self, images: Sequence[Image.Image], scale: float = 1.0) -> torch.Tensor:
        return to_pixels(unit_images(self.resize(images)) * scale).to(self.device)

    @torch.no_grad()
    def _net(self, images: Sequence[Image.Image]) -> tuple[torch.Tensor, ...]:
        outs = [self.net(x) for x in self._pixels(images).split(self.batch_size)]
        return tuple(torch.cat(parts) for parts in zip(*outs))

    def emotion_probs(self, images: Sequence[Image.Image]) -> np.ndarray:
        """The independent judge: the content net's emotion head."""
        return self._net(images)[4].softmax(1).cpu().numpy()

    @torch.no_grad()
    def clip_emotion_probs(self, images: Sequence[Image.Image]) -> np.ndarray:
        """The CLIP probe (shares the generators' CLIP)."""
        return self.probe(clip_features(self.clip, self._pixels(images), self.batch_size)).softmax(1).cpu().numpy()

    def scene_probs(self, images: Sequence[Image.Image]) -> np.ndarray:
        return self._net(images)[1].softmax(1).cpu().numpy()

    def object_probs(self, images: Sequence[Image.Image]) -> np.ndarray:
        return self._net(images)[2].softmax(1).cpu().numpy()

    def finds(self, images: Sequence[Image.Image], word: str) -> np.ndarray:
        key = attribute_key(word)
        objects = [attribute_key(name) for name in self.object_names]
        scenes = [attribute_key(name) for name in self.scene_names]
        _, scene_logits, _, presence_logits, _ = self._net(images)
        if key in objects:
            return (presence_logits[:, objects.index(key)] > 0).cpu().numpy()
        if key in scenes:
            return (scene_logits.argmax(1) == scenes.index(key)).cpu().numpy()
        raise UserError(
            f"transfer word {word!r} is neither an object nor a scene the evaluators know "
            f"(objects: {', '.join(self.object_names)}; scenes: {', '.join(self.scene_names)})"
        )

    @torch.no_grad()
    def semd_features(self, images: Sequence[Image.Image], published_quirks: bool = False) -> np.ndarray:
        """The content net's pooled features (independent of the generators' CLIP). Quirk: the
        published code rescaled [0, 1] images by 1/255 once more: near-black inputs."""
        pixels = self._pixels(images, 1 / 255 if published_quirks else 1.0)
        return torch.cat([self.net(x)[0] for x in pixels.split(self.batch_size)]).cpu().numpy()

    def fid_features(self, images: Sequence[Image.Image]) -> np.ndarray:
        return self._net(images)[0].cpu().numpy()

    @torch.no_grad()
    def lpips(
        self, first: Sequence[Image.Image], second: Sequence[Image.Image], published_quirks: bool = False
    ) -> np.ndarray:
        """Mean over blocks of the spatially averaged squared difference of channel-normalised
        activations (LPIPS with equal weights). Quirk: [0, 1] inputs instead of [-1, 1]."""
        out = []
        for a, b in zip(self._pixels(first).split(self.batch_size), self._pixels(second).split(self.batch_size)):
            if published_quirks:
                a, b = (a + 1) / 2, (b + 1) / 2
            layers = zip(self.net.activations(a), self.net.activations(b))
            dist = [(F.normalize(fa, dim=1) - F.normalize(fb, dim=1)).pow(2).sum(1).mean((1, 2)) for fa, fb in layers]
            out.append(torch.stack(dist).mean(0))
        return torch.cat(out).cpu().numpy()
