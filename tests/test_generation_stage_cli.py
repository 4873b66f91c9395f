"""The generate stage and the `emogen generate` / `emogen fuse` commands, end to end on tiny models."""

import json

import mlflow
import numpy as np
import pytest
from PIL import Image

from emogen.cli import main
from emogen.config import Params
from emogen.emotions import EMOTIONS
from emogen.errors import UserError
from emogen.layout import Layout
from emogen.stages.generate import run as run_stage
from tests.helpers.generation_inputs import saved_pipeline, tiny_generate_params, write_upstream


def tree_bytes(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def pixels(path):
    return np.asarray(Image.open(path), dtype=np.int16)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return saved_pipeline(tmp_path_factory.mktemp("upstream"))


def test_stage_writes_index_grids_and_pipeline_deterministically(tmp_path, mlflow_store):
    root = write_upstream(tmp_path / "repo")
    layout = Layout(root)
    params = Params(seed=3, generate=tiny_generate_params())
    run_stage(params, layout)
    out = layout.generated / "emogen"
    first = tree_bytes(out)

    index = json.loads((out / "index.json").read_text())
    assert index["method"] == "emogen" and len(index["images"]) == 2 * len(EMOTIONS)
    assert index["settings"]["scheduler"] == "UniPCMultistepScheduler" and index["settings"]["num_inference_steps"] == 3
    entry = index["images"][3]
    assert entry["file"] == "awe/0001.png" and entry["emotion"] == "awe" and entry["mode"] == "single"
    assert entry["template"] == "{}" and len(entry["vector_sha256"]) == 64
    seeds = [e["seed"] for e in index["images"]]
    assert seeds == list(range(seeds[0], seeds[0] + len(seeds)))  # stage seed + index
    for name in EMOTIONS:
        assert (out / name / "0000.png").is_file() and (out / "grids" / f"{name}.png").is_file()
    assert Image.open(out / "grids" / "transfer.png").size == (2 + 2 * 18, 2 + 8 * 18)  # 2 templates × 8 emotions
    transfer = json.loads((layout.generated / "emogen_transfer" / "index.json").read_text())["images"]
    assert len(transfer) == 2 * 2 * len(EMOTIONS)  # transfer_images=2 per template and emotion
    assert {e["template"] for e in transfer} == {"{} bag", "{} cup"}
    cell = [e["seed"] for e in transfer if e["template"] == "{} cup" and e["emotion"] == "fear"]
    assert cell == [seeds[-1] + 1, seeds[-1] + 2]  # the same seeds in every cell
    assert (layout.model_dir("emogen") / "model_index.json").is_file()

    runs = mlflow.search_runs(experiment_names=["emogen"], output_format="list")
    assert [r.info.run_name for r in runs] == ["generate"]
    assert runs[0].data.metrics["images"] == 16 and runs[0].data.params["generate.num_images"] == "2"
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(runs[0].info.run_id, "grids")}
    assert {"grids/awe.png", "grids/transfer.png"} <= artifacts

    run_stage(params, layout)  # same params: byte-identical files
    assert tree_bytes(out) == first
    run_stage(Params(seed=4, generate=tiny_generate_params(num_images=1, transfer_templates=())), layout)
    assert tree_bytes(out)["awe/0000.png"] != first["awe/0000.png"]
    assert not (out / "awe" / "0001.png").exists()  # the stage's folder is replaced, not topped up


def test_stage_rejects_template_words_outside_the_vocabulary(tmp_path, mlflow_store):
    root = write_upstream(tmp_path / "repo")
    params = Params(generate=tiny_generate_params(transfer_templates=("{} zebra",)))
    with pytest.raises(UserError, match=r"zebra.*not in the vocabulary"):
        run_stage(params, Layout(root))
    assert not (root / "data" / "generated").exists()


def generate(model, out, *extra):
    return main(["generate", "--model", str(model), "--out", str(out), "--num-images", "2", *extra])


