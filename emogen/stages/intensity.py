"""How emotion intensity changes what the emotion probe sees (issue 12), and its stage.

``intensity_curve`` generates the same seeds at each intensity s (sampling.py: e = c +
s·(x − c), c the neutral centre) and asks the evaluator's emotion probe for the target
emotion's probability. Nothing here expects a particular shape of the curve: it is measured
and written as it comes out. By construction s = 0 gives every emotion the same vector c,
so for each seed the eight emotions share one image and the mean target probability there
is exactly 1/8 (chance); what s > 0 adds is the measurement.

The ``intensity`` stage runs it on ``models/emogen`` with ``models/evaluators`` and writes
``metrics/intensity.json`` (DVC metric), ``metrics/intensity.csv`` (DVC plot: one row per
intensity: mean target probability, top-1, and the mean target probability per emotion) and ``metrics/intensity_strip.png``
(rows: emotions, columns: intensities, one seed).
"""

from __future__ import annotations

import csv
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Protocol

import numpy as np
from PIL import Image

from emogen.config import Params
from emogen.emotions import EMOTIONS, NUM_EMOTIONS, emotion_index
from emogen.evaluation.evaluators import load_evaluators
from emogen.jsonio import write_json
from emogen.layout import Layout
from emogen.pipelines.grid import make_grid
from emogen.pipelines.jobs import ImageJob, run_jobs
from emogen.registry.load import load_pipeline
from emogen.seeding import stage_seed
from emogen.tracking import log_artifact, log_metrics, stage_run

log = logging.getLogger(__name__)

JSON_FILE = "intensity.json"
CSV_FILE = "intensity.csv"
STRIP_FILE = "intensity_strip.png"


def run(params: Params, layout: Layout) -> None:
    """The ``intensity`` stage (module docstring)."""
    cfg = params.intensity
    pipe = load_pipeline(str(layout.model_dir("emogen")), cfg.device)
    pipe.check_words(cfg.template)
    evaluators = load_evaluators(layout.model_dir("evaluators"), device=pipe.device)
    with stage_run("intensity", {"seed": params.seed, "intensity": cfg.model_dump()}):
        start = time.perf_counter()
        curve = intensity_curve(
            pipe,
            evaluators,
            cfg.intensities,
            cfg.num_images,
            stage_seed(params.seed, "intensity"),
            cfg.template,
            cfg.batch_size,
            cfg.grid_cell,
        )
        points = curve.summary()
        means = [p["mean_target_prob"]["value"] for p in points]
        result = {
            "evaluator": evaluators.names.get("emo_a", "emotion probe"),
            "stand_in": evaluators.stand_in,
            "rule": "e = c + s·(x − c); c = mean of the 8 emotion means, x ~ the emotion's Gaussian",
            "images_per_emotion": cfg.num_images,
            "template": cfg.template,
            "chance": 1 / NUM_EMOTIONS,
            "rises": bool(all(b > a for a, b in pairwise(means))),
            "points": points,
        }
        layout.metrics.mkdir(parents=True, exist_ok=True)
        write_json(layout.metrics / JSON_FILE, result)
        with open(layout.metrics / CSV_FILE, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["intensity", "mean_target_prob", "top1", *EMOTIONS])
            writer.writerows(
                [
                    p["intensity"],
                    p["mean_target_prob"]["value"],
                    p["top1"]["value"],
                    *(p["per_emotion"][name] for name in EMOTIONS),
                ]
                for p in points
            )
        curve.strip.save(layout.metrics / STRIP_FILE)
        for p in points:
            step = round(p["intensity"] * 100)  # MLflow steps are integers: s × 100
            log_metrics({"mean_target_prob": p["mean_target_prob"]["value"], "top1": p["top1"]["value"]}, step=step)
        log_artifact(str(layout.metrics / JSON_FILE))
        log_artifact(str(layout.metrics / STRIP_FILE))
        log.info(
            "intensity: %s → mean target prob %s (%.1f s)",
            curve.intensities,
            [round(m, 3) for m in means],
            time.perf_counter() - start,
        )


class EmotionProbe(Protocol):
    """What the curve needs of ``emogen.evaluation.evaluators.Evaluators``."""

    def emotion_probs(self, images: list[Image.Image]) -> np.ndarray: ...


@dataclass(frozen=True)
class IntensityCurve:
    intensities: list[float]
    target_prob: np.ndarray  # (S, 8, N): the probe's probability of each image's own emotion
    top1: np.ndarray  # (S, 8, N) bool: the probe's top emotion is the target
    strip: Image.Image  # rows: emotions, columns: intensities (the first seed)

    def summary(self) -> list[dict]:
        """Per intensity: mean target probability and top-1 accuracy with a normal 95 %
        interval over the images, and the mean target probability per emotion."""
        points = []
        for k, s in enumerate(self.intensities):
            points.append(
                {
                    "intensity": s,
                    "mean_target_prob": _mean_interval(self.target_prob[k].ravel()),
                    "top1": _mean_interval(self.top1[k].ravel().astype(float)),
                    "per_emotion": {name: float(self.target_prob[k, e].mean()) for e, name in enumerate(EMOTIONS)},
                }
            )
        return points


def _mean_interval(values: np.ndarray) -> dict[str, float]:
    mean = float(values.mean())
    half = 1.96 * float(values.std(ddof=1)) / np.sqrt(len(values)) if len(values) > 1 else 0.0
    return {"value": mean, "low": mean - half, "high": mean + half}


def intensity_curve(
    pipe,
    evaluators: EmotionProbe,
    intensities: Sequence[float] = (0.0, 0.5, 1.0, 1.5),
    num_images: int = 16,
    first_seed: int = 0,
    template: str = "{}",
    batch_size: int = 32,
    grid_cell: int = 64,
    **call_kwargs,
) -> IntensityCurve:
    """Generate ``num_images`` per emotion at every intensity (seeds ``first_seed + n``, the
    same at every intensity, so only s differs) and score them with the emotion probe."""
    if not intensities or any(s < 0 for s in intensities):
        raise ValueError(f"intensities must be a non-empty list of values >= 0, got {list(intensities)}")
    jobs = [
        ImageJob(name, first_seed + n, template, intensity=float(s))
        for s in intensities
        for name in EMOTIONS
        for n in range(num_images)
    ]
    images = [image for _, image in run_jobs(pipe, jobs, batch_size, desc="intensity", **call_kwargs)]
    probs = np.asarray(evaluators.emotion_probs(images), dtype=np.float64)
    if probs.shape != (len(jobs), NUM_EMOTIONS):
        raise ValueError(f"emotion_probs returned shape {probs.shape}, expected ({len(jobs)}, {NUM_EMOTIONS})")
    targets = np.array([emotion_index(job.emotion) for job in jobs])
    shape = (len(intensities), NUM_EMOTIONS, num_images)
    target_prob = probs[np.arange(len(jobs)), targets].reshape(shape)
    top1 = (probs.argmax(axis=1) == targets).reshape(shape)
    # Strip: emotion e's first-seed image at each intensity, one row per emotion.
    per_s = NUM_EMOTIONS * num_images
    cells = [images[k * per_s + e * num_images] for e in range(NUM_EMOTIONS) for k in range(len(intensities))]
    strip = make_grid(cells, len(intensities), grid_cell)
    return IntensityCurve([float(s) for s in intensities], target_prob, top1, strip)
