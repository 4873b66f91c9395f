"""The report stage: the page from fixture inputs, its errors, and the page in headless Chromium."""

import mlflow
import pytest

from emogen.config import Params
from emogen.emotions import EMOTIONS
from emogen.errors import UserError
from emogen.stages.report import run as run_report
from emogen.stages.report import write_report
from tests.helpers.browser import Browser
from tests.helpers.report_inputs import IMAGES_PER_EMOTION, METHODS, TEMPLATES, write_report_inputs

# 4 methods × 8 emotions × 3 images, 8 × 2 transfer cells, intensity strip, PCA, 4 curve charts.
EXPECTED_IMAGES = len(METHODS) * 8 * IMAGES_PER_EMOTION + 8 * len(TEMPLATES) + 1 + 1 + 4


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    layout = write_report_inputs(tmp_path_factory.mktemp("report"))
    return write_report(Params(), layout)


def test_stage_writes_a_self_contained_page_and_logs_it(tmp_path, mlflow_store):
    layout = write_report_inputs(tmp_path / "repo")
    run_report(Params(), layout)
    page = (layout.metrics / "report.html").read_text()
    assert page.count("<img") == EXPECTED_IMAGES
    assert page.count('src="data:image/png;base64,') == EXPECTED_IMAGES
    assert "http://" not in page and "https://" not in page and "<script" not in page
    assert '0.500 <span class="ci">[0.450, 0.550]' in page  # emogen's Emo-A with its interval
    assert "not computed: install lpips" in page and "stand-ins" in page
    assert '<td class="num">40.00</td>' in page  # FID: a point estimate, no interval
    assert "independent judge" in page and "shares the generators&#x27; CLIP" in page
    # comparisons worded as their intervals allow
    assert "Emo-A (independent judge): emogen higher than prompt" in page
    assert "KID: emogen lower than dreambooth" in page
    runs = mlflow.search_runs(experiment_names=["emogen"])
    assert list(runs["tags.stage"]) == ["report"]
    artifacts = mlflow.artifacts.list_artifacts(run_id=runs["run_id"][0])
    assert [a.path for a in artifacts] == ["report.html"]