def test_generate_command_same_seed_same_bytes(model, tmp_path, capsys):
    assert generate(model, tmp_path / "a", "--emotion", "awe,fear", "--emotion", "anger", "--seed", "7") == 0
    assert generate(model, tmp_path / "b", "--emotion", "awe,fear", "--emotion", "anger", "--seed", "7") == 0
    assert generate(model, tmp_path / "c", "--emotion", "awe,fear", "--emotion", "anger", "--seed", "8") == 0
    a, b, c = (tree_bytes(tmp_path / x) for x in "abc")
    assert a == b
    assert a["awe/0000.png"] != c["awe/0000.png"]
    index = json.loads((tmp_path / "a" / "index.json").read_text())
    assert [(e["emotion"], e["seed"]) for e in index["images"]] == [
        ("awe", 7),
        ("awe", 8),
        ("fear", 7),
        ("fear", 8),
        ("anger", 7),
        ("anger", 8),
    ]
    assert {"grids/awe.png", "grids/fear.png", "grids/anger.png"} <= set(a)
    assert "6 images" in capsys.readouterr().out

    # An existing result folder is never overwritten.
    assert generate(model, tmp_path / "a", "--emotion", "awe") == 2
    assert "already holds generated images" in capsys.readouterr().err


def test_generate_command_transfer_template(model, tmp_path, capsys):
    assert generate(model, tmp_path / "bag", "--emotion", "awe", "--template", "{} bag", "--steps", "2") == 0
    index = json.loads((tmp_path / "bag" / "index.json").read_text())
    assert index["images"][0]["template"] == "{} bag"
    assert index["settings"]["num_inference_steps"] == 2 and index["settings"]["model"] == str(model)
    assert generate(model, tmp_path / "x", "--emotion", "awe", "--template", "bag") == 2
    assert "exactly one '{}'" in capsys.readouterr().err
    assert generate(model, tmp_path / "y", "--emotion", "awe", "--template", "{} zebra") == 2
    assert "zebra" in capsys.readouterr().err


def test_user_errors_are_clear(model, tmp_path, capsys):
    assert generate(model, tmp_path / "o", "--emotion", "awe,joy") == 2
    err = capsys.readouterr().err
    assert "unknown emotion 'joy'" in err and ", ".join(EMOTIONS) in err
    assert generate(tmp_path / "nowhere", tmp_path / "o", "--emotion", "awe") == 2
    err = capsys.readouterr().err
    assert "no EmoGen pipeline" in err and "dvc repro generate" in err
    assert generate("models:/emogen@champion", tmp_path / "o", "--emotion", "awe") == 2
    assert "registry" in capsys.readouterr().err
    assert (
        main(
            [
                "fuse",
                "awe",
                "fear",
                "--mode",
                "tokens",
                "--weight",
                "0.3",
                "--model",
                str(model),
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 2
    )
    assert "--mode interpolate only" in capsys.readouterr().err


def fuse(model, out, *extra):
    return main(["fuse", "amusement", "fear", "--model", str(model), "--out", str(out), "--seed", "5", *extra])


def test_fuse_modes_and_strip(model, tmp_path):
    assert fuse(model, tmp_path / "mix", "--weight", "0.25", "--num-images", "2") == 0
    entries = json.loads((tmp_path / "mix" / "index.json").read_text())["images"]
    assert [(e["file"], e["mode"], e["emotion_2"], e["weight"]) for e in entries] == [
        ("amusement+fear_w0.25/0000.png", "interpolate", "fear", 0.25),
        ("amusement+fear_w0.25/0001.png", "interpolate", "fear", 0.25),
    ]

    assert fuse(model, tmp_path / "tok", "--mode", "tokens", "--num-images", "1") == 0
    entry = json.loads((tmp_path / "tok" / "index.json").read_text())["images"][0]
    assert entry["mode"] == "tokens" and "weight" not in entry

    assert fuse(model, tmp_path / "strip", "--strip", "4", "--num-images", "2") == 0
    entries = json.loads((tmp_path / "strip" / "index.json").read_text())["images"]
    assert [e["weight"] for e in entries] == pytest.approx([0, 1 / 3, 2 / 3, 1] * 2)
    assert [e["seed"] for e in entries] == [5] * 4 + [6] * 4
    grid = Image.open(tmp_path / "strip" / "grids" / "amusement_to_fear.png")
    assert grid.size == (2 + 4 * 66, 2 + 2 * 66)  # rows = seeds, columns = strip steps (16 px → 64)

    # The strip's ends are the single-emotion images of the same seed (up to batch rounding).
    assert generate(model, tmp_path / "ends", "--emotion", "amusement,fear", "--seed", "5") == 0
    strip, ends = tmp_path / "strip" / "amusement_to_fear", tmp_path / "ends"
    assert np.abs(pixels(strip / "0000.png") - pixels(ends / "amusement" / "0000.png")).max() <= 1
    assert np.abs(pixels(strip / "0003.png") - pixels(ends / "fear" / "0000.png")).max() <= 1
