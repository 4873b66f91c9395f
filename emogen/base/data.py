"""The embedded base model's training data: synthetic images with their content captions.

Reads ``captions.parquet`` from the dataset root (the synthetic set only: a real EmoSet has
no captions, and the pretrained profile needs none) and the manifest for splits, image paths
and the scene/object ground truth the evidence is measured against.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from emogen.errors import DataError
from emogen.images import load_rgb, squash_transform

CAPTIONS_FILE = "captions.parquet"


@dataclass(frozen=True)
class CaptionedImages:
    ids: list[str]
    images: torch.Tensor  # (N, 3, R, R) in [-1, 1]
    captions: list[list[str]]  # per image: the full caption first, then shorter forms
    scenes: list[str | None]
    objects: list[list[str]]

    def __len__(self) -> int:
        return len(self.ids)


def read_captions(dataset_root: Path) -> pd.DataFrame:
    path = dataset_root / CAPTIONS_FILE
    if not path.is_file():
        raise DataError(
            f"{path}: no captions; the embedded base model trains on the synthetic set's captions "
            "(data.source: synthetic). With a real EmoSet use base_model.profile: pretrained."
        )
    table = pd.read_parquet(path)
    missing = {"id", "captions"} - set(table.columns)
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
    empty = table[table["captions"].map(lambda c: c is None or len(c) == 0)]
    if len(empty):
        raise DataError(f"{path}: image {empty['id'].iloc[0]!r} has no caption ({len(empty)} such rows)")
    if table["id"].duplicated().any():
        raise DataError(f"{path}: duplicate id {table['id'][table['id'].duplicated()].iloc[0]!r}")
    return table


def load_split(manifest_path: Path, dataset_root: Path, split: str, resolution: int) -> CaptionedImages:
    """The ``split`` images of the manifest with their captions, resized to ``resolution``."""
    if not manifest_path.is_file():
        raise DataError(f"{manifest_path}: no manifest; run `emogen stage ingest` first")
    manifest = pd.read_parquet(manifest_path, columns=["id", "split", "image_path", "scene", "objects"])
    rows = manifest[manifest["split"] == split].merge(read_captions(dataset_root), on="id", how="left")
    uncaptioned = rows[rows["captions"].isna()]
    if len(uncaptioned):
        raise DataError(
            f"{dataset_root / CAPTIONS_FILE}: no captions for image {uncaptioned['id'].iloc[0]!r} "
            f"of the manifest ({len(uncaptioned)} such images)"
        )
    if rows.empty:
        raise DataError(f"{manifest_path}: no {split} images")
    images = torch.stack([squash_transform(load_rgb(dataset_root / p), resolution) for p in rows["image_path"]])
    return CaptionedImages(
        ids=rows["id"].tolist(),
        images=images,
        captions=[list(c) for c in rows["captions"]],
        scenes=[s if isinstance(s, str) else None for s in rows["scene"]],
        objects=[list(o) if o is not None else [] for o in rows["objects"]],
    )
