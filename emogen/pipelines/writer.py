"""The folder of one generation method: PNGs per group, ``index.json``, one grid per group.

Shared by EmoGen, the baselines and the user commands, so evaluation reads every method
the same way::

    <out>/<group>/<nnnn>.png      group = the emotion (or e.g. "amusement+fear" for fusion)
    <out>/index.json              {"method": ..., "settings": {...}, "images": [{"file":
                                   "<group>/<nnnn>.png", "seed", "emotion", "template", "mode",
                                   "vector_sha256", ...}]}
    <out>/grids/<group>.png       the group's first 64 images, in index order

``file`` is relative to the folder holding ``index.json``. The pipeline stages write to
``data/generated/<method>/`` (``Layout.generated / method``).
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from PIL import Image

from emogen.errors import UserError
from emogen.images import load_rgb
from emogen.jsonio import write_json
from emogen.pipelines.grid import make_grid

INDEX_FILE = "index.json"
GRIDS_FOLDER = "grids"
GRID_MAX = 64
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


@dataclass(frozen=True)
class ImageRecord:
    """What one generated image is; everything but ``group`` goes into the index as is."""

    group: str  # folder name
    emotion: str  # target emotion (the first one when fusing)
    seed: int  # the image's own generator seed
    template: str  # prompt template ("{}" = the emotion token alone)
    mode: str  # "single", "tokens", "interpolate", or a baseline's own name
    vector_sha256: str | None = None  # of the sampled emotion vector(s) (None: no vector)
    emotion_2: str | None = None
    weight: float | None = None
    intensity: float | None = None  # EmoGen's emotion intensity (sampling.py); None: not applicable


@dataclass(frozen=True)
class WrittenSet:
    folder: Path
    index: Path
    grids: dict[str, Path]
    count: int


def check_name(name: str, what: str) -> str:
    if not _SAFE_NAME.match(name) or name in (GRIDS_FOLDER,) or ".." in name:
        raise UserError(f"{what} {name!r} cannot be a folder name (letters, digits, _ . + - only)")
    return name


def write_generated(
    out_dir: str | Path,
    method: str,
    items: Iterable[tuple[ImageRecord, Image.Image]],
    *,
    grid_columns: int = 8,
    grid_cell: int = 0,
    replace: bool = False,
    settings: dict | None = None,
) -> WrittenSet:
    """Write ``items`` (consumed as they come, e.g. from a generator) into ``out_dir``.

    ``replace``: the folder is a stage output and is emptied first; otherwise a folder that
    already holds an index is refused (never overwrite a user's earlier results).
    ``settings`` (JSON-able: model, scheduler, steps, ...) is recorded in the index as is.
    """
    check_name(method, "method")
    out_dir = Path(out_dir)
    if replace and out_dir.exists():
        shutil.rmtree(out_dir)
    elif (out_dir / INDEX_FILE).exists():
        raise UserError(f"{out_dir} already holds generated images ({INDEX_FILE}); choose another folder or remove it")
    entries: list[dict] = []
    by_group: dict[str, list[Path]] = {}
    for record, image in items:
        files = by_group.setdefault(check_name(record.group, "group"), [])
        rel = Path(record.group) / f"{len(files):04d}.png"
        (out_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        image.save(out_dir / rel, format="PNG")
        files.append(out_dir / rel)
        entry = {"file": rel.as_posix(), **asdict(record)}
        entries.append({k: v for k, v in entry.items() if v is not None})
    out_dir.mkdir(parents=True, exist_ok=True)
    grids = {}
    for group, files in by_group.items():
        grids[group] = out_dir / GRIDS_FOLDER / f"{group}.png"
        grids[group].parent.mkdir(exist_ok=True)
        images = [load_rgb(f) for f in files[:GRID_MAX]]
        make_grid(images, grid_columns, grid_cell).save(grids[group], format="PNG")
    index = out_dir / INDEX_FILE
    write_json(index, {"method": method, "settings": settings or {}, "images": entries})
    return WrittenSet(out_dir, index, grids, len(entries))


def read_index(out_dir: str | Path) -> dict:
    """The index of a method folder (for evaluation and tests); errors name the file."""
    path = Path(out_dir) / INDEX_FILE
    if not path.is_file():
        raise UserError(f"{path}: missing; generate the images first (e.g. `dvc repro generate`)")
    try:
        index = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(index, dict) or not isinstance(index.get("images"), list):
        raise UserError(f"{path}: expected an object with an 'images' list")
    return index
