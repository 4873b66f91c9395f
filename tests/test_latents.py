"""The latents stage on a tiny EmoSet-layout folder with tiny random SD-shaped models: chunks +
index read back memory-mapped, values independent of batch size / workers / processes."""

import json

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from emogen.config import parse_params
from emogen.errors import DataError
from emogen.images import load_rgb, squash_transform
from emogen.layout import Layout
from emogen.pipelines.components import load_base
from emogen.stage2.latent_store import INDEX_FILE, LATENTS_JSON, LatentStore
from emogen.stages import latents
from tests.helpers.launch import cpu_launch_command, run_on_cpu
from tests.helpers.tiny_sd import build_tiny_sd, write_base_json, write_latents, write_stage2_inputs


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return {"vae": build_tiny_sd(root / "vae"), "pixel": build_tiny_sd(root / "pixel", with_vae=False)}


def _repo(root, sd) -> Layout:
    write_base_json(sd, root / "models" / "base")
    write_stage2_inputs(root, num_images=11, latents=False)
    return Layout(root)


def _chunks(layout: Layout) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(layout.latents.glob("chunk-*.npy"))}


def test_stage_writes_chunks_and_index_read_back_memory_mapped(tmp_path, mlflow_store, tiny_models):
    layout = _repo(tmp_path, tiny_models["vae"])
    params = parse_params({"latents": {"batch_size": 3, "chunk_size": 4, "workers": 1, "device": "cpu"}})
    metrics = latents.run(params, layout)

    info = json.loads((layout.latents / LATENTS_JSON).read_text())
    assert metrics["num_images"] == info["num_images"] == 11
    assert info["chunks"] == ["chunk-00000.npy", "chunk-00001.npy", "chunk-00002.npy"]
    assert info["shape"] == [2, 4, 8, 8] and info["encoder"] == "vae" and info["dtype"] == "float32"
    assert sorted(p.name for p in layout.latents.iterdir()) == sorted(
        info["chunks"] + ["index.parquet", "latents.json"]
    )
    index = pd.read_parquet(layout.latents / INDEX_FILE)
    balanced = pd.read_parquet(layout.balanced)
    assert index["id"].tolist() == balanced["id"].drop_duplicates().tolist()

    store = LatentStore.open(layout.latents)
    assert all(isinstance(c, np.memmap) for c in store.chunks)
    base = load_base(layout.model_dir("base"))
    store.check_base(base, layout.model_dir("base"))
    # Row 5 (chunk 1), both flips: the VAE encoding of that image with its own seeded noise.
    row = 5
    pixels = squash_transform(load_rgb(layout.synthetic / index["image_path"][row]), base.resolution)
    seed = latents.image_seed(latents.stage_seed(params.seed, latents.STAGE), index["id"][row])
    expected = latents.encode_both_flips(base, pixels[None], [seed])[0]
    got = store.read(torch.tensor([row, row]), torch.tensor([0, 1]))
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(got[0], got[1])  # the flipped image's own latents

    run = mlflow.search_runs(experiment_names=["emogen"], output_format="list")[0]
    assert run.data.tags["stage"] == "latents" and run.data.metrics["num_images"] == 11


def test_pixel_space_latents_are_the_squashed_pixels(tmp_path, tiny_models):
    layout = _repo(tmp_path, tiny_models["pixel"])
    write_latents(tmp_path, chunk_size=5)
    store = LatentStore.open(layout.latents)
    assert store.info["encoder"] == "pixels" and store.info["shape"] == [2, 3, 16, 16]
    index = pd.read_parquet(layout.latents / INDEX_FILE)
    rows = torch.arange(len(store))
    pixels = torch.stack([squash_transform(load_rgb(layout.synthetic / p), 16) for p in index["image_path"]])
    assert torch.equal(store.read(rows, torch.zeros_like(rows)), pixels)
    assert torch.equal(store.read(rows, torch.ones_like(rows)), pixels.flip(-1))


