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

from emogen.cli import main
from emogen.config import RegistryParams, parse_params
from emogen.errors import UserError
from emogen.layout import Layout
from emogen.registry.gate import Scores, decide, read_scores, register
from emogen.registry.model import load_generator, request_jobs, stage_artifacts
from tests.helpers.paths import REPO
from tests.helpers.registry_inputs import write_generator, write_table1
from tests.helpers.servers import free_port, stop_server, wait_for_http

GATE = RegistryParams(min_emo_a_gain=0.01, fid_tolerance=0.1)
TINY = {
    "generate": {
        "num_inference_steps": 2,
        "guidance_scale": 2.0,
        "device": "cpu",
        "scheduler": "UniPCMultistepScheduler",
    }
}


@pytest.mark.parametrize(
    ("challenger", "champion", "promote", "words"),
    [
        (Scores(0.5, 10.0), None, True, "no champion yet"),
        (Scores(0.60, 10.5), Scores(0.50, 10.0), True, "within"),
        (Scores(0.505, 9.0), Scores(0.50, 10.0), False, "does not beat"),  # gain below the margin
        (Scores(0.40, 9.0), Scores(0.50, 10.0), False, "does not beat"),
        (Scores(0.60, 11.5), Scores(0.50, 10.0), False, "regresses beyond 11.0000"),
        (Scores(0.60, None), Scores(0.50, 10.0), True, "FID not comparable"),
        (Scores(None, 9.0), Scores(0.50, 10.0), False, "no Emo-A"),
    ],
)
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
    rows = pd.DataFrame(
        [
            {"emotion": "awe", "num_images": 2, "seed": 4},
            {"emotion": "fear", "mode": "interpolate", "emotion_2": "awe", "weight": 0.3},
        ]
    )
    jobs = request_jobs(rows)
    assert [(j.emotion, j.seed, j.fusion, j.weight) for j in jobs] == [
        ("awe", 4, None, None),
        ("awe", 5, None, None),
        ("fear", 0, "interpolate", 0.3),
    ]
    with pytest.raises(UserError, match="request row 0: mode 'blend' is not allowed; allowed: single, interpolate"):
        request_jobs(pd.DataFrame([{"emotion": "awe", "mode": "blend"}]))
    with pytest.raises(UserError, match="emotion 'joy' is not allowed; allowed: amusement, awe"):
        request_jobs(pd.DataFrame([{"emotion": "joy"}]))
    for count in (0, -2, 100000):
        with pytest.raises(UserError, match=rf"num_images {count} is not allowed; allowed: an integer in 1\.\.64"):
            request_jobs(pd.DataFrame([{"emotion": "awe", "num_images": count}]))
    with pytest.raises(UserError, match=r"request row 1: weight 1\.5 is not allowed"):
        request_jobs(
            pd.DataFrame(
                [{"emotion": "awe"}, {"emotion": "awe", "mode": "interpolate", "emotion_2": "fear", "weight": 1.5}]
            )
        )


def test_limits_have_one_source_and_one_page():
    """The numbers docs/limits.md states are the ones the code enforces."""
    from emogen.demo.app import MAX_IMAGES
    from emogen.limits import DEMO_MAX_IMAGES, MIN_IMAGES, SERVED_MAX_IMAGES

    assert MAX_IMAGES == DEMO_MAX_IMAGES
    page = (REPO / "docs/limits.md").read_text()
    assert f"{MIN_IMAGES}..{SERVED_MAX_IMAGES}" in page and f"{MIN_IMAGES}..{DEMO_MAX_IMAGES}" in page


@pytest.mark.parametrize("store", ["missing.db", "empty.db"])
def test_champion_command_on_an_empty_registry_says_how_to_make_one(store, tmp_path, monkeypatch, capsys):
    uri = f"sqlite:///{tmp_path / store}"
    if store == "empty.db":
        mlflow.MlflowClient(uri).search_experiments()  # a real store with no registered model
        capsys.readouterr()  # MLflow's "Creating initial MLflow database tables" lines
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    assert main(["pipeline", "champion", "--params", str(REPO / "params.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no champion yet") and "`emogen pipeline retrain`" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


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
    assert (
        main(
            [
                "generate",
                "--model",
                "models:/emogen@champion",
                "--emotion",
                "awe",
                "--num-images",
                "2",
                "--seed",
                "3",
                "--out",
                str(tmp_path / "cli"),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
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
        [
            str(Path(sys.executable).parent / "mlflow"),
            "models",
            "serve",
            "-m",
            "models:/emogen@champion",
            "--env-manager",
            "local",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        cwd=root,
        env=env,
        stdout=(root / "serve.log").open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    import urllib.error
    import urllib.request

    def post(record: dict):
        body = json.dumps({"dataframe_records": [record]}).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations", body, {"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    bad = {  # request → what the answer's message must name: the field, its value, what is allowed
        "emotion": ({"emotion": "joy"}, ["emotion 'joy'", "allowed: amusement, awe"]),
        "negative": ({"emotion": "awe", "num_images": -2}, ["num_images -2", "allowed: an integer in 1..64"]),
        "huge": ({"emotion": "awe", "num_images": 100000}, ["num_images 100000", "1..64"]),
        "mode": ({"emotion": "awe", "mode": "blend"}, ["mode 'blend'", "allowed: single, interpolate, tokens"]),
        "word": ({"emotion": "awe", "template": "{} zeppelin"}, ["zeppelin", "not in the vocabulary"]),
    }
    try:
        wait_for_http(f"http://127.0.0.1:{port}/ping", proc, timeout=180)
        status, answer = post({"emotion": "fear", "num_images": 1, "seed": 7})
        answers = {name: post(record) for name, (record, _) in bad.items()}
    finally:
        stop_server(proc)
    assert status == 200
    predictions = answer["predictions"]
    assert predictions[0]["emotion"] == "fear" and predictions[0]["seed"] == 7
    assert _decode(predictions[0]["image"]).size == (16, 16)
    for name, (code, body) in answers.items():
        assert code == 400, (name, code, body)
        assert body["error_code"] == "INVALID_PARAMETER_VALUE", (name, body)
        assert all(words in body["message"] for words in bad[name][1]), (name, body["message"])
        assert "Traceback" not in body["message"] and "stack_trace" not in body, (name, body)


def test_generate_prints_no_torchvision_notice(registered, tmp_path):
    """diffusers' StableDiffusionPipeline module imports transformers' CLIP/Siglip image
    processors, whose torchvision fallback notice (a package this project never installs)
    must not reach a user of `emogen generate`."""
    root, uri, *_ = registered
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": uri,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "emogen",
            "generate",
            "--model",
            "models:/emogen@champion",
            "--emotion",
            "awe",
            "--num-images",
            "1",
            "--out",
            str(tmp_path / "out"),
            "--device",
            "cpu",
        ],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "torchvision" not in out.stdout + out.stderr, out.stderr[-2000:]
    assert "1 images in" in out.stdout
