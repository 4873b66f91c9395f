"""End to end: `dvc repro balance` in a temp copy of the repo runs the four data stages,
a second repro does nothing, and a param change reruns only what depends on it."""

import re
import subprocess
from pathlib import Path

import mlflow
import pandas as pd
import yaml

DATA_STAGES = {"prepare_data", "ingest", "validate", "balance"}


def _set_param(repo: Path, section: str, key: str, value) -> None:
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params[section][key] = value
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def _repro(repo: Path, env: dict) -> set[str]:
    """Run `dvc repro balance`; the set of stages it actually ran."""
    out = subprocess.run(["dvc", "repro", "balance"], cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return set(re.findall(r"Running stage '(\w+)'", out.stdout))


def test_dvc_repro_runs_caches_and_reruns_only_dependents(scratch_repo):
    scratch = scratch_repo(
        {
            "prepare_data": {"num_images": 160, "workers": 1},
            "ingest": {"workers": 1},
            "validate": {"min_images_per_emotion": 3},
        }
    )
    repo, env, uri = scratch.path, scratch.env, scratch.env["MLFLOW_TRACKING_URI"]

    assert _repro(repo, env) == DATA_STAGES
    balanced = pd.read_parquet(repo / "data/processed/balanced.parquet")
    assert len(balanced) and (repo / "metrics/validation/docs/index.html").is_file()
    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=["emogen"])
    assert set(runs["tags.mlflow.runName"]) == DATA_STAGES and (runs["status"] == "FINISHED").all()

    assert _repro(repo, env) == set()

    _set_param(repo, "balance", "splits", ["train", "val"])
    assert _repro(repo, env) == {"balance"}
    assert len(pd.read_parquet(repo / "data/processed/balanced.parquet")) > len(balanced)

    # validate reruns; its summary is unchanged, so balance does not.
    _set_param(repo, "validate", "split_tolerance", 0.08)
    assert _repro(repo, env) == {"validate"}
