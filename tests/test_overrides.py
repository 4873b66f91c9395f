"""`-S key=value` overrides checked against the params schema before anything runs: one line
naming the override, its key and what is wrong (emogen/orchestration.py apply_overrides)."""

import shutil

import pytest
import yaml

from emogen.config import ParamsError
from emogen.orchestration import apply_overrides, parse_overrides
from tests.helpers.paths import REPO


@pytest.fixture
def repo(tmp_path):
    shutil.copy(REPO / "params.yaml", tmp_path)
    shutil.copytree(REPO / "profiles", tmp_path / "profiles")
    return tmp_path


def _error(root, *items) -> str:
    with pytest.raises(ParamsError) as info:
        apply_overrides(root, parse_overrides(items))
    message = str(info.value)
    assert "\n" not in message, message
    return message


def test_good_overrides_give_the_effective_params_and_leave_the_file(repo):
    before = (repo / "params.yaml").read_bytes()
    raw, params = apply_overrides(repo, parse_overrides(["stage2.lambda_attr=0.05", "generate.device=cpu"]))
    assert params.stage2.lambda_attr == 0.05 and raw["stage2"]["lambda_attr"] == 0.05
    assert params.generate.device == "cpu"
    assert (repo / "params.yaml").read_bytes() == before


@pytest.mark.parametrize(
    ("items", "words"),
    [
        (["stage2.lambda_attr=abc"], ["-S stage2.lambda_attr=abc", "stage2.lambda_attr", "valid number", "'abc'"]),
        (["stage2.lamda_attr=0.02"], ["unknown key stage2.lamda_attr", "did you mean stage2.lambda_attr?"]),
        (["stage2=3"], ["-S stage2=3", "stage2", "dictionary"]),
        (["stage2.lambda_attr.x=1"], ["stage2.lambda_attr is a value", "not a section"]),
        (["generate.device=gpu"], ["generate.device", "'auto', 'cpu' or 'cuda'", "'gpu'"]),
        (["profile=nope"], ["-S profile=nope", "profiles/nope.yaml", "embedded, sd15"]),
        (["profiles/sd15.yaml:stage1.lr=abc"], ["-S profiles/sd15.yaml:stage1.lr=abc", "stage1.lr", "valid number"]),
    ],
)
def test_a_bad_override_is_one_line_naming_it(repo, items, words):
    message = _error(repo, *items)
    assert all(word in message for word in words), message


def test_an_override_the_profile_would_hide_is_refused(repo):
    message = _error(repo, "profile=sd15", "stage1.lr=0.1")
    assert "profiles/sd15.yaml sets stage1.lr" in message and "-S profiles/sd15.yaml:stage1.lr=" in message


def test_a_params_file_without_profiles_folder(tmp_path):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"stage2": {"lambda_attr": 0.01}}))
    assert apply_overrides(tmp_path, {"stage2.lambda_attr": 0.05})[1].stage2.lambda_attr == 0.05
    assert "unknown key stage2.nope" in _error(tmp_path, "stage2.nope=1")


def test_a_malformed_item_says_how_to_write_one():
    with pytest.raises(Exception, match=r"-S nonsense: write KEY=VALUE"):
        parse_overrides(["nonsense"])
