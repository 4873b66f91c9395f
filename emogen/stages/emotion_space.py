"""The emotion space (docs/method.md "Stage 1"): emotion vectors and per-emotion Gaussians.

Writes ``models/emotion_space/``: ``vectors.safetensors`` (``vectors``, N×D float32, the
``fc1`` output in eval mode) of every image ``balance`` may use (train, plus
``balance.splits``) + ``vector_ids.parquet`` (``id``, row i ↔ vectors[i], manifest order),
and ``gaussians.safetensors`` of the train images only (``mean`` and unbiased ``std``, 8×D,
EmoSet emotion order; ``cov``
8×D×D with ``covariance: full``). Also a summary (``metrics/emotion_space.json``) and a
2-D PCA picture coloured by emotion (``metrics/emotion_space_pca.png``).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from emogen.config import Params
from emogen.data.tables import image_paths, read_table, split_rows
from emogen.devices import resolve_device
from emogen.emotions import EMOTIONS, NUM_EMOTIONS, POSITIVE
from emogen.errors import DataError
from emogen.jsonio import write_json
from emogen.layout import Layout
from emogen.seeding import stage_seed
from emogen.stage1.encoder import embed_images, emotion_probabilities, load_encoder
from emogen.stage1.reporting import log_metrics
from emogen.stage1.space_files import write_space
from emogen.timings import record
from emogen.tracking import log_artifact, stage_run

log = logging.getLogger(__name__)


def run(params: Params, layout: Layout) -> None:
    """``emogen stage emotion_space``."""
    cfg = params.emotion_space
    started = time.perf_counter()
    manifest = read_table(layout.manifest, ("id", "split", "emotion_idx", "image_path"))
    train = split_rows(manifest, "train")
    # Vectors of every image balance may use (stage 2 trains on them); Gaussians of train only.
    embedded = manifest[manifest["split"].isin({"train", *params.balance.splits})].reset_index(drop=True)
    is_train = torch.from_numpy((embedded["split"] == "train").to_numpy())
    paths = image_paths(embedded, layout.dataset_root(params.data))
    out_dir = layout.model_dir("emotion_space")
    picture = layout.metrics / "emotion_space_pca.png"
    tracked = {
        "seed": params.seed,
        "data": params.data.model_dump(),
        "emotion_space": cfg.model_dump(),
        "balance": {"splits": params.balance.splits},
    }
    with stage_run("emotion_space", tracked):
        encoder = load_encoder(layout.model_dir("stage1"), resolve_device(cfg.device))
        all_vectors = embed_images(encoder, paths, cfg.batch_size, cfg.workers)
        vectors = all_vectors[is_train]
        labels = torch.tensor(train["emotion_idx"].to_numpy(), dtype=torch.long)
        weights = confidence_weights(encoder, vectors, labels) if cfg.weights == "confidence" else None
        gaussians = emotion_gaussians(vectors, labels, cfg.covariance, weights)
        write_space(out_dir, all_vectors, embedded["id"].tolist(), gaussians)
        summary = space_summary(vectors, labels, gaussians, weights)
        explained = plot_space(
            vectors, labels, gaussians["mean"], picture, cfg.plot_points, stage_seed(params.seed, "emotion_space")
        )
        summary["pca_explained_variance"] = {"pc1": float(explained[0]), "pc2": float(explained[1])}
        seconds = record(seconds=time.perf_counter() - started)["seconds"]  # metrics/timings/emotion_space.json
        write_json(layout.metrics / "emotion_space.json", summary)
        log_metrics(summary)
        log_artifact(str(picture))
        log_artifact(str(layout.metrics / "emotion_space.json"))
    log.info("emotion_space: %d vectors of width %d in %.1fs", len(vectors), vectors.shape[1], seconds)


def emotion_gaussians(
    vectors: torch.Tensor, labels: torch.Tensor, covariance: str = "diag", weights: torch.Tensor | None = None
) -> dict[str, torch.Tensor]:
    """Per emotion: ``mean`` and unbiased ``std`` (8×D); ``cov`` (8×D×D) when ``covariance='full'``.

    ``weights`` (N,): each vector's weight in its emotion's statistics (reliability weights:
    the unbiased estimate divides by Σw − Σw²/Σw, which is n − 1 for equal weights)."""
    counts = torch.bincount(labels, minlength=NUM_EMOTIONS)
    if (counts < 2).any():
        few = [f"{EMOTIONS[i]} ({int(c)})" for i, c in enumerate(counts) if c < 2]
        raise DataError(f"emotion space: need ≥ 2 train images per emotion for a std; too few: {', '.join(few)}")
    x = vectors.double()  # sums over thousands of vectors: accumulate in float64
    w = torch.ones(len(x), dtype=torch.float64) if weights is None else weights.double()
    means, stds, covs = [], [], []
    for i in range(NUM_EMOTIONS):
        g, gw = x[labels == i], w[labels == i]
        total = gw.sum()
        mean = gw @ g / total
        centred = g - mean
        norm = total - (gw**2).sum() / total
        means.append(mean)
        stds.append(((gw @ centred**2) / norm).sqrt())
        if covariance == "full":
            covs.append((centred * gw[:, None]).T @ centred / norm)
    out = {"mean": torch.stack(means), "std": torch.stack(stds)}
    if covs:
        out["cov"] = torch.stack(covs)
    return {k: v.float().contiguous() for k, v in out.items()}


def confidence_weights(encoder: torch.nn.Module, vectors: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Each train image's stage-1 probability of its own label: the confidence α averages
    (docs/method.md "Emotion confidence"), here weighting the image in its emotion's Gaussian so
    that images whose content does not evoke their (noisy) label count less."""
    probs = emotion_probabilities(encoder, vectors)
    return probs.gather(1, labels[:, None]).squeeze(1)


