"""How long each stage took: ``metrics/timings/<stage>.json``, never a DVC metric.

A duration changes on every run, so it must not sit among the metrics DVC compares (`dvc
metrics diff`, `dvc exp show`): there it hid the params and results that moved and made two
identical runs differ. ``emogen stage <name>`` writes the file after the stage returns: the
wall time of the stage (``seconds``, imports included) and the phases the stage recorded with
:func:`record` (``parts``). The folder is git-ignored and not in dvc.yaml: it describes the
last run in this workspace, not a result. Every value also goes to the stage's MLflow run.
"""

from __future__ import annotations

import json
from pathlib import Path

from emogen.tracking import log_metrics

TIMINGS_DIR = Path("metrics") / "timings"

_parts: dict[str, float] = {}


def record(**seconds: float) -> dict[str, float]:
    """Phase durations of the running stage (e.g. ``record(train_s=12.3)``): kept for its
    timings file and logged to its MLflow run (inside ``stage_run``). → the rounded values."""
    values = {key: round(float(value), 3) for key, value in seconds.items()}
    _parts.update(values)
    log_metrics(values)
    return values


def timings_path(root: Path, stage: str) -> Path:
    return Path(root) / TIMINGS_DIR / f"{stage}.json"


def write_timings(root: Path, stage: str, seconds: float) -> Path:
    """``metrics/timings/<stage>.json`` under ``root`` with the total and the recorded parts
    (then forgotten, so a second stage in the same process starts empty). → the path."""
    path = timings_path(root, stage)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"stage": stage, "seconds": round(seconds, 3), "parts": dict(_parts)}
    _parts.clear()
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    tmp.replace(path)
    return path
