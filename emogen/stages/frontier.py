"""Emo-A against Sem-D across guidance scales: ``metrics/frontier.json`` (docs/stages/evaluation-stages.md).

Classifier-free guidance trades a prompt's diversity for its fidelity. A fixed prompt (the
emotion word, Textual Inversion's token, DreamBooth's identifier) gets its diversity only from
the noise, which guidance narrows; EmoGen's also comes from a different emotion vector per
image. So Table 1 at one guidance scale compares one point of each method's accuracy–diversity
curve. This stage regenerates every method of ``evaluate.methods`` from its saved pipeline at
each of ``frontier.guidance_scales`` (the same seeds for every method and scale), measures each
point with evaluate's metrics and intervals, and interpolates each baseline's Sem-D at EmoGen's
Emo-A: which method is more diverse at equal accuracy.

That matched comparison carries a paired bootstrap interval over images
(:func:`matched_bootstrap`): each draw resamples the images within each emotion (the same
draw counts for every method and scale: they all generate image k of an emotion from the same
seed), recomputes every curve point's Emo-A and Sem-D (Sem-D over all within-emotion pairs of
distinct images, :func:`emogen.evaluation.statistics.pair_mean`) and the interpolation.
"""

from __future__ import annotations

import csv
import logging
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from emogen.config import Params
from emogen.devices import resolve_device
from emogen.emotions import emotion_index
from emogen.errors import UserError
from emogen.evaluation import statistics as st
from emogen.evaluation.data import ImageSet, shrink
from emogen.evaluation.evaluators import load_evaluators
from emogen.evaluation.table import evaluate_method
from emogen.jsonio import write_json
from emogen.layout import Layout
from emogen.pipelines.emogen_pipeline import EmoGenPipeline
from emogen.pipelines.jobs import run_jobs
from emogen.pipelines.prompt_pipeline import PromptPipeline
from emogen.pipelines.settings import METHOD as EMOGEN
from emogen.pipelines.settings import emotion_jobs, quiet_libraries
from emogen.pipelines.text_pipeline import TextConditionedPipeline
from emogen.seeding import stage_seed
from emogen.tracking import log_artifact, log_metrics, set_tags, stage_run

log = logging.getLogger(__name__)

STAGE = "frontier"
FRONTIER_FILE = "frontier.json"
POINTS_FILE = "frontier.csv"
# What each point keeps of evaluate's table (FID needs the real set's statistics: Table 1 has it).
POINT_METRICS = (
    "emo_a",
    "emo_a_target_prob",
    "sem_c",
    "lpips",
    "sem_d",
    "sem_d_cosine",
    "scene_entropy",
    "object_entropy",
)


def run(params: Params, layout: Layout) -> None:
    p, ev = params.frontier, params.evaluate
    quiet_libraries()
    device = resolve_device(p.device)
    evaluators = load_evaluators(layout.model_dir("evaluators"), device)
    pipes = {method: load_method_pipeline(layout, method, device) for method in ev.methods}
    jobs = emotion_jobs(stage_seed(params.seed, STAGE), p.num_images, params.generate.template)
    rng = np.random.default_rng(stage_seed(params.seed, f"{STAGE}/metrics"))

    with stage_run(STAGE, {"seed": params.seed, "frontier": p.model_dump(), "evaluate": ev.model_dump()}):
        start = time.perf_counter()
        curves: dict[str, list[dict]] = {method: [] for method in pipes}
        per_image: dict[str, list[PointImages]] = {method: [] for method in pipes}
        for scale in p.guidance_scales:
            for method, pipe in pipes.items():
                images = generate_set(pipe, jobs, p.batch_size, evaluators.resolution, scale, f"{method} @ {scale}")
                table = evaluate_method(evaluators, images, None, ev, rng).table
                curves[method].append({"guidance_scale": scale, **{k: table[k] for k in POINT_METRICS}})
                per_image[method].append(point_images(evaluators, images, ev.published_quirks))
        for curve in curves.values():
            mark_pareto(curve)
        result = {
            "profile": evaluators.info["profile"],
            "stand_in": evaluators.stand_in,
            "evaluators": {k: v for k, v in evaluators.names.items() if k in ("emo_a", "sem_c", "sem_d", "lpips")},
            "guidance_scales": list(p.guidance_scales),
            "images_per_emotion": p.num_images,
            "methods": curves,
            "at_matched_emo_a": matched_comparisons(curves) if EMOGEN in curves else {},
            # Paired bootstrap over images of the matched comparison (Sem-D over all pairs).
            "matched_difference": matched_bootstrap(
                per_image,
                p.guidance_scales,
                ev.bootstrap_samples,
                ev.confidence,
                np.random.default_rng(stage_seed(params.seed, f"{STAGE}/matched")),
            )
            if EMOGEN in per_image
            else {},
            "confidence": ev.confidence,
        }
        layout.metrics.mkdir(parents=True, exist_ok=True)
        write_json(layout.metrics / FRONTIER_FILE, result)
        write_points(layout.metrics / POINTS_FILE, curves)
        log_metrics(
            {
                f"{method}.g{point['guidance_scale']}.{metric}": point[metric]["value"]
                for method, curve in curves.items()
                for point in curve
                for metric in ("emo_a", "sem_d")
            }
        )
        log_metrics({"seconds": time.perf_counter() - start})
        set_tags({"stand_in": str(evaluators.stand_in), "profile": evaluators.info["profile"]})
        log_artifact(str(layout.metrics / FRONTIER_FILE))
        log_artifact(str(layout.metrics / POINTS_FILE))
    for method, curve in curves.items():
        log.info(
            "%s: %s",
            method,
            ", ".join(
                f"g={q['guidance_scale']}: Emo-A {q['emo_a']['value']:.3f} Sem-D {q['sem_d']['value']:.3f}"
                for q in curve
            ),
        )