@pytest.mark.parametrize("model", ["vae", "pixel"])
def test_values_do_not_depend_on_batch_size_workers_or_processes(tmp_path, tiny_models, model):
    layout = _repo(tmp_path, tiny_models[model])
    write_latents(tmp_path, chunk_size=3, batch_size=4, workers=0)
    reference = _chunks(layout)
    reference_info = json.loads((layout.latents / LATENTS_JSON).read_text())

    write_latents(tmp_path, chunk_size=3, batch_size=1, workers=2)
    assert _chunks(layout) == reference

    # Two processes: each rank writes its own chunks (k mod 2), rank 0 the index.
    params = parse_params({"latents": {"chunk_size": 3, "batch_size": 2, "workers": 0}})
    for path in layout.latents.iterdir():
        path.unlink()
    base = load_base(layout.model_dir("base"))
    images = latents.unique_images(layout.balanced)
    seed = latents.stage_seed(params.seed, latents.STAGE)
    counts = [
        latents.encode_shard(base, images, layout.synthetic, layout.latents, params.latents, seed, rank, 2)
        for rank in (0, 1)
    ]
    assert counts == [6, 5]  # chunks 0, 2 (3 + 3 rows) and 1, 3 (3 + 2 rows) of 11 images
    latents.finish(params, layout, base, images)
    assert _chunks(layout) == reference
    assert json.loads((layout.latents / LATENTS_JSON).read_text()) == reference_info


def test_missing_chunk_stale_ids_and_another_base_are_clear_errors(tmp_path, tiny_models):
    layout = _repo(tmp_path, tiny_models["pixel"])
    params = parse_params({"latents": {"chunk_size": 4, "workers": 0}})
    base = load_base(layout.model_dir("base"))
    images = latents.unique_images(layout.balanced)
    layout.latents.mkdir(parents=True)
    latents.encode_shard(base, images, layout.synthetic, layout.latents, params.latents, 1, rank=0, world=2)
    with pytest.raises(RuntimeError, match=r"chunk-00001.npy: missing"):
        latents.finish(params, layout, base, images)

    write_latents(tmp_path, chunk_size=4)
    store = LatentStore.open(layout.latents)
    with pytest.raises(DataError, match="id 'nope' has no latents"):
        store.rows_of(np.array(["amusement_0", "nope"]), layout.balanced)
    with pytest.raises(DataError, match=r"shape .* denoises"):
        store.check_base(
            load_base(write_base_json(tiny_models["vae"], tmp_path / "vae_base").parent), tmp_path / "vae_base"
        )
    (layout.latents / "chunk-00001.npy").write_bytes(b"not numpy")
    with pytest.raises(DataError, match=r"chunk-00001.npy: cannot open"):
        LatentStore.open(layout.latents)
    (layout.latents / LATENTS_JSON).unlink()
    with pytest.raises(DataError, match=r"latents.json: missing; run `dvc repro latents`"):
        LatentStore.open(layout.latents)


def test_an_id_with_two_image_paths_is_a_clear_error(tmp_path):
    path = tmp_path / "balanced.parquet"
    pd.DataFrame({"id": ["a", "b", "a"], "image_path": ["x.png", "y.png", "z.png"]}).to_parquet(path)
    with pytest.raises(DataError, match="id 'a' appears with two different image_path"):
        latents.unique_images(path)


def test_an_unreadable_image_is_a_clear_error_and_leaves_no_finished_chunk(tmp_path, tiny_models):
    layout = _repo(tmp_path, tiny_models["pixel"])
    broken = layout.synthetic / pd.read_parquet(layout.balanced)["image_path"][3]
    broken.write_bytes(b"not an image")
    with pytest.raises(DataError, match=f"{broken.name}: cannot read the training image"):
        write_latents(tmp_path, chunk_size=4, workers=1)
    assert not list(layout.latents.glob("chunk-*.npy"))


@pytest.mark.slow
def test_two_processes_write_the_same_latents_as_one(tmp_path, tiny_models):
    """docs/stages/stage2.md's command with the device changed to the CPU (torch distributed with gloo):
    each rank encodes its own chunks, rank 0 writes the index; the bytes equal one process's."""
    layout = _repo(tmp_path, tiny_models["vae"])
    # The same batch size in both runs: on some CPUs the VAE's convolutions round the last bit
    # differently at another batch size (measured here: 1.2e-7 between batches of 32 and 2).
    write_latents(tmp_path, chunk_size=3, batch_size=2)
    reference = _chunks(layout)
    info = json.loads((layout.latents / LATENTS_JSON).read_text())
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"latents": {"chunk_size": 3, "workers": 1, "batch_size": 2}}))
    done = run_on_cpu(
        cpu_launch_command("accelerate launch --multi_gpu --num_processes 2 -m emogen stage latents"), tmp_path
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert _chunks(layout) == reference
    assert json.loads((layout.latents / LATENTS_JSON).read_text()) == info
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (run,) = mlflow.search_runs(experiment_names=["emogen"], output_format="list")  # rank 0's only
    assert run.data.metrics["processes"] == 2 and run.data.metrics["rank0_images"] == 6  # chunks 0 and 2 of 4
