"""The Prefect flows over a tiny real DVC repo, against real servers on 127.0.0.1:
`emogen pipeline run` runs every stage in DAG order (then skips them all); a served retrain
deployment, triggered through the Prefect client, registers a challenger in an MLflow
server and the gate moves the champion, skips an unchanged rerun, and keeps the champion
when a worse one arrives; the two experiments compare in DVC and MLflow; a second clone
gets the trained outputs with `dvc pull` and nothing to recompute; the same deployment on a
process work pool skips a retrain whose data and params match the champion's.

The tiny repo's data stages are the real ones (prepare_data → ingest → validate at 240
images); its `generate` stage writes a tiny random generator and its `evaluate` stage
writes a Table 1 whose Emo-A is 0.5 + stage2.lambda_attr: TEST INPUTS, not measurements.
"""

import json
import shutil
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import mlflow
import pytest
import yaml

from emogen.config import parse_params
from emogen.orchestration import exp_rev
from tests.helpers.paths import REPO
from tests.helpers.scratch_repo import command_env, init_repo
from tests.helpers.servers import stop_server

pytestmark = pytest.mark.slow

DEPLOYMENT = "emogen-retrain/emogen-retrain"

GENERATE = f"""\
import sys, yaml
sys.path.insert(0, {str(REPO)!r})
from tests.helpers.registry_inputs import write_generator
from emogen.tracking import log_metrics, stage_run
params = yaml.safe_load(open("params.yaml"))
with stage_run("generate", {{"stage2": params["stage2"]}}):
    write_generator(".", seed=params["seed"])
    log_metrics({{"test_fixture": 1.0}})
"""
EVALUATE = f"""\
import sys, yaml
sys.path.insert(0, {str(REPO)!r})
from tests.helpers.registry_inputs import write_table1
lam = yaml.safe_load(open("params.yaml"))["stage2"]["lambda_attr"]
write_table1("metrics/table1.json", emo_a=0.5 + lam, fid=20.0)  # test input, not a measurement
"""
DVC_YAML = {
    "stages": {
        "prepare_data": {
            "cmd": "emogen stage prepare_data",
            "params": ["seed", "data", "prepare_data"],
            "outs": [{"data/synthetic/emoset": {"persist": True}}, {"data/fingerprint.json": {"persist": True}}],
        },
        "ingest": {
            "cmd": "emogen stage ingest",
            "deps": ["data/synthetic/emoset", "data/fingerprint.json"],
            "params": ["data", "ingest"],
            "outs": ["data/processed/manifest.parquet", "data/processed/quarantine.parquet"],
            "metrics": [{"metrics/ingest.json": {"cache": False}}],
        },
        "validate": {
            "cmd": "emogen stage validate",
            "deps": ["data/processed/manifest.parquet", "data/synthetic/emoset"],
            "params": ["data", "validate"],
            "outs": ["metrics/validation"],
            "metrics": [{"metrics/validate.json": {"cache": False}}],
        },
        "generate": {
            "cmd": "python generate_fixture.py",
            "deps": ["generate_fixture.py", "metrics/validate.json"],
            "params": ["seed", "stage2.lambda_attr"],
            "outs": ["models/base", "models/stage2", "models/emotion_space"],
        },
        "evaluate": {
            "cmd": "python evaluate_fixture.py",
            "deps": ["evaluate_fixture.py", "models/stage2"],
            "params": ["stage2.lambda_attr"],
            "metrics": [{"metrics/table1.json": {"cache": False}}],
        },
    }
}
PARAMS = {
    "prepare_data": {"num_images": 240, "workers": 1},
    "ingest": {"workers": 1},
    "validate": {"min_images_per_emotion": 5},
    "generate": {
        "num_inference_steps": 2,
        "guidance_scale": 2.0,
        "device": "cpu",
        "scheduler": "UniPCMultistepScheduler",
    },
    "pipeline": {"retries": 0},
}


def _run(cmd, cwd, env, timeout=600):
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"{cmd}:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out.stdout


