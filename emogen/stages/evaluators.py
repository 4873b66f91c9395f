"""The ``evaluators`` stage: the models every metric uses, independent of every generator.

Embedded profile: trains the stand-ins of :mod:`emogen.evaluation.embedded` on a fresh
render of the synthetic world. Pretrained profile: resolves CLIP ViT-L/14, an ImageNet and
a Places365 ResNet-50 (never downloaded) and trains the linear emotion probe on EmoSet's
train split (:mod:`emogen.evaluation.pretrained`). Writes ``models/evaluators/`` (what
``load_evaluators`` reads) and ``metrics/evaluators.json`` (each evaluator's held-out
accuracy beside Bayes and chance), logged to MLflow.
"""

from __future__ import annotations

import json
import logging
import shutil
import time

import torch

from emogen.config import Params
from emogen.data.synthetic_world import load_world
from emogen.devices import resolve_device
from emogen.errors import UserError
from emogen.evaluation import embedded
from emogen.evaluation.data import load_split
from emogen.evaluation.evaluators import EVALUATORS_JSON, unit_images
from emogen.jsonio import write_json
from emogen.layout import Layout
from emogen.pipelines.components import load_base, read_base_json
from emogen.seeding import stage_seed
from emogen.timings import record
from emogen.tracking import flatten, log_artifact, log_metrics, set_tags, stage_run

log = logging.getLogger(__name__)

STAGE = "evaluators"
METRICS_FILE = "evaluators.json"

EMBEDDED_NAMES = {
    "emo_a": "content-net-embedded emotion head: a CNN trained from scratch on a fresh render of the world, "
    "sharing nothing with any generator (the independent judge, headline)",
    "emo_a_clip": "emotion-probe-embedded: linear probe on the embedded CLIP's image features (stand-in for the "
    "CLIP ViT-L/14 probe; shares the generators' CLIP: every method's text encoder is its text tower)",
    "sem_c": "content-net-embedded scene and object heads (stand-in for the Places365 and ImageNet ResNet-50s)",
    "fid": "content-net-embedded pooled features (stand-in for Inception-v3 pool3)",
    "kid": "content-net-embedded pooled features, cubic polynomial kernel (stand-in for KID on Inception-v3 pool3)",
    "lpips": "content-net-embedded LPIPS-style distance, equal layer weights (stand-in for LPIPS-AlexNet)",
    "sem_d": "content-net-embedded pooled features (independent stand-in for CLIP ViT-L/14 image features)",
}


def run(params: Params, layout: Layout) -> None:
    p = params.evaluators
    resolution = evaluation_resolution(params, layout)
    with stage_run(STAGE, {"seed": params.seed, "data": params.data, "evaluators": p}):
        start = time.perf_counter()
        if p.profile == "pretrained":
            from emogen.evaluation.pretrained import fit_pretrained_evaluators

            info, report = fit_pretrained_evaluators(params, layout, resolution, resolve_device(p.device))
        else:
            info, report = fit_embedded_evaluators(params, layout, resolution)
        record(seconds=time.perf_counter() - start)  # metrics/timings/evaluators.json
        write_json(layout.model_dir(STAGE) / EVALUATORS_JSON, {**info, "held_out": report})
        summary = {
            "profile": info["profile"],
            "stand_in": info["stand_in"],
            "resolution": resolution,
            "names": info["names"],
            **report,
        }
        layout.metrics.mkdir(parents=True, exist_ok=True)
        write_json(layout.metrics / METRICS_FILE, summary)
        log_metrics({k: v for k, v in flatten(report).items() if isinstance(v, (int, float))})
        set_tags({"stand_in": str(info["stand_in"]), "profile": info["profile"]})
        log_artifact(str(layout.metrics / METRICS_FILE))
    log.info("evaluators (%s): %s", info["profile"], json.dumps(report))


def evaluation_resolution(params: Params, layout: Layout) -> int:
    """``evaluators.resolution``, else the base model's (generated images' native size)."""
    return params.evaluators.resolution or int(read_base_json(layout.model_dir("base"))["resolution"])


def fit_embedded_evaluators(params: Params, layout: Layout, resolution: int) -> tuple[dict, dict]:
    p = params.evaluators.embedded
    if params.data.source != "synthetic":
        raise UserError(
            "evaluators.profile 'embedded' trains on the synthetic world; with data.source "
            "'emoset' use evaluators.profile: pretrained"
        )
    if params.evaluators.emotion_classifier:
        raise UserError(
            "evaluators.emotion_classifier (the released Linear 768 → 8 on CLIP ViT-L/14 features) "
            "needs evaluators.profile: pretrained; the embedded profile trains its own judges"
        )
    world_doc = json.loads((layout.synthetic / "world.json").read_text())
    world = load_world(layout.synthetic)
    clip = load_base(layout.model_dir("base")).clip_model  # eval mode, frozen
    if clip.config.vision_config.image_size != resolution:
        raise UserError(
            f"evaluators.resolution {resolution}: the embedded CLIP reads "
            f"{clip.config.vision_config.image_size} px images only (leave it null)"
        )
    probe, net, held, held_probs = embedded.fit_embedded(
        world, int(world_doc["image_size"]), resolution, p, clip, stage_seed(params.seed, STAGE)
    )
    real = load_split(layout, params.data, "test", resolution)
    with torch.no_grad():
        real_pixels = embedded.to_pixels(unit_images(real.images))
        real_probs = {
            "emotion_probe": probe(embedded.clip_features(clip, real_pixels)).softmax(1).numpy(),
            "emotion_judge": net(real_pixels)[4].softmax(1).numpy(),
        }
    report = embedded.held_out_report(held_probs, net, held, real_probs, real.labels)
    for key in ("emotion_judge", "emotion_probe"):
        report[key]["world_bayes_accuracy"] = world_doc["bayes_accuracy"]
    out = layout.model_dir(STAGE)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    embedded.save_embedded(out, clip, probe, net)
    info = {
        "profile": "embedded",
        "stand_in": True,
        "resolution": resolution,
        "names": EMBEDDED_NAMES,
        "scenes": [s.name for s in world.scenes],
        "objects": [o.name for o in world.objects],
        "content_net": {"channels": list(p.channels)},
    }
    return info, report
