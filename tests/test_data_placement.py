"""A user's EmoSet is never inside (or around) a stage output, and never lost to `dvc repro`."""

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from emogen.config import parse_params
from emogen.data.placement import OWNER_FILE, check_data_root
from emogen.errors import DataError
from emogen.layout import Layout
from emogen.stages import prepare_data as prepare
from tests.helpers.paths import REPO


def _files(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _repo(scratch_repo, emoset: Path, data_root: str) -> tuple[Path, dict]:
    """A git + DVC repo with this project's dvc.yaml, code and params, and the user's EmoSet
    copied to ``data_root``; returns it and the environment to run `dvc` in."""
    repo = scratch_repo({"data": {"source": "emoset", "root": data_root}, "ingest": {"workers": 1}})
    shutil.copytree(emoset, repo.path / data_root, ignore=shutil.ignore_patterns(OWNER_FILE))
    return repo.path, repo.env


def _dvc_repro(repo: Path, env: dict, stage: str) -> subprocess.CompletedProcess:
    return subprocess.run(["dvc", "repro", stage], cwd=repo, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_the_readmes_data_folder_survives_dvc_repro(tiny_emoset, scratch_repo):
    """The issue's scenario: EmoSet copied to data/raw/emoset, data.root pointing there."""
    repo, env = _repo(scratch_repo, tiny_emoset.layout.synthetic, "data/raw/emoset")
    before = _files(repo / "data/raw/emoset")
    out = _dvc_repro(repo, env, "ingest")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert _files(repo / "data/raw/emoset") == before
    assert len(pd.read_parquet(repo / "data/processed/manifest.parquet")) == tiny_emoset.params.prepare_data.num_images
    assert (repo / "data/fingerprint.json").is_file() and os.listdir(repo / "data/synthetic/emoset") == [OWNER_FILE]


@pytest.mark.slow
def test_data_inside_an_output_is_refused_before_dvc_deletes_it(tiny_emoset, scratch_repo):
    repo, env = _repo(scratch_repo, tiny_emoset.layout.synthetic, "data/synthetic/emoset")
    before = _files(repo / "data/synthetic/emoset")
    out = _dvc_repro(repo, env, "ingest")
    assert out.returncode != 0
    assert (
        "data.root data/synthetic/emoset is inside data/synthetic/emoset, an output of stage prepare_data" in out.stderr
    )
    assert "data/raw/emoset" in out.stderr  # where to put it instead
    assert _files(repo / "data/synthetic/emoset") == before


@pytest.mark.parametrize(
    ("data_root", "message"),
    [
        ("models/stage1/emoset", "is inside models/stage1, an output of stage stage1"),
        ("metrics", r"holds metrics/\S+, an output of stage \w+"),
        (".", "holds data/fingerprint.json, an output of stage prepare_data"),
    ],
)
def test_every_dvc_output_is_checked(tmp_path, data_root, message):
    shutil.copy(REPO / "dvc.yaml", tmp_path)
    shutil.copy(REPO / "params.yaml", tmp_path)
    with pytest.raises(DataError, match=message):
        check_data_root(tmp_path / data_root, Layout(tmp_path))


def test_check_data_root_runs_before_anything_is_written(tmp_path, mlflow_store):
    layout = Layout(tmp_path)
    (layout.synthetic / "image").mkdir(parents=True)
    params = parse_params({"data": {"source": "emoset", "root": str(layout.synthetic)}})
    with pytest.raises(DataError, match="an output of stage prepare_data"):
        prepare.run(params, layout)
    assert os.listdir(layout.synthetic) == ["image"] and not layout.fingerprint.exists()


def test_foreign_files_in_the_synthetic_folder_are_not_overwritten(tmp_path):
    folder = Layout(tmp_path).synthetic
    folder.mkdir(parents=True)
    (folder / "train.json").write_text("[]")
    params = parse_params({"prepare_data": {"num_images": 16, "workers": 1}})
    with pytest.raises(DataError, match=r"holds files prepare_data did not write.*data/raw/emoset"):
        prepare.render_synthetic(params, folder)
    assert os.listdir(folder) == ["train.json"]
    (folder / "train.json").unlink()
    prepare.render_synthetic(params, folder)  # an empty folder, or one it wrote itself, is replaced
    prepare.render_synthetic(params, folder)
