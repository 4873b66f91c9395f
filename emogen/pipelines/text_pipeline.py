"""``TextConditionedPipeline``: text encoder states in, images out — the one sampling path of
EmoGen, the baselines, the base model's evidence and stage 2's previews (the class docstring
says how latent and pixel-space models are sampled)."""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import torch
from diffusers import ConfigMixin, DiffusionPipeline, SchedulerMixin
from diffusers.configuration_utils import FrozenDict
from diffusers.utils.torch_utils import randn_tensor
from PIL import Image

from emogen.config import template_problem
from emogen.errors import UserError
from emogen.images import to_pil
from emogen.pipelines.components import BaseComponents
from emogen.pipelines.tokenizer import caption_words

if TYPE_CHECKING:
    from diffusers import StableDiffusionPipeline


class _NoTorchvisionFallbackNotice(logging.Filter):
    """transformers' notice that an image processor falls back to its PIL version because
    torchvision is not installed. This project never installs torchvision (pyproject.toml), so
    the PIL version is the intended one; the notice is dropped, nothing else."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not ("requires torchvision (not installed); falling back to" in message and "ImageProcessor" in message)


def stable_diffusion_class() -> type[StableDiffusionPipeline]:
    """diffusers' StableDiffusionPipeline, imported on first use (latent models only). Its
    module imports transformers' CLIP and Siglip image processors (for a safety checker and
    IP-adapters EmoGen never builds), which would print two torchvision notices on every
    `emogen generate`: they are filtered on transformers' logger for this import only."""
    logger = logging.getLogger("transformers.utils.import_utils")
    notice = _NoTorchvisionFallbackNotice()
    logger.addFilter(notice)
    try:
        from diffusers import StableDiffusionPipeline
    finally:
        logger.removeFilter(notice)
    return StableDiffusionPipeline


# diffusers' callback_on_step_end: (pipeline, step index, timestep, tensors) → tensors to replace
StepCallback = Callable[[DiffusionPipeline, int, torch.Tensor, dict], dict]


def base_modules(base: BaseComponents, scheduler: SchedulerMixin) -> dict:
    """The base model's parts and resolution that every pipeline here is built from, with
    ``scheduler`` as its sampler."""
    return dict(
        tokenizer=base.tokenizer,
        text_encoder=base.text_encoder,
        unet=base.unet,
        scheduler=scheduler,
        vae=base.vae,
        resolution=base.resolution,
    )


def check_template(template: str) -> None:
    problem = template_problem(template)
    if problem:
        raise UserError(problem)


