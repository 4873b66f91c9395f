"""Reading the latents stage's output (``data/processed/latents/``), memory-mapped: what stage 2
and the baselines train on. The folder's format is described in emogen/stages/latents.py."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from emogen.errors import DataError
from emogen.jsonio import read_json
from emogen.pipelines.components import BaseComponents
from emogen.pipelines.resolve import folder_fingerprint

LATENTS_JSON = "latents.json"
INDEX_FILE = "index.parquet"
FORMAT_VERSION = 1


def latent_row_shape(base: BaseComponents) -> tuple[int, int, int, int]:
    return (2, base.latent_channels, base.latent_size, base.latent_size)


@dataclass
class LatentStore:
    """The latents stage's output, memory-mapped: ``read`` touches only the gathered rows."""

    folder: Path
    info: dict
    ids: np.ndarray  # row → image id
    chunks: list[np.ndarray]  # memory maps

    @classmethod
    def open(cls, folder: Path) -> LatentStore:
        info = read_json(
            folder / LATENTS_JSON, "missing; run `dvc repro latents` (or `emogen stage latents`)", error=DataError
        )
        missing = [k for k in ("format", "num_images", "shape", "chunk_size", "chunks", "key") if k not in info]
        if missing or info["format"] != FORMAT_VERSION:
            raise DataError(
                f"{folder / LATENTS_JSON}: missing key(s) {missing} or format {info.get('format')} "
                f"!= {FORMAT_VERSION}; run `dvc repro latents`"
            )
        index = pd.read_parquet(folder / INDEX_FILE, columns=["id", "row"])
        if len(index) != info["num_images"] or not np.array_equal(index["row"].to_numpy(), np.arange(len(index))):
            raise DataError(f"{folder / INDEX_FILE}: expected rows 0..{info['num_images'] - 1} in order")
        chunks = []
        for k, name in enumerate(info["chunks"]):
            path = folder / name
            try:
                chunk = np.load(path, mmap_mode="r")
            except (OSError, ValueError) as exc:
                raise DataError(f"{path}: cannot open the latents chunk ({exc}); run `dvc repro latents`") from None
            rows = min(info["chunk_size"], info["num_images"] - k * info["chunk_size"])
            if chunk.shape != (rows, *info["shape"]):
                raise DataError(f"{path}: shape {chunk.shape}, expected {(rows, *info['shape'])}")
            chunks.append(chunk)
        return cls(folder, info, index["id"].to_numpy(), chunks)

    def __len__(self) -> int:
        return len(self.ids)

    def rows_of(self, ids: np.ndarray, source: Path) -> np.ndarray:
        """Store rows of ``ids``; an id the latents lack is an error naming it."""
        lookup = pd.Series(np.arange(len(self.ids)), index=self.ids)
        missing = ~pd.Index(ids).isin(lookup.index)
        if missing.any():
            raise DataError(
                f"{source}: id {str(ids[missing.argmax()])!r} has no latents in {self.folder / INDEX_FILE}; "
                "run `dvc repro latents`"
            )
        return lookup.loc[ids].to_numpy()

    def check_base(self, base: BaseComponents, base_dir: Path) -> None:
        """The latents must come from this base model (its VAE, resolution and latent shape)."""
        if list(self.info["shape"]) != list(latent_row_shape(base)):
            raise DataError(
                f"{self.folder / LATENTS_JSON}: shape {self.info['shape']}, but the base model in "
                f"{base_dir} denoises {list(latent_row_shape(base))[1:]}; run `dvc repro latents`"
            )
        if self.info.get("base_fingerprint") != folder_fingerprint(base_dir):
            raise DataError(
                f"{self.folder / LATENTS_JSON}: encoded with a different base model than {base_dir}; "
                "run `dvc repro latents`"
            )

    def read(self, rows: torch.Tensor, flips: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) in the stored dtype: row ``rows[b]``, flip ``flips[b]`` (0 original, 1 flipped)."""
        size = self.info["chunk_size"]
        picked = [self.chunks[r // size][r % size, f] for r, f in zip(rows.tolist(), flips.tolist())]
        return torch.from_numpy(np.stack(picked))
