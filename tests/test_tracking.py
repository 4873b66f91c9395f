import mlflow

from conftest import REPO
from emogen.config import load_params
from emogen.tracking import EXPERIMENT, flatten, stage_run


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
