"""Reading EmoSet's layout (docs/method.md "Data"): info.json, the split files, and a cheap fingerprint.

Shared by prepare_data (checks a real download), ingest and validate, so every stage reads
info.json the same way.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emogen.errors import DataError
from emogen.jsonio import read_json

INFO_FILE = "info.json"
SPLITS: tuple[str, ...] = ("train", "val", "test")
IMAGE_DIR, ANNOTATION_DIR = "image", "annotation"
REQUIRED = (INFO_FILE, *(f"{s}.json" for s in SPLITS), IMAGE_DIR, ANNOTATION_DIR)


@dataclass(frozen=True)
class Info:
    """The label2idx maps of info.json: emotions always; the other kinds only in newer downloads."""

    emotions: dict[str, int]
    vocabularies: dict[str, frozenset[str]] = field(default_factory=dict)  # kind → labels


def _label_map(value: Any) -> dict[str, int] | None:
    """``{"label2idx": {...}}`` or a bare ``{label: idx}`` → the map; anything else → None."""
    if isinstance(value, dict) and isinstance(value.get("label2idx"), dict):
        value = value["label2idx"]
    if isinstance(value, dict) and value and all(isinstance(v, int) for v in value.values()):
        return {str(k): v for k, v in value.items()}
    return None


def read_info(root: Path) -> Info:
    """Parse ``root/info.json``: ``{"emotion": {"label2idx": ...}, "scene": ...}`` (current
    downloads), the same with only ``emotion`` (older ones), or a bare top-level label2idx."""
    path = root / INFO_FILE
    data = read_json(path, "missing (EmoSet's label maps; copy it from the EmoSet repository)", DataError)
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object of label maps, got {type(data).__name__}")
    flat = _label_map(data)
    maps = {"emotion": flat} if flat else {str(k): m for k, v in data.items() if (m := _label_map(v))}
    if "emotion" not in maps:
        raise DataError(f'{path}: no emotion map (expected {{"emotion": {{"label2idx": {{"amusement": 0, ...}}}}}})')
    emotions = maps.pop("emotion")
    return Info(emotions, {kind: frozenset(m) for kind, m in maps.items()})


def read_split(root: Path, split: str) -> list[Any]:
    """The raw entries of ``root/<split>.json`` (a JSON list; entries are checked by ingest)."""
    path = root / f"{split}.json"
    entries = read_json(path, "missing split file", DataError)
    if not isinstance(entries, list):
        raise DataError(f"{path}: expected a JSON list of [emotion, id, image, annotation], got {type(entries).__name__}")
    return entries


def check_layout(root: Path) -> None:
    """Raise a DataError naming everything an EmoSet folder lacks."""
    if not root.is_dir():
        raise DataError(f"data.root {root}: no such folder (point data.root at your EmoSet download)")
    missing = [name for name in REQUIRED if not (root / name).exists()]
    if missing:
        raise DataError(
            f"data.root {root} is not an EmoSet layout: missing {', '.join(missing)} "
            f"(expected {', '.join(REQUIRED)})"
        )


def _tree_stats(folder: Path, digest: "hashlib._Hash") -> int:
    """Feed (relative path, size, mtime) of every file under ``folder`` to ``digest``; count them."""
    count = 0
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        for name in sorted(filenames):
            st = os.stat(os.path.join(dirpath, name))
            rel = os.path.relpath(os.path.join(dirpath, name), folder)
            digest.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
            count += 1
    return count


def fingerprint(root: Path) -> dict[str, Any]:
    """A cheap identity of an EmoSet folder: hashes of info.json and the split files, and of
    every image/annotation file's path, size and mtime (no file contents are read)."""
    check_layout(root)
    digest = hashlib.sha256()
    for name in (INFO_FILE, *(f"{s}.json" for s in SPLITS)):
        digest.update(name.encode() + b"\0" + hashlib.sha256((root / name).read_bytes()).digest())
    counts = {split: len(read_split(root, split)) for split in SPLITS}
    for sub in (IMAGE_DIR, ANNOTATION_DIR):
        counts[f"{sub}_files"] = _tree_stats(root / sub, digest)
    return {"root": str(root.resolve()), "counts": counts, "sha256": digest.hexdigest(),
            "method": "sha256 of info.json, split files, and (path, size, mtime) of image/ and annotation/ files"}
