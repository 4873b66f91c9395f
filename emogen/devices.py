"""The ``device`` param of every stage (auto | cpu | cuda) → a torch device; a check that a
multi-process launch really became distributed training. (CPU threads: emogen/threads.py.)"""

from __future__ import annotations

import os

import torch
from accelerate import Accelerator

from emogen.errors import UserError


def resolve_device(name: str) -> torch.device:
    """``auto`` → the GPU when there is one, else the CPU; ``cuda`` without a GPU is an error."""
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("device 'cuda' requested but no CUDA GPU is available (use 'auto' or 'cpu')")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def require_launched_processes(accelerator: Accelerator) -> None:
    """A launcher that started N processes (WORLD_SIZE) must get N distributed processes: else
    each would train alone on all the data and they would overwrite each other's outputs."""
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched > 1 and accelerator.num_processes != launched:
        raise UserError(
            f"launched as {launched} processes (WORLD_SIZE), but accelerate set up {accelerator.num_processes} "
            f"({accelerator.distributed_type}): on a machine without GPUs, set ACCELERATE_USE_CPU=true so that "
            "accelerate uses torch distributed on the CPU (gloo) (docs/multi-gpu.md)"
        )
