"""Test-wide setup: offline, quiet, nothing written outside the temp dirs."""

import os
import tempfile
from pathlib import Path

# Before any library import: a hub lookup without HF_HUB_OFFLINE hangs for minutes here.
_HOME = tempfile.mkdtemp(prefix="emogen-tests-")
for key, value in {
    "HF_HUB_OFFLINE": "1",
    "HF_HOME": os.path.join(_HOME, "hf"),
    "PREFECT_HOME": os.path.join(_HOME, "prefect"),
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DVC_NO_ANALYTICS": "1",
    "GX_ANALYTICS_ENABLED": "false",
    "MPLCONFIGDIR": os.path.join(_HOME, "mpl"),
}.items():
    os.environ.setdefault(key, value)
os.environ["HF_HUB_OFFLINE"] = "1"

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def mlflow_store(tmp_path, monkeypatch):
    """A real MLflow SQLite store in a temp dir, used by every stage the test runs."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)
    return uri
