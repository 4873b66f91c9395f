"""Images the evaluation reads: a split of the real dataset, and a method's generated folder."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from emogen.config import DataParams
from emogen.data.tables import image_paths, read_table, split_rows
from emogen.emotions import EMOTIONS, emotion_index
from emogen.errors import UserError
from emogen.images import load_rgb
from emogen.layout import Layout
from emogen.pipelines.writer import read_index


@dataclass
class ImageSet:
    images: list[Image.Image]  # RGB, at the evaluation resolution
    labels: np.ndarray  # (N,) target (generated) or annotated (real) emotion index
    entries: list[dict]  # the index entries (generated) or {"id": ...} (real)


def shrink(img: Image.Image, resolution: int) -> Image.Image:
    return img if img.size == (resolution, resolution) else img.resize((resolution, resolution), Image.BICUBIC)


def iter_split(layout: Layout, data: DataParams, split: str, resolution: int, chunk: int = 256) -> Iterator[ImageSet]:
    """The real images of ``split`` (manifest order) in chunks, resized to ``resolution`` as they
    load: EmoSet's splits do not fit in memory at 512 px."""
    rows = split_rows(
        read_table(layout.manifest, ["id", "split", "emotion_idx", "image_path"]), split, str(layout.manifest)
    )
    paths = image_paths(rows, layout.dataset_root(data))
    with tqdm(total=len(paths), desc=f"real {split}", unit="img") as bar:
        for start in range(0, len(paths), chunk):
            part = rows.iloc[start : start + chunk]
            images = [shrink(load_rgb(p), resolution) for p in paths[start : start + chunk]]
            bar.update(len(images))
            yield ImageSet(images, part["emotion_idx"].to_numpy(), [{"id": i} for i in part["id"]])


def load_split(layout: Layout, data: DataParams, split: str, resolution: int) -> ImageSet:
    """All of ``split`` at once (small sets: the synthetic one)."""
    parts = list(iter_split(layout, data, split, resolution))
    return ImageSet(
        [img for part in parts for img in part.images],
        np.concatenate([part.labels for part in parts]),
        [entry for part in parts for entry in part.entries],
    )


def load_generated(folder: Path, resolution: int, method: str) -> ImageSet:
    """Every image of a method folder (``write_generated`` layout); errors name the folder and entry."""
    if not (folder / "index.json").is_file():
        raise UserError(
            f"{folder}: no generated images of method {method!r} (index.json missing); "
            f"run its stage first (`dvc repro`), or drop it from evaluate.methods"
        )
    index = read_index(folder)
    images, labels = [], []
    for n, entry in enumerate(index["images"]):
        try:
            labels.append(emotion_index(entry["emotion"]))
            images.append(shrink(load_rgb(folder / entry["file"]), resolution))
        except (KeyError, TypeError) as exc:
            raise UserError(f"{folder / 'index.json'}: image {n} lacks 'file' or 'emotion' ({exc})") from None
        except ValueError as exc:
            raise UserError(f"{folder / 'index.json'}: image {n}: {exc}") from None
        except OSError as exc:
            raise UserError(f"{folder / 'index.json'}: image {n} ({entry['file']}) unreadable: {exc}") from None
    missing = sorted(set(EMOTIONS) - {EMOTIONS[i] for i in labels})
    if missing:
        raise UserError(f"{folder / 'index.json'}: no images of {', '.join(missing)}; every emotion is evaluated")
    return ImageSet(images, np.asarray(labels), index["images"])
