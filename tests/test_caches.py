"""Caches outside DVC: per workspace, keyed by everything that shapes them (code included),
and safe when two processes share one."""

import logging
import multiprocessing
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from emogen import caches
from emogen.caches import cache_dir, code_files, code_hash
from emogen.layout import Layout
from emogen.stage1 import checkpoints
from emogen.stage1.checkpoints import checkpoint_root, run_fingerprint
from tests.helpers.stage1_inputs import tiny_stage1


def test_cache_folders_are_per_workspace_unless_a_param_names_one(tmp_path):
    layout = Layout(tmp_path)
    assert cache_dir(layout, "stage1", None) == tmp_path / ".emogen-cache" / "stage1"
    assert cache_dir(layout, "stage2", "work") == tmp_path / "work"
    assert cache_dir(layout, "stage2", "/shared/x") == Path("/shared/x")


def test_code_files_are_what_the_entry_module_imports():
    files = {p.relative_to(caches._PACKAGE_ROOT).as_posix() for p in code_files("emogen.stages.stage1")}
    assert {"stages/stage1.py", "stage1/checkpoints.py", "caches.py", "pipelines/resolve.py", "seeding.py"} <= files
    assert not {"cli.py", "pipelines/writer.py", "stages/stage2.py", "__init__.py"} & files
    with pytest.raises(ValueError, match="not a module of the emogen package"):
        code_files("emogen.nope")


def test_code_hash_changes_with_any_imported_source_only(tmp_path, monkeypatch):
    package = tmp_path / "emogen"
    shutil.copytree(caches._PACKAGE_ROOT, package, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(caches, "_PACKAGE_ROOT", package)
    before = code_hash("emogen.stages.stage1")
    (package / "pipelines" / "writer.py").write_text("# not imported by stage 1\n")
    assert code_hash("emogen.stages.stage1") == before
    with (package / "seeding.py").open("a") as fh:  # imported two levels down
        fh.write("# a bug fix\n")
    assert code_hash("emogen.stages.stage1") != before


def test_stage1_resume_key_covers_params_images_and_code(tiny_emoset, tmp_path, monkeypatch):
    manifest = pd.read_parquet(tiny_emoset.layout.manifest)
    data = tmp_path / "data"
    shutil.copytree(tiny_emoset.layout.synthetic, data)
    cfg = tiny_stage1(tmp_path / "ckpt")
    key = run_fingerprint(cfg, 7, manifest, data)
    assert run_fingerprint(cfg.model_copy(update={"workers": 2}), 7, manifest, data) == key  # run-only knob
    assert run_fingerprint(cfg.model_copy(update={"lr": 1e-3}), 7, manifest, data) != key
    assert run_fingerprint(cfg, 8, manifest, data) != key
    assert run_fingerprint(cfg, 7, manifest, data, processes=2) != key  # another effective batch
    image = data / manifest["image_path"].iloc[0]
    os.utime(image, ns=(image.stat().st_atime_ns, image.stat().st_mtime_ns + 1))
    assert run_fingerprint(cfg, 7, manifest, data) != key
    touched = run_fingerprint(cfg, 7, manifest, data)
    monkeypatch.setattr(checkpoints, "code_hash", lambda *modules: "fixed code")
    assert run_fingerprint(cfg, 7, manifest, data) != touched


_waits = None  # in a pool process: where it reports that it waits for a lock


def _report_waits_to(queue) -> None:
    global _waits
    _waits = queue


def _train_in_process(args):
    """One of two concurrent stage-1 runs sharing a checkpoint folder (spawned process)."""
    cfg_json, manifest_path, dataset_root, out = args
    from emogen.config import Stage1Params
    from emogen.stages.stage1 import train_encoder

    records = []
    handler = logging.Handler()

    def emit(record):
        records.append(record)
        if "waiting for another process" in record.getMessage():
            _waits.put(os.getpid())

    handler.emit = emit
    logging.getLogger("emogen.caches").addHandler(handler)
    logging.getLogger("emogen.caches").setLevel(logging.INFO)
    train_encoder(
        Stage1Params.model_validate_json(cfg_json),
        pd.read_parquet(manifest_path),
        Path(dataset_root),
        Path(out),
        seed=7,
    )
    return any("waiting for another process" in r.getMessage() for r in records)


@pytest.mark.slow
def test_two_concurrent_runs_sharing_a_cache_do_not_corrupt_each_other(tiny_emoset, tmp_path):
    cfg = tiny_stage1(tmp_path / "shared")
    layout = tiny_emoset.layout
    jobs = [
        (cfg.model_dump_json(), str(layout.manifest), str(layout.synthetic), str(tmp_path / name))
        for name in ("a", "b")
    ]
    # The test holds the lock of the key it expects until both runs wait for it, so they overlap
    # however busy the machine (left alone, one run sometimes ended before the other began).
    entry = checkpoint_root(cfg, layout) / run_fingerprint(cfg, 7, pd.read_parquet(layout.manifest), layout.synthetic)
    context = multiprocessing.get_context("spawn")
    waits = context.Queue()
    with context.Pool(2, initializer=_report_waits_to, initargs=(waits,)) as pool:
        with caches.locked(entry):
            result = pool.map_async(_train_in_process, jobs)
            waiting = {waits.get(timeout=300) for _ in jobs}
        waited = result.get(timeout=600)
    assert len(waiting) == 2 and waited == [True, True]  # the same key: each run waited for its lock
    a, b = load_file(tmp_path / "a" / "model.safetensors"), load_file(tmp_path / "b" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not any((tmp_path / "shared").glob("*/epoch-*"))  # both finished and cleaned up
