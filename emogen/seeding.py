"""Every seed the project draws, derived from the top-level ``seed``: one stream per stage
(``stage_seed``), and streams within a stage keyed by integers (``derived_seed``: epoch, step,
micro-batch position) or by an image id (``image_seed``), so draws never depend on batch size,
worker or process count, and a resumed run replays what it would have drawn."""

import hashlib
import random
import zlib


def stage_seed(base_seed: int, stage: str) -> int:
    """A stable 31-bit seed for ``stage``: same base seed and name, same number."""
    return (base_seed * 1_000_003 + zlib.crc32(stage.encode())) % (2**31 - 1)


def derived_seed(*parts: int, bits: int = 63) -> int:
    """A ``bits``-bit seed (32 or 63) from integers; numpy's SeedSequence mixes them well."""
    import numpy as np

    sequence = np.random.SeedSequence(list(parts))
    if bits == 32:
        return int(sequence.generate_state(1)[0])
    return int(sequence.generate_state(1, dtype=np.uint64)[0] >> 1)


def image_seed(seed: int, image_id: str) -> int:
    """A 63-bit seed that is a function of (seed, image id) only."""
    return int.from_bytes(hashlib.sha256(f"{seed}\0{image_id}".encode()).digest()[:8], "little") >> 1


def seed_everything(seed: int) -> None:
    # Imported here: the data stages use stage_seed only and need not pay torch's import (~2-4 s).
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
