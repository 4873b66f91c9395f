"""Stage-2 training data (docs/method.md "Stage 2").

A training step needs, per balanced.parquet row: the image as the UNet sees it (VAE latents ×
scaling factor, or pixels for a pixel-space base), in both horizontal flips, the stage-1
emotion vector of that image, α and the attribute's vocabulary index. The images come
encoded once from the latents stage (``emogen.stages.latents``), read memory-mapped, so a
step touches only its own rows and RAM does not grow with the dataset; vectors are held
per unique image and indexed per row.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from emogen.config import Params
from emogen.errors import DataError, UserError
from emogen.layout import Layout
from emogen.pipelines.sampling import GAUSSIANS_FILE
from emogen.seeding import derived_seed
from emogen.stage1 import space_files
from emogen.stage1.space_files import IDS_FILE, VECTORS_FILE
from emogen.stage2.latent_store import LATENTS_JSON, LatentStore


@dataclass(frozen=True)
class StageInputs:
    """The files stage 2 reads (dvc.yaml lists the same as deps)."""

    balanced: Path
    sample_alpha: Path
    vocabulary: Path
    vectors: Path
    vector_ids: Path
    gaussians: Path
    base_dir: Path
    latents: Path


@dataclass
class TrainingData:
    latents: LatentStore  # unique images as the UNet sees them, [original, flipped]
    vectors: torch.Tensor  # (U, D) stage-1 emotion vectors, in the store's row order
    image_index: torch.Tensor  # (N,) row → store row
    alpha: torch.Tensor  # (N,) float
    vocab_idx: torch.Tensor  # (N,) long, -1: no attribute loss
    key: str  # identity of all of the above (stage 2's resume key)

    def __len__(self) -> int:
        return self.image_index.shape[0]


def read_vocabulary(path: Path) -> list[str]:
    if not path.is_file():
        raise UserError(f"{path}: missing; run `emogen stage confidence` first")
    try:
        attributes = json.loads(path.read_text())["attributes"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise DataError(f'{path}: expected {{"attributes": [...], ...}}: {exc}') from None
    if len(set(attributes)) != len(attributes):
        raise DataError(f"{path}: 'attributes' has duplicate entries")
    return list(attributes)


def read_samples(inputs: StageInputs, vocabulary_size: int) -> pd.DataFrame:
    """balanced.parquet joined row by row with sample_alpha.parquet, checked."""
    for path in (inputs.balanced, inputs.sample_alpha):
        if not path.is_file():
            raise UserError(f"{path}: missing; run the upstream stages first (`dvc repro stage2`)")
    balanced = pd.read_parquet(inputs.balanced, columns=["id", "image_path"])
    alpha = pd.read_parquet(inputs.sample_alpha, columns=["id", "alpha", "vocab_idx"])
    if len(balanced) != len(alpha):
        raise DataError(f"{inputs.sample_alpha}: {len(alpha)} rows, but {inputs.balanced} has {len(balanced)}")
    if len(balanced) == 0:
        raise DataError(f"{inputs.balanced}: no training samples")
    mismatch = (balanced["id"].to_numpy() != alpha["id"].to_numpy()).nonzero()[0]
    if len(mismatch):
        row = int(mismatch[0])
        raise DataError(
            f"{inputs.sample_alpha}: row {row} has id {alpha['id'].iloc[row]!r}, but {inputs.balanced} row "
            f"{row} has {balanced['id'].iloc[row]!r} (the two tables must be in the same order)"
        )
    bad = alpha.index[(alpha["vocab_idx"] < -1) | (alpha["vocab_idx"] >= vocabulary_size)]
    if len(bad):
        raise DataError(
            f"{inputs.sample_alpha}: row {bad[0]} vocab_idx {alpha['vocab_idx'].iloc[bad[0]]} "
            f"outside [-1, {vocabulary_size}) (vocabulary size of {inputs.vocabulary})"
        )
    bad = alpha.index[~alpha["alpha"].between(0, 1)]
    if len(bad):
        raise DataError(f"{inputs.sample_alpha}: row {bad[0]} alpha {alpha['alpha'].iloc[bad[0]]} outside [0, 1]")
    return balanced.assign(alpha=alpha["alpha"].to_numpy(), vocab_idx=alpha["vocab_idx"].to_numpy())


def read_vectors(inputs: StageInputs, ids: list[str]) -> torch.Tensor:
    """The stage-1 emotion vectors of ``ids``, in that order, ``(len(ids), D)``."""
    vectors, vector_ids = space_files.read_vectors(inputs.vectors.parent)
    return vectors.float()[space_files.rows_of(inputs.vectors.parent, vector_ids, ids, "training image(s)")]


def fingerprint(inputs: StageInputs) -> str:
    """Hash of the input tables and of the latents' own key (which covers the base model, the
    image files, resolution, seed and the code that encoded them)."""
    digest = hashlib.sha256()
    for path in (
        inputs.latents / LATENTS_JSON,
        inputs.balanced,
        inputs.sample_alpha,
        inputs.vectors,
        inputs.vector_ids,
    ):
        digest.update(path.name.encode() + b"\0")
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(2**20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:16]


def load_training_data(inputs: StageInputs, samples: pd.DataFrame, base) -> TrainingData:
    """The latents (memory-mapped, checked against ``base``), vectors and per-row tensors."""
    store = LatentStore.open(inputs.latents)
    store.check_base(base, inputs.base_dir)
    image_index = store.rows_of(samples["id"].to_numpy(), inputs.balanced)
    return TrainingData(
        latents=store,
        vectors=read_vectors(inputs, store.ids.tolist()),
        image_index=torch.tensor(image_index, dtype=torch.long),
        alpha=torch.tensor(samples["alpha"].to_numpy(), dtype=torch.float32),
        vocab_idx=torch.tensor(samples["vocab_idx"].to_numpy(), dtype=torch.long),
        key=fingerprint(inputs),
    )


def stage_inputs(params: Params, layout: Layout) -> StageInputs:
    space, confidence = layout.model_dir("emotion_space"), layout.model_dir("confidence")
    return StageInputs(
        balanced=layout.balanced,
        sample_alpha=confidence / "sample_alpha.parquet",
        vocabulary=confidence / "vocabulary.json",
        vectors=space / VECTORS_FILE,
        vector_ids=space / IDS_FILE,
        gaussians=space / GAUSSIANS_FILE,
        base_dir=layout.model_dir("base"),
        latents=layout.latents,
    )


class SampleOrder:
    """Global sample position → row: one seeded permutation per epoch, a function of the seed."""

    def __init__(self, num_rows: int, seed: int) -> None:
        self.num_rows, self.seed = num_rows, seed
        self._perms: dict[int, torch.Tensor] = {}

    def _perm(self, epoch: int) -> torch.Tensor:
        if epoch not in self._perms:
            generator = torch.Generator().manual_seed(derived_seed(self.seed, 0, epoch))
            self._perms = {epoch: torch.randperm(self.num_rows, generator=generator)}
        return self._perms[epoch]

    def rows(self, first: int, count: int) -> torch.Tensor:
        positions = torch.arange(first, first + count)
        out = torch.empty(count, dtype=torch.long)
        for epoch in (positions // self.num_rows).unique().tolist():
            mask = positions // self.num_rows == epoch
            out[mask] = self._perm(epoch)[positions[mask] % self.num_rows]
        return out
