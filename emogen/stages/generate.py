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

import logging
import shutil
import time

from emogen.config import Params
from emogen.emotions import EMOTIONS
from emogen.images import load_rgb
from emogen.layout import Layout
from emogen.pipelines.grid import make_grid
from emogen.pipelines.jobs import run_jobs
from emogen.pipelines.sampling import GAUSSIANS_FILE
from emogen.pipelines.settings import (
    METHOD,
    TRANSFER_METHOD,
    build_pipeline,
    emotion_jobs,
    quiet_libraries,
    sampling_settings,
    transfer_jobs,
)
from emogen.pipelines.writer import GRIDS_FOLDER, read_index, write_generated
from emogen.seeding import stage_seed
from emogen.tracking import log_artifact, log_artifacts, log_metrics, stage_run

log = logging.getLogger(__name__)


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
            layout.generated / METHOD,
            METHOD,
            run_jobs(pipe, jobs, gen.batch_size, desc="generate"),
            grid_columns=gen.grid_columns,
            grid_cell=gen.grid_cell,
            replace=True,
            settings=sampling_settings(pipe),
        )
        seconds = time.perf_counter() - start
        if gen.transfer_templates:
            transfer = transfer_jobs(first_seed + len(jobs), gen.transfer_templates, gen.transfer_images)
            kept = write_generated(
                layout.generated / TRANSFER_METHOD,
                TRANSFER_METHOD,
                run_jobs(pipe, transfer, gen.batch_size, desc="transfer"),
                grid_columns=gen.grid_columns,
                grid_cell=gen.grid_cell,
                replace=True,
                settings=sampling_settings(pipe),
            )
            firsts = {(e["template"], e["emotion"]): e["file"] for e in reversed(read_index(kept.folder)["images"])}
            # One row per emotion, one column per template.
            by_row = [load_rgb(kept.folder / firsts[t, e]) for e in EMOTIONS for t in gen.transfer_templates]
            make_grid(by_row, len(gen.transfer_templates), gen.grid_cell).save(
                written.folder / GRIDS_FOLDER / "transfer.png"
            )
        log_metrics({"images": written.count, "seconds": seconds, "images_per_second": written.count / seconds})
        log_artifacts(str(written.folder / GRIDS_FOLDER), GRIDS_FOLDER)
        log_artifact(str(written.index))
    log.info("generate: %d images in %.1f s → %s", written.count, seconds, written.folder)
