"""Stage-1 results against the synthetic world's ground truth (embedded profile only).

The synthetic EmoSet draws every label from a known distribution
(:func:`emogen.data.synthetic_world.emotion_posterior`), so the best accuracy any
classifier can reach is known, and so is the true emotion profile of every attribute.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from emogen.data.synthetic_world import WORLD_FILE, World, emotion_posterior, load_world
from emogen.emotions import EMOTIONS
from emogen.errors import DataError

# An attribute is "strongly emotional" when its true profile peaks at least this high.
STRONG_PROFILE = 0.6


def find_world(dataset_root: Path) -> World | None:
    """The world of a synthetic set, or None for a real EmoSet (no ground truth there)."""
    return load_world(dataset_root) if (dataset_root / WORLD_FILE).is_file() else None


def posteriors(rows: pd.DataFrame, world: World) -> np.ndarray:
    """True label distribution (N, 8) of every row (its scene and objects)."""
    try:
        return np.stack(
            [
                emotion_posterior(
                    scene if isinstance(scene, str) else None, [] if objects is None else list(objects), world
                )
                for scene, objects in zip(rows["scene"], rows["objects"])
            ]
        )
    except KeyError as exc:
        raise DataError(f"manifest content is not in the synthetic world's {WORLD_FILE}: {exc}") from None


def accuracy_bounds(rows: pd.DataFrame, predictions: np.ndarray, world: World) -> dict[str, float]:
    """Bayes-optimal accuracy (mean max posterior) and the model's expected accuracy.

    The expected accuracy averages P(label = prediction | content) instead of checking one
    noisy label per image: the same quantity as the test accuracy, with the label noise
    averaged out.
    """
    post = posteriors(rows, world)
    return {
        "bayes_test_accuracy": float(post.max(axis=1).mean()),
        "expected_test_accuracy": float(post[np.arange(len(post)), predictions].mean()),
    }


def alpha_vs_truth(alpha: pd.DataFrame, train_rows: pd.DataFrame, world: World) -> dict[str, float | int]:
    """How well the α table recovers the world's attribute profiles.

    Two references per attribute row: its profile P(emotion | attribute) (what the world
    was built from), and the mean true posterior over the train images carrying it (what
    α estimates: the best α any encoder could produce). Pearson correlation per row, then
    the mean; flat (neutral) profiles have no correlation and are left out of the first.
    """
    emotions = list(EMOTIONS)
    est = alpha[emotions].to_numpy()
    profiles = np.array([world.attribute(a).profile for a in alpha["attribute"]])
    post = pd.DataFrame(posteriors(train_rows, world), columns=emotions)
    post["attribute"], post["kind"] = train_rows["attribute"].to_numpy(), train_rows["attribute_kind"].to_numpy()
    rows = pd.MultiIndex.from_frame(alpha[["attribute", "kind"]])
    post_mean = post.groupby(["attribute", "kind"])[emotions].mean().reindex(rows).to_numpy()
    varied = profiles.std(axis=1) > 1e-9
    strong = profiles.max(axis=1) >= STRONG_PROFILE
    return {
        "pearson_vs_profile": _mean_row_pearson(est[varied], profiles[varied]),
        "pearson_vs_posterior_mean": _mean_row_pearson(est, post_mean),
        "strong_attributes": int(strong.sum()),
        "strong_argmax_match": float((est[strong].argmax(1) == profiles[strong].argmax(1)).mean())
        if strong.any()
        else float("nan"),
        "max_abs_error_vs_posterior_mean": float(np.abs(est - post_mean).max()),
    }


def _mean_row_pearson(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) == 0:
        return float("nan")
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    r = (a * b).sum(axis=1) / np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    return float(r.mean())
