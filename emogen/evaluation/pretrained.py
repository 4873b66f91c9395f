"""The pretrained profile's evaluators: the published ones, on EmoSet.

- Emo-A: CLIP ViT-L/14 (transformers) image features → a linear emotion probe trained here
  on EmoSet's train split (normalised features); or, with ``evaluators.emotion_classifier``
  set, the released classifier of the official repository (a Linear 768 → 8 on the raw
  projected features of ``CLIPModel.get_image_features`` after ``CLIPProcessor``, as the
  official ``training/inference.py`` computes them): then the numbers sit beside the paper's.
- Sem-C: an ImageNet ResNet-50 (``microsoft/resnet-50``) and a Places365 ResNet-50, either a
  local transformers folder or the CSAIL file ``resnet50_places365.pth.tar`` (converted on
  load, with ``categories_places365.txt`` beside it for the class names).
- Sem-D: the CLIP ViT-L/14 image features.
- FID (Inception-v3 pool3) and LPIPS-AlexNet need torchvision-based packages
  (``pip install emogen[published-metrics]``: pytorch-fid, lpips), which cannot be
  installed beside this torch build; without them those two cells of the table say
  "not computed" instead of a number.

Models are looked up locally only (``emogen.pipelines.resolve``): a missing one is a
:class:`MissingModelError` naming it and how to get it.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoImageProcessor, CLIPImageProcessor, CLIPModel, ResNetConfig, ResNetForImageClassification

from emogen.config import Params
from emogen.emotions import NUM_EMOTIONS
from emogen.errors import MissingModelError, UserError
from emogen.evaluation.data import iter_split
from emogen.evaluation.embedded import train_probe
from emogen.evaluation.evaluators import Evaluators, unit_images
from emogen.layout import Layout
from emogen.pipelines.resolve import CLIP_FILES, Resolved, resolve_model

PROBE_FILE = "emotion_probe.safetensors"
RELEASED_FILE = "released_emotion_classifier.safetensors"
RELEASED_NAME = (
    "released EmoGen Emo-A classifier (Linear 768 → 8 on raw CLIP ViT-L/14 image features, "
    "as the official training/inference.py)"
)
SCENE_FOLDER = "scene_model"
CLASSIFIER_FILES: tuple[tuple[str, ...], ...] = (("config.json",), ("model.safetensors", "pytorch_model.bin"))
PUBLISHED_METRICS_EXTRA = "pip install 'emogen[published-metrics]' (pytorch-fid, lpips; they need torchvision)"
NAMES = {
    "emo_a": "CLIP ViT-L/14 image features + linear probe trained on EmoSet train",
    "kid": "Inception-v3 pool3 (pytorch-fid), cubic polynomial kernel",
    "sem_c": "max(Places365 ResNet-50, ImageNet ResNet-50 top softmax probability)",
    "fid": "Inception-v3 pool3 (pytorch-fid)",
    "lpips": "LPIPS-AlexNet (lpips)",
    "sem_d": "CLIP ViT-L/14 image features",
}


def torchvision_to_transformers_key(key: str) -> str:
    """A torchvision ResNet state-dict key → the matching ``ResNetForImageClassification`` key."""
    key = key.removeprefix("module.")
    if key.startswith("conv1."):
        return "resnet.embedder.embedder.convolution." + key[len("conv1.") :]
    if key.startswith("bn1."):
        return "resnet.embedder.embedder.normalization." + key[len("bn1.") :]
    if key.startswith("fc."):
        return "classifier.1." + key[len("fc.") :]
    match = re.fullmatch(r"layer(\d)\.(\d+)\.(conv|bn|downsample\.)(\d)\.(.+)", key)
    if not match:
        raise UserError(f"not a torchvision ResNet weight: {key!r}")
    stage, block, part, index, rest = match.groups()
    prefix = f"resnet.encoder.stages.{int(stage) - 1}.layers.{block}."
    if part == "downsample.":
        return prefix + ("shortcut.convolution." if index == "0" else "shortcut.normalization.") + rest
    kind = "convolution." if part == "conv" else "normalization."
    return prefix + f"layer.{int(index) - 1}." + kind + rest


def load_places365(path: Path, param: str = "evaluators.scene_model") -> ResNetForImageClassification:
    """A Places365 ResNet-50: a transformers folder, or the CSAIL ``.pth.tar`` (converted)."""
    if path.is_dir():
        return ResNetForImageClassification.from_pretrained(path, local_files_only=True)
    if not path.is_file():
        raise MissingModelError(
            f"{param}: {path} does not exist. Get the Places365 ResNet-50 from "
            "http://places2.csail.mit.edu/models_places365/resnet50_places365.pth.tar and "
            "https://raw.githubusercontent.com/CSAILVision/places365/master/categories_places365.txt "
            f"on a machine with network, put both in one folder, and set {param} to the .pth.tar file"
        )
    categories = path.parent / "categories_places365.txt"
    if not categories.is_file():
        raise MissingModelError(f"{param}: {categories} (the 365 class names) must sit beside {path.name}")
    names = [line.split()[0].split("/", 2)[-1] for line in categories.read_text().splitlines() if line.strip()]
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    state = checkpoint.get("state_dict", checkpoint)
    config = ResNetConfig(
        layer_type="bottleneck",
        depths=[3, 4, 6, 3],
        hidden_sizes=[256, 512, 1024, 2048],
        num_labels=len(names),
        id2label=dict(enumerate(names)),
        label2id={n: i for i, n in enumerate(names)},
    )
    model = ResNetForImageClassification(config)
    model.load_state_dict({torchvision_to_transformers_key(k): v for k, v in state.items()}, strict=True)
    return model


def resolve_classifier(name: str, param: str) -> Resolved:
    return resolve_model(name, CLASSIFIER_FILES, param)


def clip_image_features(
    model: CLIPModel,
    processor: CLIPImageProcessor,
    images: Sequence[Image.Image],
    batch_size: int,
    device: torch.device,
    published_quirks: bool = False,
) -> torch.Tensor:
    """Projected CLIP image features. Quirk: [0, 1] arrays rescaled by 1/255 once more, as published."""
    out = []
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        if published_quirks:
            inputs = processor(images=list(unit_images(chunk)), do_rescale=True, return_tensors="pt")
        else:
            inputs = processor(images=list(chunk), return_tensors="pt")
        with torch.no_grad():
            feats = model.get_image_features(pixel_values=inputs.pixel_values.to(device, model.dtype))
        out.append(getattr(feats, "pooler_output", feats).float().cpu())
    return torch.cat(out)


def load_released_classifier(
    path: str | Path, feature_dim: int | None = None, param: str = "evaluators.emotion_classifier"
) -> nn.Linear:
    """The released Emo-A classifier: a ``.pth`` state dict of the official ``emo_classifier``
    (keys ``fc.weight`` (8, 768), ``fc.bias`` (8,)) or of a bare ``nn.Linear`` (``weight``, ``bias``),
    loaded with ``weights_only=True``. A missing or malformed file stops naming it."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise MissingModelError(
            f"{param}: {path} does not exist. The released classifier is "
            "weights/Clip_emotion_classifier/time_2023-11-12_03-29-best.pth of the official EmoGen "
            "repository (github.com/JingyuanYY/EmoGen); download it and set this path, or set it to null"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip or unsupported-type errors alike
        raise UserError(f"{param}: {path} is not a torch state-dict file ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{param}: {path} holds {type(state).__name__}, not a state dict of tensors")
    state = {k.removeprefix("fc."): v for k, v in state.items()}
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    weight = shapes.get("weight")
    if (
        set(state) != {"weight", "bias"}
        or len(weight) != 2
        or weight[0] != NUM_EMOTIONS
        or shapes["bias"] != (NUM_EMOTIONS,)
        or (feature_dim is not None and weight[1] != feature_dim)
    ):
        want = feature_dim or 768
        raise UserError(
            f"{param}: {path} is not a Linear {want} → {NUM_EMOTIONS} state dict "
            f"(expected fc.weight ({NUM_EMOTIONS}, {want}), fc.bias ({NUM_EMOTIONS},); got {shapes})"
        )
    linear = nn.Linear(weight[1], NUM_EMOTIONS)
    linear.load_state_dict({k: v.float() for k, v in state.items()})
    return linear.eval().requires_grad_(False)


