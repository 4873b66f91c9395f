"""The ``generate`` stage: build the EmoGen pipeline, save it, generate N images per emotion.

Inputs: ``models/base`` (base model), ``models/stage2`` (mapper + ``train_config.json``:
the placeholder token), ``models/emotion_space/gaussians.safetensors``. Outputs:
``models/emogen/`` (the pipeline folder, what ``emogen generate`` loads) and
``data/generated/emogen/`` (PNGs, ``index.json``, ``grids/<emotion>.png`` and
``grids/transfer.png``: rows = emotions, columns = ``transfer_templates``), and
``data/generated/emogen_transfer/`` (``transfer_images`` per emotion and template). Image i of
the index is seeded with ``stage_seed(seed, "generate") + i``; transfer image k of every
(template, emotion) with the count's next value + k. Grids and the index are logged to MLflow.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

import diffusers
import torch
from diffusers import SchedulerMixin

from emogen.base.components import load_base, read_base_json
from emogen.config import GenerateParams, Params
from emogen.devices import resolve_device
from emogen.emotions import EMOTIONS
from emogen.errors import MissingModelError, UserError
from emogen.generation.grid import make_grid
from emogen.generation.jobs import ImageJob, run_jobs
from emogen.generation.pipeline import EmoGenPipeline
from emogen.generation.text_pipeline import TextConditionedPipeline, base_modules
from emogen.generation.sampling import EmotionGaussians
from emogen.generation.writer import GRIDS_FOLDER, read_index, write_generated
from emogen.images import load_rgb
from emogen.stage1.space_files import GAUSSIANS_FILE
from emogen.layout import Layout
from emogen.seeding import stage_seed
from emogen.stage2.mapper import EmotionMapper
from emogen.stage2.placeholder import second_placeholder
from emogen.tracking import log_artifact, log_artifacts, log_metrics, stage_run

log = logging.getLogger(__name__)

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


def sampler_components(base, gen: GenerateParams) -> dict:
    """What every generation pipeline (EmoGen and the baselines) takes from the base model and
    the ``generate`` settings, so all methods sample alike."""
    return {
        **base_modules(base, scheduler_from_name(gen.scheduler, base.noise_scheduler.config)),
        "resolution": gen.resolution or base.resolution,
        "num_inference_steps": gen.num_inference_steps,
        "guidance_scale": gen.guidance_scale,
    }


def read_placeholder(stage2_dir: Path) -> str:
    path = stage2_dir / STAGE2_CONFIG
    if not path.is_file():
        raise MissingModelError(f"{path}: missing; train the mapper first (`dvc repro stage2`)")
    config = json.loads(path.read_text())
    if not isinstance(config.get("placeholder_token"), str):
        raise UserError(f"{path}: no 'placeholder_token' string")
    return config["placeholder_token"]


def build_pipeline(
    base_dir: Path, stage2_dir: Path, gaussians_path: Path, gen: GenerateParams
) -> EmoGenPipeline:
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
    return [ImageJob(name, first_seed + k, template) for template in templates for name in EMOTIONS for k in range(num_images)]


def run(params: Params, layout: Layout) -> None:
    gen = params.generate
    quiet_libraries()
    pipe = build_pipeline(
        layout.model_dir("base"), layout.model_dir("stage2"), layout.model_dir("emotion_space") / GAUSSIANS_FILE, gen
    )
    for template in (gen.template, *gen.transfer_templates):
        pipe.check_words(template)  # fail before generating anything
    pipe.set_progress_bar_config(disable=True)
    if layout.model_dir(METHOD).exists():  # a stage output: no stale files from an earlier run
        shutil.rmtree(layout.model_dir(METHOD))
    pipe.save_pretrained(layout.model_dir(METHOD))
    first_seed = stage_seed(params.seed, "generate")
    jobs = emotion_jobs(first_seed, gen.num_images, gen.template)

    with stage_run("generate", {"seed": params.seed, "generate": gen.model_dump()}):
        start = time.perf_counter()
        written = write_generated(
            layout.generated / METHOD, METHOD, run_jobs(pipe, jobs, gen.batch_size, desc="generate"),
            grid_columns=gen.grid_columns, grid_cell=gen.grid_cell, replace=True, settings=sampling_settings(pipe),
        )
        seconds = time.perf_counter() - start
        if gen.transfer_templates:
            transfer = transfer_jobs(first_seed + len(jobs), gen.transfer_templates, gen.transfer_images)
            kept = write_generated(
                layout.generated / TRANSFER_METHOD, TRANSFER_METHOD,
                run_jobs(pipe, transfer, gen.batch_size, desc="transfer"),
                grid_columns=gen.grid_columns, grid_cell=gen.grid_cell, replace=True, settings=sampling_settings(pipe),
            )
            firsts = {(e["template"], e["emotion"]): e["file"] for e in reversed(read_index(kept.folder)["images"])}
            # One row per emotion, one column per template.
            by_row = [load_rgb(kept.folder / firsts[t, e]) for e in EMOTIONS for t in gen.transfer_templates]
            make_grid(by_row, len(gen.transfer_templates), gen.grid_cell).save(written.folder / GRIDS_FOLDER / "transfer.png")
        log_metrics({"images": written.count, "seconds": seconds, "images_per_second": written.count / seconds})
        log_artifacts(str(written.folder / GRIDS_FOLDER), GRIDS_FOLDER)
        log_artifact(str(written.index))
    log.info("generate: %d images in %.1f s → %s", written.count, seconds, written.folder)


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
