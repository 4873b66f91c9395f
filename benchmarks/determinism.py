"""What "same params → same numbers" means, measured: stage 1 at the default params.

Renders the default synthetic EmoSet into a temp dir, then trains stage 1 (default params):
twice with the same seed (on one machine the weights must be bit-identical) and once per
further seed. The seed-to-seed spread of the test accuracy is the scale on which numbers
move when floating-point kernels differ (another CPU kind, another torch build): the
tolerances docs/determinism.md states for its quoted numbers come from this spread.

    python benchmarks/determinism.py               # seeds 520 (twice), 521, 522, 523
    python benchmarks/determinism.py --seeds 520 521
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

import pandas as pd
import torch
from safetensors.torch import load_file

from emogen.config import parse_params
from emogen.layout import Layout
from emogen.seeding import stage_seed
from emogen.stages import ingest
from emogen.stages import prepare_data as prepare
from emogen.stages.stage1 import train_encoder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[520, 521, 522, 523])
    args = parser.parse_args()
    # One rendering/ingest process (same files for any count): worker processes would re-import
    # this script by its relative path after the chdir below.
    params = parse_params({"prepare_data": {"workers": 1}, "ingest": {"workers": 1}})
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
        os.chdir(root)
        layout = Layout(root)
        prepare.run(params, layout)
        ingest.run(params, layout)
        manifest = pd.read_parquet(layout.manifest)
        cfg = params.stage1.model_copy(update={"checkpoint_dir": str(root / "ckpt")})
        accuracy = {}
        for run, seed in enumerate([args.seeds[0], *args.seeds]):
            out = root / f"model-{run}"
            result = train_encoder(cfg, manifest, layout.synthetic, out, stage_seed(seed, "stage1"), layout=layout)
            accuracy.setdefault(seed, []).append(result.accuracy["test"])
            print(f"seed {seed}: test accuracy {result.accuracy['test']:.4f}", flush=True)
        a, b = load_file(root / "model-0" / "model.safetensors"), load_file(root / "model-1" / "model.safetensors")
        identical = a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
        print(f"same seed twice: weights bit-identical: {identical}; test accuracy {accuracy[args.seeds[0]]}")
        firsts = [runs[0] for runs in accuracy.values()]
        if len(firsts) > 1:
            print(
                f"across {len(firsts)} seeds: mean {statistics.mean(firsts):.4f}, "
                f"std {statistics.stdev(firsts):.4f}, range {min(firsts):.4f}–{max(firsts):.4f}"
            )


if __name__ == "__main__":
    main()
