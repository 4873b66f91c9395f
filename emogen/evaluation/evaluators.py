"""What the metrics need from a set of evaluator models, whatever the profile.

``load_evaluators(models/evaluators)`` reads ``evaluators.json`` and returns the embedded
stand-ins (:mod:`emogen.evaluation.embedded`) or the published models
(:mod:`emogen.evaluation.pretrained`) behind one interface. Every image, real or
generated, is first resized to the one evaluation ``resolution`` recorded there, so a
16 px generated image and a 32 px real one are compared at the same size.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from emogen.errors import MissingModelError, UserError
from emogen.jsonio import read_json

EVALUATORS_JSON = "evaluators.json"
METRICS = ("emo_a", "emo_a_clip", "sem_c", "fid", "kid", "lpips", "sem_d")


class Evaluators(ABC):
    """Probabilities and features of images (lists of RGB PIL images), as numpy arrays."""

    def __init__(self, info: dict[str, Any], device: torch.device) -> None:
        self.info = info
        self.device = device
        self.resolution: int = int(info["resolution"])
        self.names: dict[str, str] = dict(info["names"])  # metric → evaluator name
        self.stand_in: bool = bool(info["stand_in"])
        self.scene_names: list[str] = list(info["scenes"])
        self.object_names: list[str] = list(info["objects"])

    def resize(self, images: Sequence[Image.Image]) -> list[Image.Image]:
        """Every image at the evaluation resolution (PIL's bicubic filter antialiases when shrinking)."""
        size = (self.resolution, self.resolution)
        return [
            img.convert("RGB") if img.size == size else img.convert("RGB").resize(size, Image.BICUBIC) for img in images
        ]

    @abstractmethod
    def emotion_probs(self, images: Sequence[Image.Image]) -> np.ndarray:
        """(N, 8) emotion probabilities, EmoSet order: the headline Emo-A judge."""

    def clip_emotion_probs(self, images: Sequence[Image.Image]) -> np.ndarray | None:
        """(N, 8) probabilities of the second Emo-A column (a probe on the generators' CLIP), or
        None when the headline judge is already the CLIP one (pretrained profile)."""
        return None

    @abstractmethod
    def scene_probs(self, images: Sequence[Image.Image]) -> np.ndarray:
        """(N, scenes) softmax of the scene classifier (Sem-C)."""

    @abstractmethod
    def object_probs(self, images: Sequence[Image.Image]) -> np.ndarray:
        """(N, objects) softmax of the object classifier (Sem-C)."""

    @abstractmethod
    def finds(self, images: Sequence[Image.Image], word: str) -> np.ndarray:
        """(N,) bool: does the object (or scene) classifier find ``word`` in each image (transfer)."""

    @abstractmethod
    def semd_features(self, images: Sequence[Image.Image], published_quirks: bool = False) -> np.ndarray:
        """(N, D) Sem-D image features; quirks: the published double 1/255 rescale."""

    def fid_features(self, images: Sequence[Image.Image]) -> np.ndarray | None:
        """(N, D) features of the FID network, or None when it is not available (see ``missing``)."""
        return None

    def lpips(
        self, first: Sequence[Image.Image], second: Sequence[Image.Image], published_quirks: bool = False
    ) -> np.ndarray | None:
        """(P,) perceptual distance of image pairs, or None when not available."""
        return None

    def missing(self, metric: str) -> str | None:
        """Why ``metric`` cannot be computed here (an install hint), or None."""
        return None


def unit_images(images: Sequence[Image.Image]) -> np.ndarray:
    """(N, H, W, 3) float32 in [0, 1]."""
    return np.stack([np.asarray(img, dtype=np.float32) / 255.0 for img in images])


def read_evaluators_json(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / EVALUATORS_JSON
    info = read_json(
        path,
        "no evaluators here; run `emogen stage evaluators` (or `dvc repro evaluators`)",
        missing_error=MissingModelError,
    )
    missing = [k for k in ("profile", "resolution", "names", "stand_in", "scenes", "objects") if k not in info]
    if missing:
        raise UserError(f"{path}: missing key(s) {', '.join(missing)}")
    return info


def load_evaluators(folder: str | Path, device: str | torch.device = "cpu") -> Evaluators:
    """The evaluators the ``evaluators`` stage wrote to ``folder``, on ``device``, eval mode."""
    folder = Path(folder)
    info = read_evaluators_json(folder)
    device = torch.device(device)
    if info["profile"] == "embedded":
        from emogen.evaluation.embedded import EmbeddedEvaluators

        return EmbeddedEvaluators(folder, info, device)
    if info["profile"] == "pretrained":
        from emogen.evaluation.pretrained import PretrainedEvaluators

        return PretrainedEvaluators(folder, info, device)
    raise UserError(f"{folder / EVALUATORS_JSON}: unknown profile {info['profile']!r} (embedded | pretrained)")
