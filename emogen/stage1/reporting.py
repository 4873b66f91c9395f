"""A stage's metrics to MLflow: the numeric leaves of a nested dict."""

from __future__ import annotations

import math
from typing import Any

from emogen import tracking
from emogen.tracking import flatten


def log_metrics(metrics: dict[str, Any]) -> None:
    """Numeric leaves of a nested metrics dict to the active MLflow run."""
    tracking.log_metrics(
        {
            k: float(v)
            for k, v in flatten(metrics).items()
            if isinstance(v, (int, float)) and not (isinstance(v, float) and math.isnan(v))
        }
    )
