"""Everything the report shows, read from the pipeline's files (errors name the file).

Each reader returns plain data (dicts, tables, PNG bytes); ``html.py`` lays it out. Paths are
those of :class:`emogen.layout.Layout`; ``dvc.yaml`` lists the same files as the stage's deps.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from emogen.emotions import EMOTIONS
from emogen.errors import UserError
from emogen.jsonio import read_json
from emogen.layout import Layout
from emogen.pipelines.writer import read_index
from emogen.report.study import read_study

TRANSFER_METHOD = "emogen_transfer"
# Training curves: file → (x column, y columns, title).
CURVES: dict[str, tuple[str, tuple[str, ...], str]] = {
    "stage1_history.csv": ("epoch", ("train_accuracy", "val_accuracy"), "Stage 1: accuracy per epoch"),
    "base_model_clip_loss.csv": ("step", ("loss",), "Base model: CLIP contrastive loss"),
    "base_model_unet_loss.csv": ("step", ("loss",), "Base model: UNet ε-loss"),
    "stage2_loss.csv": ("step", ("l_ldm", "l_attr", "attr_acc"), "Stage 2: L_LDM, L_attr, attribute accuracy"),
}


def read_png(path: Path, hint: str) -> bytes:
    if not path.is_file():
        raise UserError(f"{path}: missing; {hint}")
    data = path.read_bytes()
    if not data.startswith(b"\x89PNG"):
        raise UserError(f"{path}: not a PNG file")
    return data


def read_csv_rows(path: Path, hint: str, columns: tuple[str, ...]) -> list[dict[str, str]]:
    if not path.is_file():
        raise UserError(f"{path}: missing; {hint}")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in columns if c not in (reader.fieldnames or [])]
        if missing:
            raise UserError(f"{path}: missing column(s) {', '.join(missing)} (has {reader.fieldnames})")
        return list(reader)


@dataclass(frozen=True)
class MethodImages:
    """A method's generated PNGs, per emotion (index order), as bytes."""

    method: str
    by_emotion: dict[str, list[bytes]]


def method_images(folder: Path, per_emotion: int) -> MethodImages:
    """The first ``per_emotion`` images of each emotion in ``folder``'s index."""
    index = read_index(folder)
    by_emotion: dict[str, list[bytes]] = {name: [] for name in EMOTIONS}
    for row, entry in enumerate(index["images"]):
        emotion, file = entry.get("emotion"), entry.get("file")
        if emotion not in by_emotion or not isinstance(file, str):
            raise UserError(f"{folder / 'index.json'}: images[{row}] needs an EmoSet 'emotion' and a 'file'")
        if len(by_emotion[emotion]) < per_emotion:
            by_emotion[emotion].append(read_png(folder / file, f"listed in {folder / 'index.json'} images[{row}]"))
    empty = [name for name, images in by_emotion.items() if not images]
    if empty:
        raise UserError(f"{folder / 'index.json'}: no images of {', '.join(empty)}")
    return MethodImages(folder.name, by_emotion)


def transfer_cells(folder: Path) -> tuple[list[str], dict[tuple[str, str], bytes]]:
    """Templates (first-seen order) and the first image of each (emotion, template)."""
    index = read_index(folder)
    templates: list[str] = []
    cells: dict[tuple[str, str], bytes] = {}
    for row, entry in enumerate(index["images"]):
        template, emotion = entry.get("template"), entry.get("emotion")
        if not isinstance(template, str) or emotion not in EMOTIONS:
            raise UserError(f"{folder / 'index.json'}: images[{row}] needs a 'template' and an EmoSet 'emotion'")
        if template not in templates:
            templates.append(template)
        if (emotion, template) not in cells:
            cells[emotion, template] = read_png(folder / entry["file"], f"listed in {folder / 'index.json'}")
    return templates, cells


def strongest_attributes(confidence_dir: Path, top: int) -> dict[str, list[tuple[str, str, float, int]]]:
    """Per emotion, the ``top`` attributes with the highest α for it: (attribute, kind, α, images)."""
    path = confidence_dir / "alpha.parquet"
    if not path.is_file():
        raise UserError(f"{path}: missing; build it with `dvc repro confidence`")
    alpha = pd.read_parquet(path)
    missing = [c for c in ("attribute", "kind", "count", *EMOTIONS) if c not in alpha.columns]
    if missing:
        raise UserError(f"{path}: missing column(s) {', '.join(missing)}")
    return {
        name: [
            (r.attribute, r.kind, float(getattr(r, name)), int(r.count)) for r in alpha.nlargest(top, name).itertuples()
        ]
        for name in EMOTIONS
    }


@dataclass(frozen=True)
class ReportInputs:
    table1: dict
    per_emotion: list[dict[str, str]]
    transfer: dict
    methods: list[MethodImages]
    transfer_templates: list[str]
    transfer_images: dict[tuple[str, str], bytes]
    intensity: dict
    intensity_strip: bytes
    emotion_space_png: bytes
    alpha_top: dict[str, list[tuple[str, str, float, int]]]
    curves: dict[str, list[dict[str, str]]]
    validation: dict
    study: dict | None = None  # metrics/study.json (emogen study seeds) when it exists


def read_inputs(layout: Layout, methods: tuple[str, ...], per_emotion: int, top_attributes: int) -> ReportInputs:
    m = layout.metrics
    evaluate = "build it with `dvc repro evaluate`"
    table1 = read_json(m / "table1.json", evaluate)
    for key in ("methods", "evaluators"):
        if not isinstance(table1.get(key), dict):
            raise UserError(f"{m / 'table1.json'}: no '{key}' object")
    missing = [name for name in methods if name not in table1["methods"]]
    if missing:
        raise UserError(f"{m / 'table1.json'}: methods.{missing[0]} missing (report.methods lists {list(methods)})")
    transfer = read_json(m / "transfer.json", evaluate)
    if not isinstance(transfer.get("templates"), dict):
        raise UserError(f"{m / 'transfer.json'}: no 'templates' object")
    templates, cells = transfer_cells(layout.generated / TRANSFER_METHOD)
    intensity = read_json(m / "intensity.json", "build it with `dvc repro intensity`")
    if not isinstance(intensity.get("points"), list):
        raise UserError(f"{m / 'intensity.json'}: no 'points' list")
    curves = {}
    for file, (x, ys, _) in CURVES.items():
        curves[file] = read_csv_rows(m / file, "build it with `dvc repro`", (x, *ys))
    validation = read_json(m / "validate.json", "build it with `dvc repro validate`")
    if not isinstance(validation.get("checks"), dict):
        raise UserError(f"{m / 'validate.json'}: no 'checks' object")
    return ReportInputs(
        table1=table1,
        per_emotion=read_csv_rows(m / "table1_per_emotion.csv", evaluate, ("method", "emotion")),
        transfer=transfer,
        methods=[method_images(layout.generated / name, per_emotion) for name in methods],
        transfer_templates=templates,
        transfer_images=cells,
        intensity=intensity,
        intensity_strip=read_png(m / "intensity_strip.png", "build it with `dvc repro intensity`"),
        emotion_space_png=read_png(m / "emotion_space_pca.png", "build it with `dvc repro emotion_space`"),
        alpha_top=strongest_attributes(layout.model_dir("confidence"), top_attributes),
        curves=curves,
        validation=validation,
        study=read_study(m),
    )
