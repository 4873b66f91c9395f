"""The emotion space's files (``models/emotion_space/``), written by ``emotion_space`` and
read by confidence, stage 2 and generation: the one place they are named and read.

``vectors.safetensors`` (``vectors``, N×D float32) + ``vector_ids.parquet`` (``id``, row i ↔
vectors[i]); ``gaussians.safetensors`` (``mean``/``std`` 8×D, optional ``cov``; read with
``emogen.pipelines.sampling.EmotionGaussians.load``).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch
from safetensors.torch import load_file, save_file

from emogen.emotions import EMOTIONS
from emogen.errors import DataError, UserError
from emogen.pipelines.sampling import GAUSSIANS_FILE

VECTORS_FILE = "vectors.safetensors"
IDS_FILE = "vector_ids.parquet"


def write_space(out_dir: Path, vectors: torch.Tensor, ids: list[str], gaussians: dict[str, torch.Tensor]) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    meta = {"emotions": ",".join(EMOTIONS)}
    save_file({"vectors": vectors.float().contiguous()}, out_dir / VECTORS_FILE, metadata=meta)
    pd.DataFrame({"id": ids}).to_parquet(out_dir / IDS_FILE, index=False)
    save_file(gaussians, out_dir / GAUSSIANS_FILE, metadata=meta)


def read_vectors(space_dir: Path) -> tuple[torch.Tensor, list[str]]:
    """(vectors N×D, ids) of an emotion-space folder."""
    files = [space_dir / VECTORS_FILE, space_dir / IDS_FILE]
    for file in files:
        if not file.is_file():
            raise UserError(f"{file}: missing; run `emogen stage emotion_space` (or `dvc repro emotion_space`) first")
    vectors = load_file(files[0])["vectors"]
    ids = pd.read_parquet(files[1])["id"].tolist()
    if len(ids) != len(vectors):
        raise DataError(f"{space_dir}: {len(vectors)} vectors but {len(ids)} ids")
    return vectors, ids


def rows_of(space_dir: Path, ids: list[str], wanted: list[str], what: str) -> torch.Tensor:
    """Row index into the space's vectors of every id in ``wanted`` (``ids``: the space's
    ids); a missing one is an error naming it and ``what`` it is."""
    position = pd.Series(range(len(ids)), index=ids)
    missing = [i for i in wanted if i not in position.index]
    if missing:
        raise DataError(
            f"{space_dir / IDS_FILE}: no emotion vector for {what} {missing[:5]} ({len(missing)} in all); "
            "re-run emotion_space"
        )
    return torch.tensor(position.loc[wanted].to_numpy(), dtype=torch.long)
