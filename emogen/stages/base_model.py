"""base_model stage: resolve SD 1.5 + CLIP ViT-L/14 (pretrained) or train the embedded model.

Writes ``models/base/base.json`` (the contract every later stage loads through
:func:`emogen.pipelines.components.load_base`), ``metrics/base_model.json``,
``metrics/base_model_samples.png`` and the loss curves ``metrics/base_model_{clip,unet}_loss.csv``
(the pretrained profile trains nothing: empty curves, a note instead of samples).
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

from mlflow.entities import Metric
from PIL import Image, ImageDraw, ImageFont

from emogen.base.data import CAPTIONS_FILE, load_split
from emogen.base.embedded import save_embedded, train_embedded
from emogen.base.evidence import measure
from emogen.config import BaseModelParams, Params
from emogen.data.synthetic_world import load_world
from emogen.jsonio import write_json
from emogen.layout import Layout
from emogen.pipelines.components import BASE_JSON, load_base
from emogen.pipelines.resolve import CLIP_FILES, PIPELINE_FILES, resolve_model
from emogen.seeding import stage_seed
from emogen.timings import record
from emogen.tracking import log_artifact, log_metric_history, log_metrics, set_tags, stage_run

log = logging.getLogger(__name__)

STAGE = "base_model"


def run(params: Params, layout: Layout) -> None:
    bp, out = params.base_model, layout.model_dir("base")
    start = time.perf_counter()
    stage_params = {"seed": params.seed, "data": params.data.model_dump(), STAGE: bp.model_dump()}
    with stage_run(STAGE, stage_params):
        # Resolve first: a missing model must not cost the user their previous base model.
        info = resolve_pretrained(bp, layout) if bp.profile == "pretrained" else None
        if out.exists():
            shutil.rmtree(out)  # stale weights of another profile must not survive
        out.mkdir(parents=True)
        if info is not None:
            write_json(out / BASE_JSON, info)
            metrics: dict[str, Any] = {"profile": "pretrained", "resolution": info["resolution"]}
            set_tags({f"source.{k}": v for k, v in info["sources"].items()})
            write_pretrained_plots(layout, info)
        else:
            info, metrics = train_and_measure(params, layout)
        record(seconds_total=time.perf_counter() - start)
        layout.metrics.mkdir(parents=True, exist_ok=True)
        write_json(layout.metrics / f"{STAGE}.json", metrics)
        log_metrics({k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))})
        log_artifact(str(out / BASE_JSON))
    log.info("base_model (%s): %s", bp.profile, json.dumps(metrics))


def _sha256(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def pretrained_resolution(pipeline: Path) -> int:
    """Pixel side the UNet was trained at: latent sample_size × the VAE's downsampling."""
    unet = json.loads((pipeline / "unet" / "config.json").read_text())
    vae_config = pipeline / "vae" / "config.json"
    factor = 2 ** (len(json.loads(vae_config.read_text())["block_out_channels"]) - 1) if vae_config.is_file() else 1
    return int(unet["sample_size"]) * factor


def resolve_pretrained(params: BaseModelParams, layout: Layout) -> dict[str, Any]:
    pipeline = resolve_model(params.pretrained, PIPELINE_FILES, "base_model.pretrained")
    clip = resolve_model(params.clip, CLIP_FILES, "base_model.clip")
    return {
        "profile": "pretrained",
        "pipeline": layout.relative(pipeline.path),
        "clip": layout.relative(clip.path),
        "resolution": pretrained_resolution(pipeline.path),
        "sources": {pipeline.name: pipeline.revision, clip.name: clip.revision},
        "sampling": params.sampling.model_dump(),
    }


def _log_curve(name: str, values: list[float], csv_path: Path) -> None:
    with csv_path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["step", "loss"])
        writer.writerows((i, round(v, 6)) for i, v in enumerate(values))
    now = int(time.time() * 1000)
    metrics = [Metric(name, v, now, i) for i, v in enumerate(values)]
    log_metric_history(metrics)


def write_pretrained_plots(layout: Layout, info: dict[str, Any]) -> None:
    """dvc.yaml declares the embedded run's plots for either profile; the pretrained one trains
    nothing here, so its loss curves have a header and no steps, and the samples image says so
    and where the base model's own images are (the prompt baseline's grids), instead of a sample."""
    layout.metrics.mkdir(parents=True, exist_ok=True)
    for name in ("clip_loss", "unet_loss"):
        _log_curve(name, [], layout.metrics / f"{STAGE}_{name}.csv")
    lines = [
        f"pretrained base model {info['pipeline']}: nothing trained or sampled in this stage.",
        "Its own images for each emotion word: data/generated/prompt/grids (baseline@prompt).",
    ]
    note = Image.new("RGB", (560, 44), "white")
    ImageDraw.Draw(note).multiline_text((8, 8), "\n".join(lines), fill="black", font=ImageFont.load_default())
    note.save(layout.metrics / f"{STAGE}_samples.png")


def _final(losses: list[float]) -> float:
    """Mean over the last 10 % of the steps (one step's loss is noise)."""
    tail = losses[-max(1, len(losses) // 10) :]
    return sum(tail) / len(tail)


def train_and_measure(params: Params, layout: Layout) -> tuple[dict[str, Any], dict[str, Any]]:
    """The embedded profile: train, save, load back through load_base, measure; → (base.json, metrics)."""
    bp, out = params.base_model, layout.model_dir("base")
    seed = stage_seed(params.seed, STAGE)
    dataset = layout.dataset_root(params.data)
    start = time.perf_counter()
    train = load_split(layout.manifest, dataset, "train", bp.resolution)
    test = load_split(layout.manifest, dataset, "test", bp.resolution)
    seconds = {"data": time.perf_counter() - start}

    model = train_embedded(bp, train, out, seed)
    pipeline, clip = save_embedded(model, out)
    seconds.update(model.seconds)
    info = {
        "profile": "embedded",
        "pipeline": layout.relative(pipeline),
        "clip": layout.relative(clip),
        "resolution": bp.resolution,
        "sources": {
            CAPTIONS_FILE: _sha256(dataset / CAPTIONS_FILE),
            "manifest.parquet": _sha256(layout.manifest),
        },
        "sampling": bp.sampling.model_dump(),
        "words": model.words,
    }
    write_json(out / BASE_JSON, info)

    # Measured on what the other stages will load, not on the in-memory model.
    t0 = time.perf_counter()
    evidence = measure(load_base(out), test, load_world(dataset), bp.eval_captions, bp.grid_rows, seed)
    seconds["evidence"] = time.perf_counter() - t0
    layout.metrics.mkdir(parents=True, exist_ok=True)
    grid = layout.metrics / f"{STAGE}_samples.png"
    evidence.grid.save(grid)
    log_artifact(str(grid))
    for name, values in (("clip_loss", model.clip_losses), ("unet_loss", model.unet_losses)):
        _log_curve(name, values, layout.metrics / f"{STAGE}_{name}.csv")

    metrics = {
        "profile": "embedded",
        **evidence.metrics,
        "clip_loss_final": _final(model.clip_losses),
        "unet_loss_final": _final(model.unet_losses),
        "unet_parameters": sum(p.numel() for p in model.unet.parameters()),
        "clip_parameters": sum(p.numel() for p in model.clip_model.parameters()),
        "vocabulary_size": len(model.tokenizer),
        "train_images": len(train),
    }
    record(**{f"seconds_{k}": v for k, v in seconds.items()})  # metrics/timings/base_model.json
    return info, metrics
