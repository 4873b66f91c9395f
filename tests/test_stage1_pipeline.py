"""stage1 → emotion_space → confidence through their stage entry points on the tiny set."""

import json

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from emogen.emotions import EMOTIONS
from emogen.stage1.encoder import load_encoder
from emogen.stages import confidence, emotion_space
from emogen.stages import stage1 as train
from tests.helpers.stage1_inputs import project_over, tiny_params


@pytest.fixture(scope="module")
def project(tiny_emoset, tmp_path_factory):
    """The three stages run once on the tiny set, MLflow in a temp SQLite store."""
    root = tmp_path_factory.mktemp("stage1_project")
    layout = project_over(tiny_emoset.layout, root / "repo")
    params = tiny_params(tiny_emoset.params, root / "ckpt")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
        mp.chdir(layout.root)
        for stage in (train, emotion_space, confidence):
            stage.run(params, layout)
    return layout, params, f"sqlite:///{root / 'mlflow.db'}"


def _metrics(layout, name):
    return json.loads((layout.metrics / name).read_text())


def test_stage1_outputs(project):
    layout, params, _ = project
    encoder = load_encoder(layout.model_dir("stage1"))
    assert encoder.config.vector_dim == 16 and encoder.config.crop == params.stage1.crop
    metrics = _metrics(layout, "stage1.json")
    assert set(metrics["accuracy"]) == {"train", "val", "test"}
    assert metrics["chance_accuracy"] == pytest.approx(0.125)
    world = metrics["synthetic_world"]
    # The synthetic world's accuracies at the fixed seed (the tiny EmoSet's draw).
    got = {k: world[k] for k in ("bayes_test_accuracy", "expected_test_accuracy")}
    assert got == pytest.approx({"bayes_test_accuracy": 0.50561876, "expected_test_accuracy": 0.13327861}, rel=1e-6), (
        json.dumps(world)
    )
    assert set(metrics["per_emotion_test_accuracy"]) == set(EMOTIONS)
    manifest = pd.read_parquet(layout.manifest)
    confusion = pd.read_csv(layout.metrics / "stage1_confusion.csv")
    assert list(confusion.columns) == ["actual", "predicted"]
    assert confusion["actual"].tolist() == manifest.loc[manifest["split"] == "test", "emotion"].tolist()
    assert len(pd.read_csv(layout.metrics / "stage1_history.csv")) == params.stage1.epochs


def test_stage1_curves_in_mlflow(project):
    _, _params, uri = project
    client = mlflow.tracking.MlflowClient(uri)
    runs = client.search_runs(client.get_experiment_by_name("emogen").experiment_id, "tags.stage = 'stage1'")
    assert len(runs) == 1
    history = client.get_metric_history(runs[0].info.run_id, "val_accuracy")
    assert sorted(m.step for m in history) == [1, 2, 3]
    assert runs[0].data.params["stage1.vector_dim"] == "16"
    assert "accuracy.test" in runs[0].data.metrics


def test_emotion_space_files_follow_contract(project):
    layout, _, _ = project
    folder = layout.model_dir("emotion_space")
    vectors = load_file(folder / "vectors.safetensors")["vectors"]
    ids = pd.read_parquet(folder / "vector_ids.parquet")["id"]
    manifest = pd.read_parquet(layout.manifest)
    train_rows = manifest[manifest["split"] == "train"]
    assert ids.tolist() == train_rows["id"].tolist()  # every train image, row i ↔ vectors[i]
    assert vectors.shape == (len(train_rows), 16) and vectors.dtype == torch.float32
    gaussians = load_file(folder / "gaussians.safetensors")
    assert set(gaussians) == {"mean", "std"}
    labels = train_rows["emotion_idx"].to_numpy()
    for i in range(len(EMOTIONS)):
        group = vectors[torch.from_numpy(labels == i)].double()
        assert torch.allclose(gaussians["mean"][i].double(), group.mean(0), atol=1e-5)
        assert torch.allclose(gaussians["std"][i].double(), group.std(0, correction=1), atol=1e-5)
    summary = _metrics(layout, "emotion_space.json")
    assert len(summary["mean_cosine"]) == 8 and summary["mean_cosine"]["awe"]["awe"] == pytest.approx(1.0)
    with Image.open(layout.metrics / "emotion_space_pca.png") as picture:
        assert picture.size[0] > 300


def test_confidence_files_follow_contract(project):
    layout, _, _ = project
    folder = layout.model_dir("confidence")
    alpha = pd.read_parquet(folder / "alpha.parquet")
    assert list(alpha.columns) == ["attribute", "kind", "count", *EMOTIONS]
    np.testing.assert_allclose(alpha[list(EMOTIONS)].sum(axis=1), 1.0, atol=1e-9)
    vocabulary = json.loads((folder / "vocabulary.json").read_text())
    assert len(vocabulary["attributes"]) == len(set(vocabulary["attributes"])) == len(vocabulary["emotions"])
    samples = pd.read_parquet(folder / "sample_alpha.parquet")
    balanced = pd.read_parquet(layout.balanced)
    assert samples["id"].tolist() == balanced["id"].tolist()
    assert list(samples.columns) == ["id", "emotion_idx", "attribute", "alpha", "vocab_idx"]
    assert samples["vocab_idx"].between(-1, len(vocabulary["attributes"]) - 1).all()
    metrics = _metrics(layout, "confidence.json")
    got = metrics["synthetic_world"]["pearson_vs_profile"]
    assert got == pytest.approx(0.0477281, abs=1e-5), got  # at the fixed seed
