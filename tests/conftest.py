"""Test-wide setup: offline, quiet, nothing written outside the temp dirs."""

import os
import signal
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
    "GRADIO_ANALYTICS_ENABLED": "False",
    "MPLCONFIGDIR": os.path.join(_HOME, "mpl"),
    # The test models are tiny: one thread is faster, and oversubscribed threads crawl.
    "OMP_NUM_THREADS": "1",
}.items():
    os.environ.setdefault(key, value)
os.environ["HF_HUB_OFFLINE"] = "1"
# `pytest &` in a non-interactive shell starts pytest with SIGINT ignored, and every process a
# test starts inherits that: a served Prefect process then sat out stop_server's SIGINT (30 s).
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

import pytest  # noqa: E402

from tests.helpers.servers import free_port, start_mlflow_server, stop_server, wait_for_http  # noqa: E402

# The files that take minutes, longest first (measured on 2 cores). pytest-xdist hands out whole
# files in collection order (pyproject.toml: --dist loadfile --no-loadscope-reorder): started
# first, they end together instead of one of them running alone at the end.
LONGEST_FIRST = [
    "test_orchestration.py",
    "test_experiments.py",
    "test_profile_sd15.py",
    "test_pipeline_dvc.py",
    "test_multiprocess.py",
    "test_data_dvc.py",
    "test_benchmark_pipeline.py",
    "test_latents.py",
]


def pytest_collection_modifyitems(items):
    if os.environ.get("PYTEST_XDIST_WORKER"):  # a serial run keeps the quick files first
        rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
        items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: tests keep their order


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
    from emogen.layout import Layout
    from emogen.stages import balance, ingest
    from emogen.stages import prepare_data as prepare

    root = tmp_path_factory.mktemp("tiny_emoset")
    params = parse_params(
        {
            "prepare_data": {"num_images": 240, "workers": 1},
            "ingest": {"workers": 1},
            "validate": {"min_images_per_emotion": 5},
        }
    )
    layout = Layout(root)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
        mp.chdir(root)
        for stage in (prepare, ingest, balance):
            stage.run(params, layout)
    return TinyEmoSet(layout, params)


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """One MLflow tracking server for the test session (registry, orchestration tests)."""
    proc, uri = start_mlflow_server(tmp_path_factory.mktemp("mlflow_server"))
    yield uri
    stop_server(proc)


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory):
    """One Prefect server on a free 127.0.0.1 port for the session → its API URL."""
    import subprocess
    import sys

    home = tmp_path_factory.mktemp("prefect_server")
    port = free_port()
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{home / 'prefect.db'}",
    }
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=(home / "server.log").open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    api = f"http://127.0.0.1:{port}/api"
    try:
        wait_for_http(f"{api}/health", proc, timeout=180)
    except Exception:
        stop_server(proc)
        raise
    yield api
    stop_server(proc)


@pytest.fixture
def scratch_repo(tmp_path):
    """This project's pipeline copied into a fresh git + DVC repo at ``tmp_path / "repo"``:
    ``scratch_repo(params=None, commit=None, **env)`` → ScratchRepo (``.path``, ``.env``,
    ``.run(*cmd)``); ``params`` is laid over params.yaml. See tests/helpers/scratch_repo.py."""
    from tests.helpers.scratch_repo import scratch_repo as make

    return lambda params=None, **kwargs: make(tmp_path / "repo", params, **kwargs)