def pipeline_folder(layout: Layout, method: str) -> Path:
    return layout.model_dir(EMOGEN) if method == EMOGEN else layout.model_dir("baselines") / method


def load_method_pipeline(layout: Layout, method: str, device: torch.device) -> TextConditionedPipeline:
    """The pipeline ``generate`` (EmoGen) or ``baseline@<method>`` saved; an error names the folder."""
    folder = pipeline_folder(layout, method)
    if not (folder / "model_index.json").is_file():
        stage = "generate" if method == EMOGEN else f"baseline@{method}"
        raise UserError(
            f"{folder}: no saved pipeline of method {method!r} (model_index.json missing); "
            f"run `dvc repro {stage}` first, or drop it from evaluate.methods"
        )
    cls = EmoGenPipeline if method == EMOGEN else PromptPipeline
    pipe = cls.from_pretrained(folder).to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def generate_set(
    pipe: TextConditionedPipeline, jobs, batch_size: int, resolution: int, guidance_scale: float, desc: str
) -> ImageSet:
    """Every job's image, in memory at the evaluation resolution."""
    images, labels, entries = [], [], []
    for record, image in run_jobs(pipe, jobs, batch_size, desc=desc, guidance_scale=guidance_scale):
        images.append(shrink(image, resolution))
        labels.append(emotion_index(record.emotion))
        entries.append({"emotion": record.emotion, "seed": record.seed})
    return ImageSet(images, np.asarray(labels), entries)


def sem_d_at(points: Sequence[tuple[float, float]], emo_a: float) -> float | None:
    """A method's Sem-D at ``emo_a``, linear between its (Emo-A, Sem-D) points sorted by Emo-A;
    None outside their range (no extrapolation)."""
    xs, ys = zip(*sorted(points))
    if not xs[0] <= emo_a <= xs[-1]:
        return None
    return float(np.interp(emo_a, xs, ys))


def _emo_a_sem_d(point: dict) -> tuple[float, float]:
    return point["emo_a"]["value"], point["sem_d"]["value"]


def mark_pareto(curve: list[dict]) -> None:
    """Flag each point (``pareto``) that no other point of the same method matches or beats on
    both Emo-A and Sem-D: the scales at which anyone would run that method."""
    values = [_emo_a_sem_d(p) for p in curve]
    for point, (a, d) in zip(curve, values):
        point["pareto"] = not any(b >= a and e >= d and (b, e) != (a, d) for b, e in values)


def matched_comparisons(curves: dict[str, list[dict]], reference: str = EMOGEN) -> dict[str, list[dict]]:
    """For every other method, at each of ``reference``'s points: its Sem-D at the same Emo-A."""
    out = {}
    for method, curve in curves.items():
        if method == reference:
            continue
        points = [_emo_a_sem_d(p) for p in curve]
        rows = []
        for point in curves[reference]:
            emo_a, sem_d = _emo_a_sem_d(point)
            other = sem_d_at(points, emo_a)
            rows.append(
                {
                    "guidance_scale": point["guidance_scale"],
                    "emo_a": emo_a,
                    f"{reference}_sem_d": sem_d,
                    f"{reference}_pareto": point["pareto"],
                    "sem_d": None if other is None else round(other, 4),
                    f"{reference}_more_diverse": None if other is None else sem_d > other,
                }
            )
        out[method] = rows
    return out


@dataclass(frozen=True)
class PointImages:
    """What the matched comparison's bootstrap needs of one curve point, per generated image."""

    correct: np.ndarray  # (N,) 1.0 where the Emo-A classifier's top emotion is the target
    labels: np.ndarray  # (N,) target emotion index
    features: np.ndarray  # (N, D) Sem-D features


def point_images(evaluators, images: ImageSet, published_quirks: bool = False) -> PointImages:
    """The per-image Emo-A hits and Sem-D features of one point (the table's classifiers)."""
    probs = evaluators.emotion_probs(images.images)
    features = evaluators.semd_features(images.images, published_quirks)
    return PointImages(
        (probs.argmax(1) == images.labels).astype(np.float64),
        np.asarray(images.labels),
        np.asarray(features, dtype=np.float64),
    )


