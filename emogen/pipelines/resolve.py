"""Resolve a hub id or a local folder to a local model folder, offline, with its revision.

Nothing here touches the network: a hub id is looked up in the Hugging Face cache only
(``local_files_only=True``), so a missing model is an immediate :class:`MissingModelError`
saying what to download and where the cache is, never a hang.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import constants, snapshot_download
from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

from emogen.errors import MissingModelError

log = logging.getLogger(__name__)

# Files above this size are fingerprinted by size + head + tail instead of read whole
# (hashing SD 1.5's several GB on every run would cost minutes for no extra safety).
_FULL_HASH_LIMIT = 64 * 2**20
_EDGE = 4 * 2**20

# What a folder must hold to be usable; each entry: alternatives, any one suffices.
PIPELINE_FILES: tuple[tuple[str, ...], ...] = (
    ("model_index.json",),
    ("tokenizer/vocab.json", "tokenizer/tokenizer.json"),
    ("text_encoder/config.json",),
    ("unet/config.json",),
    ("scheduler/scheduler_config.json",),
)
CLIP_FILES: tuple[tuple[str, ...], ...] = (
    ("config.json",),
    ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json"),
    ("vocab.json", "tokenizer.json"),
)


@dataclass(frozen=True)
class Resolved:
    name: str  # as the user gave it (hub id or folder)
    path: Path  # local folder to load from
    revision: str  # snapshot commit hash, or "sha256:<content fingerprint>" for a folder


def resolve_model(name: str, required: Sequence[Sequence[str]], param: str) -> Resolved:
    """``name`` (local folder or hub id) → a local folder holding ``required``.

    ``param`` is the params key the user set (named in the error message).
    """
    folder = Path(name).expanduser()
    if folder.is_dir():
        _check_files(folder, required, name, param)
        return Resolved(name, folder, "sha256:" + folder_fingerprint(folder))
    try:
        snapshot = Path(snapshot_download(name, local_files_only=True))
    except (LocalEntryNotFoundError, HFValidationError, FileNotFoundError, OSError, ValueError):
        raise MissingModelError(
            _missing_message(name, param, "is neither a local folder nor in the Hugging Face cache")
        ) from None
    _check_files(snapshot, required, name, param)
    log.info("%s: %s at revision %s", param, name, snapshot.name)
    return Resolved(name, snapshot, snapshot.name)


def _check_files(folder: Path, required: Sequence[Sequence[str]], name: str, param: str) -> None:
    missing = [" or ".join(alts) for alts in required if not any((folder / a).exists() for a in alts)]
    if missing:
        raise MissingModelError(_missing_message(name, param, f"was found at {folder} but lacks {', '.join(missing)}"))


def _missing_message(name: str, param: str, problem: str) -> str:
    return (
        f"{param}: model {name!r} {problem}.\n"
        f"  Hugging Face cache searched: {constants.HF_HUB_CACHE} "
        "(set HF_HOME or HF_HUB_CACHE to use another one).\n"
        f"  To get it, on a machine with network: `hf download {name}` "
        f"(older clients: `huggingface-cli download {name}`), then copy that cache here;\n"
        f"  or set {param} to a local folder that holds the model."
    )


def folder_fingerprint(folder: Path) -> str:
    """SHA-256 over every file's relative path and content (large files: size + head + tail)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        if any(part.startswith(".") for part in Path(rel).parts):
            continue  # .cache/, .gitattributes: bookkeeping, not the model
        size = path.stat().st_size
        digest.update(f"{rel}\0{size}\0".encode())
        with path.open("rb") as fh:
            if size <= _FULL_HASH_LIMIT:
                for chunk in iter(lambda: fh.read(2**20), b""):
                    digest.update(chunk)
            else:
                digest.update(fh.read(_EDGE))
                fh.seek(size - _EDGE)
                digest.update(fh.read(_EDGE))
    return digest.hexdigest()
