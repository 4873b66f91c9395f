"""The released Emo-A classifier (official repo: a Linear 768 → 8 state dict on raw CLIP
ViT-L/14 image features) as the pretrained profile's Emo-A judge: files of that format made
here; missing and malformed files stop naming the file."""

import json
import shutil

import numpy as np
import pytest
import torch
from torch import nn

from emogen.config import parse_params
from emogen.errors import MissingModelError, UserError
from emogen.evaluation.evaluators import load_evaluators
from emogen.evaluation.pretrained import clip_image_features, load_released_classifier
from emogen.stages import evaluators as fit
from tests.helpers.tiny_sd import write_clip_image_processor, write_tiny_classifier
from tests.test_evaluation_stages import TINY_EVAL, repo, write_methods  # noqa: F401  (repo: fixture)


class OfficialClassifier(nn.Module):
    """The official ``emo_classifier`` (training/model.py): one Linear as ``self.fc``."""

    def __init__(self, dim: int = 768) -> None:
        super().__init__()
        self.fc = nn.Linear(dim, 8)


def test_the_official_format_loads_and_computes_the_linear_layer(tmp_path):
    torch.manual_seed(0)
    official = OfficialClassifier()
    torch.save(official.state_dict(), tmp_path / "time_2023-11-12_03-29-best.pth")
    linear = load_released_classifier(tmp_path / "time_2023-11-12_03-29-best.pth", 768)
    x = torch.randn(4, 768)
    torch.testing.assert_close(linear(x), official.fc(x))
    torch.save(nn.Linear(768, 8).state_dict(), tmp_path / "bare.pth")  # a bare Linear's keys too
    assert load_released_classifier(tmp_path / "bare.pth").weight.shape == (8, 768)


def test_missing_file_is_named_with_where_to_get_it(tmp_path):
    with pytest.raises(
        MissingModelError,
        match=r"(?s)evaluators.emotion_classifier: .*nowhere.pth does not exist.*Clip_emotion_classifier",
    ):
        load_released_classifier(tmp_path / "nowhere.pth")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("garbage", "is not a torch state-dict file"),
        ("object", "is not a torch state-dict file"),  # weights_only refuses arbitrary pickles
        ("list", "not a state dict of tensors"),
        ("wrong_width", r"not a Linear 768 → 8 state dict .*\(8, 512\)"),
        ("extra_key", "not a Linear 768 → 8 state dict"),
    ],
)
def test_malformed_files_stop_naming_the_file(tmp_path, content, message):
    path = tmp_path / f"{content}.pth"
    if content == "garbage":
        path.write_bytes(b"not a zip file at all")
    elif content == "object":
        torch.save({"fc.weight": torch.zeros(8, 768), "note": np.dtype("float32")}, path)
    elif content == "list":
        torch.save([torch.zeros(8, 768)], path)
    elif content == "wrong_width":
        torch.save(OfficialClassifier(512).state_dict(), path)
    else:
        torch.save({**OfficialClassifier().state_dict(), "fc.extra": torch.zeros(1)}, path)
    with pytest.raises(UserError, match=f"evaluators.emotion_classifier: .*{content}.pth"):
        load_released_classifier(path, 768)
    with pytest.raises(UserError, match=message):
        load_released_classifier(path, 768)


def test_embedded_profile_refuses_the_released_classifier(repo, tmp_path):  # noqa: F811
    params = parse_params(
        {**TINY_EVAL, "evaluators": {**TINY_EVAL["evaluators"], "emotion_classifier": str(tmp_path / "x.pth")}}
    )
    with pytest.raises(UserError, match=r"evaluators.emotion_classifier .* needs evaluators.profile: pretrained"):
        fit.run(params, repo)


@pytest.mark.slow  # about a minute on the busy 2-core machine
def test_pretrained_profile_judges_with_the_released_classifier_on_raw_features(repo, tmp_path):  # noqa: F811
    clip = tmp_path / "tiny" / "clip"
    write_clip_image_processor(clip, 16)
    write_tiny_classifier(tmp_path / "objects", ["cardboard box", "folding chair", "tabby cat"])
    write_tiny_classifier(tmp_path / "scenes", ["street", "beach", "forest_path"])
    dim = json.loads((clip / "config.json").read_text())["projection_dim"]
    torch.manual_seed(1)
    official = OfficialClassifier(dim)
    torch.save(official.state_dict(), tmp_path / "released.pth")
    raw = {
        **TINY_EVAL,
        "evaluators": {
            "profile": "pretrained",
            "clip": str(clip),
            "object_model": str(tmp_path / "objects"),
            "scene_model": str(tmp_path / "scenes"),
            "emotion_classifier": str(tmp_path / "released.pth"),
            "device": "cpu",
        },
    }
    params = parse_params(raw)
    fit.run(params, repo)
    report = json.loads((repo.metrics / "evaluators.json").read_text())
    assert "released" in report["emotion_probe"]["judge"] and report["emotion_probe"]["train_images"] == 0
    evaluators = load_evaluators(repo.model_dir("evaluators"))
    assert "released" in evaluators.names["emo_a"]
    write_methods(repo)
    images = list((repo.generated / "emogen").rglob("*.png"))[:4]
    from PIL import Image

    pil = [Image.open(p).convert("RGB") for p in images]
    features = clip_image_features(evaluators.clip, evaluators.clip_processor, pil, 4, torch.device("cpu"))
    with torch.no_grad():
        expected = official.fc(features).softmax(1).numpy()  # raw features, as the official inference.py
    np.testing.assert_allclose(evaluators.emotion_probs(pil), expected, atol=1e-5)
    (tmp_path / "released.pth").write_bytes(b"broken")
    shutil.rmtree(repo.model_dir("evaluators"))
    with pytest.raises(UserError, match=r"released.pth is not a torch state-dict file"):
        fit.run(params, repo)
