"""prepare_data: render the synthetic EmoSet, or check and fingerprint a real one.

Synthetic (``data.source: synthetic``): renders ``prepare_data.num_images`` images into
``data/synthetic/emoset`` in EmoSet's exact layout (info.json, train/val/test.json,
``image/<emo>/<id>.jpg``, ``annotation/<emo>/<id>.json``) plus ``captions.parquet``
(content captions, a share naming the image's emotion) and ``world.json`` (the ground-truth profiles, the label rule and
the Bayes-optimal accuracy per split). Same params → same files.

Real (``data.source: emoset``): checks that ``data.root`` is an EmoSet layout outside every
stage output (``emogen.data.placement``) and writes only its fingerprint to
``data/fingerprint.json``; the dataset is never copied. Both outputs exist for either source
(the other one empty or a stub) because dvc.yaml's outputs are fixed.
"""

from __future__ import annotations

import logging
import multiprocessing
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from emogen.config import Params
from emogen.data import render as rnd
from emogen.data.emoset import ANNOTATION_DIR, IMAGE_DIR, INFO_FILE, SPLITS, fingerprint
from emogen.data.placement import check_data_root, clear_own_output
from emogen.data.synthetic_world import (
    WORLD_FILE,
    ImageSpec,
    World,
    captions,
    emotion_caption_mask,
    emotion_posterior,
    sample_specs,
)
from emogen.emotions import EMOTIONS
from emogen.jsonio import write_json
from emogen.layout import Layout
from emogen.seeding import stage_seed
from emogen.tracking import log_artifact, log_metrics, stage_run

log = logging.getLogger(__name__)

CAPTIONS_FILE = "captions.parquet"
# Below this many images a worker pool costs more than it saves.
_POOL_MIN_IMAGES = 1000
_CHUNK = 250


def run(params: Params, layout: Layout) -> None:
    stage_params = {
        "seed": params.seed,
        "data": params.data.model_dump(),
        "prepare_data": params.prepare_data.model_dump(),
    }
    if params.data.source == "emoset":
        check_data_root(Path(params.data.root), layout)  # before anything is written
    with stage_run("prepare_data", stage_params):
        start = time.perf_counter()
        layout.fingerprint.parent.mkdir(parents=True, exist_ok=True)
        if params.data.source == "synthetic":
            counts = render_synthetic(params, layout.synthetic)
            write_json(layout.fingerprint, {"source": "synthetic", "root": layout.relative(layout.synthetic)})
            log_artifact(str(layout.synthetic / WORLD_FILE))
        else:
            clear_own_output(layout.synthetic)
            counts = record_fingerprint(Path(params.data.root), layout.fingerprint)
            log_artifact(str(layout.fingerprint))
        counts["seconds"] = round(time.perf_counter() - start, 2)
        log_metrics(counts)
    log.info("prepare_data: %s", counts)


def image_ids(specs: list[ImageSpec]) -> list[str]:
    """EmoSet-style ids, ``<emotion>_<n>`` numbered per emotion in drawing order."""
    width = max(5, len(str(len(specs))))
    seen: Counter[int] = Counter()
    ids = []
    for spec in specs:
        seen[spec.emotion_idx] += 1
        ids.append(f"{EMOTIONS[spec.emotion_idx]}_{seen[spec.emotion_idx]:0{width}d}")
    return ids


def assign_splits(specs: list[ImageSpec], fractions: dict[str, float], rng: np.random.Generator) -> list[str]:
    """Stratified by emotion: each emotion's images are shuffled and cut by ``fractions``."""
    splits = [""] * len(specs)
    for emotion in range(len(EMOTIONS)):
        members = [i for i, s in enumerate(specs) if s.emotion_idx == emotion]
        order = rng.permutation(len(members))
        n_train = round(fractions["train"] * len(members))
        n_val = round(fractions["val"] * len(members))
        for rank, j in enumerate(order):
            splits[members[j]] = "train" if rank < n_train else "val" if rank < n_train + n_val else "test"
    return splits


def info_json(world: World) -> dict:
    """EmoSet's info.json: label2idx/idx2label per attribute kind (no faces or actions here)."""
    levels = [f"{i / 10:.1f}" for i in range(11)]
    kinds = {
        "emotion": list(EMOTIONS),
        "brightness": levels,
        "colorfulness": levels,
        "scene": [a.name for a in world.scenes],
        "object": [a.name for a in world.objects],
    }
    return {
        kind: {"label2idx": {n: i for i, n in enumerate(names)}, "idx2label": {str(i): n for i, n in enumerate(names)}}
        for kind, names in kinds.items()
    }


