"""The processed tables every later stage reads, as explicit Arrow schemas (the contract between stages)."""

from __future__ import annotations

import pyarrow as pa

# One row per usable image (ingest). Paths are relative to the dataset root.
MANIFEST = pa.schema([
    ("id", pa.string()),
    ("split", pa.string()),
    ("emotion", pa.string()),
    ("emotion_idx", pa.int64()),
    ("image_path", pa.string()),
    ("annotation_path", pa.string()),
    ("scene", pa.string()),
    ("objects", pa.list_(pa.string())),
    ("brightness", pa.float64()),
    ("colorfulness", pa.float64()),
    ("facial_expression", pa.string()),
    ("human_action", pa.string()),
    ("attribute", pa.string()),
    ("attribute_kind", pa.string()),
    ("width", pa.int64()),
    ("height", pa.int64()),
    ("image_format", pa.string()),  # what the bytes are (a PNG named .jpg says PNG)
    ("image_mode", pa.string()),  # PIL mode: L, CMYK, RGBA, P are converted to RGB on load
])

# One row per split-file entry that cannot be used (ingest), with the reason.
QUARANTINE = pa.schema([
    ("split", pa.string()),
    ("row", pa.int64()),  # index of the entry in <split>.json
    ("id", pa.string()),
    ("image_path", pa.string()),
    ("annotation_path", pa.string()),
    ("reason", pa.string()),
    ("detail", pa.string()),
])

# One row per training sample (balance): oversampled, repeats allowed.
BALANCED = pa.schema([
    ("id", pa.string()),
    ("emotion", pa.string()),
    ("emotion_idx", pa.int64()),
    ("attribute", pa.string()),
    ("attribute_kind", pa.string()),
    ("image_path", pa.string()),
])

ATTRIBUTE_KINDS: tuple[str, ...] = ("object", "scene")  # balance's group order (published: objects first)


def attribute_key(name: str) -> str:
    """The attribute form of a scene/object name (docs/method.md): lower-case, spaces → ``_``."""
    return name.strip().lower().replace(" ", "_")
