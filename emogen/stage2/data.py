"""Stage-2 training tensors, computed once per input version (SPEC.md "Stage 2").

A training step needs, per balanced.parquet row: the image as the UNet sees it (VAE latents ×
scaling factor, or pixels for a pixel-space base), in both horizontal flips, the stage-1
emotion vector of that image, α and the attribute's vocabulary index. Images and vectors are
stored once per *unique* image and indexed per row, so a step only runs the text encoder and
the UNet. The tensors are cached in the work folder under a fingerprint of every input and of
the code that builds them (``emogen.caches``), so a resumed or repeated run does not encode the
images again (minutes for EmoSet at 512 px).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from emogen.base.resolve import folder_fingerprint
from emogen.caches import code_hash, files_hash, locked
from emogen.errors import DataError, UserError
from emogen.stage1 import space_files
from emogen.images import load_rgb, squash_transform

log = logging.getLogger(__name__)

TENSOR_NAMES = ("latents", "vectors", "image_index", "alpha", "vocab_idx")


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
    dataset_root: Path


@dataclass
class TrainingTensors:
    latents: torch.Tensor  # (U, 2, C, h, w): unique images as the UNet sees them, [original, flipped]
    vectors: torch.Tensor  # (U, D) stage-1 emotion vectors of the same images
    image_index: torch.Tensor  # (N,) row → unique image
    alpha: torch.Tensor  # (N,) float
    vocab_idx: torch.Tensor  # (N,) long, -1: no attribute loss

    def __len__(self) -> int:
        return self.image_index.shape[0]

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        save_file({name: getattr(self, name).contiguous() for name in TENSOR_NAMES}, str(tmp))
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> "TrainingTensors":
        return cls(**load_file(str(path)))


def read_vocabulary(path: Path) -> list[str]:
    if not path.is_file():
        raise UserError(f"{path}: missing; run `emogen stage confidence` first")
    try:
        attributes = json.loads(path.read_text())["attributes"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise DataError(f"{path}: expected {{\"attributes\": [...], ...}}: {exc}") from None
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
        raise DataError(f"{inputs.sample_alpha}: row {bad[0]} vocab_idx {alpha['vocab_idx'].iloc[bad[0]]} "
                        f"outside [-1, {vocabulary_size}) (vocabulary size of {inputs.vocabulary})")
    bad = alpha.index[~alpha["alpha"].between(0, 1)]
    if len(bad):
        raise DataError(f"{inputs.sample_alpha}: row {bad[0]} alpha {alpha['alpha'].iloc[bad[0]]} outside [0, 1]")
    return balanced.assign(alpha=alpha["alpha"].to_numpy(), vocab_idx=alpha["vocab_idx"].to_numpy())


def read_vectors(inputs: StageInputs, ids: list[str]) -> torch.Tensor:
    """The stage-1 emotion vectors of ``ids``, in that order, ``(len(ids), D)``."""
    vectors, vector_ids = space_files.read_vectors(inputs.vectors.parent)
    return vectors.float()[space_files.rows_of(inputs.vectors.parent, vector_ids, ids, "training image(s)")]


def fingerprint(inputs: StageInputs, samples: pd.DataFrame, resolution: int, seed: int) -> str:
    """Hash of everything the tensors depend on: the input tables, the base model (every file
    of its folder: weights or the pinned revision), the image files (size, mtime) and the code
    that encodes them."""
    digest = hashlib.sha256(f"{resolution}\0{seed}\0".encode())
    digest.update(code_hash(__name__, "emogen.base.components").encode())
    digest.update(folder_fingerprint(inputs.base_dir).encode())
    for path in (inputs.balanced, inputs.sample_alpha, inputs.vectors, inputs.vector_ids):
        digest.update(path.name.encode() + b"\0")
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(2**20), b""):
                digest.update(chunk)
    digest.update(files_hash(inputs.dataset_root, samples["image_path"]).encode())
    return digest.hexdigest()[:16]


@torch.no_grad()
def build_tensors(
    inputs: StageInputs, samples: pd.DataFrame, base, seed: int, batch_size: int = 32
) -> TrainingTensors:
    """Encode every unique training image once (both flips) and gather the per-row tensors."""
    unique = samples.drop_duplicates("id")[["id", "image_path"]].reset_index(drop=True)
    vectors = read_vectors(inputs, unique["id"].tolist())
    generator = torch.Generator(device="cpu").manual_seed(seed)  # VAE posterior sample (SD 1.5)
    encoded = []
    for start in tqdm(range(0, len(unique), batch_size), desc="stage2: encoding images", unit="batch"):
        pixels = []
        for rel in unique["image_path"].iloc[start : start + batch_size]:
            path = inputs.dataset_root / rel
            try:
                pixels.append(squash_transform(load_rgb(path), base.resolution))
            except OSError as exc:
                raise DataError(f"{path}: cannot read the training image ({exc})") from None
        batch = torch.stack(pixels)
        both = torch.cat([batch, batch.flip(-1)])
        noise_seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        device_generator = torch.Generator(device=base.unet.device).manual_seed(noise_seed)
        latents = base.encode_images(both, generator=device_generator).float().cpu()
        encoded.append(torch.stack([latents[: len(batch)], latents[len(batch) :]], dim=1))
    image_index = pd.Series(range(len(unique)), index=unique["id"].to_numpy()).loc[samples["id"]].to_numpy()
    return TrainingTensors(
        latents=torch.cat(encoded),
        vectors=vectors,
        image_index=torch.tensor(image_index, dtype=torch.long),
        alpha=torch.tensor(samples["alpha"].to_numpy(), dtype=torch.float32),
        vocab_idx=torch.tensor(samples["vocab_idx"].to_numpy(), dtype=torch.long),
    )


def load_or_build(inputs: StageInputs, samples: pd.DataFrame, base, seed: int, work_dir: Path) -> tuple[TrainingTensors, str]:
    """Cached tensors for these inputs, building (and caching) them when absent; under the
    entry's lock, so a second process with the same inputs waits and reuses them."""
    key = fingerprint(inputs, samples, base.resolution, seed)
    path = work_dir / f"tensors-{key}.safetensors"
    with locked(path):
        if path.is_file():
            log.info("stage2: reusing training tensors %s", path)
            return TrainingTensors.load(path), key
        tensors = build_tensors(inputs, samples, base, seed)
        tensors.save(path)
    log.info("stage2: training tensors cached in %s (%.1f MB)", path, path.stat().st_size / 2**20)
    return tensors, key
