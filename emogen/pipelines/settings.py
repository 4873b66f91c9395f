"""How every method's pipeline samples: the scheduler by name, the components a pipeline takes
from the base model and the ``generate`` settings, the EmoGen pipeline assembled from its stages'
outputs, and the seeded image jobs (EmoGen and every baseline draw the same seeds)."""

from __future__ import annotations

import json
from pathlib import Path

import diffusers
import torch
from diffusers import SchedulerMixin

from emogen.config import GenerateParams
from emogen.devices import resolve_device
from emogen.emotions import EMOTIONS
from emogen.errors import MissingModelError, UserError
from emogen.pipelines.components import load_base, read_base_json
from emogen.pipelines.emogen_pipeline import EmoGenPipeline
from emogen.pipelines.jobs import ImageJob
from emogen.pipelines.mapper import EmotionMapper
from emogen.pipelines.placeholder import second_placeholder
from emogen.pipelines.sampling import EmotionGaussians
from emogen.pipelines.text_pipeline import TextConditionedPipeline, base_modules

METHOD = "emogen"
TRANSFER_METHOD = "emogen_transfer"  # transfer images, same layout (entries carry the template)
STAGE2_CONFIG = "train_config.json"
MAPPER_FOLDER = "mapper"


def scheduler_from_name(name: str, noise_schedule: dict, key: str = "generate.scheduler") -> SchedulerMixin:
    """Any diffusers scheduler class by name, built on the base model's training schedule."""
    cls = getattr(diffusers, name, None)
    if not (isinstance(cls, type) and issubclass(cls, SchedulerMixin)):
        raise UserError(
            f"{key}: {name!r} is not a diffusers scheduler class "
            "(e.g. UniPCMultistepScheduler, DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler)"
        )
    return cls.from_config(noise_schedule)


def sampler_settings(base, gen: GenerateParams | None = None) -> dict:
    """The one source of the sampler: the base model's sampling settings (base.json), each
    overridden by ``generate``'s value where that is not null."""
    own = base.sampling
    missing = [k for k in ("scheduler", "num_inference_steps", "guidance_scale") if k not in own]
    if missing:
        raise UserError(
            f"the base model's base.json has no sampling {', '.join(missing)}: rebuild it (`dvc repro base_model`)"
        )
    chosen = {k: getattr(gen, k, None) if gen is not None else None for k in own}
    return {
        k: own[k] if chosen.get(k) is None else chosen[k]
        for k in ("scheduler", "num_inference_steps", "guidance_scale")
    }


def sampler_components(base, gen: GenerateParams | None = None) -> dict:
    """What every generation pipeline (EmoGen and the baselines) takes from the base model and
    the ``generate`` settings, so all methods sample alike."""
    settings = sampler_settings(base, gen)
    key = "generate.scheduler" if gen is not None and gen.scheduler else "base_model.sampling.scheduler"
    return {
        **base_modules(base, scheduler_from_name(settings["scheduler"], base.noise_scheduler.config, key)),
        "resolution": (gen.resolution if gen is not None else None) or base.resolution,
        "num_inference_steps": settings["num_inference_steps"],
        "guidance_scale": settings["guidance_scale"],
    }


def read_placeholder(stage2_dir: Path) -> str:
    path = stage2_dir / STAGE2_CONFIG
    if not path.is_file():
        raise MissingModelError(f"{path}: missing; train the mapper first (`dvc repro stage2`)")
    config = json.loads(path.read_text())
    if not isinstance(config.get("placeholder_token"), str):
        raise UserError(f"{path}: no 'placeholder_token' string")
    return config["placeholder_token"]


def build_pipeline(base_dir: Path, stage2_dir: Path, gaussians_path: Path, gen: GenerateParams) -> EmoGenPipeline:
    """Assemble the pipeline from the three upstream stages' outputs (on ``gen.device``)."""
    device, dtype = resolve_device(gen.device), getattr(torch, gen.dtype)
    placeholder = read_placeholder(stage2_dir)
    mapper = EmotionMapper.from_pretrained(stage2_dir / MAPPER_FOLDER)
    gaussians = EmotionGaussians.load(gaussians_path)
    base = load_base(base_dir, device=device, dtype=dtype)
    pipe = EmoGenPipeline(
        **sampler_components(base, gen),
        mapper=mapper,
        gaussians=gaussians,
        placeholder_tokens=[placeholder, second_placeholder(placeholder)],
        known_words=read_base_json(base_dir).get("words"),
    )
    return pipe.to(device)


def emotion_jobs(first_seed: int, num_images: int, template: str) -> list[ImageJob]:
    """``num_images`` per emotion in EmoSet order; job i is seeded ``first_seed + i``."""
    names = [name for name in EMOTIONS for _ in range(num_images)]
    return [ImageJob(name, first_seed + i, template) for i, name in enumerate(names)]


def transfer_jobs(first_seed: int, templates: tuple[str, ...], num_images: int) -> list[ImageJob]:
    """``num_images`` per template and emotion, template by template (so each batch shares one).
    Image k of every cell is seeded ``first_seed + k``: cells differ only in their emotion and
    template, and the k = 0 images make ``grids/transfer.png``."""
    return [
        ImageJob(name, first_seed + k, template)
        for template in templates
        for name in EMOTIONS
        for k in range(num_images)
    ]


def sampling_settings(pipe: TextConditionedPipeline, **overrides) -> dict:
    """What the images were sampled with, for the index (EmoGen's or a baseline's pipeline)."""
    settings = {
        "scheduler": type(pipe.scheduler).__name__,
        "num_inference_steps": pipe.config.num_inference_steps,
        "guidance_scale": pipe.config.guidance_scale,
        "resolution": pipe.config.resolution,
    }
    if "placeholder_tokens" in pipe.config:
        settings["placeholder_tokens"] = pipe.config.placeholder_tokens
    settings.update({k: v for k, v in overrides.items() if v is not None})
    return settings


def quiet_libraries() -> None:
    """Our own bars count images; the libraries' per-file loading bars would only add noise."""
    import transformers

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()
