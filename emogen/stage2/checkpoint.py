"""Stage-2 checkpoints for resume: mapper, AdamW state and the loss history, pickle-free.

A checkpoint folder holds ``mapper.safetensors``, ``optimizer.safetensors`` (every
per-parameter state tensor) and ``state.json`` (step, optimiser hyper-parameters, grad-scaler
state, loss history). Written to a temp folder then renamed, so a kill mid-write leaves the
previous checkpoint intact.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

PREFIX = "checkpoint-"


@dataclass
class Checkpoint:
    step: int
    mapper_state: dict[str, torch.Tensor]
    optimizer_state: dict[str, Any]
    scaler_state: dict[str, Any] | None
    history: list[dict[str, float]]


def _flatten_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]]]:
    tensors = {
        f"{index}.{name}": value.detach().cpu().contiguous()
        for index, entries in state["state"].items()
        for name, value in entries.items()
    }
    groups = [{k: list(v) if isinstance(v, tuple) else v for k, v in g.items()} for g in state["param_groups"]]
    return tensors, groups


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], groups: list[dict[str, Any]]) -> dict[str, Any]:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    groups = [{k: tuple(v) if k == "betas" else v for k, v in g.items()} for g in groups]
    return {"state": state, "param_groups": groups}


def save_checkpoint(run_dir: Path, checkpoint: Checkpoint, keep: int) -> Path:
    """Write ``run_dir/checkpoint-<step>`` and delete all but the newest ``keep``."""
    final = run_dir / f"{PREFIX}{checkpoint.step:08d}"
    tmp = run_dir / f".tmp-{final.name}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in checkpoint.mapper_state.items()},
              str(tmp / "mapper.safetensors"))
    tensors, groups = _flatten_optimizer(checkpoint.optimizer_state)
    save_file(tensors, str(tmp / "optimizer.safetensors"))
    (tmp / "state.json").write_text(json.dumps({
        "step": checkpoint.step, "param_groups": groups, "scaler": checkpoint.scaler_state,
        "history": checkpoint.history,
    }))
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    for old in sorted(run_dir.glob(f"{PREFIX}*"))[:-keep]:
        shutil.rmtree(old)
    return final


def latest_checkpoint(run_dir: Path) -> Path | None:
    found = sorted(p for p in run_dir.glob(f"{PREFIX}*") if (p / "state.json").is_file())
    return found[-1] if found else None


def load_checkpoint(folder: Path) -> Checkpoint:
    state = json.loads((folder / "state.json").read_text())
    return Checkpoint(
        step=int(state["step"]),
        mapper_state=load_file(str(folder / "mapper.safetensors")),
        optimizer_state=_unflatten_optimizer(load_file(str(folder / "optimizer.safetensors")), state["param_groups"]),
        scaler_state=state["scaler"],
        history=state["history"],
    )
