"""Checks one split-file entry of an EmoSet folder: its image header and its annotation.

A usable entry becomes a manifest row; anything else an ``Issue`` with one of ``REASONS``.
Kept free of heavy imports: ingest runs it in worker processes.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from PIL import Image, UnidentifiedImageError

from emogen.data.schema import attribute_key
from emogen.emotions import EMOTION_TO_IDX

# reason → what it means (docs/stages/data.md lists the same table).
REASONS: dict[str, str] = {
    "malformed_entry": "split-file entry is not [emotion, id, image, annotation] strings with relative paths",
    "missing_image": "the image file does not exist",
    "empty_image": "the image file has zero bytes",
    "unreadable_image": "not an image PIL can read (corrupt header, or corrupt data with decode_images)",
    "truncated_image": "the JPEG/PNG ends before its end marker (file cut short)",
    "too_large": "width × height above ingest.max_pixels (read from the header; never decoded)",
    "missing_annotation": "the annotation file does not exist",
    "malformed_annotation": "the annotation is not a JSON object",
    "invalid_annotation": "an annotation field is missing (emotion) or has the wrong type",
    "unknown_emotion": "the emotion is not in info.json or not one of the 8 EmoSet emotions",
    "emotion_mismatch": "split file, folder and annotation disagree on the emotion",
    "duplicate_id": "the id already appeared in an earlier entry (train, val, test order)",
}
# End markers looked for in the last bytes of a file (a cut file lacks them).
_END_MARKERS = {"JPEG": b"\xff\xd9", "PNG": b"IEND"}
_TAIL_BYTES = 64


@dataclass(frozen=True)
class Issue:
    split: str
    row: int
    id: str | None
    image_path: str | None
    annotation_path: str | None
    reason: str
    detail: str

    def describe(self, root: str) -> str:
        return (f"{root}/{self.split}.json row {self.row} (id {self.id}, {self.image_path}): "
                f"{self.reason}: {self.detail}")


class _Bad(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason, self.detail = reason, detail


def _parse_entry(entry: Any) -> tuple[str, str, str, str]:
    """[emotion, id, image, annotation] (or [emotion, image, annotation]: id = image file stem)."""
    if isinstance(entry, list) and len(entry) == 3:
        entry = [entry[0], PurePosixPath(str(entry[1])).stem, entry[1], entry[2]]
    if not (isinstance(entry, list) and len(entry) == 4 and all(isinstance(v, str) and v for v in entry)):
        raise _Bad("malformed_entry", f"got {json.dumps(entry)[:200]}")
    for path in entry[2:]:
        parts = PurePosixPath(path).parts
        if path.startswith("/") or ".." in parts:
            raise _Bad("malformed_entry", f"path {path!r} must be relative to the dataset root")
    return entry[0], entry[1], entry[2], entry[3]


def _read_image(path: str, decode: bool, max_pixels: int) -> tuple[int, int, str, str]:
    """(width, height, format, mode) from the header; ``decode`` also decodes the pixels, only
    of an image within ``max_pixels`` (a decompression bomb is refused from its header)."""
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        raise _Bad("missing_image", f"{path} does not exist") from None
    with f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            raise _Bad("empty_image", f"{path} has 0 bytes")
        try:
            with warnings.catch_warnings():  # PIL's own bomb warning: max_pixels decides here
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                img = Image.open(f)
        except Image.DecompressionBombError as exc:
            raise _Bad("too_large", f"{path}: {exc}") from None
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            raise _Bad("unreadable_image", f"{path}: {exc}") from None
        if img.width * img.height > max_pixels:
            raise _Bad("too_large", f"{path}: {img.width}×{img.height} = {img.width * img.height:,} pixels "
                                    f"> ingest.max_pixels {max_pixels:,}")
        marker = _END_MARKERS.get(img.format or "")
        if marker:
            f.seek(max(0, size - _TAIL_BYTES))
            if marker not in f.read():
                raise _Bad("truncated_image", f"{path}: no {img.format} end marker ({size} bytes)")
        if decode:
            try:
                f.seek(0)
                img.load()
            except (OSError, SyntaxError, ValueError) as exc:
                raise _Bad("unreadable_image", f"{path}: pixels do not decode: {exc}") from None
        return img.width, img.height, img.format or "", img.mode


def _optional(annotation: dict, key: str, types: tuple[type, ...]) -> Any:
    value = annotation.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, types):
        raise _Bad("invalid_annotation", f"{key!r} is {type(value).__name__} {json.dumps(value)[:80]}, expected {'/'.join(t.__name__ for t in types)}")
    return value


def _level(annotation: dict, key: str) -> float | None:
    """brightness/colorfulness: a number, or a numeric string as info.json's labels are ("0.5")."""
    value = _optional(annotation, key, (int, float, str))
    try:
        return None if value is None else float(value)
    except ValueError:
        raise _Bad("invalid_annotation", f"{key!r} is {value!r}, expected a number") from None


