import logging

import mlflow
import pytest

from emogen.config import load_params
from emogen.tracking import EXPERIMENT, flatten, log_artifact, log_metrics, stage_run
from tests.helpers.paths import REPO


def test_stage_run_logs_params_and_tags(mlflow_store):
    params = {"stage1": {"lr": 0.1, "sizes": {"crop": 32}}, "seed": 3}
    with stage_run("stage1", params) as run:
        mlflow.log_metric("acc", 0.5)
    client = mlflow.MlflowClient(mlflow_store)
    stored = client.get_run(run.info.run_id)
    assert stored.data.params["stage1.sizes.crop"] == "32"
    assert stored.data.metrics["acc"] == 0.5
    assert stored.data.tags["stage"] == "stage1"
    assert len(stored.data.tags["git_commit"]) in (7, 40) or stored.data.tags["git_commit"] == "unknown"
    assert client.get_experiment_by_name(EXPERIMENT).artifact_location.startswith("file://")


def test_flatten_params_model():
    flat = flatten(load_params(REPO / "params.yaml"))
    assert flat["seed"] == 520
    assert flat["validate.split.train"] == 0.8


def _timed_balance(tiny_emoset, tmp_path, monkeypatch):
    """Run the real balance stage on a copy of the tiny set's layout; → seconds taken."""
    import shutil
    import time

    from emogen.layout import Layout
    from emogen.stages import balance

    layout = Layout(tmp_path / "ws")
    layout.processed.mkdir(parents=True)
    shutil.copy(tiny_emoset.layout.manifest, layout.manifest)
    monkeypatch.chdir(tmp_path / "ws")
    started = time.monotonic()
    balance.run(tiny_emoset.params, layout)
    assert layout.balanced.is_file() and (layout.metrics / "balance.json").is_file()
    return time.monotonic() - started


def test_closed_port_falls_back_to_the_local_store(tiny_emoset, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    monkeypatch.delenv("DVC_ROOT", raising=False)
    with caplog.at_level(logging.WARNING, logger="emogen.tracking"):
        seconds = _timed_balance(tiny_emoset, tmp_path, monkeypatch)
    assert seconds < 20, f"a dead tracking server cost {seconds:.1f} s"
    assert "http://127.0.0.1:9 unreachable" in caplog.text and "local store" in caplog.text
    # The run is in the local default store, tagged with where it should have gone.
    runs = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'ws' / 'mlflow.db'}").search_runs(
        [
            mlflow.MlflowClient(f"sqlite:///{tmp_path / 'ws' / 'mlflow.db'}")
            .get_experiment_by_name(EXPERIMENT)
            .experiment_id
        ]
    )
    assert [r.data.tags["fallback_from"] for r in runs] == ["http://127.0.0.1:9"]
    assert runs[0].info.status == "FINISHED" and "samples_total" in runs[0].data.metrics


@pytest.mark.slow
def test_server_killed_mid_stage_costs_seconds(tmp_path, monkeypatch, caplog):
    import time

    from tests.helpers.servers import start_mlflow_server, stop_server

    proc, uri = start_mlflow_server(tmp_path / "server")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)
    artifact = tmp_path / "out.json"
    artifact.write_text("{}")
    try:
        with caplog.at_level(logging.WARNING, logger="emogen.tracking"), stage_run("stage1", {"lr": 0.1}) as run:
            log_metrics({"loss": 1.0}, step=0)
            stop_server(proc)
            started = time.monotonic()
            for step in range(1, 4):
                log_metrics({"loss": 1.0 / step}, step=step)
            log_artifact(str(artifact))
            artifact.with_name("after.txt").write_text("the stage went on")
        seconds = time.monotonic() - started
    finally:
        stop_server(proc)
    assert run is not None and artifact.with_name("after.txt").is_file()
    assert seconds < 20, f"a killed tracking server cost {seconds:.1f} s"
    assert caplog.text.count("tracking skipped for stage 'stage1'") == 1
    assert "dvc repro -f -s stage1" in caplog.text
    assert mlflow.active_run() is None