def all_pairs(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every within-label pair (i < j) of image indices (P, 2) and its label (P,)."""
    pairs, groups = [], []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        i, j = np.triu_indices(len(members), k=1)
        pairs.append(np.stack([members[i], members[j]], 1))
        groups.append(np.full(len(i), label))
    return np.concatenate(pairs).astype(np.int64), np.concatenate(groups)


def point_draws(point: PointImages, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(Emo-A, Sem-D) of the point in every draw of ``counts`` (B, N); all ones: the estimate.
    Sem-D: per emotion the mean pair MSE over all pairs of distinct images, then over emotions."""
    pairs, groups = all_pairs(point.labels)
    diff = point.features[pairs[:, 0]] - point.features[pairs[:, 1]]
    distances = (diff**2).mean(1)
    with warnings.catch_warnings():  # a draw without any pair of distinct images: NaN, said by the caller
        warnings.simplefilter("ignore", RuntimeWarning)
        return st.weighted_mean(point.correct, counts), st.pair_mean(distances, pairs, groups, counts)


def _interp(xs: np.ndarray, ys: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Per draw b: the curve (xs[b], ys[b]) linear at ``at[b]``; NaN outside its range."""
    out = np.full(len(at), np.nan)
    for b in range(len(at)):
        order = np.argsort(xs[b], kind="stable")
        x, y = xs[b][order], ys[b][order]
        if x[0] <= at[b] <= x[-1]:
            out[b] = np.interp(at[b], x, y)
    return out


def matched_bootstrap(
    points: dict[str, list[PointImages]],
    scales: Sequence[float],
    samples: int,
    confidence: float,
    rng: np.random.Generator,
    reference: str = EMOGEN,
    digits: int = 4,
) -> dict[str, list[dict]]:
    """For every other method and each of ``reference``'s scales: ``reference``'s Sem-D minus the
    method's Sem-D interpolated at ``reference``'s Emo-A, with a paired percentile interval over
    ``samples`` image resamples (the same counts for every method and scale), its se and verdict.
    ``difference`` None: the reference's Emo-A lies outside the method's curve (no extrapolation);
    ``defined_fraction``: the share of draws in which it lies inside (the interval uses those)."""
    labels = points[reference][0].labels
    for method, curve in points.items():
        for point in curve:
            if not np.array_equal(point.labels, labels):
                raise ValueError(f"frontier: {method}'s images are not the reference's seeds (labels differ)")
    counts = np.vstack([np.ones((1, len(labels))), st.bootstrap_images(labels, samples, rng)])
    draws = {method: [point_draws(point, counts) for point in curve] for method, curve in points.items()}
    ref_a = np.stack([a for a, _ in draws[reference]])  # (scales, 1 + B)
    ref_d = np.stack([d for _, d in draws[reference]])
    out = {}
    for method, curve in draws.items():
        if method == reference:
            continue
        xs = np.stack([a for a, _ in curve], 1)  # (1 + B, scales)
        ys = np.stack([d for _, d in curve], 1)
        rows = []
        for k, scale in enumerate(scales):
            other = _interp(xs, ys, ref_a[k])
            diff = ref_d[k] - other
            row = {
                "guidance_scale": scale,
                "emo_a": round(float(ref_a[k, 0]), digits),
                f"{reference}_sem_d": round(float(ref_d[k, 0]), digits),
                "sem_d": None if np.isnan(other[0]) else round(float(other[0]), digits),
                "defined_fraction": round(float(np.isfinite(diff[1:]).mean()), digits),
            }
            if np.isnan(diff[0]) or np.isfinite(diff[1:]).sum() < 2:
                row.update(difference=None, low=None, high=None, se=None, verdict=None)
            else:
                est = st.percentile_interval(float(diff[0]), diff[1:], confidence)
                row.update(
                    difference=round(est.value, digits),
                    low=round(est.low, digits),
                    high=round(est.high, digits),
                    se=round(est.se, digits),
                    verdict=st.verdict(est.low, est.high),
                )
            rows.append(row)
        out[method] = rows
    return out


def write_points(path: Path, curves: dict[str, list[dict]]) -> None:
    """One row per method and guidance scale (DVC plots: Emo-A against Sem-D)."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["method", "guidance_scale", "emo_a", "sem_d", "emo_a_low", "emo_a_high", "sem_d_low", "sem_d_high"]
        )
        for method, curve in curves.items():
            for p in curve:
                writer.writerow(
                    [
                        method,
                        p["guidance_scale"],
                        p["emo_a"]["value"],
                        p["sem_d"]["value"],
                        p["emo_a"]["low"],
                        p["emo_a"]["high"],
                        p["sem_d"]["low"],
                        p["sem_d"]["high"],
                    ]
                )
