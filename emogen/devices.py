"""The ``device`` param of every stage (auto | cpu | cuda) → a torch device."""

from __future__ import annotations

import torch

from emogen.errors import UserError


def resolve_device(name: str) -> torch.device:
    """``auto`` → the GPU when there is one, else the CPU; ``cuda`` without a GPU is an error."""
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("device 'cuda' requested but no CUDA GPU is available (use 'auto' or 'cpu')")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)
