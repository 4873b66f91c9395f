"""Stage-1 outputs besides the weights: metrics JSON, confusion and curve tables, MLflow record."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from emogen.emotions import EMOTIONS, NUM_EMOTIONS
from emogen.jsonio import write_json
from emogen.layout import Layout
from emogen.stage1.ground_truth import accuracy_bounds, find_world
from emogen.stage1.reporting import log_metrics
from emogen.timings import record
from emogen.tracking import log_artifact

if TYPE_CHECKING:
    from emogen.stage1.encoder import TrainResult

CHANCE = 1.0 / NUM_EMOTIONS


def per_emotion_accuracy(predictions: np.ndarray, labels: np.ndarray) -> dict[str, float | None]:
    """Recall per emotion (None for an emotion without test images)."""
    return {
        name: float((predictions[labels == i] == i).mean()) if (labels == i).any() else None
        for i, name in enumerate(EMOTIONS)
    }


def confusion_rows(predictions: np.ndarray, labels: np.ndarray) -> pd.DataFrame:
    """One row per test image, as DVC's ``confusion`` plot template wants."""
    names = np.array(EMOTIONS)
    return pd.DataFrame({"actual": names[labels], "predicted": names[predictions]})


def stage1_metrics(result: TrainResult, test_rows: pd.DataFrame, dataset_root: Path) -> dict[str, Any]:
    metrics: dict[str, Any] = {
        "accuracy": result.accuracy,
        "chance_accuracy": CHANCE,
        "per_emotion_test_accuracy": per_emotion_accuracy(result.test_predictions, result.test_labels),
        "best_epoch": result.best_epoch,
        "epochs_run": len(result.history),
        "resumed_from_epoch": result.resumed_from_epoch,
    }
    record(train_seconds=result.seconds)  # metrics/timings/stage1.json: a duration is not a result
    world = find_world(dataset_root)
    if world is not None:
        bounds = accuracy_bounds(test_rows, result.test_predictions, world)
        bounds["test_over_bayes"] = result.accuracy["test"] / bounds["bayes_test_accuracy"]
        metrics["synthetic_world"] = bounds
    return metrics


def write_stage1_outputs(
    result: TrainResult, test_rows: pd.DataFrame, dataset_root: Path, layout: Layout
) -> dict[str, Any]:
    metrics = stage1_metrics(result, test_rows, dataset_root)
    files = {
        "metrics": layout.metrics / "stage1.json",
        "confusion": layout.metrics / "stage1_confusion.csv",
        "history": layout.metrics / "stage1_history.csv",
    }
    write_json(files["metrics"], metrics)
    confusion_rows(result.test_predictions, result.test_labels).to_csv(files["confusion"], index=False)
    pd.DataFrame(result.history).to_csv(files["history"], index=False)
    log_metrics(metrics)
    for path in files.values():
        log_artifact(str(path))
    log_artifact(str(layout.model_dir("stage1") / "config.json"))
    return metrics
