"""Image grids for looking at results (MLflow artifacts, ``grids/<group>.png``, stage-2
previews): the one grid helper (PIL only: the report and evaluate stages need no diffusers)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from PIL import Image, ImageOps


def make_grid(images: Sequence[Image.Image], columns: int, cell: int = 0, pad: int = 2) -> Image.Image:
    """Images row by row, ``columns`` wide, ``pad`` px apart on white; cells smaller than
    ``cell`` px are enlarged with nearest-neighbour (16 px samples are unreadable at their
    own size)."""
    if not images:
        raise ValueError("no images for the grid")
    w, h = images[0].size
    scale = max(1, math.ceil(cell / max(w, h))) if cell else 1
    columns = max(1, min(columns, len(images)))
    rows = math.ceil(len(images) / columns)
    blank = Image.new("RGB", (w * scale, h * scale), "white")  # fills a short last row
    tiles = [
        img.convert("RGB").resize((w * scale, h * scale), Image.NEAREST) if scale > 1 else img.convert("RGB")
        for img in images
    ] + [blank] * (rows * columns - len(images))
    # Padding left and above each tile, then right and below the grid: pad px everywhere.
    tiles = [ImageOps.expand(tile, border=(pad, pad, 0, 0), fill="white") for tile in tiles]
    tile_w, tile_h = tiles[0].size
    grid = Image.new("RGB", (columns * tile_w, rows * tile_h))  # as diffusers.utils.make_image_grid
    for i, tile in enumerate(tiles):
        grid.paste(tile, box=(i % columns * tile_w, i // columns * tile_h))
    return ImageOps.expand(grid, border=(0, 0, pad, pad), fill="white")
