"""The stage-1 emotion encoder (docs/method.md "Stage 1"): ResNet trunk → global pool → fc1 → 8 logits.

Saved as ``config.json`` + ``model.safetensors``; :func:`load_encoder` rebuilds it without
any download. :func:`encoder_inputs` and :func:`embed_images` turn image files into the
encoder's input batch and into emotion vectors (what later stages reuse).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm
from transformers import ResNetConfig, ResNetModel

from emogen.config import Stage1Params
from emogen.emotions import EMOTIONS, NUM_EMOTIONS
from emogen.errors import DataError, MissingModelError, UserError
from emogen.images import encoder_transform, load_rgb
from emogen.jsonio import write_json

log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


@dataclass(frozen=True)
class EncoderConfig:
    """Everything needed to rebuild the encoder and feed it (written as ``config.json``)."""

    resnet: dict[str, Any]  # transformers ResNetConfig.to_dict() of the trunk
    vector_dim: int
    dropout: float
    resize: int
    crop: int
    emotions: tuple[str, ...] = EMOTIONS
    pretrained: str | None = None  # where the trunk's initial weights came from (provenance)
    architecture: str = "emogen-emotion-encoder"


class EmotionEncoder(nn.Module):
    """ResNet trunk → pooled features → ``fc1`` (the emotion vector) → ReLU → Dropout → logits."""

    def __init__(self, config: EncoderConfig, trunk: ResNetModel | None = None) -> None:
        super().__init__()
        self.config = config
        self.trunk = trunk if trunk is not None else ResNetModel(ResNetConfig.from_dict(config.resnet))
        self.fc1 = nn.Linear(self.trunk.config.hidden_sizes[-1], config.vector_dim)
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(config.vector_dim, len(config.emotions))

    def emotion_vectors(self, pixels: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) in [-1, 1] → (N, vector_dim): ``fc1`` output, before ReLU and dropout."""
        pooled = self.trunk(pixel_values=pixels).pooler_output
        return self.fc1(pooled.flatten(1))

    def head(self, vectors: torch.Tensor) -> torch.Tensor:
        """Emotion vectors → logits (so stored vectors give the classifier's output again)."""
        return self.classifier(self.dropout(torch.relu(vectors)))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.head(self.emotion_vectors(pixels))


def load_pretrained_trunk(name: str) -> ResNetModel:
    """ImageNet ResNet from a local folder or the HF cache; never downloads."""
    try:
        return ResNetModel.from_pretrained(name, local_files_only=True)
    except OSError as exc:
        raise MissingModelError(
            f"stage1.pretrained: the ResNet {name!r} is neither a local folder nor in the Hugging Face "
            f"cache ({exc.__class__.__name__}). Fetch it on a machine with network "
            f"(`huggingface-cli download {name}`, then copy the HF cache, or set HF_HOME to it), "
            "or set stage1.pretrained to a local folder holding config.json and the weights."
        ) from None


def build_encoder(cfg: Stage1Params) -> EmotionEncoder:
    """A fresh encoder: pretrained trunk (``cfg.pretrained``) or the embedded trunk from scratch."""
    if cfg.pretrained:
        trunk = load_pretrained_trunk(cfg.pretrained)
    else:
        arch = cfg.resnet
        trunk = ResNetModel(
            ResNetConfig(
                layer_type=arch.layer_type,
                embedding_size=arch.embedding_size,
                hidden_sizes=list(arch.hidden_sizes),
                depths=list(arch.depths),
            )
        )
    config = EncoderConfig(
        resnet=trunk.config.to_dict(),
        vector_dim=cfg.vector_dim,
        dropout=cfg.dropout,
        resize=cfg.resize,
        crop=cfg.crop,
        pretrained=cfg.pretrained,
    )
    return EmotionEncoder(config, trunk)


def save_encoder(encoder: EmotionEncoder, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / CONFIG_FILE, asdict(encoder.config))
    state = {k: v.detach().cpu().contiguous() for k, v in encoder.state_dict().items()}
    save_file(state, out_dir / WEIGHTS_FILE)


