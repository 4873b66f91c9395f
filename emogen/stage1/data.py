"""Manifest rows → image datasets for stage 1: decoded once into memory (small sets, after
checking the cache fits), or streamed (decoded per batch in the DataLoader's workers)."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import pandas as pd
import torch
from torch.utils.data import Dataset, Sampler

from emogen.data.tables import image_paths
from emogen.errors import DataError, UserError
from emogen.images import encoder_transform, load_rgb
from emogen.seeding import derived_seed
from emogen.stage1.encoder import encoder_inputs


class CachedImages(Dataset):
    """Every image decoded once into one tensor (the small synthetic set fits in memory)."""

    def __init__(self, pixels: torch.Tensor, labels: torch.Tensor) -> None:
        self.pixels, self.labels = pixels, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.pixels[i], self.labels[i]


class LazyImages(Dataset):
    """Decode on access (EmoSet does not fit in memory; DataLoader workers run this)."""

    def __init__(self, paths: Sequence[Path], labels: torch.Tensor, resize: int, crop: int) -> None:
        self.paths, self.labels, self.resize, self.crop = list(paths), labels, resize, crop

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        try:
            pixels = encoder_transform(load_rgb(self.paths[i]), self.resize, self.crop)
        except (OSError, ValueError) as exc:
            raise DataError(f"{self.paths[i]}: cannot read image ({exc})") from None
        return pixels, self.labels[i]


# The cache may take at most this share of the memory available when the run starts: the
# model, optimizer, DataLoader workers and the other processes of the machine need the rest.
CACHE_MEMORY_SHARE = 0.5


def available_memory() -> int:
    """Bytes the kernel says can be allocated without swapping (MemAvailable)."""
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def cache_bytes(num_images: int, crop: int) -> int:
    """What :class:`CachedImages` holds: float32 (3, crop, crop) per image."""
    return num_images * 3 * crop * crop * torch.finfo(torch.float32).bits // 8


def require_cache_fits(num_images: int, crop: int, available: int | None = None, copies: int | None = None) -> None:
    """Refuse, before decoding anything, an image cache the machine cannot hold: one per
    process on this machine (``copies``; default: torchrun's LOCAL_WORLD_SIZE, else 1)."""
    copies = copies or int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    need, available = copies * cache_bytes(num_images, crop), available_memory() if available is None else available
    if need > CACHE_MEMORY_SHARE * available:
        per_process = f" ({copies} processes on this machine, one cache each)" if copies > 1 else ""
        raise UserError(
            f"stage1.cache_images: decoding {num_images} images at {crop}x{crop} px into memory needs "
            f"{need / 2**30:.1f} GiB{per_process}, more than {CACHE_MEMORY_SHARE:.0%} of the {available / 2**30:.1f} GiB "
            "available; set `stage1.cache_images: false` in params.yaml to stream the images through "
            "`stage1.workers` DataLoader workers instead"
        )


def split_dataset(
    rows: pd.DataFrame, dataset_root: Path, resize: int, crop: int, cache: bool, workers: int, split: str
) -> Dataset:
    paths = image_paths(rows, dataset_root)
    labels = torch.tensor(rows["emotion_idx"].to_numpy(), dtype=torch.long)
    if not cache:
        return LazyImages(paths, labels, resize, crop)
    return CachedImages(encoder_inputs(paths, resize, crop, workers, desc=f"decode {split}"), labels)


class EpochFlips(Dataset):
    """Random horizontal flips of a training set, one draw per (seed, epoch, image), applied in
    ``__getitem__`` (so in the DataLoader workers): the same flips whatever the number of
    processes, workers or the batch size, and no generator state to checkpoint."""

    def __init__(self, images: Dataset, seed: int) -> None:
        self.images, self.seed = images, seed
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        generator = torch.Generator().manual_seed(epoch_seed(self.seed, epoch, 1))
        self.flip = torch.rand(len(self.images), generator=generator) < 0.5

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        pixels, label = self.images[i]
        return (pixels.flip(-1) if self.flip[i] else pixels), label


def epoch_seed(seed: int, epoch: int, *stream: int) -> int:
    """Independent stream per (epoch, stream...), so a resumed run replays what it would have."""
    return derived_seed(seed, epoch, *stream, bits=32)


class EpochShuffle(Sampler[int]):
    """A permutation that depends only on (seed, epoch): no generator state to checkpoint."""

    def __init__(self, size: int, seed: int) -> None:
        self.size, self.seed, self.epoch = size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
        return iter(torch.randperm(self.size, generator=generator).tolist())
