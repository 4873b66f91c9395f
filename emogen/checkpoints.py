"""Resume points of a training run (stage 1 and stage 2 alike): accelerate's
``save_state``/``load_state`` (the prepared models as safetensors, optimizer, scheduler,
grad scaler, RNG states) plus ``progress.json`` (the loop's own record) and optional extra
tensors (safetensors).

A checkpoint is written to ``.tmp-<name>`` and renamed when complete, so a kill mid-write
leaves the previous one intact; only the newest ``keep`` are kept. The folder is the run's
cache entry (``emogen.caches``: keyed by everything that shapes the run, and locked).
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from safetensors.torch import load_file, save_file

from emogen.jsonio import write_json

PROGRESS = "progress.json"
EXTRA = "extra.safetensors"
# accelerate logs every file of every checkpoint at INFO: keep the stage logs readable.
for _name in ("accelerate.checkpointing", "accelerate.accelerator"):
    logging.getLogger(_name).setLevel(logging.WARNING)


class Checkpoints:
    def __init__(self, folder: Path, accelerator: Accelerator, prefix: str, digits: int, keep: int = 1) -> None:
        self.folder, self.accelerator = folder, accelerator
        self.prefix, self.digits, self.keep = prefix, digits, keep

    def _done(self) -> list[Path]:
        return sorted(p for p in self.folder.glob(f"{self.prefix}*") if (p / PROGRESS).is_file())

    def latest(self) -> Path | None:
        done = self._done()
        return done[-1] if done else None

    def save(self, index: int, progress: dict[str, Any], extra: dict[str, torch.Tensor] | None = None) -> Path:
        """Checkpoint ``<prefix><index>``: every process calls this (accelerate's contract)."""
        final = self.folder / f"{self.prefix}{index:0{self.digits}d}"
        tmp = self.folder / f".tmp-{final.name}"
        if self.accelerator.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
        self.accelerator.wait_for_everyone()
        self.accelerator.save_state(str(tmp))
        # Every process writes its RNG state into tmp: all must be done before it is renamed.
        self.accelerator.wait_for_everyone()
        if self.accelerator.is_main_process:
            if extra is not None:
                save_file({k: v.detach().cpu().contiguous() for k, v in extra.items()}, tmp / EXTRA)
            write_json(tmp / PROGRESS, progress)
            shutil.rmtree(final, ignore_errors=True)
            tmp.rename(final)
            for old in self._done()[: -self.keep]:
                shutil.rmtree(old)
        self.accelerator.wait_for_everyone()
        return final

    def load(self, path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor] | None]:
        """Restore the prepared objects from ``path``; returns (progress, extra tensors)."""
        self.accelerator.load_state(str(path))
        extra = load_file(path / EXTRA) if (path / EXTRA).is_file() else None
        return json.loads((path / PROGRESS).read_text()), extra

    def remove(self) -> None:
        if self.accelerator.is_main_process and self.folder.exists():
            shutil.rmtree(self.folder)
        self.accelerator.wait_for_everyone()
