"""``EmoGenPipeline``: emotion names in, images out (docs/method.md "Generation").

A :class:`diffusers.DiffusionPipeline` subclass: the tokenizer (with the placeholder
tokens), text encoder, UNet, scheduler, optional VAE and the mapper (a diffusers
``ModelMixin``) are ordinary registered components, so ``save_pretrained`` writes a
standard diffusers folder, ``.to(device)``, progress-bar settings and scheduler swaps
(``pipe.scheduler = UniPCMultistepScheduler.from_config(pipe.scheduler.config)``) work as
for any diffusers pipeline. The emotion Gaussians are not a module, so they are saved beside
the components (``gaussians.safetensors``) and handed back by our ``from_pretrained``. The
text encoder's states (the mapper's vector at the placeholder) are sampled by
:meth:`TextConditionedPipeline.denoise`: diffusers' StableDiffusionPipeline for latent models,
the one pixel-space loop for the embedded model; classifier-free guidance with the empty
prompt as the unconditional input.

Sampling, per image: e ~ N(mean, diag(std²)) (or the full covariance) drawn with that
image's generator, moved by its ``intensity`` towards or past the neutral centre
(:mod:`emogen.pipelines.sampling`) → mapper → the placeholder's input embedding → text encoder → UNet.
Each image's vector and initial noise come from its own generator, so an image is the same
whether it is generated alone or in a batch (up to float rounding).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from diffusers.utils import BaseOutput
from PIL import Image

from emogen.emotions import emotion_index
from emogen.errors import MissingModelError, UserError
from emogen.pipelines.mapper import EmotionMapper
from emogen.pipelines.placeholder import add_placeholder_tokens, encode_with_placeholders
from emogen.pipelines.sampling import GAUSSIANS_FILE, EmotionGaussians
from emogen.pipelines.text_pipeline import StepCallback, TextConditionedPipeline
from emogen.pipelines.tokenizer import load_tokenizer

# Pipelines saved before emogen/pipelines existed (and generators registered then) name the
# mapper's module emogen.stage2.mapper in model_index.json; diffusers loads a component only from
# a module already imported under that name, so the old name points at the mapper's module.
sys.modules.setdefault("emogen.stage2.mapper", sys.modules[EmotionMapper.__module__])

# The second token exists only for two-token fusion; it is added when the pipeline is built.
DEFAULT_PLACEHOLDERS = ("<emotion>", "<emotion_2>")
Fusion = Literal["tokens", "interpolate"]


@dataclass
class EmoGenPipelineOutput(BaseOutput):
    images: list[Image.Image] | torch.Tensor  # PIL images, or (B, 3, H, W) in [-1, 1] for "pt"
    emotion_vectors: torch.Tensor | None  # (B, slots, D): each image's vector(s); None: prompts only


class EmoGenPipeline(TextConditionedPipeline):
    """Emotion name(s) → images; see the module docstring. ``pipe("awe", generator=g).images``."""

    def __init__(
        self,
        tokenizer,
        text_encoder,
        unet,
        scheduler,
        mapper: EmotionMapper,
        vae=None,
        gaussians: EmotionGaussians | None = None,
        placeholder_tokens: list[str] | None = None,
        known_words: list[str] | None = None,
        resolution: int = 512,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
    ):
        """``known_words``, ``resolution`` and the sampling defaults: see
        :class:`TextConditionedPipeline`."""
        placeholder_tokens = list(placeholder_tokens or DEFAULT_PLACEHOLDERS)
        if gaussians is None:
            raise ValueError("EmoGenPipeline needs the emotion gaussians")
        if len(placeholder_tokens) != 2:
            raise ValueError(f"placeholder_tokens must be two tokens, got {list(placeholder_tokens)}")
        if mapper.config.in_dim != gaussians.dim:
            raise UserError(
                f"mapper takes {mapper.config.in_dim}-d emotion vectors, the gaussians are {gaussians.dim}-d"
            )
        if mapper.config.out_dim != text_encoder.config.hidden_size:
            raise UserError(
                f"mapper outputs {mapper.config.out_dim}-d embeddings, the text encoder takes "
                f"{text_encoder.config.hidden_size}-d"
            )
        super().__init__(
            tokenizer, text_encoder, unet, scheduler, vae, known_words, resolution, num_inference_steps, guidance_scale
        )
        self.placeholder_ids = add_placeholder_tokens(tokenizer, text_encoder, placeholder_tokens)
        self.register_modules(mapper=mapper.eval())
        self.register_to_config(placeholder_tokens=placeholder_tokens)
        self.gaussians = gaussians

    # -- persistence --------------------------------------------------------------------
    def save_pretrained(self, save_directory: str | Path, **kwargs) -> None:
        """The diffusers folder (model_index.json + components, the mapper among them) plus the
        gaussians (not a module)."""
        super().save_pretrained(save_directory, **kwargs)
        self.gaussians.save(Path(save_directory) / GAUSSIANS_FILE)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, **kwargs) -> EmoGenPipeline:
        """Load a folder written by :meth:`save_pretrained` (local only: no hub lookups)."""
        folder = Path(pretrained_model_name_or_path)
        index = folder / "model_index.json"
        if not index.is_file():
            raise MissingModelError(
                f"{folder}: no EmoGen pipeline here (no model_index.json); build one with "
                "`dvc repro generate` (writes models/emogen/) or pass the folder of one"
            )
        config = json.loads(index.read_text())
        if config.get("_class_name") != cls.__name__:
            raise UserError(f"{index}: holds a {config.get('_class_name')}, not an {cls.__name__}")
        if "tokenizer" not in kwargs:
            # Checked load: transformers can quietly return a 2-token tokenizer from bad files.
            text_config = folder / "text_encoder" / "config.json"
            if not text_config.is_file():
                raise UserError(f"{text_config}: missing; the pipeline folder is incomplete")
            vocab_size = json.loads(text_config.read_text())["vocab_size"]
            kwargs["tokenizer"] = load_tokenizer(folder / "tokenizer", vocab_size, config.get("known_words") or ())
        if "gaussians" not in kwargs:
            kwargs["gaussians"] = EmotionGaussians.load(folder / GAUSSIANS_FILE)
        kwargs.setdefault("local_files_only", True)
        return super().from_pretrained(folder, **kwargs)

    def to(self, *args, **kwargs) -> EmoGenPipeline:
        super().to(*args, **kwargs)
        self.mapper.to(device=self.device, dtype=self.text_encoder.dtype)
        return self

    # -- prompts ------------------------------------------------------------------------
    def prompt(self, template: str, fusion: Fusion | None) -> str:
        first, second = self.config.placeholder_tokens
        return template.replace("{}", f"{first} {second}" if fusion == "tokens" else first)

    # -- sampling -----------------------------------------------------------------------
    def sample_vectors(
        self,
        emotions: Sequence[str],
        generators: Sequence[torch.Generator | None],
        fuse_with: Sequence[str] | None = None,
        fusion: Fusion = "interpolate",
        weights: Sequence[float] | None = None,
        intensities: Sequence[float] | None = None,
    ) -> torch.Tensor:
        """(B, slots, D) emotion vectors: one slot, or two for token fusion.

        Image i draws one standard-normal z from ``generators[i]``; its vector is
        mean + std·z of its emotion at intensity ``intensities[i]`` (default 1: the
        Gaussian sample). A fused image uses the same z and intensity for both emotions, so
        each is still a sample of its own (scaled) Gaussian, and an interpolation strip's
        ends (w = 0, w = 1) are exactly the single-emotion images of that seed.
        """
        intensities = [1.0] * len(emotions) if intensities is None else intensities
        rows = []
        for i, (name, gen) in enumerate(zip(emotions, generators, strict=True)):
            z = self.gaussians.draw(gen)
            first = self.gaussians.at(_index(name), z, intensities[i])
            if fuse_with is None:
                rows.append(first[None])
                continue
            second = self.gaussians.at(_index(fuse_with[i]), z, intensities[i])
            if fusion == "tokens":
                rows.append(torch.stack([first, second]))
            else:
                w = weights[i]
                rows.append(((1 - w) * first + w * second)[None])
        return torch.stack(rows)

    @torch.no_grad()
    def __call__(
        self,
        emotion: str | Sequence[str],
        *,
        num_images_per_emotion: int = 1,
        template: str = "{}",
        fuse_with: str | Sequence[str] | None = None,
        fusion: Fusion = "interpolate",
        weight: float | Sequence[float] = 0.5,
        intensity: float | Sequence[float] = 1.0,
        generator: torch.Generator | list[torch.Generator] | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        resolution: int | None = None,
        latents: torch.Tensor | None = None,
        output_type: Literal["pil", "pt"] = "pil",
        callback_on_step_end: StepCallback | None = None,
        callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",),
        return_dict: bool = True,
    ) -> EmoGenPipelineOutput | tuple:
        """Generate ``num_images_per_emotion`` images for each name in ``emotion``.

        Fusion: ``fuse_with`` names the second emotion (one, or one per entry of
        ``emotion``); ``fusion="tokens"`` puts two placeholders in the prompt, each with
        its own emotion's vector (the template's ``{}`` becomes ``"<emotion> <emotion_2>"``);
        ``"interpolate"`` uses one placeholder with e = (1 − w)·e₁ + w·e₂ (``weight`` one
        value, or one per entry of ``emotion``). ``intensity`` s (one value, or one per
        entry of ``emotion``): e = c + s·(x − c) with c the neutral centre; 0 = no emotion in
        particular, 1 = the emotion's Gaussian (default), > 1 beyond. ``generator``: one per image (batching
        then changes nothing) or a single one shared in order, as in diffusers. The sampling
        settings, ``latents`` and the callback go to :meth:`TextConditionedPipeline.denoise`.
        """
        emotions = [emotion] if isinstance(emotion, str) else list(emotion)
        if not emotions or num_images_per_emotion < 1:
            raise UserError("need at least one emotion and num_images_per_emotion >= 1")
        if fusion not in ("tokens", "interpolate"):
            raise UserError(f"fusion must be 'tokens' or 'interpolate', got {fusion!r}")
        seconds = None if fuse_with is None else _per_entry(fuse_with, len(emotions), "fuse_with")
        weights = _per_entry(weight, len(emotions), "weight")
        intensities = _per_entry(intensity, len(emotions), "intensity")
        if any(s < 0 for s in intensities):
            raise UserError(f"intensity must be >= 0 (0: neutral centre, 1: the emotion's Gaussian), got {intensities}")
        if seconds is not None and fusion == "interpolate" and not all(0.0 <= w <= 1.0 for w in weights):
            raise UserError(f"interpolation weights must lie in [0, 1], got {weights}")
        repeat = num_images_per_emotion
        emotions = [e for e in emotions for _ in range(repeat)]
        seconds = None if seconds is None else [e for e in seconds for _ in range(repeat)]
        weights = [w for w in weights for _ in range(repeat)]
        intensities = [s for s in intensities for _ in range(repeat)]
        batch = len(emotions)
        if isinstance(generator, list) and len(generator) != batch:
            raise ValueError(f"got {len(generator)} generators for {batch} images")
        generators = generator if isinstance(generator, list) else [generator] * batch
        self.check_words(template)
        fusion_mode = fusion if seconds is not None else None

        vectors = self.sample_vectors(emotions, generators, seconds, fusion, weights, intensities)
        mapper_param = next(self.mapper.parameters())
        tokens = self.mapper(vectors.flatten(0, 1).to(mapper_param.device, mapper_param.dtype))
        tokens = tokens.view(batch, vectors.shape[1], -1)
        input_ids = self._tokenize(self.prompt(template, fusion_mode), batch)
        replacements = {pid: tokens[:, slot] for slot, pid in enumerate(self.placeholder_ids[: vectors.shape[1]])}
        cond = encode_with_placeholders(self.text_encoder, input_ids, replacements)
        images = self.denoise(
            cond,
            generator=generator,
            num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale,
            resolution=resolution,
            latents=latents,
            output_type=output_type,
            callback_on_step_end=callback_on_step_end,
            callback_on_step_end_tensor_inputs=callback_on_step_end_tensor_inputs,
        )
        if not return_dict:
            return images, vectors
        return EmoGenPipelineOutput(images=images, emotion_vectors=vectors)


def _index(name: str) -> int:
    try:
        return emotion_index(name)
    except ValueError as exc:
        raise UserError(str(exc)) from None


def _per_entry(value, count: int, name: str) -> list:
    """A single value → ``count`` copies; a sequence must have one entry per emotion."""
    if isinstance(value, (str, int, float)):
        return [value] * count
    values = list(value)
    if len(values) != count:
        raise UserError(f"{name} needs one value or one per emotion ({count}), got {len(values)}")
    return values
