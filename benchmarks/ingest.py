"""Ingest speed on an EmoSet-118K-sized set: the target is ≤ 60 s on 2 cores.

Renders a synthetic EmoSet of 118,102 images (EmoSet-118K's size) into a temp dir, or
takes an existing EmoSet folder, then times ``emogen.stages.ingest.ingest`` (annotations +
image headers, no full decode unless --decode; manifest, quarantine and metrics written;
no MLflow) and prints the time as a ratio of the budget.

    python benchmarks/ingest.py                    # render 118,102 images (~1 GB of small files), then ingest
    python benchmarks/ingest.py --root /data/EmoSet-118K --workers 8
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from emogen.config import parse_params
from emogen.layout import Layout
from emogen.stages.ingest import ingest
from emogen.stages.prepare_data import record_fingerprint, render_synthetic

BUDGET_S = 60.0
EMOSET_118K = 118_102


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, help="an existing EmoSet folder (default: render a synthetic one)")
    parser.add_argument("--num-images", type=int, default=EMOSET_118K)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--decode", action="store_true", help="decode every image fully (ingest.decode_images)")
    parser.add_argument("--keep", action="store_true", help="keep the rendered set and outputs")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="emogen-bench-ingest-"))
    layout = Layout(work)
    try:
        if args.root:
            data = {"source": "emoset", "root": str(args.root.resolve())}
            record_fingerprint(args.root, layout.fingerprint)
        else:
            data = {"source": "synthetic"}
            start = time.perf_counter()
            render_synthetic(
                parse_params({"prepare_data": {"num_images": args.num_images, "workers": args.workers}}),
                layout.synthetic,
            )
            print(f"rendered {args.num_images} images in {time.perf_counter() - start:.1f} s ({layout.synthetic})")
        params = parse_params({"data": data, "ingest": {"workers": args.workers, "decode_images": args.decode}})
        start = time.perf_counter()
        metrics = ingest(params, layout)
        seconds = time.perf_counter() - start
        print(json.dumps({k: metrics[k] for k in ("entries", "rows", "quarantined", "per_split")}))
        print(
            f"ingest: {metrics['entries']} entries in {seconds:.1f} s with {args.workers} workers "
            f"({metrics['entries'] / seconds:,.0f} entries/s, decode={args.decode})"
        )
        print(
            f"ratio to the {BUDGET_S:.0f} s budget: {seconds / BUDGET_S:.2f} "
            f"({'within' if seconds <= BUDGET_S else 'OVER'} budget; page cache warm after rendering)"
        )
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
