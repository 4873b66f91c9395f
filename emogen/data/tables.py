"""Reading the data stages' Parquet tables: a table that must hold some columns, one split's rows,
and the image files of rows."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from emogen.emotions import NUM_EMOTIONS
from emogen.errors import DataError

SPLITS = ("train", "val", "test")


def read_table(path: Path, columns: Sequence[str]) -> pd.DataFrame:
    """A Parquet table that must hold ``columns``; a missing file or column names it."""
    if not path.is_file():
        raise DataError(f"{path}: missing; run the stage that writes it first (dvc repro)")
    table = pd.read_parquet(path)
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}")
    return table


def split_rows(manifest: pd.DataFrame, split: str, source: str = "manifest") -> pd.DataFrame:
    """The rows of one split, in manifest order; an empty split or a bad label is an error."""
    rows = manifest[manifest["split"] == split].reset_index(drop=True)
    if rows.empty:
        raise DataError(f"{source}: no images in the {split!r} split")
    labels = rows["emotion_idx"]
    bad = rows[(labels < 0) | (labels >= NUM_EMOTIONS)]
    if not bad.empty:
        raise DataError(f"{source}: row id={bad['id'].iloc[0]!r} has emotion_idx {bad['emotion_idx'].iloc[0]} outside 0..7")
    return rows


def image_paths(rows: pd.DataFrame, dataset_root: Path) -> list[Path]:
    return [dataset_root / p for p in rows["image_path"]]
