"""``emogen stage latents``: stage 2's training images as the UNet sees them, encoded once.

Every unique image of ``balanced.parquet`` (first-appearance order), in both horizontal flips,
through the base model's VAE (latents × scaling factor) or, for a pixel-space base (the
embedded model), as its squashed pixels: the same code path. Written to
``data/processed/latents/``:

- ``chunk-00000.npy`` ...: ``(chunk_size, 2, C, h, w)`` arrays ([original, flipped]), global
  rows ``k·chunk_size ...``; opened with ``numpy.load(mmap_mode="r")``, so a reader touches only
  the rows it gathers;
- ``index.parquet``: ``id``, ``image_path``, ``row`` (the global row);
- ``latents.json``: shape, dtype, chunk files, encoder, seed, base-model fingerprint and a key
  of everything the values depend on (stage 2's resume key includes it); written last, by
  rank 0 after every rank has finished, so its presence means the folder is complete.

Memory: images stream through a DataLoader (``workers`` decoding processes) one batch at a
time into the open chunk's memory map; nothing is gathered in RAM (``benchmarks/latents.py``).
Processes: ``accelerate launch --num_processes N -m emogen stage latents``; chunk ``k`` is
encoded by rank ``k mod N``. The VAE posterior noise of each image is drawn from a generator
seeded by (stage seed, image id), so the values do not depend on batch size, worker count or
process count.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from emogen.caches import code_hash, files_hash
from emogen.config import LatentsParams, Params
from emogen.devices import resolve_device
from emogen.errors import DataError, UserError
from emogen.images import load_rgb, squash_transform
from emogen.jsonio import write_json
from emogen.layout import Layout
from emogen.pipelines.components import BaseComponents, load_base
from emogen.pipelines.resolve import folder_fingerprint
from emogen.seeding import image_seed, stage_seed
from emogen.stage2.latent_store import FORMAT_VERSION, INDEX_FILE, LATENTS_JSON, latent_row_shape
from emogen.threads import recheck_threads
from emogen.tracking import log_metrics, stage_run

log = logging.getLogger(__name__)

STAGE = "latents"
DTYPES = {"float32": torch.float32, "float16": torch.float16}


def run(params: Params, layout: Layout) -> dict[str, float]:
    p, started = params.latents, time.perf_counter()
    accelerator = Accelerator(cpu=resolve_device(p.device).type == "cpu")
    images = unique_images(layout.balanced)
    base = load_base(layout.model_dir("base"), device=accelerator.device, dtype=DTYPES[p.dtype])
    out = layout.latents
    if accelerator.is_main_process:
        shutil.rmtree(out, ignore_errors=True)  # the stage's own output
        out.mkdir(parents=True)
    accelerator.wait_for_everyone()
    with (
        stage_run(STAGE, {"seed": params.seed, STAGE: p.model_dump()}) if accelerator.is_main_process else nullcontext()
    ):
        encoded = encode_shard(
            base,
            images,
            layout.dataset_root(params.data),
            out,
            p,
            stage_seed(params.seed, STAGE),
            accelerator.process_index,
            accelerator.num_processes,
        )
        accelerator.wait_for_everyone()
        if not accelerator.is_main_process:
            return {}
        finish(params, layout, base, images)
        elapsed = time.perf_counter() - started
        metrics = {
            "num_images": len(images),
            "rank0_images": encoded,
            "processes": accelerator.num_processes,
            "time_s": elapsed,
            "images_per_s": len(images) / elapsed,
        }
        log_metrics(metrics)
        log.info("latents: %d images (both flips) → %s in %.1f s", len(images), layout.relative(out), elapsed)
        return metrics


def unique_images(balanced: Path) -> pd.DataFrame:
    """``id``, ``image_path`` of every image ``balanced.parquet`` uses, in first-appearance order."""
    if not balanced.is_file():
        raise UserError(f"{balanced}: missing; run `dvc repro balance` first")
    table = pd.read_parquet(balanced, columns=["id", "image_path"])
    if table.empty:
        raise DataError(f"{balanced}: no training samples")
    pairs = table.drop_duplicates(["id", "image_path"])
    clash = pairs["id"].duplicated()
    if clash.any():
        raise DataError(f"{balanced}: id {pairs['id'][clash].iloc[0]!r} appears with two different image_path values")
    return pairs.reset_index(drop=True)


class TrainingImages(Dataset):
    """Decode + squash one image per item (DataLoader workers run this): (global row, pixels)."""

    def __init__(self, root: Path, paths: list[str], rows: np.ndarray, resolution: int) -> None:
        self.root, self.paths, self.rows, self.resolution = root, paths, rows, resolution

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor]:
        path = self.root / self.paths[i]
        try:
            return int(self.rows[i]), squash_transform(load_rgb(path), self.resolution)
        except OSError as exc:
            raise DataError(f"{path}: cannot read the training image ({exc})") from None


@torch.no_grad()
def encode_both_flips(base: BaseComponents, pixels: torch.Tensor, seeds: list[int]) -> torch.Tensor:
    """(B, 3, H, W) in [-1, 1] → (B, 2, C, h, w) float32 on the CPU: [original, flipped]; the
    posterior noise of image b (both flips) comes from ``seeds[b]`` alone."""
    both = torch.cat([pixels, pixels.flip(-1)])
    noise = None
    if base.vae is not None:
        shape = (2, base.latent_channels, base.latent_size, base.latent_size)
        draws = torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(s)) for s in seeds])
        noise = torch.cat([draws[:, 0], draws[:, 1]])
    latents = base.encode_images(both, noise=noise).float().cpu()
    return torch.stack([latents[: len(pixels)], latents[len(pixels) :]], dim=1)


def chunk_name(k: int) -> str:
    return f"chunk-{k:05d}.npy"


class ChunkWriter:
    """Writes rows into ``chunk-k.npy`` memory maps, one chunk open at a time (rows arrive in
    increasing order); a chunk is written under a temporary name and renamed when full."""

    def __init__(self, folder: Path, chunk_size: int, num_rows: int, row_shape: tuple[int, ...], dtype: str) -> None:
        self.folder, self.chunk_size, self.num_rows = folder, chunk_size, num_rows
        self.row_shape, self.dtype = row_shape, np.dtype(dtype)
        self.k: int | None = None
        self.array: np.memmap | None = None

    def _tmp(self, k: int) -> Path:
        return self.folder / f".{chunk_name(k)}.tmp"

    def _open(self, k: int) -> None:
        self.close()
        rows = min(self.chunk_size, self.num_rows - k * self.chunk_size)
        self.k = k
        self.array = np.lib.format.open_memmap(self._tmp(k), mode="w+", dtype=self.dtype, shape=(rows, *self.row_shape))

    def write(self, rows: np.ndarray, values: np.ndarray) -> None:
        for k in np.unique(rows // self.chunk_size):
            if k != self.k:
                self._open(int(k))
            mask = rows // self.chunk_size == k
            self.array[rows[mask] - k * self.chunk_size] = values[mask]

    def close(self) -> None:
        if self.array is not None:
            self.array.flush()
            self.array = None  # unmapped: its pages leave this process
            self._tmp(self.k).replace(self.folder / chunk_name(self.k))
            self.k = None


def shard_rows(num_rows: int, chunk_size: int, rank: int, world: int) -> np.ndarray:
    """The global rows of the chunks rank ``rank`` of ``world`` encodes (chunk k → rank k mod world)."""
    chunks = range(rank, -(-num_rows // chunk_size), world)
    return np.concatenate(
        [np.arange(k * chunk_size, min((k + 1) * chunk_size, num_rows)) for k in chunks]
        or [np.zeros(0, dtype=np.int64)]
    )


def encode_shard(
    base: BaseComponents,
    images: pd.DataFrame,
    dataset_root: Path,
    out: Path,
    p: LatentsParams,
    seed: int,
    rank: int = 0,
    world: int = 1,
) -> int:
    """Encode and write this rank's chunks; returns how many images it encoded."""
    rows = shard_rows(len(images), p.chunk_size, rank, world)
    paths = images["image_path"].to_numpy()[rows].tolist()
    ids = images["id"].to_numpy()
    loader = DataLoader(
        TrainingImages(dataset_root, paths, rows, base.resolution),
        batch_size=p.batch_size,
        num_workers=p.workers,
        shuffle=False,
    )
    writer = ChunkWriter(out, p.chunk_size, len(images), latent_row_shape(base), p.dtype)
    for batch_rows, pixels in tqdm(loader, desc=f"latents (rank {rank})", unit="batch", disable=rank != 0):
        recheck_threads()
        batch_rows = batch_rows.numpy()
        seeds = [image_seed(seed, ids[r]) for r in batch_rows]
        encoded = encode_both_flips(base, pixels, seeds)
        writer.write(batch_rows, encoded.to(DTYPES[p.dtype]).numpy())
    writer.close()  # not on an error: a partial chunk keeps its temporary name
    return len(rows)


