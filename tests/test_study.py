"""The multi-seed study (docs/study.md): `emogen study seeds` in a scratch git + DVC repo whose
two stages write Table 1 and the frontier from the seed (numbers known in advance), so the
pooling in metrics/study.json can be checked by hand; done seeds are reused; the workspace's
params.yaml is left byte for byte. Plus the pooling arithmetic on its own."""

import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from emogen.evaluation.study import pool_differences, study_summary
from tests.helpers.paths import REPO

# A stand-in for the evaluate and frontier stages: every number is a function of the seed
# (d = seed − 520), the frontier's image count comes from params (the study's override).
FAKE_STAGE = """
import json, os, sys, yaml
params = yaml.safe_load(open("params.yaml"))
d = params["seed"] - 520
os.makedirs("metrics", exist_ok=True)
if sys.argv[1] == "evaluate":
    table = {"methods": {"emogen": {"emo_a": {"value": 0.5 + d / 100, "low": 0.4, "high": 0.6}, "images": {"value": 16}},
                         "prompt": {"emo_a": {"value": 0.4, "low": 0.3, "high": 0.5}, "images": {"value": 16}}},
             "comparisons": {"prompt": {"emo_a": {"difference": d / 10, "low": 0.0, "high": 1.0, "se": 0.01 * d,
                                                  "verdict": "higher"}}}}
    json.dump(table, open("metrics/table1.json", "w"))
else:
    n = params["frontier"]["num_images"]
    curve = lambda a, s: [{"guidance_scale": g, "emo_a": {"value": a + g / 10}, "sem_d": {"value": s - g / 10}}
                          for g in (1.0, 3.0)]
    frontier = {"images_per_emotion": n, "methods": {"emogen": curve(0.3, 2.0 + d), "prompt": curve(0.2, 2.0)},
                "matched_difference": {"prompt": [
                    {"guidance_scale": 1.0, "emo_a": 0.4, "difference": None, "se": None},
                    {"guidance_scale": 3.0, "emo_a": 0.6, "difference": 0.3 * d, "se": 0.1, "low": 0.0,
                     "high": 1.0, "verdict": "higher"}]}}
    json.dump(frontier, open("metrics/frontier.json", "w"))
"""

DVC_YAML = {
    "stages": {
        "evaluate": {
            "cmd": "python fake_stage.py evaluate",
            "deps": ["fake_stage.py"],
            "params": ["seed"],
            "metrics": [{"metrics/table1.json": {"cache": False}}],
        },
        "frontier": {
            "cmd": "python fake_stage.py frontier",
            "deps": ["fake_stage.py", "metrics/table1.json"],
            "params": ["seed", "frontier"],
            "metrics": [{"metrics/frontier.json": {"cache": False}}],
        },
        "other": {"cmd": "python -c \"open('other.txt', 'w').write('x')\"", "outs": ["other.txt"]},
    }
}


def _study(repo: Path, env: dict, *args: str) -> tuple[dict, float]:
    # Prefect's temporary API server gets 20 s to start by default: too little on a busy machine.
    env = {"PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180", **env}
    start = time.perf_counter()
    out = subprocess.run(
        ["emogen", "study", "seeds", *args], cwd=repo, env=env, capture_output=True, text=True, check=False, timeout=600
    )
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    return json.loads((repo / "metrics/study.json").read_text()), time.perf_counter() - start


@pytest.fixture
def scratch(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "fake_stage.py").write_text(FAKE_STAGE)
    (repo / "dvc.yaml").write_text(yaml.safe_dump(DVC_YAML, sort_keys=False))
    shutil.copytree(REPO / "profiles", repo / "profiles")
    shutil.copytree(REPO / "flows", repo / "flows", ignore=shutil.ignore_patterns("__pycache__"))
    params = {
        "seed": 520,
        "frontier": {"num_images": 12},
        "study": {"seeds": [521, 522], "overrides": {"frontier.num_images": 48}, "targets": ["frontier"]},
    }
    # a comment and key order that a YAML rewrite would lose: params.yaml must stay byte for byte
    (repo / "params.yaml").write_text("# development seed: 520\n" + yaml.safe_dump(params, sort_keys=False))
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
        "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    for cmd in (
        ["git", "init", "-q"],
        ["dvc", "init", "-q"],
        ["git", "add", "-A"],
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "scratch"],
    ):
        subprocess.run(cmd, cwd=repo, env=env, check=True, capture_output=True)
    return repo, env