def _render_all(root: Path, items: list[tuple[ImageSpec, str]], world: World, params: Params) -> None:
    p = params.prepare_data
    jobs = [
        (str(root), p.image_size, p.jpeg_quality, world, items[i : i + _CHUNK]) for i in range(0, len(items), _CHUNK)
    ]
    bar = tqdm(total=len(items), desc="render", unit="img")
    if p.workers == 1 or len(items) < _POOL_MIN_IMAGES:
        for job in jobs:
            bar.update(rnd.write_chunk(job))
    else:
        # forkserver: safe even when the caller has torch threads running (tests).
        with multiprocessing.get_context("forkserver").Pool(p.workers) as pool:
            for done in pool.imap_unordered(rnd.write_chunk, jobs):
                bar.update(done)
    bar.close()


def render_synthetic(params: Params, out: Path) -> dict:
    """Render the synthetic EmoSet into ``out`` (cleared first); returns summary counts."""
    p = params.prepare_data
    world = World(no_scene_fraction=p.no_scene_fraction, two_objects_fraction=p.two_objects_fraction)
    rng = np.random.default_rng(stage_seed(params.seed, "prepare_data"))
    specs = sample_specs(world, p.num_images, rng)
    ids = image_ids(specs)
    splits = assign_splits(specs, p.split.model_dump(), rng)
    # Own stream: the share can change without moving any image, label or split.
    named = emotion_caption_mask(
        len(specs),
        p.emotion_caption_fraction,
        np.random.default_rng(stage_seed(params.seed, "prepare_data/emotion_captions")),
    )

    clear_own_output(out)
    for sub in (IMAGE_DIR, ANNOTATION_DIR):
        for emotion in EMOTIONS:
            (out / sub / emotion).mkdir(parents=True, exist_ok=True)
    order = sorted(range(len(specs)), key=lambda i: (specs[i].emotion_idx, ids[i]))
    _render_all(out, [(specs[i], ids[i]) for i in order], world, params)

    for split in SPLITS:
        entries = []
        for i in order:
            if splits[i] == split:
                emotion = EMOTIONS[specs[i].emotion_idx]
                entries.append(
                    [
                        emotion,
                        ids[i],
                        f"{IMAGE_DIR}/{emotion}/{ids[i]}.jpg",
                        f"{ANNOTATION_DIR}/{emotion}/{ids[i]}.json",
                    ]
                )
        write_json(out / f"{split}.json", entries, indent=None)
    write_json(out / INFO_FILE, info_json(world))
    table = pa.table(
        {"id": [ids[i] for i in order], "captions": [captions(specs[i], world, bool(named[i])) for i in order]},
        schema=pa.schema([("id", pa.string()), ("captions", pa.list_(pa.string()))]),
    )
    pq.write_table(table, out / CAPTIONS_FILE)

    max_post = np.array([emotion_posterior(s.scene, s.objects, world).max() for s in specs])
    split_arr = np.array(splits)
    bayes = {
        split: round(float(max_post[split_arr == split].mean()), 4) for split in SPLITS if (split_arr == split).any()
    }
    world_doc = {
        **world.to_dict(),
        "image_size": p.image_size,
        "num_images": p.num_images,
        "bayes_accuracy": bayes,
        "annotation": {
            "brightness": "mean Rec.601 luminance / 255 of the rendered image, rounded to 0.1",
            "colorfulness": f"Hasler-Suesstrunk colorfulness / {rnd.COLORFULNESS_SCALE:g}, clipped to 1, rounded to 0.1",
        },
    }
    write_json(out / WORLD_FILE, world_doc)
    return {
        "num_images": len(specs),
        **{f"split_{s}": int((split_arr == s).sum()) for s in SPLITS},
        **{f"emotion_{e}": int(sum(s.emotion_idx == i for s in specs)) for i, e in enumerate(EMOTIONS)},
        "no_scene_fraction": round(float(np.mean([s.scene is None for s in specs])), 4),
        "emotion_caption_fraction": round(float(named.mean()), 4),
        **{f"bayes_accuracy_{s}": v for s, v in bayes.items()},
    }


def record_fingerprint(root: Path, out: Path) -> dict:
    """Check that ``root`` is an EmoSet layout and write its fingerprint to ``out``."""
    fp = fingerprint(root)
    write_json(out, fp)
    return fp["counts"]