def values_key(
    base_fingerprint: str, dataset_root: Path, images: pd.DataFrame, resolution: int, seed: int, dtype: str
) -> str:
    """Hash of everything the encoded values depend on (not batch size, workers or processes)."""
    digest = hashlib.sha256(f"{FORMAT_VERSION}\0{resolution}\0{seed}\0{dtype}\0{base_fingerprint}\0".encode())
    digest.update(code_hash(__name__).encode())
    digest.update(pd.util.hash_pandas_object(images, index=False).to_numpy().tobytes())
    digest.update(files_hash(dataset_root, images["image_path"]).encode())
    return digest.hexdigest()[:16]


def write_index(
    out: Path, images: pd.DataFrame, base: BaseComponents, p: LatentsParams, seed: int, base_fingerprint: str, key: str
) -> None:
    """Check every chunk is there with its shape, then write the index and ``latents.json``."""
    shape = latent_row_shape(base)
    chunks = [chunk_name(k) for k in range(-(-len(images) // p.chunk_size))]
    for k, name in enumerate(chunks):
        rows = min(p.chunk_size, len(images) - k * p.chunk_size)
        path = out / name
        if not path.is_file():
            raise RuntimeError(f"{path}: missing after every process finished (a rank failed?)")
        found = np.load(path, mmap_mode="r").shape
        if found != (rows, *shape):
            raise RuntimeError(f"{path}: shape {found}, expected {(rows, *shape)}")
    images.assign(row=np.arange(len(images))).to_parquet(out / INDEX_FILE, index=False)
    write_json(
        out / LATENTS_JSON,
        {
            "format": FORMAT_VERSION,
            "num_images": len(images),
            "shape": list(shape),
            "dtype": p.dtype,
            "chunk_size": p.chunk_size,
            "chunks": chunks,
            "encoder": "pixels" if base.vae is None else "vae",
            "resolution": base.resolution,
            "seed": seed,
            "base_fingerprint": base_fingerprint,
            "key": key,
        },
    )


def finish(params: Params, layout: Layout, base: BaseComponents, images: pd.DataFrame) -> None:
    """Rank 0, after every rank's :func:`encode_shard`: check the chunks, write the index."""
    base_dir, dataset_root = layout.model_dir("base"), layout.dataset_root(params.data)
    seed, fingerprint = stage_seed(params.seed, STAGE), folder_fingerprint(base_dir)
    key = values_key(fingerprint, dataset_root, images, base.resolution, seed, params.latents.dtype)
    write_index(layout.latents, images, base, params.latents, seed, fingerprint, key)