@pytest.mark.slow
def test_study_runs_each_report_seed_as_an_experiment_and_pools_them(scratch):
    repo, env = scratch
    params_before = (repo / "params.yaml").read_bytes()

    study, first_seconds = _study(repo, env)
    assert (repo / "params.yaml").read_bytes() == params_before
    assert not (repo / "metrics/table1.json").exists() and not (repo / "dvc.lock").exists()  # workspace untouched
    assert study["development_seed"] == 520 and study["report_seeds"] == [521, 522]
    assert set(study["seeds"]) == {"521", "522"} and all(s["ran"] for s in study["seeds"].values())
    assert all(s["seconds"] > 0 for s in study["seeds"].values()) and study["seconds"]["all_timed"]
    one_seed = study["seeds"]["521"]["seconds"]
    print(f"one seed of the tiny study: {one_seed} s; the whole first study: {first_seconds:.1f} s")

    # per seed: each experiment ran with its own seed and the override
    assert study["per_seed"]["521"]["table"]["emogen"]["emo_a"] == pytest.approx(0.51)
    assert study["per_seed"]["522"]["table"]["emogen"]["emo_a"] == pytest.approx(0.52)
    assert study["per_seed"]["522"]["frontier"]["images_per_emotion"] == 48
    assert study["frontier"]["images_per_emotion"] == [48]
    # means over seeds
    assert study["means"]["emogen"]["emo_a"]["mean"] == pytest.approx(0.515)
    assert study["means"]["emogen"]["emo_a"]["sd"] == pytest.approx(math.sqrt(0.00005), abs=1e-4)
    assert study["means"]["prompt"]["images"]["mean"] == 16
    # Table 1's comparison pooled: differences 0.1, 0.2 with se 0.01, 0.02
    pooled = study["comparisons"]["prompt"]["emo_a"]
    se = math.sqrt(0.01**2 + 0.02**2) / 2
    assert pooled["difference"] == pytest.approx(0.15) and pooled["se"] == pytest.approx(se, abs=1e-4)
    assert pooled["low"] == pytest.approx(0.15 - 1.959964 * se, abs=1e-4)
    assert pooled["per_seed"] == [0.1, 0.2] and pooled["verdict"] == "higher" and pooled["same_sign"]
    assert pooled["seed_sd"] == pytest.approx(0.0707, abs=1e-4)
    assert pooled["seed_low"] == pytest.approx(0.15 - 12.7062 * 0.070711 / math.sqrt(2), abs=1e-3)
    # the frontier: curve means, and the matched comparison pooled where it is defined
    emogen_curve = study["frontier"]["means"]["emogen"]
    assert emogen_curve[1]["sem_d"]["mean"] == pytest.approx(2.0 + 1.5 - 0.3)
    matched = study["frontier"]["matched_difference"]["prompt"]
    assert matched[0]["difference"] is None and matched[0]["seeds_defined"] == []
    assert matched[1]["difference"] == pytest.approx(0.45) and matched[1]["seeds_defined"] == [521, 522]
    assert matched[1]["se"] == pytest.approx(math.sqrt(0.02) / 2, abs=1e-4)

    # Again: both seeds' experiments exist for this code and params → nothing runs.
    again, again_seconds = _study(repo, env)
    assert not any(s["ran"] for s in again["seeds"].values())
    assert [again["seeds"][s]["experiment"] for s in ("521", "522")] == [
        study["seeds"][s]["experiment"] for s in ("521", "522")
    ]
    assert again["seeds"]["521"]["seconds"] == one_seed  # the time it took when it ran
    assert again["comparisons"] == study["comparisons"]
    # A third seed: only it runs.
    third, _ = _study(repo, env, "--seeds", "521", "522", "523")
    assert [third["seeds"][s]["ran"] for s in ("521", "522", "523")] == [False, False, True]
    assert third["comparisons"]["prompt"]["emo_a"]["difference"] == pytest.approx(0.2)
    assert (repo / "params.yaml").read_bytes() == params_before
    # A code change: a new fingerprint, so the seed runs again.
    (repo / "fake_stage.py").write_text(FAKE_STAGE + "\n# changed\n")
    changed, _ = _study(repo, env, "--seeds", "521")
    assert (
        changed["seeds"]["521"]["ran"] and changed["seeds"]["521"]["experiment"] != study["seeds"]["521"]["experiment"]
    )
    print(f"second study (both seeds reused): {again_seconds:.1f} s")


def test_the_development_seed_and_targets_without_table1_are_refused(scratch):
    repo, env = scratch
    for args, message in (
        (["--seeds", "520", "521"], "development seed"),
        (["--target", "other"], "do not run the evaluate stage"),
    ):
        out = subprocess.run(
            ["emogen", "study", "seeds", *args],
            cwd=repo,
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )
        assert out.returncode != 0 and message in out.stderr + out.stdout


def test_pool_differences_by_hand():
    pooled = pool_differences([0.3, -0.1, 0.1], [0.06, 0.08, 0.24], 0.95)
    se = math.sqrt(0.06**2 + 0.08**2 + 0.24**2) / 3  # 0.26 / 3
    assert pooled["difference"] == pytest.approx(0.1) and pooled["se"] == pytest.approx(se, abs=1e-4)
    assert pooled["high"] == pytest.approx(0.1 + 1.959964 * se, abs=1e-4)
    assert pooled["verdict"] == "no difference detected" and not pooled["same_sign"]  # 0.1 − 1.96 · 0.0867 < 0
    assert pooled["seed_sd"] == pytest.approx(0.2)
    one = pool_differences([0.2], [0.05], 0.95)
    assert one["se"] == 0.05 and one["seed_sd"] is None and one["verdict"] == "higher"
    with pytest.raises(ValueError, match="2 differences and 1 standard errors"):
        pool_differences([0.1, 0.2], [0.1], 0.95)


def test_a_seed_missing_a_comparison_is_an_error_naming_it():
    good = {"methods": {}, "comparisons": {"prompt": {"emo_a": {"difference": 0.1, "se": 0.01}}}}
    with pytest.raises(ValueError, match=r"seed 522.*comparisons.prompt.emo_a"):
        study_summary({521: good, 522: {"methods": {}, "comparisons": {"prompt": {}}}}, {}, 0.95)
