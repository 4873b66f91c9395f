"""``PromptPipeline``: the baselines' generator: each emotion's own prompt, EmoGen's sampling.

The prompt baseline prompts with the emotion word ("amusement"), Textual Inversion with its
learned token ("<amusement>", a row of the text encoder's embedding table), DreamBooth with
its identifier and the emotion word ("<v_amusement> amusement") on its fine-tuned UNet. The
template's ``{}`` becomes the emotion's prompt, so the transfer templates ("{} box") work as
they do for EmoGen. It takes the same call as :class:`EmoGenPipeline` (emotion names, one
generator per image), so :func:`emogen.pipelines.jobs.run_jobs` drives both; there is no
emotion vector, so ``emotion_vectors`` is None.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import torch

from emogen.emotions import EMOTIONS
from emogen.errors import UserError
from emogen.pipelines.emogen_pipeline import EmoGenPipelineOutput
from emogen.pipelines.text_pipeline import StepCallback, TextConditionedPipeline


class PromptPipeline(TextConditionedPipeline):
    """Emotion name(s) → images from each emotion's prompt text. ``pipe(["awe"], generator=[g])``."""

    def __init__(
        self,
        tokenizer,
        text_encoder,
        unet,
        scheduler,
        vae=None,
        emotion_prompts: Mapping[str, str] | None = None,
        known_words: list[str] | None = None,
        resolution: int = 512,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
    ):
        """``emotion_prompts``: emotion → prompt text for all eight; None: the emotion words."""
        prompts = dict(emotion_prompts or {e: e for e in EMOTIONS})
        if set(prompts) != set(EMOTIONS):
            raise UserError(f"emotion_prompts must name exactly the eight emotions, got {sorted(prompts)}")
        super().__init__(
            tokenizer, text_encoder, unet, scheduler, vae, known_words, resolution, num_inference_steps, guidance_scale
        )
        self.register_to_config(emotion_prompts=prompts)
        added = set(tokenizer.get_added_vocab())
        for emotion, prompt in prompts.items():
            plain = " ".join(w for w in prompt.split() if w not in added)  # learned tokens are known
            if not prompt.strip() or any(
                len(tokenizer(w, add_special_tokens=False).input_ids) != 1 for w in prompt.split() if w in added
            ):
                raise UserError(f"emotion_prompts[{emotion!r}] = {prompt!r}: empty, or a learned token is not one id")
            self.check_words("{} " + plain)

    @torch.no_grad()
    def __call__(
        self,
        emotion: str | Sequence[str],
        *,
        template: str = "{}",
        generator: torch.Generator | list[torch.Generator] | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        resolution: int | None = None,
        latents: torch.Tensor | None = None,
        output_type: Literal["pil", "pt"] = "pil",
        callback_on_step_end: StepCallback | None = None,
        callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",),
        fuse_with: str | Sequence[str | None] | None = None,
        **_fusion_settings,
    ) -> EmoGenPipelineOutput:
        """One image per entry of ``emotion``, prompted with ``template`` around its prompt."""
        emotions = [emotion] if isinstance(emotion, str) else list(emotion)
        if fuse_with is not None and any(
            f is not None for f in ([fuse_with] if isinstance(fuse_with, str) else fuse_with)
        ):
            raise UserError("the baselines have no emotion fusion (EmoGen only)")
        unknown = [e for e in emotions if e not in self.config.emotion_prompts]
        if not emotions or unknown:
            raise UserError(f"unknown emotion(s) {unknown}; choose from {', '.join(EMOTIONS)}")
        if isinstance(generator, list) and len(generator) != len(emotions):
            raise ValueError(f"got {len(generator)} generators for {len(emotions)} images")
        self.check_words(template)
        cond = self.encode_prompts([template.replace("{}", self.config.emotion_prompts[e]) for e in emotions])
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
        return EmoGenPipelineOutput(images=images, emotion_vectors=None)
