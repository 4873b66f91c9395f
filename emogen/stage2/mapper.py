"""The emotion mapper (SPEC.md "Stage 2"): an emotion vector → one token embedding.

Default (published): Linear(768, 1024) → ReLU → Linear(1024, 768), 1,574,656 parameters.
Options: more 1024-wide hidden layers, LayerNorm after each hidden Linear, Dropout after
each hidden activation, or ``kind="linear"`` (a single Linear, the "FC" variant).
Saved as ``config.json`` + ``model.safetensors`` (no pickles).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from emogen.errors import UserError

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


@dataclass(frozen=True)
class MapperConfig:
    in_dim: int = 768  # emotion-vector width (stage-1 fc1)
    out_dim: int = 768  # token-embedding width: text_encoder.config.hidden_size
    hidden_dim: int = 1024
    num_hidden_layers: int = 1
    kind: Literal["mlp", "linear"] = "mlp"
    layer_norm: bool = False
    dropout: float = 0.0

    def __post_init__(self) -> None:
        for name in ("in_dim", "out_dim", "hidden_dim", "num_hidden_layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"MapperConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.kind not in ("mlp", "linear"):
            raise ValueError(f"MapperConfig.kind must be 'mlp' or 'linear', got {self.kind!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"MapperConfig.dropout must be in [0, 1), got {self.dropout}")


class EmotionMapper(nn.Module):
    """``forward(vectors (B, in_dim)) -> token embeddings (B, out_dim)``."""

    def __init__(self, config: MapperConfig) -> None:
        super().__init__()
        self.config = config
        layers: list[nn.Module] = []
        if config.kind == "mlp":
            width = config.in_dim
            for _ in range(config.num_hidden_layers):
                layers.append(nn.Linear(width, config.hidden_dim))
                if config.layer_norm:
                    layers.append(nn.LayerNorm(config.hidden_dim))
                layers.append(nn.ReLU())
                if config.dropout > 0:
                    layers.append(nn.Dropout(config.dropout))
                width = config.hidden_dim
            layers.append(nn.Linear(width, config.out_dim))
        else:
            layers.append(nn.Linear(config.in_dim, config.out_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, vectors: torch.Tensor) -> torch.Tensor:
        return self.net(vectors)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def save_pretrained(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / CONFIG_NAME).write_text(json.dumps(asdict(self.config), indent=2) + "\n")
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        save_file(state, str(directory / WEIGHTS_NAME))

    @classmethod
    def from_pretrained(cls, directory: str | Path, device: str | torch.device = "cpu") -> "EmotionMapper":
        """Load a saved mapper in eval mode; a missing or bad folder is a :class:`UserError`."""
        directory = Path(directory)
        config_path, weights_path = directory / CONFIG_NAME, directory / WEIGHTS_NAME
        for path in (config_path, weights_path):
            if not path.is_file():
                raise UserError(f"{path}: missing; train the mapper first (`emogen stage stage2`)")
        try:
            config = MapperConfig(**json.loads(config_path.read_text()))
        except (TypeError, ValueError) as exc:
            raise UserError(f"{config_path}: not a mapper config: {exc}") from None
        mapper = cls(config)
        try:
            mapper.load_state_dict(load_file(str(weights_path)))
        except RuntimeError as exc:
            raise UserError(f"{weights_path}: weights do not match {config_path}: {exc}") from None
        return mapper.to(device).eval()
