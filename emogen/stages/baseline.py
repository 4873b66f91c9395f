"""``emogen stage baseline@<method>``: train a baseline (if it trains) and generate with it.

One DVC stage per method (``dvc.yaml`` ``baseline`` ``foreach``). Every method generates with
EmoGen's settings: the ``generate`` params (template, scheduler, steps, guidance, count), its
seeds (image i of ``emotion_jobs`` seeded ``stage_seed(seed, "generate") + i``) and the same
denoising loop (:class:`PromptPipeline`), into ``data/generated/<method>/`` (the shared layout);
and the transfer images of ``generate.transfer_templates`` with EmoGen's transfer seeds into
``data/generated/<method>_transfer/`` (the prompt baseline: "amusement box"), for the
transfer table's paired comparisons.
Outputs: ``models/baselines/<method>/`` (the pipeline folder), ``metrics/baselines/<method>.json``
(budget and losses) and ``metrics/baselines/<method>_loss.csv`` (a DVC plot).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import shutil
import time

import torch
from accelerate import Accelerator

from emogen.baselines.train import (
    BaselineTrainer,
    class_latents,
    stage2_budget,
    train_dreambooth,
    train_textual_inversion,
    training_data,
    write_history,
)
from emogen.config import Params
from emogen.emotions import EMOTIONS
from emogen.jsonio import write_json
from emogen.layout import Layout
from emogen.pipelines.components import load_base, read_base_json
from emogen.pipelines.jobs import run_jobs
from emogen.pipelines.prompt_pipeline import PromptPipeline
from emogen.pipelines.settings import (
    emotion_jobs,
    quiet_libraries,
    sampler_components,
    sampling_settings,
    transfer_jobs,
)
from emogen.pipelines.writer import GRIDS_FOLDER, write_generated
from emogen.seeding import stage_seed
from emogen.timings import record
from emogen.tracking import log_artifact, log_artifacts, log_metrics, stage_run

log = logging.getLogger(__name__)

METHODS = ("prompt", "textual_inversion", "dreambooth")


def run(params: Params, layout: Layout, method: str) -> dict:
    if method not in METHODS:
        raise ValueError(f"unknown baseline {method!r}; one of {METHODS}")
    gen, bp = params.generate, params.baseline
    quiet_libraries()
    started = time.perf_counter()
    # Baselines train in float32 (as stage 2 at mixed_precision "no"); generation then uses gen.dtype.
    accelerator = Accelerator(mixed_precision="no", cpu=gen.device == "cpu")
    base_dir = layout.model_dir("base")
    base = load_base(base_dir, device=accelerator.device)
    words = read_base_json(base_dir).get("words")
    seed = stage_seed(params.seed, f"baselines/{method}")
    tracked = {"seed": params.seed, "method": method, "baseline": bp.model_dump(), "generate": gen.model_dump()}
    with stage_run(f"baseline@{method}", tracked):
        history: list[dict[str, float]] = []
        budget = None
        prompts = {e: e for e in EMOTIONS}
        if method != "prompt":
            data = training_data(params, layout, base)
            budget = stage2_budget(params.stage2, len(data.tensors))
            trainer = BaselineTrainer(data, base, budget, seed, accelerator)
            on_log = log_metrics  # (means, step=...): guarded, never fails the stage
            if method == "textual_inversion":
                prompts, history = train_textual_inversion(
                    trainer, bp.textual_inversion, params.stage2, bp.log_every, on_log
                )
            else:
                db = bp.dreambooth
                prior = None
                if db.prior_preservation:
                    pipe = build_pipeline(base, params, prompts, words)
                    pipe.set_progress_bar_config(disable=True)
                    prior = class_latents(
                        pipe, base, db.num_class_images, stage_seed(seed, "class_images"), gen.batch_size
                    )
                prompts, history = train_dreambooth(trainer, db, params.stage2, prior, bp.log_every, on_log)
        train_s = time.perf_counter() - started

        pipe = build_pipeline(base, params, prompts, words)
        if gen.dtype != "float32":  # trained in float32; generate in generate.dtype as EmoGen does
            pipe.to(dtype=getattr(torch, gen.dtype))
        pipe.set_progress_bar_config(disable=True)
        model_dir = layout.model_dir("baselines") / method
        if model_dir.exists():  # a stage output: no stale files from an earlier run
            shutil.rmtree(model_dir)
        pipe.save_pretrained(model_dir)
        first_seed = stage_seed(params.seed, "generate")
        jobs = emotion_jobs(first_seed, gen.num_images, gen.template)
        records = (
            (dataclasses.replace(record, mode=method), image)
            for record, image in run_jobs(pipe, jobs, gen.batch_size, desc=method)
        )
        written = write_generated(
            layout.generated / method,
            method,
            records,
            grid_columns=gen.grid_columns,
            grid_cell=gen.grid_cell,
            replace=True,
            settings=sampling_settings(pipe, emotion_prompts=prompts),
        )
        if gen.transfer_templates:  # EmoGen's transfer seeds (generate stage): paired in the transfer table
            transfer = transfer_jobs(first_seed + len(jobs), gen.transfer_templates, gen.transfer_images)
            write_generated(
                layout.generated / f"{method}_transfer",
                f"{method}_transfer",
                (
                    (dataclasses.replace(record, mode=method), image)
                    for record, image in run_jobs(pipe, transfer, gen.batch_size, desc=f"{method} transfer")
                ),
                grid_columns=gen.grid_columns,
                grid_cell=gen.grid_cell,
                replace=True,
                settings=sampling_settings(pipe, emotion_prompts=prompts),
            )
        metrics = {
            "method": method,
            "prompts": prompts,
            # Stage 2's optimizer steps × batch (stage2 params); the prompt baseline trains nothing.
            "budget": {**budget.to_dict(), "matched_to": "stage2"} if budget else {"steps": 0, "samples_seen": 0},
            "images": written.count,
        }
        if history:
            window = max(1, len(history) // 10)
            for key in history[0]:
                if key != "step":
                    metrics[f"initial_{key}"] = sum(r[key] for r in history[:window]) / window
                    metrics[f"final_{key}"] = sum(r[key] for r in history[-window:]) / window
        out = layout.metrics / "baselines"
        out.mkdir(parents=True, exist_ok=True)
        write_history(out / f"{method}_loss.csv", history)
        write_json(out / f"{method}.json", metrics)
        log_metrics({k: v for k, v in metrics.items() if isinstance(v, (int, float)) and math.isfinite(v)})
        log_artifacts(str(written.folder / GRIDS_FOLDER), GRIDS_FOLDER)
        log_artifact(str(written.index))
        log_artifact(str(out / f"{method}.json"))
        seconds = record(
            train_s=train_s, time_s=time.perf_counter() - started
        )  # metrics/timings/baseline_<method>.json
    log.info("baseline %s: %d images, %.1f s (training %.1f s)", method, written.count, seconds["time_s"], train_s)
    return metrics


def run_prompt(params: Params, layout: Layout) -> dict:
    return run(params, layout, "prompt")


def run_textual_inversion(params: Params, layout: Layout) -> dict:
    return run(params, layout, "textual_inversion")


def run_dreambooth(params: Params, layout: Layout) -> dict:
    return run(params, layout, "dreambooth")


def build_pipeline(base, params: Params, prompts: dict[str, str], words: list[str] | None) -> PromptPipeline:
    return PromptPipeline(**sampler_components(base, params.generate), emotion_prompts=prompts, known_words=words)