def read_encoder_config(path: Path) -> EncoderConfig:
    file = Path(path) / CONFIG_FILE
    if not file.is_file():
        raise UserError(f"{file}: no emotion encoder here; run `emogen stage stage1` (or `dvc repro stage1`) first")
    raw = json.loads(file.read_text())
    raw["emotions"] = tuple(raw["emotions"])
    return EncoderConfig(**raw)


def load_encoder(path: str | Path, device: str | torch.device = "cpu") -> EmotionEncoder:
    """The trained encoder in ``path`` (``config.json`` + ``model.safetensors``), in eval mode."""
    config = read_encoder_config(Path(path))
    if config.emotions != EMOTIONS:
        raise UserError(f"{path}: encoder emotions {config.emotions} differ from {EMOTIONS}")
    encoder = EmotionEncoder(config)
    encoder.load_state_dict(load_file(Path(path) / WEIGHTS_FILE))
    return encoder.to(device).eval()


def _decode(path: Path, resize: int, crop: int) -> torch.Tensor:
    try:
        return encoder_transform(load_rgb(path), resize, crop)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read image ({exc})") from None


def encoder_inputs(
    paths: Sequence[Path], resize: int, crop: int, workers: int = 2, desc: str | None = None
) -> torch.Tensor:
    """Image files → the encoder's input batch (N, 3, crop, crop) in [-1, 1], in order.

    ``resize``/``crop`` come from the encoder's config (``encoder.config``).
    """
    bar = tqdm(total=len(paths), desc=desc, unit="img", disable=desc is None, mininterval=2)
    with ThreadPoolExecutor(max(1, workers)) as pool:
        tensors = []
        for tensor in pool.map(lambda p: _decode(Path(p), resize, crop), paths):
            tensors.append(tensor)
            bar.update()
    bar.close()
    if not tensors:
        return torch.empty(0, 3, crop, crop)
    return torch.stack(tensors)


def _chunks(items: Sequence[Path], size: int) -> Iterator[Sequence[Path]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@torch.no_grad()
def embed_images(
    encoder: EmotionEncoder,
    paths: Sequence[Path],
    batch_size: int = 256,
    workers: int = 2,
    desc: str | None = "emotion vectors",
) -> torch.Tensor:
    """Emotion vectors (N, D) float32 on the CPU of ``paths``, decoded a batch at a time."""
    encoder.eval()
    device = next(encoder.parameters()).device
    out = []
    bar = tqdm(total=len(paths), desc=desc, unit="img", disable=desc is None, mininterval=2)
    for chunk in _chunks(paths, batch_size):
        pixels = encoder_inputs(chunk, encoder.config.resize, encoder.config.crop, workers).to(device)
        out.append(encoder.emotion_vectors(pixels).float().cpu())
        bar.update(len(chunk))
    bar.close()
    return torch.cat(out) if out else torch.empty(0, encoder.config.vector_dim)


@torch.no_grad()
def emotion_probabilities(encoder: EmotionEncoder, vectors: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
    """Softmax over the 8 emotions of stored emotion vectors (eval mode: dropout off)."""
    encoder.eval()
    device = next(encoder.parameters()).device
    probs = [torch.softmax(encoder.head(chunk.to(device)).float(), dim=-1).cpu() for chunk in vectors.split(batch_size)]
    return torch.cat(probs) if probs else torch.empty(0, NUM_EMOTIONS)


@dataclass
class TrainResult:
    encoder: EmotionEncoder  # best epoch's weights, on the CPU, eval mode
    history: list[dict[str, float]]  # one record per epoch (1-based "epoch")
    best_epoch: int
    accuracy: dict[str, float]  # split → accuracy of the best weights (eval mode)
    test_predictions: np.ndarray  # predicted emotion index per test row (manifest order)
    test_labels: np.ndarray
    resumed_from_epoch: int  # 0 for a fresh run
    seconds: float
