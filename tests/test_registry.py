"""The champion gate on numbers, and the registered generator end to end on a local SQLite
store: register twice (the alias moves, then stays), load it through MLflow, generate with
``emogen generate --model models:/emogen@champion``, serve it over HTTP."""

import base64
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from tests.helpers.paths import REPO

from tests.helpers.servers import free_port, stop_server, wait_for_http
from emogen.cli import main
from emogen.config import RegistryParams, parse_params
from emogen.errors import UserError
from emogen.layout import Layout
from emogen.registry.gate import Scores, decide, read_scores, register
from emogen.registry.model import load_generator, request_jobs, stage_artifacts
from tests.helpers.registry_inputs import write_generator, write_table1

GATE = RegistryParams(min_emo_a_gain=0.01, fid_tolerance=0.1)
TINY = {"generate": {"num_inference_steps": 2, "guidance_scale": 2.0, "device": "cpu",
                     "scheduler": "UniPCMultistepScheduler"}}


@pytest.mark.parametrize(("challenger", "champion", "promote", "words"), [
    (Scores(0.5, 10.0), None, True, "no champion yet"),
    (Scores(0.60, 10.5), Scores(0.50, 10.0), True, "within"),
    (Scores(0.505, 9.0), Scores(0.50, 10.0), False, "does not beat"),  # gain below the margin
    (Scores(0.40, 9.0), Scores(0.50, 10.0), False, "does not beat"),
    (Scores(0.60, 11.5), Scores(0.50, 10.0), False, "regresses beyond 11.0000"),
    (Scores(0.60, None), Scores(0.50, 10.0), True, "FID not comparable"),
    (Scores(None, 9.0), Scores(0.50, 10.0), False, "no Emo-A"),
])
def test_gate_decides_on_emo_a_and_fid(challenger, champion, promote, words):
    decision = decide(challenger, champion, GATE)
    assert decision.promote is promote and words in decision.reason


def test_read_scores_names_bad_keys(tmp_path):
    path = write_table1(tmp_path / "table1.json", 0.5, None)
    assert read_scores(path) == Scores(0.5, None, stand_in=True)
    path.write_text(json.dumps({"methods": {"prompt": {}}}))
    with pytest.raises(UserError, match=r"table1.json: no methods.emogen"):
        read_scores(path)
    path.write_text(json.dumps({"methods": {"emogen": {"emo_a": {"value": "high"}, "fid": {"value": 1}}}}))
    with pytest.raises(UserError, match=r"methods.emogen.emo_a.value must be a number"):
        read_scores(path)


def test_request_rows_are_checked():
    rows = pd.DataFrame([{"emotion": "awe", "num_images": 2, "seed": 4},
                         {"emotion": "fear", "mode": "interpolate", "emotion_2": "awe", "weight": 0.3}])
    jobs = request_jobs(rows)
    assert [(j.emotion, j.seed, j.fusion, j.weight) for j in jobs] == [
        ("awe", 4, None, None), ("awe", 5, None, None), ("fear", 0, "interpolate", 0.3)]
    with pytest.raises(UserError, match="request row 0: mode 'blend'"):
        request_jobs(pd.DataFrame([{"emotion": "awe", "mode": "blend"}]))
    with pytest.raises(UserError, match="unknown emotion 'joy'"):
        request_jobs(pd.DataFrame([{"emotion": "joy"}]))


def _decode(text: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(text)))


@pytest.fixture(scope="module")
def registered(tmp_path_factory):
    """A tiny generator registered twice in a SQLite store: v1 (Emo-A 0.5) becomes champion;
    v2 (Emo-A 0.4, test input) stays challenger."""
    root = write_generator(tmp_path_factory.mktemp("registry_repo"))
    uri = f"sqlite:///{root / 'mlflow.db'}"
    params = parse_params(TINY)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        mp.chdir(root)
        write_table1(root / "metrics/table1.json", 0.5, 20.0)
        first = register(params, Layout(root))
        write_table1(root / "metrics/table1.json", 0.4, 19.0)
        second = register(params, Layout(root))
    return root, uri, first, second


