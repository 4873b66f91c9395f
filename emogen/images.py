"""Image loading and tensor transforms shared by every stage (no torchvision: see pyproject.toml).

Every image is converted to RGB first: EmoSet holds greyscale, CMYK, RGBA and palette
images, which crashed the published code.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

if TYPE_CHECKING:  # torch is imported where a tensor is made: reading images needs no torch (start-up)
    import torch


def load_rgb(path: str | Path) -> Image.Image:
    """Open any PIL-readable image as 8-bit RGB (transparency composited onto white)."""
    with Image.open(path) as img:
        if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
            rgba = img.convert("RGBA")
            canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            return Image.alpha_composite(canvas, rgba).convert("RGB")
        return img.convert("RGB")


def resize_shorter(img: Image.Image, size: int) -> Image.Image:
    """Resize so the shorter side is ``size``, keeping the aspect ratio."""
    w, h = img.size
    scale = size / min(w, h)
    return img.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BILINEAR)


def center_crop(img: Image.Image, size: int) -> Image.Image:
    w, h = img.size
    left, top = (w - size) // 2, (h - size) // 2
    return img.crop((left, top, left + size, top + size))


def to_tensor(img: Image.Image) -> torch.Tensor:
    """RGB PIL image → float tensor (3, H, W) scaled to [-1, 1] (mean 0.5, std 0.5)."""
    import torch

    array = np.asarray(img, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def encoder_transform(img: Image.Image, resize: int, crop: int) -> torch.Tensor:
    """docs/method.md stage-1 input: resize shorter side → centre crop → [-1, 1]."""
    return to_tensor(center_crop(resize_shorter(img, resize), crop))


def squash_transform(img: Image.Image, size: int) -> torch.Tensor:
    """Diffusion-training input: resize to ``size``×``size`` ignoring aspect → [-1, 1]."""
    return to_tensor(img.resize((size, size), Image.BICUBIC))


def to_pil(images: torch.Tensor) -> list[Image.Image]:
    """(N, 3, H, W) tensor in [-1, 1] → list of RGB PIL images."""
    import torch

    array = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return [Image.fromarray(a.permute(1, 2, 0).cpu().numpy()) for a in array]
