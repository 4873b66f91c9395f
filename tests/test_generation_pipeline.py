"""EmoGenPipeline on tiny random models: round trip, batching, seeds, templates, fusion."""

import io
import json

import pytest
import torch
from safetensors.torch import save_file

from emogen.errors import UserError
from emogen.pipelines.emogen_pipeline import EmoGenPipeline
from emogen.pipelines.sampling import EmotionGaussians, vector_sha256
from emogen.pipelines.settings import build_pipeline, scheduler_from_name
from tests.helpers.generation_inputs import VECTOR_DIM, tiny_generate_params, write_upstream


def _build(root, **overrides):
    models = root / "models"
    pipe = build_pipeline(
        models / "base",
        models / "stage2",
        models / "emotion_space" / "gaussians.safetensors",
        tiny_generate_params(**overrides),
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    return _build(write_upstream(tmp_path_factory.mktemp("upstream")))


def gens(*seeds):
    return [torch.Generator().manual_seed(s) for s in seeds]


def run(pipe, emotion, seeds, **kwargs):
    return pipe(emotion, generator=gens(*seeds), output_type="pt", **kwargs)


def png_bytes(image):
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_save_and_load_round_trip(pipe, tmp_path):
    pipe.save_pretrained(tmp_path / "emogen")
    for part in (
        "model_index.json",
        "mapper/config.json",
        "gaussians.safetensors",
        "unet",
        "text_encoder",
        "tokenizer",
    ):
        assert (tmp_path / "emogen" / part).exists(), part
    assert not (tmp_path / "emogen" / "vae").exists()  # pixel space
    # no checkout path in the files (diffusers records the folder a component came from)
    assert not [p for p in (tmp_path / "emogen").rglob("*.json") if "_name_or_path" in p.read_text()]
    loaded = EmoGenPipeline.from_pretrained(tmp_path / "emogen")
    loaded.save_pretrained(tmp_path / "again")  # a loaded pipeline saves without the path as well
    assert not [p for p in (tmp_path / "again").rglob("*.json") if "_name_or_path" in p.read_text()]
    loaded.set_progress_bar_config(disable=True)
    assert type(loaded.scheduler).__name__ == "UniPCMultistepScheduler"
    assert loaded.config.placeholder_tokens == ["<emotion>", "<emotion_2>"]
    assert loaded.placeholder_ids == pipe.placeholder_ids
    assert loaded.config.known_words == pipe.config.known_words and "bag" in loaded.config.known_words
    assert (loaded.config.resolution, loaded.config.num_inference_steps) == (16, 3)
    before = run(pipe, ["awe", "fear"], [1, 2], template="{} bag", fuse_with="sadness", fusion="tokens")
    after = run(loaded, ["awe", "fear"], [1, 2], template="{} bag", fuse_with="sadness", fusion="tokens")
    assert torch.equal(before.emotion_vectors, after.emotion_vectors)
    assert torch.allclose(before.images, after.images, atol=1e-6)


def test_a_pipeline_saved_before_the_package_layout_still_loads(pipe, tmp_path):
    """Pipelines saved (and registered) before emogen/pipelines existed name the mapper module emogen.stage2.mapper."""
    pipe.save_pretrained(tmp_path / "old")
    index = tmp_path / "old" / "model_index.json"
    saved = json.loads(index.read_text())
    assert saved["mapper"] == ["emogen.pipelines.mapper", "EmotionMapper"]
    index.write_text(json.dumps({**saved, "mapper": ["emogen.stage2.mapper", "EmotionMapper"]}))
    loaded = EmoGenPipeline.from_pretrained(tmp_path / "old")
    assert torch.equal(loaded.mapper.state_dict()["net.0.weight"], pipe.mapper.state_dict()["net.0.weight"])


def test_missing_or_foreign_folder_is_a_clear_error(tmp_path):
    with pytest.raises(UserError, match="dvc repro generate"):
        EmoGenPipeline.from_pretrained(tmp_path / "nothing")
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    with pytest.raises(UserError, match="not an EmoGenPipeline"):
        EmoGenPipeline.from_pretrained(tmp_path)
    with pytest.raises(UserError, match=r"generate.scheduler: 'Nope' is not a diffusers scheduler"):
        scheduler_from_name("Nope", {})


@pytest.mark.parametrize("scheduler", ["UniPCMultistepScheduler", "DDPMScheduler"])  # DDPM: noise in every step
def test_a_batch_equals_the_same_images_one_by_one(pipe, scheduler):
    original = pipe.scheduler
    pipe.scheduler = scheduler_from_name(scheduler, original.config)
    try:
        batch = run(pipe, ["awe", "fear"], [5, 6, 7, 8], num_images_per_emotion=2)
        singles = [run(pipe, name, [seed]) for name, seed in zip(["awe", "awe", "fear", "fear"], [5, 6, 7, 8])]
    finally:
        pipe.scheduler = original
    assert batch.images.shape == (4, 3, 16, 16) and batch.emotion_vectors.shape == (4, 1, VECTOR_DIM)
    assert torch.equal(batch.emotion_vectors, torch.cat([s.emotion_vectors for s in singles]))
    assert torch.allclose(batch.images, torch.cat([s.images for s in singles]), atol=1e-4)


def test_same_seed_same_png_bytes_other_seed_differs(pipe):
    first = pipe("contentment", generator=gens(3)).images[0]
    again = pipe("contentment", generator=gens(3)).images[0]
    other = pipe("contentment", generator=gens(4)).images[0]
    assert png_bytes(first) == png_bytes(again)
    assert png_bytes(first) != png_bytes(other)


def test_emotions_condition_the_images(pipe):
    a, b = run(pipe, ["amusement", "disgust"], [9, 9]).images
    assert not torch.allclose(a, b, atol=1e-3)  # same noise, different emotion vector


def test_transfer_templates_and_their_errors(pipe):
    plain = run(pipe, "awe", [0]).images
    bag = run(pipe, "awe", [0], template="{} bag").images
    assert not torch.allclose(plain, bag, atol=1e-3)
    for bad in ("bag", "{} {} bag", "{0} bag", "{} bag}"):
        with pytest.raises(UserError, match="exactly one"):
            pipe("awe", template=bad)
    with pytest.raises(UserError, match=r"zebra.*not in the vocabulary"):
        pipe("awe", template="{} zebra")


def test_unknown_emotion_lists_the_eight(pipe):
    with pytest.raises(UserError, match="amusement, awe, contentment, excitement, anger, disgust, fear, sadness"):
        pipe("joy")


def test_token_fusion_gives_each_placeholder_its_own_vector(pipe):
    assert pipe.prompt("{} cup", "tokens") == "<emotion> <emotion_2> cup"
    fused = run(pipe, "amusement", [2], fuse_with="fear", fusion="tokens")
    alone = [run(pipe, name, [2]) for name in ("amusement", "fear")]
    assert fused.emotion_vectors.shape == (1, 2, VECTOR_DIM)
    assert torch.equal(fused.emotion_vectors[0, 0], alone[0].emotion_vectors[0, 0])
    assert torch.equal(fused.emotion_vectors[0, 1], alone[1].emotion_vectors[0, 0])
    swapped = run(pipe, "fear", [2], fuse_with="amusement", fusion="tokens")
    assert not torch.allclose(fused.images, swapped.images, atol=1e-3)  # token order matters


def test_interpolation_and_its_strip_end_at_the_pure_emotions(pipe):
    weights = [0.0, 0.5, 1.0]
    strip = run(pipe, ["amusement"] * 3, [4, 4, 4], fuse_with="fear", weight=weights)
    amusement, fear = (run(pipe, name, [4]) for name in ("amusement", "fear"))
    vectors = strip.emotion_vectors[:, 0]
    assert torch.allclose(vectors[1], (amusement.emotion_vectors[0, 0] + fear.emotion_vectors[0, 0]) / 2)
    assert torch.allclose(strip.images[0], amusement.images[0], atol=1e-4)
    assert torch.allclose(strip.images[2], fear.images[0], atol=1e-4)
    assert not torch.allclose(strip.images[1], strip.images[0], atol=1e-3)
    with pytest.raises(UserError, match=r"\[0, 1\]"):
        pipe("amusement", fuse_with="fear", weight=1.5)


def test_gaussians_full_covariance_and_file_errors(tmp_path):
    mean, std = torch.randn(8, 4), 0.5 + torch.rand(8, 4)
    diag = EmotionGaussians(mean, std)
    full = EmotionGaussians(mean, std, torch.diag_embed(std**2))
    z = diag.draw(torch.Generator().manual_seed(0))
    assert torch.allclose(diag.at(3, z), full.at(3, z), atol=1e-5)
    singular = EmotionGaussians(mean, std, torch.zeros(8, 4, 4))  # a rank-deficient sample covariance
    assert torch.isfinite(singular.sample(0, torch.Generator().manual_seed(0))).all()
    assert vector_sha256(z) == vector_sha256(z.clone()) != vector_sha256(z + 1e-3)

    with pytest.raises(UserError, match="missing"):
        EmotionGaussians.load(tmp_path / "none.safetensors")
    save_file({"mean": mean}, str(tmp_path / "g.safetensors"))
    with pytest.raises(UserError, match=r"g.safetensors: missing tensors \['std'\]"):
        EmotionGaussians.load(tmp_path / "g.safetensors")
    save_file({"mean": mean[:3], "std": std[:3]}, str(tmp_path / "g.safetensors"))
    with pytest.raises(UserError, match=r"g.safetensors: mean must be \(8, D\)"):
        EmotionGaussians.load(tmp_path / "g.safetensors")


def test_latent_space_model_with_a_vae_round_trips(tmp_path):
    pipe = _build(write_upstream(tmp_path / "up", with_vae=True))
    assert pipe.vae is not None and pipe.vae_scale_factor == 2
    pipe.save_pretrained(tmp_path / "emogen")
    loaded = EmoGenPipeline.from_pretrained(tmp_path / "emogen")
    loaded.set_progress_bar_config(disable=True)
    out = run(loaded, "awe", [0])
    assert out.images.shape == (1, 3, 16, 16)
    assert torch.allclose(out.images, run(pipe, "awe", [0]).images, atol=1e-5)
