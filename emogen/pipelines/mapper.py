"""The emotion mapper (docs/method.md "Stage 2"): an emotion vector → one token embedding.

Default (published): Linear(768, 1024) → ReLU → Linear(1024, 768), 1,574,656 parameters.
Options: more 1024-wide hidden layers, LayerNorm after each hidden Linear, Dropout after
each hidden activation, or ``kind="linear"`` (a single Linear, the "FC" variant).
A diffusers ``ModelMixin``/``ConfigMixin``: saved as ``config.json`` +
``diffusion_pytorch_model.safetensors`` (no pickles) and registered in the EmoGen pipeline as
its ``mapper`` component, so the pipeline saves and loads it like its UNet.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.utils import SAFETENSORS_WEIGHTS_NAME
from torch import nn

from emogen.errors import UserError

CONFIG_NAME = "config.json"


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


class EmotionMapper(ModelMixin, ConfigMixin):
    """``forward(vectors (B, in_dim)) -> token embeddings (B, out_dim)``; ``config`` holds the
    MapperConfig fields."""

    config_name = CONFIG_NAME

    def __init__(self, config: MapperConfig) -> None:
        super().__init__()
        self.register_to_config(**asdict(config))
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

    @classmethod
    def from_config(cls, config: dict[str, Any] | None = None, return_unused_kwargs: bool = False, **kwargs):
        """diffusers' loading path: the saved fields go through MapperConfig's checks."""
        names = {f.name for f in fields(MapperConfig)}
        model = cls(MapperConfig(**{k: v for k, v in dict(config or {}).items() if k in names}))
        return (model, kwargs) if return_unused_kwargs else model

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, **kwargs) -> EmotionMapper:
        """Load a saved mapper (local only) in eval mode; a missing or bad folder is a
        :class:`UserError`."""
        directory = Path(pretrained_model_name_or_path)
        for path in (directory / CONFIG_NAME, directory / SAFETENSORS_WEIGHTS_NAME):
            if not path.is_file():
                raise UserError(f"{path}: missing; train the mapper first (`emogen stage stage2`)")
        kwargs.setdefault("local_files_only", True)
        try:
            return super().from_pretrained(directory, **kwargs)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise UserError(f"{directory}: not a saved mapper (config.json and weights must match): {exc}") from None
