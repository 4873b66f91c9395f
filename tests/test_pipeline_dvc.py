"""The whole embedded DAG under `dvc repro` in a temp copy of the repo, at a tiny size:
every stage runs in order, logs to MLflow, and a second repro has nothing to do."""

import copy
import json
import re
import subprocess
from pathlib import Path

import mlflow
import pytest

from emogen.cli import STAGES
from emogen.emotions import EMOTIONS
from emogen.evaluation.study import study_summary
from tests.helpers.scratch_repo import lay_over

TINY = {
    "prepare_data": {"num_images": 240, "workers": 1},
    "ingest": {"workers": 1},
    "validate": {"min_images_per_emotion": 5},
    "stage1": {"epochs": 2, "vector_dim": 32, "workers": 0},
    "emotion_space": {"workers": 0},
    "base_model": {
        "resolution": 8,
        "eval_captions": 4,
        "grid_rows": 2,
        "contrastive": {
            "steps": 4,
            "batch_size": 16,
            "text_width": 16,
            "vision_width": 16,
            "projection_dim": 16,
            "heads": 2,
            "patch_size": 4,
        },
        "unet": {
            "steps": 4,
            "batch_size": 8,
            "block_channels": [8, 16],
            "norm_groups": 4,
            "attention_head_dim": 4,
            "warmup_steps": 1,
        },
        "sampling": {"num_inference_steps": 2},
    },
    "stage2": {
        "max_train_steps": 3,
        "checkpointing_steps": 2,
        "sample_every": 0,
        "num_sample_images": 1,
        "sample_inference_steps": 2,
        "mapper": {"hidden_dim": 16},
    },
    "generate": {"num_images": 2, "num_inference_steps": 2, "transfer_templates": ["{} box"], "transfer_images": 2},
    "evaluators": {
        "embedded": {"num_images": 64, "held_out_images": 32, "probe_steps": 10, "channels": [8], "epochs": 1}
    },
    "evaluate": {"num_pairs": 2, "bootstrap_samples": 20},
    "baseline": {"dreambooth": {"num_class_images": 1}},
    "intensity": {"num_images": 1, "intensities": [0.0, 1.0]},
    "frontier": {"num_images": 2, "guidance_scales": [1.0, 3.0]},
    "report": {"images_per_method": 1},
}
# dvc.yaml stage names are the `emogen stage` names (foreach: baseline@<method>).
DVC_STAGES = set(STAGES)


def _repro(repo: Path, env: dict) -> list[str]:
    out = subprocess.run(["dvc", "repro"], cwd=repo, env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    return re.findall(r"Running stage '([\w@]+)'", out.stdout)


@pytest.mark.slow
def test_full_dag_repro_runs_every_stage_once(tmp_path, scratch_repo):
    scratch = scratch_repo(
        lay_over(
            copy.deepcopy(TINY),
            {"stage1": {"checkpoint_dir": str(tmp_path / "ckpt1")}, "stage2": {"work_dir": str(tmp_path / "work2")}},
        ),
        OMP_NUM_THREADS="1",
    )
    repo, env, uri = scratch.path, scratch.env, scratch.env["MLFLOW_TRACKING_URI"]

    ran = _repro(repo, env)
    assert set(ran) == DVC_STAGES, ran
    # The DAG order: every stage after the ones it reads.
    assert ran.index("stage1") > ran.index("validate") and ran.index("stage2") > ran.index("confidence")
    assert ran.index("stage2") > ran.index("base_model") and ran.index("generate") > ran.index("stage2")
    assert ran.index("stage2") > ran.index("latents") > max(ran.index("base_model"), ran.index("balance"))
    assert all(
        ran.index(f"baseline@{m}") > ran.index("confidence") for m in ("prompt", "textual_inversion", "dreambooth")
    )
    assert ran.index("evaluate") > ran.index("generate") and ran.index("evaluators") > ran.index("base_model")
    assert ran.index("intensity") > max(ran.index("generate"), ran.index("evaluators"))
    assert ran[-1] == "report" and (repo / "metrics/report.html").is_file()
    table = json.loads((repo / "metrics/table1.json").read_text())
    assert set(table["methods"]) == {"emogen", "prompt", "textual_inversion", "dreambooth"} and table["stand_in"]
    assert set(json.loads((repo / "metrics/transfer.json").read_text())["templates"]) == {"{} box"}
    assert ran.index("frontier") > max(
        ran.index("evaluators"), *(ran.index(f"baseline@{m}") for m in ("prompt", "dreambooth"))
    )
    frontier = json.loads((repo / "metrics/frontier.json").read_text())
    assert frontier["stand_in"] and frontier["guidance_scales"] == [1.0, 3.0]
    assert [p["guidance_scale"] for p in frontier["methods"]["emogen"]] == [1.0, 3.0]
    assert set(frontier["at_matched_emo_a"]) == {"prompt", "textual_inversion", "dreambooth"}
    # `emogen study seeds` pools these two files: every field it reads is in the real outputs
    # (its flow, `dvc exp run --temp` per seed, is tested on a stand-in DAG in test_study.py).
    # Two copies of one seed: the pooled difference is that seed's, its se shrinks by sqrt(2).
    pooled = study_summary({521: table, 522: table}, {521: frontier, 522: frontier}, 0.95)
    assert set(pooled["means"]) == {"emogen", "prompt", "textual_inversion", "dreambooth"}
    one = table["comparisons"]["prompt"]["emo_a"]
    both = pooled["comparisons"]["prompt"]["emo_a"]
    assert both["difference"] == pytest.approx(one["difference"], abs=1e-4) and both["seed_sd"] == 0
    assert both["se"] == pytest.approx(one["se"] / 2**0.5, abs=1e-4)
    assert pooled["frontier"]["images_per_emotion"] == [TINY["frontier"]["num_images"]]
    matched = pooled["frontier"]["matched_difference"]
    assert set(matched) == {"prompt", "textual_inversion", "dreambooth"}
    assert all(len(rows) == 2 for rows in matched.values())  # guidance scales 1 and 3
    assert all(row["difference"] is None or row["low"] <= row["difference"] <= row["high"] for row in matched["prompt"])

    index = json.loads((repo / "data/generated/emogen/index.json").read_text())
    assert {entry["emotion"] for entry in index["images"]} >= set(EMOTIONS)
    for entry in index["images"]:
        assert (repo / "data/generated/emogen" / entry["file"]).is_file()

    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=["emogen"])
    assert (runs["status"] == "FINISHED").all()
    assert {
        "stage1",
        "base_model",
        "latents",
        "stage2",
        "generate",
        "baseline@dreambooth",
        "evaluators",
        "evaluate",
    } <= set(runs["tags.stage"])

    assert _repro(repo, env) == []