def fit_pretrained_evaluators(
    params: Params, layout: Layout, resolution: int, device: torch.device
) -> tuple[dict, dict]:
    """Resolve every model first (fail fast), then train the probe on train features, report val."""
    p = params.evaluators
    clip = resolve_model(p.clip, CLIP_FILES, "evaluators.clip")
    objects = resolve_classifier(p.object_model, "evaluators.object_model")
    if not p.scene_model:
        raise MissingModelError(
            "evaluators.scene_model: set it to a Places365 ResNet-50 (a local transformers "
            "folder or resnet50_places365.pth.tar; see docs/stages/evaluation-stages.md)"
        )
    scene = load_places365(Path(p.scene_model).expanduser())
    model = CLIPModel.from_pretrained(clip.path, local_files_only=True).to(device).eval()
    released = None
    if p.emotion_classifier:
        released = load_released_classifier(p.emotion_classifier, model.config.projection_dim)
    processor = CLIPImageProcessor.from_pretrained(clip.path, local_files_only=True)
    features, labels = {}, {}
    for split in ("val",) if released is not None else ("train", "val"):
        feats, labs = [], []
        for part in iter_split(
            layout, params.data, split, resolution, chunk=p.batch_size * 4
        ):  # features only are kept
            feats.append(clip_image_features(model, processor, part.images, p.batch_size, device))
            labs.append(part.labels)
        # the released classifier reads raw features; the probe trained here, normalised ones
        features[split] = (
            torch.cat(feats) if released is not None else nn.functional.normalize(torch.cat(feats), dim=-1)
        )
        labels[split] = torch.as_tensor(np.concatenate(labs))
    probe = (
        released if released is not None else train_probe(features["train"], labels["train"], p.probe_l2, p.probe_steps)
    )
    with torch.no_grad():
        val_pred = probe(features["val"]).argmax(1)
    report = {
        "emotion_probe": {
            "judge": RELEASED_NAME if released is not None else "linear probe trained here on EmoSet train",
            "val_accuracy": round(float((val_pred == labels["val"]).float().mean()), 4),
            "chance_accuracy": round(1 / NUM_EMOTIONS, 4),
            "train_images": 0 if released is not None else len(labels["train"]),
        }
    }
    out = layout.model_dir("evaluators")
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    state = {k: v.contiguous() for k, v in probe.state_dict().items()}
    save_file(state, out / (RELEASED_FILE if released is not None else PROBE_FILE))
    scene.save_pretrained(out / SCENE_FOLDER)
    object_labels = ResNetConfig.from_pretrained(objects.path, local_files_only=True).id2label
    info = {
        "profile": "pretrained",
        "stand_in": False,
        "resolution": resolution,
        "names": {**NAMES, "emo_a": RELEASED_NAME} if released is not None else NAMES,
        "emotion_judge": "released" if released is not None else "probe",
        "scenes": [scene.config.id2label[i] for i in range(scene.config.num_labels)],
        "objects": [object_labels[i] for i in range(len(object_labels))],
        "models": {"clip": str(clip.path), "object_model": str(objects.path)},
        "sources": {clip.name: clip.revision, objects.name: objects.revision, "scene_model": str(p.scene_model)},
        "batch_size": p.batch_size,
    }
    return info, report


