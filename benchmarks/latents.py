"""Peak RAM of the latents stage at two dataset sizes: flat, not growing with the dataset.

For each size N it writes an EmoSet-layout folder of N random 32 px images, a
``balanced.parquet`` listing them and a tiny random SD-shaped base model with a VAE
(``tests/helpers/tiny_sd.py``, 32 px → 4×16×16 latents), then runs the real stage
(``emogen.stages.latents.run``) in a fresh subprocess and prints its peak RSS, the size of
the latents written, and the ratio of the peaks (flat = about 1). The DataLoader workers are
forks that hold a batch of decoded images each: their peak is not counted (``getrusage``'s
children maximum also counts every fork+exec helper at its parent's size, so it says nothing).
Keeping every latent in RAM, as stage 2 did before, would add the whole "latents on disk"
column to the larger run's peak (twice, at the concatenation).

    python benchmarks/latents.py                        # 2000 and 20000 images: a few minutes on CPU
    python benchmarks/latents.py --sizes 500 5000 --workers 0
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
IMAGE_SIZE = 32


def write_dataset(root: Path, num_images: int, base) -> None:
    """N random images in the EmoSet layout + balanced.parquet + models/base (tiny SD)."""
    import numpy as np
    import pandas as pd
    from PIL import Image

    from emogen.emotions import EMOTIONS
    from emogen.layout import Layout

    sys.path.insert(0, str(REPO))  # the repository root: tests.helpers
    from tests.helpers.tiny_sd import write_base_json

    layout = Layout(root)
    rng = np.random.default_rng(0)
    rows = []
    for i in range(num_images):
        emotion = EMOTIONS[i % len(EMOTIONS)]
        rel = f"image/{emotion}/{emotion}_{i:06d}.png"
        (layout.synthetic / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)).save(layout.synthetic / rel)
        rows.append({"id": f"{emotion}_{i:06d}", "image_path": rel})
    layout.processed.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_parquet(layout.balanced, index=False)
    write_base_json(base, layout.model_dir("base"))


def child(root: Path, workers: int, batch_size: int, chunk_size: int) -> None:
    """Run the stage in this (fresh) process; print its peak RSS as JSON."""
    from emogen.config import parse_params
    from emogen.layout import Layout
    from emogen.stages import latents

    params = parse_params(
        {"latents": {"workers": workers, "batch_size": batch_size, "chunk_size": chunk_size, "device": "cpu"}}
    )
    started = time.perf_counter()
    latents.run(params, Layout(root))
    print(
        json.dumps(
            {
                "main_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "time_s": time.perf_counter() - started,
            }
        )
    )


def measure(root: Path, args: argparse.Namespace) -> dict[str, float]:
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
        "PYTHONPATH": str(REPO),
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
    }
    cmd = [
        sys.executable,
        __file__,
        "--child",
        str(root),
        "--workers",
        str(args.workers),
        "--batch-size",
        str(args.batch_size),
        "--chunk-size",
        str(args.chunk_size),
    ]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"latents stage failed on {root}:\n{done.stderr[-4000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["latents_mb"] = sum(p.stat().st_size for p in (root / "data/processed/latents").glob("chunk-*.npy")) / 2**20
    return result


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs=2, default=(2000, 20000), metavar=("SMALL", "LARGE"))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--chunk-size", type=int, default=4096)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.workers, args.batch_size, args.chunk_size)
        return 0.0

    sys.path.insert(0, str(REPO))  # the repository root: tests.helpers
    from tests.helpers.tiny_sd import build_tiny_sd

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        base = build_tiny_sd(Path(tmp) / "sd", resolution=IMAGE_SIZE)
        for size in args.sizes:
            root = Path(tmp) / f"n{size}"
            write_dataset(root, size, base)
            results[size] = measure(root, args)
    print(
        f"latents stage, tiny VAE, {IMAGE_SIZE} px → 4×{IMAGE_SIZE // 2}×{IMAGE_SIZE // 2} latents, both flips, "
        f"workers {args.workers}, batch {args.batch_size}, chunk {args.chunk_size}"
    )
    print(f"{'images':>8} {'latents on disk':>16} {'peak RSS':>10} {'time':>8}")
    for size, r in results.items():
        print(f"{size:>8} {r['latents_mb']:>13.1f} MB {r['main_mb']:>7.0f} MB {r['time_s']:>6.1f} s")
    small, large = (results[s] for s in args.sizes)
    ratio = large["main_mb"] / small["main_mb"]
    print(
        f"peak RSS ratio ({args.sizes[1]} / {args.sizes[0]} images): {ratio:.2f}x "
        f"for {large['latents_mb'] / small['latents_mb']:.1f}x the data"
    )
    return ratio


if __name__ == "__main__":
    main()