def _read_annotation(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            annotation = json.load(f)
    except FileNotFoundError:
        raise _Bad("missing_annotation", f"{path} does not exist") from None
    except ValueError as exc:  # JSONDecodeError and bad UTF-8
        raise _Bad("malformed_annotation", f"{path}: {exc}") from None
    if not isinstance(annotation, dict):
        raise _Bad("malformed_annotation", f"{path}: expected a JSON object, got {type(annotation).__name__}")
    if not isinstance(annotation.get("emotion"), str):
        raise _Bad("invalid_annotation", f"{path}: no 'emotion' string")
    return annotation


def check_entry(root: str, emotions: frozenset[str], decode: bool, max_pixels: int, entry: Any) -> dict[str, Any]:
    """The manifest row of one entry (without ``split``); raises ``_Bad`` when unusable."""
    emotion, image_id, image_path, annotation_path = _parse_entry(entry)
    width, height, fmt, mode = _read_image(f"{root}/{image_path}", decode, max_pixels)
    annotation = _read_annotation(f"{root}/{annotation_path}")
    labels = {"split file": emotion, "annotation": annotation["emotion"]}
    if len(PurePosixPath(image_path).parts) >= 2:
        labels["image folder"] = PurePosixPath(image_path).parts[-2]
    if len(set(labels.values())) > 1:
        raise _Bad("emotion_mismatch", ", ".join(f"{k} says {v!r}" for k, v in labels.items()))
    if emotion not in emotions or emotion not in EMOTION_TO_IDX:
        raise _Bad("unknown_emotion", f"{emotion!r} ({'not in info.json' if emotion not in emotions else 'not an EmoSet emotion'})")
    scene = _optional(annotation, "scene", (str,)) or None
    objects = _optional(annotation, "object", (list,)) or []
    if not all(isinstance(o, str) for o in objects):
        raise _Bad("invalid_annotation", f"'object' must be a list of strings, got {json.dumps(objects)[:80]}")
    floats = {k: _level(annotation, k) for k in ("brightness", "colorfulness")}
    primary, kind = (scene, "scene") if scene else (objects[0], "object") if objects else (None, None)
    return {
        "id": image_id,
        "emotion": emotion,
        "emotion_idx": EMOTION_TO_IDX[emotion],
        "image_path": image_path,
        "annotation_path": annotation_path,
        "scene": scene,
        "objects": objects,
        **floats,
        "facial_expression": _optional(annotation, "facial_expression", (str,)),
        "human_action": _optional(annotation, "human_action", (str,)),
        "attribute": attribute_key(primary) if primary else None,
        "attribute_kind": kind,
        "width": width,
        "height": height,
        "image_format": fmt,
        "image_mode": mode,
    }


def check_entries(job: tuple[str, frozenset[str], bool, int, str, int, list[Any]]) -> list[dict[str, Any] | Issue]:
    """Check a run of entries of one split, starting at row ``start`` (one worker job)."""
    root, emotions, decode, max_pixels, split, start, entries = job
    out: list[dict[str, Any] | Issue] = []
    for row, entry in enumerate(entries, start):
        try:
            out.append({**check_entry(root, emotions, decode, max_pixels, entry), "split": split})
        except _Bad as bad:
            out.append(Issue(split, row, *_salvage(entry), bad.reason, bad.detail))
    return out


def _salvage(entry: Any) -> tuple[str | None, str | None, str | None]:
    """(id, image, annotation) of an entry for the quarantine table, None where unparseable."""
    try:
        return _parse_entry(entry)[1:]
    except _Bad:
        return None, None, None
