"""Epoch checkpoints of stage-1 training, so an interrupted run resumes where it stopped.

One folder per run fingerprint (params, seed, data, the stage's code and the pretrained
trunk's revision) in the workspace's stage-1 cache (``emogen.caches``), so a changed run
never resumes a stale one. Each ``epoch-NNNN/`` holds accelerate's state (model, optimizer, scheduler, RNG),
the best weights so far and ``progress.json``, written last: a folder without it is
incomplete and ignored.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from accelerate import Accelerator
from safetensors.torch import load_file, save_file

from emogen.base.resolve import resolve_model
from emogen.caches import cache_dir, code_hash, files_hash
from emogen.config import Stage1Params
from emogen.layout import Layout

PROGRESS = "progress.json"
BEST = "best.safetensors"
# Knobs that change neither the trained weights nor the data order.
_RUN_ONLY = {"checkpoint_dir", "resume", "keep_checkpoints", "workers", "eval_batch_size", "cache_images", "cpu_threads"}
# accelerate logs every file of every checkpoint at INFO: keep the stage log readable.
for _name in ("accelerate.checkpointing", "accelerate.accelerator"):
    logging.getLogger(_name).setLevel(logging.WARNING)


def run_fingerprint(cfg: Stage1Params, seed: int, manifest: pd.DataFrame, dataset_root: Path) -> str:
    """Everything that shapes the trained weights: knobs, seed, rows, image files, code, trunk."""
    knobs = cfg.model_dump(mode="json", exclude=_RUN_ONLY)
    rows = manifest[["id", "split", "emotion_idx", "image_path"]]
    data = hashlib.sha256(pd.util.hash_pandas_object(rows, index=False).to_numpy().tobytes()).hexdigest()
    trunk = resolve_model(cfg.pretrained, (("config.json",),), "stage1.pretrained").revision if cfg.pretrained else None
    blob = json.dumps({"stage1": knobs, "seed": seed, "data": data, "images": files_hash(dataset_root, rows["image_path"]),
                       "code": code_hash("emogen.stage1.train"), "trunk": trunk}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def checkpoint_root(cfg: Stage1Params, layout: Layout) -> Path:
    return cache_dir(layout, "stage1", cfg.checkpoint_dir)


class Checkpoints:
    def __init__(self, folder: Path, accelerator: Accelerator) -> None:
        self.folder, self.accelerator = folder, accelerator

    def latest(self) -> Path | None:
        done = sorted(p for p in self.folder.glob("epoch-*") if (p / PROGRESS).is_file())
        return done[-1] if done else None

    def save(self, epoch: int, progress: dict[str, Any], best_state: dict[str, torch.Tensor]) -> None:
        target = self.folder / f"epoch-{epoch:04d}"
        self.accelerator.save_state(str(target))
        if self.accelerator.is_main_process:
            save_file(best_state, target / BEST)
            (target / PROGRESS).write_text(json.dumps(progress, indent=1))
            for old in self.folder.glob("epoch-*"):
                if old != target:
                    shutil.rmtree(old)
        self.accelerator.wait_for_everyone()

    def load(self, path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        self.accelerator.load_state(str(path))
        return json.loads((path / PROGRESS).read_text()), load_file(path / BEST)

    def remove(self) -> None:
        if self.accelerator.is_main_process and self.folder.exists():
            shutil.rmtree(self.folder)
        self.accelerator.wait_for_everyone()
