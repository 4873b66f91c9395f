"""validate: the GX suite passes on a clean synthetic set and names what fails on a bad one."""

import json
import shutil

import mlflow
import pandas as pd
import pytest

from emogen.errors import DataError
from emogen.layout import Layout
from emogen.stages import validate


@pytest.fixture
def copy_of_tiny(tiny_emoset, tmp_path):
    """A Layout holding the tiny set's manifest and info.json (what validate reads)."""
    layout = Layout(tmp_path)
    layout.synthetic.mkdir(parents=True)
    layout.processed.mkdir(parents=True)
    shutil.copy(tiny_emoset.layout.synthetic / "info.json", layout.synthetic / "info.json")
    shutil.copy(tiny_emoset.layout.manifest, layout.manifest)
    return layout, tiny_emoset.params


def test_clean_set_passes_and_writes_report(copy_of_tiny):
    layout, params = copy_of_tiny
    validate.validate(params, layout)
    summary = json.loads((layout.metrics / "validate.json").read_text())
    assert summary["success"] and summary["failed"] == 0 and summary["evaluated"] >= 9
    assert json.loads((layout.metrics / "validation" / "result.json").read_text())["success"]
    assert "<html" in (layout.metrics / "validation" / "docs" / "index.html").read_text().lower()


def test_each_failed_expectation_is_named_with_counts_and_ids(copy_of_tiny, mlflow_store):
    layout, params = copy_of_tiny
    m = pd.read_parquet(layout.manifest)
    m.loc[0, "emotion"] = "joy"
    m.loc[1, "id"] = m.loc[2, "id"]
    m.loc[3, "split"] = "holdout"
    m.loc[4, "brightness"] = 1.5
    m.loc[5, "scene"] = "moon"
    m.at[6, "objects"] = ["Rocket"]
    m = m[~((m["split"] == "train") & (m["emotion"] == "sadness"))]
    m.to_parquet(layout.manifest)
    bad_ids = {k: m.loc[k, "id"] for k in (0, 3, 4, 5, 6)}

    with pytest.raises(DataError) as err:
        validate.run(params, layout)
    lines = str(err.value).splitlines()

    def line(label):
        return next(x for x in lines if x.strip().startswith(label))

    assert f"id {bad_ids[0]}" in line("manifest.emotion.be_in_set") and "values joy" in line("manifest.emotion")
    assert "2 of" in line("manifest.id.be_unique")
    assert bad_ids[3] in line("manifest.split.be_in_set")
    assert bad_ids[4] in line("manifest.brightness.be_between")
    assert bad_ids[5] in line("manifest.scene.be_in_set") and "moon" in line("manifest.scene")
    assert bad_ids[6] in line("objects.object.be_in_set") and "Rocket" in line("objects.object")
    assert "emotion sadness" in line("train_counts.train_images.be_between")
    assert "index.html" in lines[-1]
    summary = json.loads((layout.metrics / "validate.json").read_text())
    assert not summary["success"] and summary["failed"] == 7
    assert (layout.metrics / "validation" / "docs" / "index.html").is_file()
    run = mlflow.search_runs(experiment_names=["emogen"]).iloc[0]
    assert run["status"] == "FAILED" and run["metrics.failed"] == 7  # the report is logged anyway


def test_split_proportions_outside_tolerance(copy_of_tiny):
    layout, params = copy_of_tiny
    params = params.model_copy(update={"validate_": params.validate_.model_copy(update={"split_tolerance": 0.001})})
    with pytest.raises(DataError, match=r"split_fractions\.deviation\.be_between: [1-3] of 3 rows"):
        validate.validate(params, layout)


def test_older_info_json_skips_vocabulary_checks(copy_of_tiny):
    layout, params = copy_of_tiny
    info = json.loads((layout.synthetic / "info.json").read_text())
    (layout.synthetic / "info.json").write_text(json.dumps({"emotion": info["emotion"]}))
    m = pd.read_parquet(layout.manifest)
    m.loc[0, "scene"] = "moon"
    m.to_parquet(layout.manifest)
    summary = validate.validate(params, layout)
    assert summary["success"] and not any(k.startswith(("objects.", "manifest.scene")) for k in summary["checks"])
