"""Tiny stage-1 settings and a writable project root over the shared ``tiny_emoset`` data."""

from __future__ import annotations

from pathlib import Path

from emogen.config import Params, Stage1Params
from emogen.layout import Layout

# A trunk of two 8/16-channel stages and 16-d vectors: a few seconds per run on one core.
TINY_STAGE1 = {
    "resnet": {"layer_type": "basic", "embedding_size": 8, "hidden_sizes": [8, 16], "depths": [1, 1]},
    "vector_dim": 16,
    "epochs": 3,
    "batch_size": 32,
    "lr": 3e-3,
    "workers": 1,
}


def tiny_stage1(checkpoint_dir: Path, **overrides) -> Stage1Params:
    return Stage1Params.model_validate({**TINY_STAGE1, "checkpoint_dir": str(checkpoint_dir), **overrides})


def tiny_params(base: Params, checkpoint_dir: Path, **overrides) -> Params:
    return base.model_copy(update={"stage1": tiny_stage1(checkpoint_dir, **overrides)})


def project_over(tiny_layout: Layout, root: Path) -> Layout:
    """A layout at ``root`` whose data/ is the shared tiny set's (read-only) and outputs are new."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "data").symlink_to(tiny_layout.root / "data", target_is_directory=True)
    return Layout(root)