def _cosines(means: torch.Tensor) -> np.ndarray:
    unit = torch.nn.functional.normalize(means.double(), dim=1)
    return (unit @ unit.T).numpy()


def space_summary(
    vectors: torch.Tensor, labels: torch.Tensor, gaussians: dict[str, torch.Tensor], weights: torch.Tensor | None = None
) -> dict[str, Any]:
    """Norms and spreads per emotion (with weights: also the effective image count
    (Σw)²/Σw²), the 8×8 cosine matrix of the means, polarity clustering."""
    cos = _cosines(gaussians["mean"])
    pos = sorted(POSITIVE)
    neg = [i for i in range(NUM_EMOTIONS) if i not in POSITIVE]

    def off_diagonal_mean(rows: list[int], cols: list[int]) -> float:
        return float(np.mean([cos[i, j] for i in rows for j in cols if i != j]))

    return {
        "num_vectors": len(vectors),
        "vector_dim": int(vectors.shape[1]),
        "per_emotion": {
            name: {
                "count": int((labels == i).sum()),
                "mean_norm": float(gaussians["mean"][i].norm()),
                "avg_std": float(gaussians["std"][i].mean()),
                **({} if weights is None else {"effective_count": _effective_count(weights[labels == i])}),
            }
            for i, name in enumerate(EMOTIONS)
        },
        "mean_cosine": {a: {b: float(cos[i, j]) for j, b in enumerate(EMOTIONS)} for i, a in enumerate(EMOTIONS)},
        "cosine_within_positive": off_diagonal_mean(pos, pos),
        "cosine_within_negative": off_diagonal_mean(neg, neg),
        "cosine_across_polarity": off_diagonal_mean(pos, neg),
    }


def _effective_count(weights: torch.Tensor) -> float:
    w = weights.double()
    return float(w.sum() ** 2 / (w**2).sum())


def pca_2d(vectors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """Centre, top-2 principal axes (D×2, sign fixed: largest loading positive), explained ratios."""
    x = vectors.double()
    centre = x.mean(0)
    centred = x - centre
    cov = centred.T @ centred / max(len(x) - 1, 1)  # D×D: cheap even for 100k vectors
    eigvals, eigvecs = torch.linalg.eigh(cov)
    axes = eigvecs[:, [-1, -2]]
    signs = torch.sign(axes.gather(0, axes.abs().argmax(0, keepdim=True)))
    axes = axes * signs
    explained = (eigvals[[-1, -2]] / eigvals.sum().clamp_min(1e-12)).numpy()
    return centre, axes, explained


def plot_space(
    vectors: torch.Tensor, labels: torch.Tensor, means: torch.Tensor, path: Path, max_points: int, seed: int
) -> np.ndarray:
    """Scatter of the vectors on their first two principal axes, one colour per emotion."""
    centre, axes, explained = pca_2d(vectors)
    keep = np.random.default_rng(seed).permutation(len(vectors))[:max_points]
    keep.sort()
    points = ((vectors[keep].double() - centre) @ axes).numpy()
    centres = ((means.double() - centre) @ axes).numpy()
    picked = labels[keep].numpy()
    colours = matplotlib.colormaps["tab10"]
    fig = Figure(figsize=(7, 6), dpi=110)
    FigureCanvasAgg(fig)  # Agg: files only, no display or pyplot state
    ax = fig.subplots()
    for i, name in enumerate(EMOTIONS):
        ax.scatter(*points[picked == i].T, s=5, alpha=0.35, color=colours(i), label=name, linewidths=0)
    for i, name in enumerate(EMOTIONS):
        ax.scatter(*centres[i], s=140, color=colours(i), edgecolors="black", marker="*", zorder=3)
        ax.annotate(name, centres[i], xytext=(4, 4), textcoords="offset points", fontsize=8, weight="bold")
    ax.set_xlabel(f"PC1 ({explained[0]:.0%} of variance)")
    ax.set_ylabel(f"PC2 ({explained[1]:.0%} of variance)")
    ax.set_title("Emotion space: train-image vectors (stars: emotion means)")
    ax.legend(markerscale=3, fontsize=7, loc="best")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return explained