@pytest.mark.parametrize(
    ("remove", "message"),
    [
        ("metrics/transfer.json", "transfer.json: build it with `dvc repro evaluate`"),
        ("data/generated/dreambooth/index.json", "dreambooth/index.json: missing"),
        ("models/confidence/alpha.parquet", "alpha.parquet: missing"),
        ("metrics/stage2_loss.csv", "stage2_loss.csv: missing"),
    ],
)
def test_missing_input_names_the_file(tmp_path, remove, message):
    layout = write_report_inputs(tmp_path)
    (tmp_path / remove).unlink()
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)").replace("`", ".")):
        write_report(Params(), layout)


def test_method_missing_from_table1_is_named(tmp_path):
    layout = write_report_inputs(tmp_path)
    params = Params(report={"methods": ["emogen", "nope"]})
    with pytest.raises(UserError, match=r"methods.nope missing"):
        write_report(params, layout)


def test_page_renders_in_headless_chromium(report, tmp_path):
    browser = Browser(tmp_path / "profile")
    try:
        browser.open(report.resolve().as_uri())
        shot = browser.screenshot(tmp_path / "report.png")
        images = browser.images()
        cells = browser.eval(
            "Array.from(document.querySelectorAll('#table1-table tr')).map("
            "r => Array.from(r.cells).map(c => c.innerText.trim()))"
        )
        comparisons = browser.eval(
            "Array.from(document.querySelectorAll('#comparisons-table tr')).map("
            "r => Array.from(r.cells).map(c => c.innerText.trim()))"
        )
        transfer = browser.eval(
            "Array.from(document.querySelectorAll('#transfer-table tr')).map("
            "r => Array.from(r.cells).map(c => c.innerText.trim()))"
        )
        rows = browser.eval(
            "Array.from(document.querySelectorAll('#images-table tr th:first-child')).map(t => t.innerText)"
        )
        errors = browser.console_errors()
    finally:
        browser.close()
    assert shot.stat().st_size > 10_000
    assert len(images) == EXPECTED_IMAGES
    assert all(im["complete"] and im["width"] > 0 and im["shown"] > 0 for im in images), images
    assert all(im["distinct"] >= 2 for im in images), [im["alt"] for im in images if im["distinct"] < 2]
    assert [row[0] for row in cells] == ["method", *METHODS]
    assert cells[0][4].startswith("Emo-A (independent judge)") and cells[0][5].startswith("Emo-A (CLIP probe")
    assert cells[1][1] == "40.00"  # emogen, FID: no interval
    assert cells[1][4].startswith("0.500 [0.450, 0.550]")  # emogen, Emo-A
    assert cells[2][4].startswith("0.450")  # prompt, Emo-A
    assert [row[0] for row in comparisons] == ["difference"] + [f"emogen − {m}" for m in METHODS[1:]]
    assert comparisons[0][1:3] == ["KID", "Emo-A (independent judge)"]
    assert comparisons[1][1].endswith("lower") and comparisons[1][2].endswith(
        "higher"
    )  # prompt: Emo-A +0.05 [+0.01, +0.09]
    assert rows == ["emotion", *EMOTIONS]
    assert transfer[0] == [
        "template",
        "method",
        "emo_a",
        "object_kept",
        "emogen − method: emo_a",
        "emogen − method: object_kept",
    ]
    assert transfer[1][:2] == ["{} box", "emogen"] and transfer[1][2].startswith("0.300 [0.250, 0.350]")
    assert transfer[2][:2] == ["{} box", "prompt"] and transfer[2][4].endswith("no difference detected")
    assert transfer[2][5].endswith("lower")
    assert errors == []


def test_the_page_shows_the_study_when_metrics_study_json_exists(tmp_path):
    import json

    layout = write_report_inputs(tmp_path)
    page = write_report(Params(), layout).read_text()
    assert "No metrics/study.json" in page and "emogen study seeds" in page
    study = {
        "development_seed": 520,
        "report_seeds": [521, 522, 523],
        "overrides": {"frontier.num_images": 48},
        "seconds": {"experiments": 1234.5},
        "confidence": 0.95,
        "pooling": "mean of per-seed differences",
        "means": {"emogen": {"emo_a": {"mean": 0.5123, "sd": 0.01}}},
        "comparisons": {
            "prompt": {
                "emo_a": {
                    "difference": 0.0712,
                    "low": 0.031,
                    "high": 0.111,
                    "se": 0.02,
                    "verdict": "higher",
                    "per_seed": [0.05, 0.07, 0.09],
                    "seed_sd": 0.02,
                    "seed_low": 0.02,
                    "seed_high": 0.12,
                }
            }
        },
        "frontier": {
            "images_per_emotion": [48],
            "matched_difference": {
                "prompt": [
                    {
                        "guidance_scale": 3.0,
                        "difference": -0.0104,
                        "low": -0.02,
                        "high": 0.001,
                        "verdict": "no difference detected",
                        "per_seed": [-0.01],
                    },
                    {"guidance_scale": 7.5, "difference": None},
                ]
            },
        },
    }
    (layout.metrics / "study.json").write_text(json.dumps(study))
    page = write_report(Params(), layout).read_text()
    assert "No metrics/study.json" not in page and "Seeds 521, 522, 523" in page and "1234 s" in page
    assert "0.071 <span class='ci'>[0.031, 0.111]</span></td><td>higher</td>" in page
    assert "-0.010 <span class='ci'>[-0.020, 0.001]</span></td><td>no difference detected" in page
    assert "undefined (outside the baseline" in page and "emo_a 0.512" in page
    (layout.metrics / "study.json").write_text("{not json")
    with pytest.raises(UserError, match=r"study.json"):
        write_report(Params(), layout)
