import pytest
import yaml

from emogen.config import ParamsError, load_params, parse_params
from emogen.emotions import EMOTIONS, emotion_index
from tests.helpers.paths import REPO


def test_repo_params_parse():
    params = load_params(REPO / "params.yaml")
    assert params.data.source == "synthetic"


def test_unknown_key_names_key_and_allowed(tmp_path):
    with pytest.raises(ParamsError) as err:
        parse_params({"prepare_data": {"num_imgs": 10}}, "p.yaml")
    message = str(err.value)
    assert "p.yaml: prepare_data.num_imgs: unknown key" in message
    assert "num_images" in message


def test_bad_value_names_key():
    with pytest.raises(ParamsError, match=r"ingest.on_error"):
        parse_params({"ingest": {"on_error": "ignore"}})


def test_emoset_source_needs_root():
    with pytest.raises(ParamsError, match=r"data.root"):
        parse_params({"data": {"source": "emoset"}})


def test_split_must_sum_to_one():
    with pytest.raises(ParamsError, match="must be 1"):
        parse_params({"prepare_data": {"split": {"train": 0.5, "val": 0.1, "test": 0.1}}})


def test_missing_file(tmp_path):
    with pytest.raises(ParamsError, match="no such params file"):
        load_params(tmp_path / "nope.yaml")


def test_unknown_emotion_lists_valid():
    with pytest.raises(ValueError, match="amusement, awe"):
        emotion_index("joy")
    assert emotion_index("sadness") == len(EMOTIONS) - 1


def test_unquoted_no_from_dvc_exp_run_means_no_mixed_precision():
    # `dvc exp run -S` rewrites params.yaml and drops the quotes: `no` then reads as False.
    params = parse_params(yaml.safe_load("stage1: {mixed_precision: no}\nstage2: {mixed_precision: no}"))
    assert params.stage1.mixed_precision == "no" and params.stage2.mixed_precision == "no"
    with pytest.raises(ParamsError, match=r"stage1.mixed_precision"):
        parse_params({"stage1": {"mixed_precision": True}})
