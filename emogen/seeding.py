"""One seed per stage, derived from the top-level ``seed`` so stages never share a stream."""

import random
import zlib


def stage_seed(base_seed: int, stage: str) -> int:
    """A stable 31-bit seed for ``stage``: same base seed and name, same number."""
    return (base_seed * 1_000_003 + zlib.crc32(stage.encode())) % (2**31 - 1)


def seed_everything(seed: int) -> None:
    # Imported here: the data stages use stage_seed only and need not pay torch's import (~2-4 s).
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - the legacy global generator, for libraries that still draw from it
    torch.manual_seed(seed)
