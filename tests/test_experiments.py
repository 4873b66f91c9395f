"""Comparing experiments in a real scratch DVC repo with the real stages (prepare_data →
ingest → validate → balance → stage1 → emotion_space → confidence, at a tiny size):

- stage durations are not DVC metrics: they go to ``metrics/timings/<stage>.json`` (and MLflow);
- ``dvc metrics diff`` / ``dvc exp diff`` between two identical runs report nothing;
- ``dvc exp show --only-changed`` on two experiments that differ in one param shows that param
  and the metrics that moved, and no duration column.
"""

import json
import shutil
import subprocess
from pathlib import Path

import mlflow
import pytest

from tests.helpers.paths import REPO
from tests.helpers.scratch_repo import scratch_repo

pytestmark = pytest.mark.slow

TARGET = "confidence"
STAGES = ["prepare_data", "ingest", "validate", "balance", "stage1", "emotion_space", "confidence"]
TINY = {
    "prepare_data": {"num_images": 240, "workers": 1},
    "ingest": {"workers": 1},
    "validate": {"min_images_per_emotion": 5},
    "stage1": {"epochs": 2, "vector_dim": 32, "workers": 0},
    "emotion_space": {"workers": 0},
}
# Words a duration column would carry (the names the stages used before metrics/timings/).
DURATION_WORDS = ("seconds", "train_s", "time_s", "setup_s", "stage_seconds")


def _run(cmd, cwd, env, timeout=900) -> str:
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"{cmd}:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out.stdout


def _exp_rev(root: Path, name: str) -> str:
    from emogen.orchestration import exp_rev

    return exp_rev(root, name)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    """The repo's dvc.yaml, code and profiles with tiny params, committed after one `dvc repro`
    of the stages up to confidence (the baseline the experiments branch from)."""
    repo = scratch_repo(tmp_path_factory.mktemp("experiments") / "repo", TINY, OMP_NUM_THREADS="1")
    root, env = repo.path, repo.env
    shutil.copy(REPO / ".gitignore", root)
    for cmd in (["dvc", "repro", TARGET], ["git", "add", "-A"], ["git", "commit", "-qm", "baseline"]):
        _run(cmd, root, env)
    uri = env["MLFLOW_TRACKING_URI"]
    return root, env, uri


def test_durations_are_files_beside_the_metrics_not_metrics(scratch):
    root, env, uri = scratch
    for stage in STAGES:
        timing = json.loads((root / "metrics/timings" / f"{stage}.json").read_text())
        assert timing["stage"] == stage and timing["seconds"] > 0
    assert json.loads((root / "metrics/timings/stage1.json").read_text())["parts"]["train_seconds"] > 0
    shown = json.loads(_run(["dvc", "metrics", "show", "--json"], root, env))
    files = {path for rev in shown.values() for path in rev["data"]}
    assert files and not any("timings" in path for path in files), files
    produced = [data["data"] for rev in shown.values() for data in rev["data"].values() if "data" in data]
    assert len(produced) >= 5, shown  # the metric files of the stages that ran (others: not produced here)
    names = {key for data in produced for key in _keys(data)}
    assert not [name for name in names if any(word in name for word in DURATION_WORDS)], names
    # git leaves them alone (nothing to commit after a run) ...
    assert "timings" not in _run(["git", "status", "--porcelain", "--ignored"], root, env).replace(
        "!! metrics/timings/", ""
    )
    # ... and MLflow still has them, on the stage's run.
    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=["emogen"], filter_string="tags.stage = 'stage1'")
    assert (runs["metrics.train_seconds"] > 0).all() and (runs["metrics.stage_seconds"] > 0).all()


def _keys(data, prefix=""):
    if isinstance(data, dict):
        for key, value in data.items():
            yield from _keys(value, f"{prefix}{key}.")
    else:
        yield prefix.rstrip(".")


def test_identical_runs_have_no_metric_differences(scratch):
    root, env, _ = scratch
    _run(["dvc", "exp", "run", "--temp", "-f", "-n", "again", TARGET], root, env)
    rev = _exp_rev(root, "again")
    assert json.loads(_run(["dvc", "metrics", "diff", "HEAD", rev, "--json"], root, env) or "{}") == {}
    assert json.loads(_run(["dvc", "exp", "diff", "HEAD", rev, "--json"], root, env) or "{}").get("metrics", {}) == {}


def test_exp_show_only_changed_shows_the_param_and_the_metrics_that_moved(scratch):
    root, env, _ = scratch
    params_before = (root / "params.yaml").read_bytes()
    _run(["dvc", "exp", "run", "--temp", "-n", "epochs3", "-S", "stage1.epochs=3", TARGET], root, env)
    assert (root / "params.yaml").read_bytes() == params_before  # --temp: the workspace untouched
    csv = _run(["dvc", "exp", "show", "--only-changed", "--csv"], root, env)
    header = csv.splitlines()[0].split(",")
    columns = [c for c in header if c not in ("Experiment", "rev", "typ", "Created", "parent", "State", "Executor")]
    assert "stage1.epochs" in columns, header
    assert not [c for c in columns if any(word in c for word in DURATION_WORDS)], columns
    # Two more epochs move stage 1's results; nothing about the data stages changed.
    assert any(c.startswith("accuracy") or "accuracy" in c for c in columns), columns
    assert not [c for c in columns if c.startswith(("per_split", "checks"))], columns
    print(_run(["dvc", "exp", "show", "--only-changed", "--md"], root, env))


def test_plots_of_two_experiments_open_offline(scratch, tmp_path):
    """`emogen plots diff` writes DVC's plots page with vega inline: in a browser with no
    network every chart draws (DVC's own page loads vega from a CDN and stays blank)."""
    pytest.importorskip("vl_convert", reason="the plots extra (vl-convert-python) is not installed")
    from tests.helpers.browser import Browser

    root, env, _ = scratch
    _run(["emogen", "plots", "diff", "HEAD", "epochs3", "-o", "offline_plots"], root, env)
    page = root / "offline_plots/index.html"
    html = page.read_text()
    assert "cdn.jsdelivr" not in html and "window.vegaEmbed" in html
    # The plots whose data this repo has (stage 1's; the other stages did not run here).
    with_data = ["metrics_stage1_history_csv", "metrics_stage1_confusion_csv"]
    assert all(f"vegaEmbed('#{plot}'" in html for plot in with_data)
    sizes = (
        f"Object.fromEntries({json.dumps(with_data)}.map(id => {{ const g = document.querySelector('#' + id + ' .marks'); "
        "const r = g ? g.getBoundingClientRect() : {width: 0, height: 0}; return [id, [r.width, r.height]]; }))"
    )
    browser = Browser(tmp_path / "profile")
    try:
        browser.open(page.resolve().as_uri())
        browser.wait_for(f"Object.values({sizes}).every(([w, h]) => w > 100 && h > 100)")
        drawn = browser.eval(sizes)
        text = browser.eval("document.querySelector('#metrics_stage1_history_csv').innerText")
        errors = browser.console_errors()
    finally:
        browser.close()
    assert all(w > 100 and h > 100 for w, h in drawn.values()) and not errors, (drawn, errors)
    assert "epoch" in text and "epochs3" in text  # axis title and the legend's experiment