def test_champion_moves_only_when_the_gate_passes(registered):
    _, uri, (v1, d1), (v2, d2) = registered
    assert (v1, d1.promote, v2, d2.promote) == ("1", True, "2", False)
    client = mlflow.MlflowClient(uri)
    assert str(client.get_model_version_by_alias("emogen", "champion").version) == "1"
    assert str(client.get_model_version_by_alias("emogen", "challenger").version) == "2"
    tags = client.get_model_version("emogen", "2").tags
    assert tags["gate.decision"] == "rejected" and "does not beat the champion's 0.5000" in tags["gate.reason"]
    assert tags["emo_a"] == "0.4" and tags["stage"] == "register" and "git_commit" in tags


def test_champion_command_lists_versions(registered, monkeypatch, capsys):
    _, uri, *_ = registered
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    assert main(["pipeline", "champion", "--params", str(REPO / "params.yaml")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("emogen v2 challenger") and "rejected" in lines[0]
    assert lines[1].startswith("emogen v1 champion") and "no champion yet" in lines[1]


def test_sd15_profile_registers_a_reference_not_weights(tmp_path):
    """A pretrained base model goes into the artifacts as base.json alone (pinned paths and
    revisions), and the generator still loads from it."""
    root = write_generator(tmp_path / "repo")
    base_json = root / "models/base/base.json"
    info = json.loads(base_json.read_text())
    info.update(profile="pretrained", pipeline=str(root / info["pipeline"]), clip=str(root / info["clip"]))
    base_json.write_text(json.dumps(info))
    folder = stage_artifacts(Layout(root), parse_params(TINY).generate, tmp_path / "artifacts")
    assert sorted(p.name for p in (folder / "models/base").iterdir()) == ["base.json"]
    assert load_generator(folder, "cpu")("awe", generator=torch.Generator().manual_seed(0)).images[0].size == (16, 16)


def test_champion_generates_through_mlflow_and_the_cli(registered, tmp_path, monkeypatch):
    _root, uri, *_ = registered
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    model = mlflow.pyfunc.load_model("models:/emogen@champion")
    out = model.predict(pd.DataFrame([{"emotion": "awe", "num_images": 2, "seed": 3}]))
    assert list(out["seed"]) == [3, 4] and _decode(out["image"][0]).size == (16, 16)
    # The same seeds through `emogen generate` give the same pixels.
    assert main(["generate", "--model", "models:/emogen@champion", "--emotion", "awe", "--num-images", "2",
                 "--seed", "3", "--out", str(tmp_path / "cli"), "--device", "cpu"]) == 0
    index = json.loads((tmp_path / "cli/index.json").read_text())
    cli_image = Image.open(tmp_path / "cli" / index["images"][0]["file"])
    assert (np.asarray(cli_image) == np.asarray(_decode(out["image"][0]).convert(cli_image.mode))).all()
    reqs = (Path(mlflow.artifacts.download_artifacts("models:/emogen@champion")) / "requirements.txt").read_text()
    assert "torch==2.13.0" in reqs and "diffusers==" in reqs


@pytest.mark.slow
def test_mlflow_models_serve_answers_with_images(registered):
    root, uri, *_ = registered
    port = free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "models", "serve", "-m", "models:/emogen@champion",
         "--env-manager", "local", "--host", "127.0.0.1", "--port", str(port)],
        cwd=root, env=env, stdout=(root / "serve.log").open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/ping", proc, timeout=180)
        import urllib.request

        body = json.dumps({"dataframe_records": [{"emotion": "fear", "num_images": 1, "seed": 7}]}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", body,
                                         {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=120) as response:
            predictions = json.loads(response.read())["predictions"]
    finally:
        stop_server(proc)
    assert predictions[0]["emotion"] == "fear" and predictions[0]["seed"] == 7
    assert _decode(predictions[0]["image"]).size == (16, 16)