class TextConditionedPipeline(DiffusionPipeline):
    """Text encoder states in, images out: the one sampling path of this project — EmoGen, the
    baselines' :class:`PromptPipeline`, the base model's evidence and stage 2's previews.

    Latent models (a VAE: SD 1.5, tiny SD) are sampled by diffusers' own
    :class:`~diffusers.StableDiffusionPipeline`, built from these components and called with
    ``prompt_embeds`` (our states) and ``negative_prompt_embeds`` (the empty prompt's), so any
    scheduler, fp16/bf16, ``latents=``, generators and ``callback_on_step_end`` behave as
    diffusers documents. Its constructor updates an outdated scheduler config in place
    (``steps_offset`` → 1, ``clip_sample`` → False), as it does for every SD checkpoint.
    Pixel-space models (no VAE: the embedded one) use :meth:`_pixel_loop`, the project's only
    denoising loop: no stock text-to-image pipeline samples without a VAE, and the SD pipeline's
    constructor would turn off the ``clip_sample`` a pixel-space sampler needs.
    """

    _optional_components = ["vae"]  # noqa: RUF012 - diffusers' class attribute, as diffusers declares it
    model_cpu_offload_seq = "text_encoder->unet->vae"

    def save_pretrained(self, save_directory, **kwargs) -> None:
        """diffusers' folder, minus the ``_name_or_path`` diffusers records in the config of a
        pipeline or component loaded from a folder: an absolute path of this checkout, which would
        make the saved files (and their DVC hashes) depend on where the repo lies."""
        for component in (self, *self.components.values()):
            if isinstance(component, ConfigMixin) and "_name_or_path" in component.config:
                component._internal_dict = FrozenDict(
                    {k: v for k, v in component.config.items() if k != "_name_or_path"}
                )
        super().save_pretrained(save_directory, **kwargs)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):
        """diffusers' loader with every component in the dtype the pipeline was saved in
        (``generate.dtype``): diffusers would load the UNet in float32 and transformers the text
        encoder in float16, and they cannot mix."""
        text_config = Path(pretrained_model_name_or_path) / "text_encoder" / "config.json"
        if "dtype" not in kwargs and text_config.is_file():
            saved = json.loads(text_config.read_text()).get("dtype")
            if saved:
                kwargs["dtype"] = getattr(torch, saved)
        return super().from_pretrained(pretrained_model_name_or_path, **kwargs)

    def __init__(
        self,
        tokenizer,
        text_encoder,
        unet,
        scheduler,
        vae=None,
        known_words: list[str] | None = None,
        resolution: int = 512,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
    ):
        """``known_words``: the closed vocabulary of the embedded base model (templates must
        use only these words); None for an open one (SD 1.5's CLIP), where only words the
        tokenizer cannot encode are rejected. The last three are the sampling defaults, which
        come from the base model's sampling settings (``emogen.pipelines.settings.sampler_components``);
        they default to None only because diffusers reads required arguments as components."""
        if num_inference_steps is None or guidance_scale is None:
            raise ValueError(
                "num_inference_steps and guidance_scale are required: pass the base model's sampling "
                "settings (emogen.pipelines.settings.sampler_components)"
            )
        super().__init__()
        self.register_modules(tokenizer=tokenizer, text_encoder=text_encoder, unet=unet, scheduler=scheduler, vae=vae)
        self.register_to_config(
            known_words=sorted(known_words) if known_words is not None else None,
            resolution=resolution,
            num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale,
        )

    def check_words(self, template: str) -> None:
        """Reject template words the base model cannot read, naming them (never unknown tokens).
        ``config.known_words``: the embedded model's closed vocabulary, or None (open)."""
        check_template(template)
        words = caption_words([template.replace("{}", " ")])
        known = self.config.known_words
        if known is not None:
            missing = [w for w in words if w not in set(known)]
            detail = f"the embedded base model only knows the synthetic world's words, e.g. {', '.join(known[:12])}"
        else:
            unk = self.tokenizer.unk_token_id
            missing = [w for w in words if unk in self.tokenizer(w, add_special_tokens=False).input_ids]
            detail = "the tokenizer would turn them into unknown tokens"
        if missing:
            raise UserError(f"template {template!r}: word(s) {', '.join(missing)} not in the vocabulary; {detail}")

    def _tokenize(self, text: str, batch: int) -> torch.Tensor:
        ids = self.tokenizer(text).input_ids
        limit = self.tokenizer.model_max_length
        if len(ids) > limit:
            raise UserError(f"prompt {text!r} is {len(ids)} tokens long; the text encoder reads at most {limit}")
        padded = self.tokenizer(
            [text] * batch, padding="max_length", max_length=limit, truncation=True, return_tensors="pt"
        )
        return padded.input_ids.to(self.device)

    def encode_prompts(self, prompts: Sequence[str]) -> torch.Tensor:
        """(B, L, D) final text encoder states of ``prompts``, padded to the full length."""
        ids = torch.cat([self._tokenize(text, 1) for text in prompts])
        return self.text_encoder(input_ids=ids).last_hidden_state

    @torch.no_grad()
    def denoise(
        self,
        prompt_embeds: torch.Tensor,
        *,
        generator: torch.Generator | list[torch.Generator] | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        resolution: int | None = None,
        latents: torch.Tensor | None = None,
        output_type: Literal["pil", "pt"] = "pil",
        callback_on_step_end: StepCallback | None = None,
        callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",),
    ) -> list[Image.Image] | torch.Tensor:
        """``prompt_embeds`` (B, L, D) → B images (PIL, or (B, 3, H, W) in [-1, 1] for "pt").

        Classifier-free guidance when ``guidance_scale > 1``, against the empty prompt's
        states (what diffusers itself encodes for ``negative_prompt=None``). Unset settings
        are the pipeline's config. ``callback_on_step_end(pipe, i, t, {"latents": ...})`` runs
        after every step, as in diffusers (the pixel loop offers "latents" only).
        """
        if output_type not in ("pil", "pt"):
            raise ValueError(f"output_type must be 'pil' or 'pt', got {output_type!r}")
        steps = num_inference_steps or self.config.num_inference_steps
        scale = self.config.guidance_scale if guidance_scale is None else guidance_scale
        side = resolution or self.config.resolution
        batch = prompt_embeds.shape[0]
        shape = (batch, self.unet.config.in_channels, side // self.vae_scale_factor, side // self.vae_scale_factor)
        if latents is not None and latents.shape != shape:
            raise ValueError(f"latents must have shape {shape}, got {tuple(latents.shape)}")
        negative = None
        if scale > 1.0:
            negative = self.text_encoder(input_ids=self._tokenize("", 1)).last_hidden_state.expand(batch, -1, -1)
        settings = dict(
            generator=generator,
            num_inference_steps=steps,
            guidance_scale=scale,
            latents=latents,
            callback_on_step_end=callback_on_step_end,
            callback_on_step_end_tensor_inputs=list(callback_on_step_end_tensor_inputs),
        )
        if self.vae is None:
            images = self._pixel_loop(prompt_embeds, negative, shape, **settings)
        else:
            images = (
                self.stable_diffusion()(
                    prompt_embeds=prompt_embeds,
                    negative_prompt_embeds=negative,
                    height=side,
                    width=side,
                    output_type="pt",
                    **settings,
                ).images
                * 2
                - 1
            )  # diffusers' "pt" images are in [0, 1]
        images = images.float().clamp(-1, 1).cpu()
        self.maybe_free_model_hooks()
        return to_pil(images) if output_type == "pil" else images

    def stable_diffusion(self) -> StableDiffusionPipeline:
        """diffusers' SD pipeline on this pipeline's current components (no safety checker:
        the images are measured, not served)."""
        pipe = stable_diffusion_class()(
            vae=self.vae,
            text_encoder=self.text_encoder,
            tokenizer=self.tokenizer,
            unet=self.unet,
            scheduler=self.scheduler,
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
        pipe.set_progress_bar_config(**getattr(self, "_progress_bar_config", {}))
        return pipe

    def _pixel_loop(
        self,
        cond: torch.Tensor,
        uncond: torch.Tensor | None,
        shape: tuple[int, ...],
        generator,
        num_inference_steps: int,
        guidance_scale: float,
        latents: torch.Tensor | None,
        callback_on_step_end: StepCallback | None,
        callback_on_step_end_tensor_inputs: list[str],
    ) -> torch.Tensor:
        """The standard guided sampling loop (StableDiffusionPipeline's) with the image itself as
        the latent: no VAE, nothing to decode."""
        if set(callback_on_step_end_tensor_inputs) - {"latents"}:
            raise ValueError(
                f"the pixel-space loop passes only 'latents' to callbacks, not {callback_on_step_end_tensor_inputs}"
            )
        device = self.device
        guided = uncond is not None
        if guided:
            cond = torch.cat([uncond, cond])
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=device, dtype=self.unet.dtype)
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        latents = latents.to(device, self.unet.dtype) * self.scheduler.init_noise_sigma
        step_kwargs = {}
        if "generator" in inspect.signature(self.scheduler.step).parameters:
            step_kwargs["generator"] = generator
        for i, t in enumerate(self.progress_bar(self.scheduler.timesteps)):
            model_in = torch.cat([latents, latents]) if guided else latents
            model_in = self.scheduler.scale_model_input(model_in, t)
            noise = self.unet(model_in, t, encoder_hidden_states=cond).sample
            if guided:
                noise_uncond, noise_cond = noise.chunk(2)
                noise = noise_uncond + guidance_scale * (noise_cond - noise_uncond)
            latents = self.scheduler.step(noise, t, latents, **step_kwargs).prev_sample
            if callback_on_step_end is not None:
                latents = callback_on_step_end(self, i, t, {"latents": latents}).pop("latents", latents)
        return latents

    @property
    def vae_scale_factor(self) -> int:
        """Pixels per latent cell: 1 in pixel space, 8 for SD 1.5's VAE."""
        if self.vae is None:
            return 1
        return 2 ** (len(self.vae.config.block_out_channels) - 1)