class PretrainedEvaluators(Evaluators):
    def __init__(self, folder: Path, info: dict[str, Any], device: torch.device) -> None:
        super().__init__(info, device)
        paths = info["models"]
        for name, path in paths.items():
            if not Path(path).is_dir():
                raise MissingModelError(
                    f"{folder / 'evaluators.json'}: {name} folder {path} is gone; re-run `emogen stage evaluators`"
                )
        self.batch_size = int(info.get("batch_size", 64))
        self.clip = CLIPModel.from_pretrained(paths["clip"], local_files_only=True).to(device).eval()
        self.clip_processor = CLIPImageProcessor.from_pretrained(paths["clip"], local_files_only=True)
        self.released = info.get("emotion_judge") == "released"
        self.probe = nn.Linear(self.clip.config.projection_dim, NUM_EMOTIONS)
        self.probe.load_state_dict(load_file(folder / (RELEASED_FILE if self.released else PROBE_FILE)))
        self.probe.to(device).eval()
        self.object_model = (
            ResNetForImageClassification.from_pretrained(paths["object_model"], local_files_only=True).to(device).eval()
        )
        self.object_processor = AutoImageProcessor.from_pretrained(paths["object_model"], local_files_only=True)
        self.scene_model = (
            ResNetForImageClassification.from_pretrained(folder / SCENE_FOLDER, local_files_only=True).to(device).eval()
        )

    def _clip(self, images: Sequence[Image.Image], published_quirks: bool = False) -> torch.Tensor:
        return clip_image_features(
            self.clip, self.clip_processor, self.resize(images), self.batch_size, self.device, published_quirks
        )

    @torch.no_grad()
    def _softmax(self, model: ResNetForImageClassification, images: Sequence[Image.Image]) -> np.ndarray:
        # Places365 uses the ImageNet preprocessing: the ResNet-50 processor serves both.
        images = self.resize(images)
        out = []
        for start in range(0, len(images), self.batch_size):
            inputs = self.object_processor(images=images[start : start + self.batch_size], return_tensors="pt")
            out.append(model(pixel_values=inputs.pixel_values.to(self.device)).logits.softmax(1).float().cpu())
        return torch.cat(out).numpy()

    @torch.no_grad()
    def emotion_probs(self, images: Sequence[Image.Image]) -> np.ndarray:
        """The released classifier on raw features (as published), or the probe on normalised ones."""
        features = self._clip(images).to(self.device)
        if not self.released:
            features = nn.functional.normalize(features, dim=-1)
        return self.probe(features).softmax(1).cpu().numpy()

    def scene_probs(self, images: Sequence[Image.Image]) -> np.ndarray:
        return self._softmax(self.scene_model, images)

    def object_probs(self, images: Sequence[Image.Image]) -> np.ndarray:
        return self._softmax(self.object_model, images)

    def finds(self, images: Sequence[Image.Image], word: str, top: int = 5) -> np.ndarray:
        """The word is found when a class whose name contains it is among the top-5 objects or scenes."""
        word = word.lower()
        hits = []
        for names, probs in ((self.object_names, self.object_probs), (self.scene_names, self.scene_probs)):
            classes = [i for i, name in enumerate(names) if re.search(rf"\b{re.escape(word)}\b", name.lower())]
            if classes:
                top_k = np.argsort(-probs(images), axis=1)[:, :top]
                hits.append(np.isin(top_k, classes).any(1))
        if not hits:
            raise UserError(f"transfer word {word!r} names no ImageNet or Places365 class")
        return np.logical_or.reduce(hits)

    def semd_features(self, images: Sequence[Image.Image], published_quirks: bool = False) -> np.ndarray:
        return self._clip(images, published_quirks).numpy()

    def missing(self, metric: str) -> str | None:
        package = {"fid": "pytorch_fid", "kid": "pytorch_fid", "lpips": "lpips"}.get(metric)
        if package and importlib.util.find_spec(package) is None:
            return f"not computed: install {PUBLISHED_METRICS_EXTRA}"
        return None

    @torch.no_grad()
    def fid_features(self, images: Sequence[Image.Image]) -> np.ndarray | None:
        if self.missing("fid"):
            return None
        from pytorch_fid.inception import InceptionV3  # optional extra

        if not hasattr(self, "_inception"):
            self._inception = InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).to(self.device).eval()
        out = []
        images = self.resize(images)
        for start in range(0, len(images), self.batch_size):
            x = (
                torch.from_numpy(unit_images(images[start : start + self.batch_size]))
                .permute(0, 3, 1, 2)
                .to(self.device)
            )
            out.append(self._inception(x)[0].flatten(1).cpu())  # [0, 1] inputs, resized to 299 inside
        return torch.cat(out).numpy()

    @torch.no_grad()
    def lpips(
        self, first: Sequence[Image.Image], second: Sequence[Image.Image], published_quirks: bool = False
    ) -> np.ndarray | None:
        if self.missing("lpips"):
            return None
        import lpips  # optional extra

        if not hasattr(self, "_lpips"):
            self._lpips = lpips.LPIPS(net="alex", verbose=False).to(self.device).eval()
        out = []
        a_all, b_all = self.resize(first), self.resize(second)
        for start in range(0, len(a_all), self.batch_size):
            a, b = (
                torch.from_numpy(unit_images(x[start : start + self.batch_size])).permute(0, 3, 1, 2).to(self.device)
                for x in (a_all, b_all)
            )
            if not published_quirks:  # LPIPS expects [-1, 1]; the published code passed [0, 1]
                a, b = a * 2 - 1, b * 2 - 1
            out.append(self._lpips(a, b).flatten().cpu())
        return torch.cat(out).numpy()
