"""The per-emotion Gaussians of the emotion space, seeded sampling from them, vector hashes.

docs/method.md "Generation": e ~ N(mean_emotion, diag(std_emotion²)), or N(mean, cov) when the
emotion_space stage stored a full covariance. Every image draws from its own
``torch.Generator``, so an image does not depend on which batch it was generated in.

Intensity s (our extension; the published code has none): e = c + s·(x − c), where x is the
emotion's Gaussian sample and c the neutral centre, the mean of the eight emotion means.
s = 0 gives c for every emotion (no emotion in particular), s = 1 the Gaussian sample itself,
s > 1 moves past it along the same line, away from the centre. The whole sample is scaled,
so the spread around the emotion's mean shrinks or grows with s too.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from emogen.emotions import NUM_EMOTIONS
from emogen.errors import UserError

GAUSSIANS_FILE = "gaussians.safetensors"  # the Gaussians' file name wherever they are saved


@dataclass(frozen=True)
class EmotionGaussians:
    """``mean``/``std`` (8, D) float32 in EmoSet emotion order; ``cov`` (8, D, D) or None."""

    mean: torch.Tensor
    std: torch.Tensor
    cov: torch.Tensor | None = None
    _scale_tril: dict[int, torch.Tensor] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.mean.ndim != 2 or self.mean.shape[0] != NUM_EMOTIONS:
            raise ValueError(f"mean must be ({NUM_EMOTIONS}, D), got {tuple(self.mean.shape)}")
        if self.std.shape != self.mean.shape:
            raise ValueError(f"std must match mean {tuple(self.mean.shape)}, got {tuple(self.std.shape)}")
        if (self.std < 0).any():
            raise ValueError("std holds negative values")
        dim = self.mean.shape[1]
        if self.cov is not None and self.cov.shape != (NUM_EMOTIONS, dim, dim):
            raise ValueError(f"cov must be ({NUM_EMOTIONS}, {dim}, {dim}), got {tuple(self.cov.shape)}")

    @property
    def dim(self) -> int:
        return self.mean.shape[1]

    @classmethod
    def load(cls, path: str | Path) -> EmotionGaussians:
        """Read ``gaussians.safetensors`` (emotion_space's contract); errors name the file."""
        path = Path(path)
        if not path.is_file():
            raise UserError(f"{path}: missing; build it with `dvc repro emotion_space`")
        try:
            tensors = load_file(str(path))
        except (SafetensorError, OSError) as exc:
            raise UserError(f"{path}: not a safetensors file: {exc}") from None
        missing = {"mean", "std"} - tensors.keys()
        if missing:
            raise UserError(f"{path}: missing tensors {sorted(missing)} (has {sorted(tensors)})")
        try:
            return cls(
                tensors["mean"].float(),
                tensors["std"].float(),
                tensors["cov"].float() if "cov" in tensors else None,
            )
        except ValueError as exc:
            raise UserError(f"{path}: {exc}") from None

    def save(self, path: str | Path) -> None:
        tensors = {"mean": self.mean.contiguous(), "std": self.std.contiguous()}
        if self.cov is not None:
            tensors["cov"] = self.cov.contiguous()
        save_file(tensors, str(path))

    def scale_tril(self, emotion: int) -> torch.Tensor:
        """Cholesky factor of ``cov[emotion]``; jitter is added until it factorises
        (sample covariances of more dimensions than images are singular)."""
        if emotion not in self._scale_tril:
            cov = self.cov[emotion].double()
            jitter = 0.0
            eye = torch.eye(cov.shape[0], dtype=cov.dtype)
            scale = float(cov.diagonal().mean().clamp_min(1e-12))
            for _ in range(12):
                tril, info = torch.linalg.cholesky_ex(cov + jitter * eye)
                if int(info) == 0:
                    break
                jitter = scale * 1e-6 if jitter == 0 else jitter * 10
            else:
                raise ValueError(f"covariance of emotion {emotion} is not positive semi-definite")
            self._scale_tril[emotion] = tril.float()
        return self._scale_tril[emotion]

    def draw(self, generator: torch.Generator | None) -> torch.Tensor:
        """D standard normals (CPU float32) from ``generator`` (None: torch's global one)."""
        device = generator.device if generator is not None else "cpu"
        return torch.randn(self.dim, generator=generator, device=device, dtype=torch.float32).cpu()

    @property
    def centre(self) -> torch.Tensor:
        """The neutral centre c (D,): the mean of the eight emotion means."""
        return self.mean.mean(dim=0)

    def at(self, emotion: int, z: torch.Tensor, intensity: float = 1.0) -> torch.Tensor:
        """The emotion's vector for the standard-normal draw ``z``: x = mean + std·z (or L·z),
        moved to c + intensity·(x − c) (module docstring)."""
        if intensity < 0:
            raise UserError(f"intensity must be >= 0 (0: neutral centre, 1: the emotion's Gaussian), got {intensity:g}")
        if self.cov is None:
            x = self.mean[emotion] + self.std[emotion] * z
        else:
            x = self.mean[emotion] + self.scale_tril(emotion) @ z
        if intensity == 1.0:  # exactly the Gaussian sample (no rounding through c)
            return x
        centre = self.centre
        return centre + intensity * (x - centre)

    def sample(self, emotion: int, generator: torch.Generator | None, intensity: float = 1.0) -> torch.Tensor:
        """One vector (D,) ~ N(mean, diag(std²)) (or N(mean, cov)), at ``intensity``."""
        return self.at(emotion, self.draw(generator), intensity)


def vector_sha256(vector: torch.Tensor) -> str:
    """sha256 of the vector as little-endian float32 bytes (what the index records)."""
    array = vector.detach().to("cpu", torch.float32).contiguous().numpy().astype("<f4", copy=False)
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()
