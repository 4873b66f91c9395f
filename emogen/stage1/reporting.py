"""Writing a stage's metrics: JSON for DVC, numeric leaves for MLflow."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from emogen import tracking
from emogen.tracking import flatten


def write_json(path: Path, data: dict[str, Any]) -> None:
    """JSON without NaN (not valid JSON): NaN becomes null."""
    def clean(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, float) and math.isnan(value):
            return None
        return value

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(clean(data), indent=2) + "\n")


def log_metrics(metrics: dict[str, Any]) -> None:
    """Numeric leaves of a nested metrics dict to the active MLflow run."""
    tracking.log_metrics({k: float(v) for k, v in flatten(metrics).items()
                        if isinstance(v, (int, float)) and not (isinstance(v, float) and math.isnan(v))})
