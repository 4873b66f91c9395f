"""One seed per stage, derived from the top-level ``seed`` so stages never share a stream."""

import random
import zlib

import numpy as np
import torch


def stage_seed(base_seed: int, stage: str) -> int:
    """A stable 31-bit seed for ``stage``: same base seed and name, same number."""
    return (base_seed * 1_000_003 + zlib.crc32(stage.encode())) % (2**31 - 1)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