@pytest.fixture(scope="module")
def repo(tmp_path_factory, prefect_server, mlflow_server):
    root = tmp_path_factory.mktemp("orch_repo")
    shutil.copytree(REPO / "flows", root / "flows", ignore=shutil.ignore_patterns("__pycache__"))
    (root / "generate_fixture.py").write_text(GENERATE)
    (root / "evaluate_fixture.py").write_text(EVALUATE)
    (root / "dvc.yaml").write_text(yaml.safe_dump(DVC_YAML, sort_keys=False))
    params = parse_params(PARAMS).model_dump(by_alias=True, mode="json")
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (root / ".gitignore").write_text("mlflow.db\nmlartifacts/\n")
    env = command_env(None, PREFECT_API_URL=prefect_server, MLFLOW_TRACKING_URI=mlflow_server)
    init_repo(root, env, commit="tiny")
    # The served flow's own git commits (a champion's version) need an identity in the repo too.
    for key, value in (("user.email", "t@t"), ("user.name", "t")):
        _run(["git", "config", key, value], root, env)
    return root, env


def prefect_settings(env):
    """The test's Prefect server for calls in this process (settings are read once: set them)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    return temporary_settings({PREFECT_API_URL: env["PREFECT_API_URL"]})


@contextmanager
def prefect_client(env):
    from prefect.client.orchestration import get_client

    with prefect_settings(env), get_client(sync_client=True) as client:
        yield client


def _states(stdout: str) -> dict:
    return json.loads(stdout[stdout.rindex('{\n "') :])  # the JSON the command prints last


def test_pipeline_run_goes_through_dvc_in_dag_order(repo):
    root, env = repo
    first = _states(_run(["emogen", "pipeline", "run"], root, env))
    assert list(first) == ["prepare_data", "ingest", "validate", "generate", "evaluate"]
    assert set(first.values()) == {"Ran"}
    second = _states(_run(["emogen", "pipeline", "run"], root, env))
    assert set(second.values()) == {"Skipped"}, second

    from prefect.client.schemas.sorting import FlowRunSort

    with prefect_client(env) as client:
        run = client.read_flow_runs(sort=FlowRunSort.START_TIME_DESC, limit=1)[0]
        tasks = {t.name: t.state.name for t in client.read_task_runs() if t.flow_run_id == run.id}
    assert tasks["validate"] == "Skipped" and len(tasks) == 5
    # Every stage run of the first execution is tagged with one pipeline-run id.
    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    runs = mlflow.search_runs(experiment_names=["emogen"], filter_string="tags.stage = 'validate'")
    assert runs["tags.pipeline_run_id"].iloc[-1] not in ("", "none")


def _flow_run_count(env) -> int:
    with prefect_client(env) as client:
        return len(client.read_flow_runs())


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["retrain", "-S", "stage2.lambda_attr=abc"], ["-S stage2.lambda_attr=abc", "valid number", "'abc'"]),
        (
            ["retrain", "-S", "stage2.lamda_attr=0.02"],
            ["unknown key stage2.lamda_attr", "did you mean stage2.lambda_attr"],
        ),
        (["retrain", "-S", "profile=nope"], ["-S profile=nope", "no", "profiles/nope.yaml"]),
        (["run", "--target", "evaluat"], ["no stage named 'evaluat'"]),
    ],
)
def test_bad_overrides_fail_in_one_line_before_anything_runs(repo, args, words):
    """No flow run, no stage, no traceback: one line naming the override; -v shows the traceback."""
    root, env = repo
    before, params = _flow_run_count(env), (root / "params.yaml").read_bytes()
    out = subprocess.run(["emogen", "pipeline", *args], cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr
    assert all(word in lines[0] for word in words), lines[0]
    assert "Traceback" not in out.stdout + out.stderr and "Running stage" not in out.stdout
    assert _flow_run_count(env) == before and (root / "params.yaml").read_bytes() == params
    verbose = subprocess.run(
        ["emogen", "-v", "pipeline", *args], cwd=root, env=env, capture_output=True, text=True, timeout=300
    )
    assert verbose.returncode != 0 and "Traceback" in verbose.stderr


def _workspace(root: Path) -> dict[str, bytes]:
    """What a retrain must leave alone: params.yaml, dvc.lock and every output file."""
    files = [root / "params.yaml", root / "dvc.lock", root / "metrics/table1.json"]
    files += sorted(p for d in ("models", "data/processed") for p in (root / d).rglob("*") if p.is_file())
    return {str(p.relative_to(root)): p.read_bytes() for p in files}


def _wait_for_deployment(env, proc, timeout=180):
    deadline = time.monotonic() + timeout
    with prefect_client(env) as client:
        while time.monotonic() < deadline:
            assert proc.poll() is None, "emogen pipeline serve exited"
            try:
                return client.read_deployment_by_name(DEPLOYMENT)
            except Exception:
                time.sleep(1)
    raise TimeoutError("the retrain deployment never appeared")


def _trigger(env, overrides):
    from prefect.deployments import run_deployment

    with prefect_settings(env):
        run = run_deployment(DEPLOYMENT, parameters={"overrides": overrides}, timeout=900, poll_interval=2)
    assert run.state.is_completed(), run.state
    return run


def test_served_retrain_registers_gates_and_skips(repo):
    root, env = repo
    serve = subprocess.Popen(
        ["emogen", "pipeline", "serve", "--cron", ""],
        cwd=root,
        env=env,
        stdout=(root.parent / "serve.log").open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deployment = _wait_for_deployment(env, serve)
        assert deployment.global_concurrency_limit.limit == 1
        before = _workspace(root)
        first = _trigger(env, {"stage2.lambda_attr": 0.05})
        after_promoted = _workspace(root)
        worse = _trigger(env, {"stage2.lambda_attr": 0.0})
        after_rejected = _workspace(root)
    finally:
        stop_server(serve, sig=2)
    # --temp: the workspace is byte for byte as it was, whether the gate promoted or not.
    assert after_promoted == before and after_rejected == before
    assert "lambda_attr: 0.05" not in (root / "params.yaml").read_text()

    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
    versions = {str(v.version): v for v in client.search_model_versions("name='emogen'")}
    assert sorted(versions) == ["1", "2"]
    assert str(client.get_model_version_by_alias("emogen", "champion").version) == "1"
    assert str(client.get_model_version_by_alias("emogen", "challenger").version) == "2"
    assert versions["1"].tags["gate.reason"].startswith("no champion yet")
    assert "does not beat the champion's 0.5500" in versions["2"].tags["gate.reason"]
    assert versions["1"].tags["pipeline_run_id"] == str(first.id)
    assert versions["2"].tags["dvc_experiment"] == f"retrain-{str(worse.id)[:8]}"

    # The two experiments side by side: in DVC ...
    shown = json.loads(_run(["dvc", "exp", "show", "--json"], root, env))
    exps = {
        e["name"]: e["data"]["params"]["params.yaml"]["data"]["stage2"]["lambda_attr"]
        for rev in shown
        for group in (rev.get("experiments") or [])
        for e in group["revs"]
    }
    assert exps == {f"retrain-{str(first.id)[:8]}": 0.05, f"retrain-{str(worse.id)[:8]}": 0.0}
    # ... and in MLflow, where the runs of both landed in the one store, tagged by experiment.
    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    runs = mlflow.search_runs(experiment_names=["emogen"], filter_string="tags.stage = 'generate'")
    by_exp = dict(zip(runs["tags.dvc_experiment"], runs["params.stage2.lambda_attr"]))
    assert {by_exp[name] for name in exps} == {"0.05", "0.0"}
    # Every run of a retrain names its experiment, the register run included; the version
    # records the experiment, its commit and the params it was trained with.
    for flow_run, name, lam in (
        (first, f"retrain-{str(first.id)[:8]}", "0.05"),
        (worse, f"retrain-{str(worse.id)[:8]}", "0.0"),
    ):
        mine = mlflow.search_runs(experiment_names=["emogen"], filter_string=f"tags.pipeline_run_id = '{flow_run.id}'")
        assert {"generate", "register"} <= set(mine["tags.stage"]), mine["tags.stage"]
        assert set(mine["tags.dvc_experiment"]) == {name}
        register_run = mine[mine["tags.stage"] == "register"].iloc[0]
        assert register_run["params.stage2.lambda_attr"] == lam
    assert versions["1"].tags["dvc_experiment_rev"] == exp_rev(root, f"retrain-{str(first.id)[:8]}")
    assert json.loads(versions["1"].tags["overrides"]) == {"stage2.lambda_attr": 0.05}


def test_second_clone_pulls_without_recomputing(repo, tmp_path):
    root, env = repo
    remote = tmp_path / "remote"
    for cmd in (
        ["dvc", "remote", "add", "-d", "shared", str(remote)],
        ["dvc", "push"],
        ["git", "add", "-A"],
        ["git", "commit", "-qm", "trained"],
    ):
        _run(cmd, root, env)
    clone = tmp_path / "clone"
    _run(["git", "clone", "-q", str(root), str(clone)], tmp_path, env)
    _run(["dvc", "pull"], clone, env)
    assert (clone / "models/stage2/mapper").is_dir() and (clone / "data/processed/manifest.parquet").is_file()
    status = _run(["dvc", "status"], clone, env)
    assert "up to date" in status, status
    assert "Running stage" not in _run(["dvc", "repro"], clone, env)


def test_retrain_deployment_runs_on_a_process_work_pool(repo):
    """The same deployment on a Prefect process pool, run by a worker; data and params are
    those of champion v1 (after the test above), so the retrain checks and skips."""
    root, env = repo
    _run(["prefect", "work-pool", "create", "tiny-pool", "--type", "process"], root, env)
    _run(["emogen", "pipeline", "serve", "--cron", "", "--work-pool", "tiny-pool"], root, env)
    worker = subprocess.Popen(
        ["prefect", "worker", "start", "--pool", "tiny-pool"],
        cwd=root,
        env=env,
        stdout=(root.parent / "worker.log").open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        _trigger(env, {"stage2.lambda_attr": 0.05})
    finally:
        stop_server(worker, sig=2)
    # The worker's output holds its flow runs' logs (shipping them to the API is batched).
    assert "skipped: data and params unchanged since champion version 1" in (root.parent / "worker.log").read_text()
    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
    assert len(client.search_model_versions("name='emogen'")) == 2  # nothing registered


def test_temp_experiment_logs_to_the_repo_store(repo):
    """`dvc exp run --temp` runs in a temporary copy; with no MLFLOW_TRACKING_URI its runs
    still land in the repo's own mlflow.db (DVC_ROOT), tagged with the experiment name."""
    root, env = repo
    local = {k: v for k, v in env.items() if k != "MLFLOW_TRACKING_URI"}
    _run(["dvc", "exp", "run", "--temp", "-n", "tempexp", "-S", "stage2.lambda_attr=0.2"], root, local)
    client = mlflow.MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    runs = client.search_runs(
        [client.get_experiment_by_name("emogen").experiment_id],
        filter_string="tags.dvc_experiment = 'tempexp' and tags.stage = 'generate'",
    )
    assert [r.data.params["stage2.lambda_attr"] for r in runs] == ["0.2"]


def test_promotion_is_dvc_exp_apply(repo):
    """The champion's experiment goes into the workspace only when the user applies it."""
    root, env = repo
    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
    champion = client.get_model_version_by_alias("emogen", "champion")
    name = champion.tags["dvc_experiment"]
    listed = _run(["emogen", "pipeline", "champion"], root, env)
    assert f"`dvc exp apply {name}`" in listed, listed
    _run(["dvc", "exp", "apply", name], root, env)
    assert yaml.safe_load((root / "params.yaml").read_text())["stage2"]["lambda_attr"] == 0.05
    assert "up to date" in _run(["dvc", "status"], root, env)
    table = json.loads((root / "metrics/table1.json").read_text())
    assert float(champion.tags["emo_a"]) == pytest.approx(table["methods"]["emogen"]["emo_a"]["value"])
