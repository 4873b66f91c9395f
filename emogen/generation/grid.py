"""Image grids for looking at results (MLflow artifacts, ``grids/<group>.png``)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from PIL import Image


def make_grid(images: Sequence[Image.Image], columns: int, cell: int = 0, pad: int = 2) -> Image.Image:
    """Images row by row, ``columns`` wide, on white; cells smaller than ``cell`` px are
    enlarged with nearest-neighbour (16 px samples are unreadable at their own size)."""
    if not images:
        raise ValueError("no images for the grid")
    w, h = images[0].size
    scale = max(1, math.ceil(cell / max(w, h))) if cell else 1
    w, h = w * scale, h * scale
    columns = max(1, min(columns, len(images)))
    rows = math.ceil(len(images) / columns)
    grid = Image.new("RGB", (columns * (w + pad) + pad, rows * (h + pad) + pad), "white")
    for i, img in enumerate(images):
        if scale > 1:
            img = img.resize((w, h), Image.NEAREST)
        grid.paste(img, (pad + (i % columns) * (w + pad), pad + (i // columns) * (h + pad)))
    return grid
