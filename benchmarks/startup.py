"""Start-up of every stage process: the seconds ``emogen stage <name>`` spends importing before
it runs (issue 20 point 5), each in a fresh interpreter.

Per stage: the wall time of ``python -c "import emogen.cli; import <entry module>"`` minus a
bare interpreter's (``python -c pass``), the best of ``--repeat`` runs; the heavy libraries the
import loaded (torch, diffusers, transformers, mlflow, great_expectations, ...) with their
cumulative import time from ``-X importtime`` (of the fastest run); and the target: ≤ 3 s for a
data stage, ≤ 5 s for a torch stage. The machine must be otherwise idle for the absolute
numbers to mean much.

    python benchmarks/startup.py                        # every stage (~2 min)
    python benchmarks/startup.py --stages ingest,generate --repeat 1 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from emogen.cli import STAGES  # noqa: E402 - imports nothing heavy (tests/test_threads.py)

DATA_STAGES = {"prepare_data", "ingest", "validate", "balance"}
TARGET_DATA_S, TARGET_TORCH_S = 3.0, 5.0
HEAVY = (
    "torch",
    "diffusers",
    "transformers",
    "accelerate",
    "mlflow",
    "great_expectations",
    "sklearn",
    "scipy",
    "pandas",
    "pyarrow",
    "matplotlib",
    "sqlalchemy",
    "alembic",
    "prefect",
    "dvc",
    "PIL",
    "numpy",
)


def _env() -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        "HF_HUB_OFFLINE": "1",
    }


def _timed(code: str, importtime: bool = False) -> tuple[float, str]:
    cmd = [sys.executable] + (["-X", "importtime"] if importtime else []) + ["-c", code]
    start = time.perf_counter()
    out = subprocess.run(cmd, env=_env(), cwd=REPO, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if out.returncode != 0:
        raise SystemExit(f"{code!r} failed:\n{out.stderr[-2000:]}")
    return seconds, out.stderr


def heavy_modules(importtime_log: str) -> dict[str, float]:
    """Top-level packages of HEAVY that were imported → their cumulative import seconds."""
    found: dict[str, float] = {}
    for line in importtime_log.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = (part.strip() for part in line[len("import time:") :].split("|"))
        if name in HEAVY and cumulative.isdigit():
            found[name] = max(found.get(name, 0.0), int(cumulative) / 1e6)
    return found


def measure(stage: str, repeat: int, bare: float) -> dict:
    module = STAGES[stage].partition(":")[0]
    code = f"import emogen.cli; import {module}"
    best, log = min((_timed(code, importtime=True) for _ in range(repeat)), key=lambda r: r[0])
    target = TARGET_DATA_S if stage in DATA_STAGES else TARGET_TORCH_S
    seconds = best - bare
    return {
        "stage": stage,
        "module": module,
        "seconds": round(seconds, 2),
        "target": target,
        "ok": seconds <= target,
        "heavy": {k: round(v, 2) for k, v in sorted(heavy_modules(log).items())},
    }


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stages", help="comma-separated (default: every stage)")
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs per stage, the fastest counts (default %(default)s)"
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    stages = args.stages.split(",") if args.stages else list(STAGES)
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise SystemExit(f"unknown stages {unknown}; known: {', '.join(STAGES)}")
    bare = min(_timed("pass")[0] for _ in range(args.repeat))
    print(f"bare interpreter: {bare:.2f} s (subtracted); best of {args.repeat}")
    print(f"{'stage':<28} {'import s':>8} {'target':>6}  heavy libraries loaded (cumulative import s)")
    rows = []
    for stage in stages:
        row = measure(stage, args.repeat, bare)
        rows.append(row)
        heavy = ", ".join(f"{k} {v:.2f}" for k, v in sorted(row["heavy"].items(), key=lambda kv: -kv[1]))
        print(
            f"{stage:<28} {row['seconds']:>8.2f} {row['target']:>5.0f}s  {'ok  ' if row['ok'] else 'OVER'} {heavy}",
            flush=True,
        )
    if args.json:
        args.json.write_text(json.dumps({"bare_s": bare, "stages": rows}, indent=1) + "\n")
    return rows


if __name__ == "__main__":
    main()
