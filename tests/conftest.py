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
    # The test models are tiny: one thread is faster, and oversubscribed threads crawl.
    "OMP_NUM_THREADS": "1",
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


class TinyEmoSet:
    """A rendered tiny synthetic EmoSet after prepare_data → ingest → balance (validate skipped).

    ``layout`` points at its temp root (``layout.synthetic`` = dataset root, ``layout.manifest``,
    ``layout.balanced``, ``layout.metrics``); ``params`` are the Params that made it.
    Session-scoped and shared: treat its files as read-only.
    """

    def __init__(self, layout, params):
        self.layout = layout
        self.params = params


@pytest.fixture(scope="session")
def tiny_emoset(tmp_path_factory):
    """240 images at 32 px (≈ 192 train / 12 val / 36 test), MLflow in the same temp dir."""
    from emogen.config import parse_params
    from emogen.data import balance, ingest, prepare
    from emogen.layout import Layout

    root = tmp_path_factory.mktemp("tiny_emoset")
    params = parse_params({
        "prepare_data": {"num_images": 240, "workers": 1},
        "ingest": {"workers": 1},
        "validate": {"min_images_per_emotion": 5},
    })
    layout = Layout(root)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
        mp.chdir(root)
        for stage in (prepare, ingest, balance):
            stage.run(params, layout)
    return TinyEmoSet(layout, params)
