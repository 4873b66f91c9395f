"""Emotion intensity: the sampling rule, `emogen generate --intensity`, and intensity_curve on tiny models."""

import json

import numpy as np
import pytest
import torch

from emogen.cli import main
from emogen.emotions import EMOTIONS
from emogen.errors import UserError
from emogen.pipelines.emogen_pipeline import EmoGenPipeline
from emogen.pipelines.sampling import EmotionGaussians
from emogen.stages.intensity import intensity_curve
from tests.helpers.generation_inputs import saved_pipeline


class PixelProbe:
    """Test fixture standing in for the evaluators' emotion probe: a fixed random linear map
    of the mean colour of each image's four quadrants, softmaxed (a function of the pixels only)."""

    def __init__(self, seed=0):
        self.weights = np.random.default_rng(seed).normal(size=(12, 8)) * 3

    def emotion_probs(self, images):
        feats = []
        for img in images:
            a = np.asarray(img, dtype=np.float64) / 255
            h, w = a.shape[0] // 2, a.shape[1] // 2
            feats.append(np.concatenate([a[i : i + h, j : j + w].mean(axis=(0, 1)) for i in (0, h) for j in (0, w)]))
        logits = np.stack(feats) @ self.weights
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return saved_pipeline(tmp_path_factory.mktemp("upstream"))


def test_intensity_rule_centre_gaussian_and_beyond():
    g = torch.Generator().manual_seed(0)
    gaussians = EmotionGaussians(mean=torch.randn(8, 5, generator=g), std=torch.rand(8, 5, generator=g))
    z = torch.randn(5, generator=g)
    centre = gaussians.mean.mean(0)
    for emotion in (0, 6):
        x = gaussians.mean[emotion] + gaussians.std[emotion] * z
        assert torch.equal(gaussians.at(emotion, z, 1.0), x)
        assert torch.allclose(gaussians.at(emotion, z, 0.0), centre)
        assert torch.allclose(gaussians.at(emotion, z, 0.5), centre + 0.5 * (x - centre))
        assert torch.allclose(gaussians.at(emotion, z, 1.5) - centre, 1.5 * (x - centre))
    with pytest.raises(UserError, match="intensity must be >= 0"):
        gaussians.at(0, z, -0.5)


def test_generate_command_records_intensity_and_zero_is_the_same_for_every_emotion(model, tmp_path):
    out = tmp_path / "zero"
    assert (
        main(
            [
                "generate",
                "--emotion",
                "awe,fear",
                "--num-images",
                "2",
                "--intensity",
                "0",
                "--out",
                str(out),
                "--model",
                str(model),
                "--steps",
                "2",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    index = json.loads((out / "index.json").read_text())
    assert [e["intensity"] for e in index["images"]] == [0.0] * 4
    by_emotion = {e["emotion"]: [] for e in index["images"]}
    for entry in index["images"]:
        by_emotion[entry["emotion"]].append(entry["vector_sha256"])
    assert by_emotion["awe"] == by_emotion["fear"]  # s = 0: the neutral centre, whatever the emotion
    assert (
        main(
            ["generate", "--emotion", "awe", "--intensity", "-1", "--out", str(tmp_path / "bad"), "--model", str(model)]
        )
        == 2
    )


def test_fusion_strip_uses_the_same_intensity(model):
    pipe = EmoGenPipeline.from_pretrained(model)
    gen = [torch.Generator().manual_seed(3) for _ in range(2)]
    fused = pipe.sample_vectors(["awe", "awe"], gen, ["fear", "fear"], "interpolate", [0.0, 1.0], [2.0, 2.0])
    z = pipe.gaussians.draw(torch.Generator().manual_seed(3))
    assert torch.allclose(fused[0, 0], pipe.gaussians.at(1, z, 2.0))
    assert torch.allclose(fused[1, 0], pipe.gaussians.at(6, z, 2.0))


def test_intensity_curve_shapes_chance_at_zero_and_strip(model):
    pipe = EmoGenPipeline.from_pretrained(model)
    pipe.set_progress_bar_config(disable=True)
    curve = intensity_curve(
        pipe,
        PixelProbe(),
        (0.0, 1.0, 2.0),
        num_images=2,
        first_seed=5,
        batch_size=16,
        grid_cell=16,
        num_inference_steps=2,
    )
    assert curve.target_prob.shape == (3, 8, 2) and curve.top1.shape == (3, 8, 2)
    points = curve.summary()
    assert [p["intensity"] for p in points] == [0.0, 1.0, 2.0]
    # s = 0: one image per seed for all eight emotions, so the target probabilities of a seed sum to 1.
    assert np.allclose(curve.target_prob[0].sum(axis=0), 1.0, atol=1e-4)
    assert points[0]["mean_target_prob"]["value"] == pytest.approx(1 / 8, abs=1e-4)
    for p in points:
        interval = p["mean_target_prob"]
        assert interval["low"] <= interval["value"] <= interval["high"]
        assert set(p["per_emotion"]) == set(EMOTIONS)
    strip = np.asarray(curve.strip, dtype=np.int16)
    assert strip.shape == (2 + 8 * 18, 2 + 3 * 18, 3)  # rows: 8 emotions, columns: 3 intensities of 16 px
    cell = lambda row, col: strip[2 + 18 * row : 18 * (row + 1), 2 + 18 * col : 18 * (col + 1)]  # noqa: E731
    assert all(np.abs(cell(r, 0) - cell(0, 0)).max() <= 1 for r in range(8))  # s = 0: one image
    assert max(np.abs(cell(r, 1) - cell(0, 1)).max() for r in range(8)) > 1  # s = 1: emotions differ
