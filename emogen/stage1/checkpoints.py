"""Where stage-1 training keeps its resume points, and what keys them.

One folder per run fingerprint (params, seed, data, the stage's code and the pretrained
trunk's revision) in the workspace's stage-1 cache (``emogen.caches``), so a changed run
never resumes a stale one. Each ``epoch-NNNN/`` is an ``emogen.checkpoints`` checkpoint:
accelerate's state (model, optimizer, scheduler, RNG), the best weights so far as its extra
tensors and ``progress.json``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
from accelerate import Accelerator

from emogen.caches import cache_dir, code_hash, files_hash
from emogen.checkpoints import Checkpoints
from emogen.config import Stage1Params
from emogen.layout import Layout
from emogen.pipelines.resolve import resolve_model

# Knobs that change neither the trained weights nor the data order.
_RUN_ONLY = {
    "checkpoint_dir",
    "resume",
    "keep_checkpoints",
    "workers",
    "eval_batch_size",
    "cache_images",
    "stop_after_epochs",
}


def run_fingerprint(
    cfg: Stage1Params, seed: int, manifest: pd.DataFrame, dataset_root: Path, processes: int = 1
) -> str:
    """Everything that shapes the trained weights: knobs, seed, rows, image files, code, trunk
    and the number of processes (the effective batch is batch_size × accumulation × processes)."""
    knobs = cfg.model_dump(mode="json", exclude=_RUN_ONLY)
    rows = manifest[["id", "split", "emotion_idx", "image_path"]]
    data = hashlib.sha256(pd.util.hash_pandas_object(rows, index=False).to_numpy().tobytes()).hexdigest()
    trunk = resolve_model(cfg.pretrained, (("config.json",),), "stage1.pretrained").revision if cfg.pretrained else None
    blob = json.dumps(
        {
            "stage1": knobs,
            "seed": seed,
            "data": data,
            "images": files_hash(dataset_root, rows["image_path"]),
            "code": code_hash("emogen.stages.stage1"),
            "trunk": trunk,
            "processes": processes,
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def checkpoint_root(cfg: Stage1Params, layout: Layout) -> Path:
    return cache_dir(layout, "stage1", cfg.checkpoint_dir)


def epoch_checkpoints(folder: Path, accelerator: Accelerator) -> Checkpoints:
    """``epoch-NNNN`` checkpoints, only the newest kept."""
    return Checkpoints(folder, accelerator, prefix="epoch-", digits=4)
