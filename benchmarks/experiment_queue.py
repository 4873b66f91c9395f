"""Two seeds as DVC experiments: one after the other (``dvc queue start -j 1``) against side by
side (``dvc queue start -j 2``), in a scratch clone of the repository (issue 20 point 3).

The clone gets its own DVC cache and MLflow store, a dvc.lock cut to the target and its upstream
stages (a finished experiment collects every output dvc.lock names), and small params (``SMALL`` below, plus your
``-S key=value``), committed there. Each mode queues ``dvc exp run --queue <target> -S seed=N``
for two seeds of its own (four distinct seeds in all, so that no mode reuses the other's DVC run
cache), starts the queue and waits until both experiments have finished. Printed: each mode's
wall time, when each experiment finished, and the speed-up of ``-j 2``. Every stage applies the
thread policy (emogen/threads.py): side by side, the two experiments' stages share the cores.

    python benchmarks/experiment_queue.py                          # data stages + base_model, ~10 min on 2 idle cores
    python benchmarks/experiment_queue.py --target stage1 -S stage1.epochs=2 --json out.json
    python benchmarks/experiment_queue.py --target report          # the whole DAG (long)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from pipeline import set_param  # benchmarks/pipeline.py (this folder is on sys.path when run)

REPO = Path(__file__).resolve().parents[1]
# Small but real: the base model's UNet still trains for a few hundred steps (the stage whose
# threads collapsed when two processes shared the cores).
SMALL = [
    "prepare_data.num_images=800",
    "base_model.contrastive.steps=100",
    "base_model.unet.steps=200",
    "base_model.eval_captions=16",
]
STATES = ("Queued", "Running", "Success", "Failed")


def _run(cmd: list[str], cwd: Path, env: dict[str, str]) -> str:
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if out.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stdout[-2000:]}{out.stderr[-2000:]}")
    return out.stdout


def trim_lock(clone: Path, target: str) -> None:
    """Keep in dvc.lock only ``target`` and its upstream stages: a finished experiment collects
    every output dvc.lock names, and the downstream ones are in no cache of the clone."""
    sys.path.insert(0, str(clone))
    from emogen.orchestration import dag_stages

    here = Path.cwd()
    os.chdir(clone)  # DVC names stages relative to the working directory
    try:
        keep = set(dag_stages(clone, target))
    finally:
        os.chdir(here)
    path = clone / "dvc.lock"
    lock = yaml.safe_load(path.read_text())
    lock["stages"] = {name: entry for name, entry in lock.get("stages", {}).items() if name in keep}
    path.write_text(yaml.safe_dump(lock, sort_keys=False))


def scratch_clone(repo: Path, workdir: Path, overrides: list[str], target: str) -> tuple[Path, dict[str, str]]:
    clone = workdir / "repo"
    subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(repo), str(clone)], check=True)
    env = {
        **os.environ,
        "PYTHONPATH": str(clone),  # the clone's code, also inside DVC's temporary experiment copies
        "MLFLOW_TRACKING_URI": f"sqlite:///{workdir / 'mlflow.db'}",
        "XDG_CACHE_HOME": str(workdir / "cache"),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    _run(["dvc", "cache", "dir", "--local", str(workdir / "dvc-cache")], clone, env)
    trim_lock(clone, target)
    params = yaml.safe_load((clone / "params.yaml").read_text())
    for assignment in overrides:
        set_param(params, assignment)
    (clone / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    _run(
        ["git", "-c", "user.name=bench", "-c", "user.email=bench@localhost", "commit", "-qam", "small params"],
        clone,
        env,
    )
    return clone, env


def queue_status(clone: Path, env: dict[str, str]) -> dict[str, str]:
    """Experiment name → Queued | Running | Success | Failed (``dvc queue status``: Task, Name, Created, Status)."""
    rows = (line.split() for line in _run(["dvc", "queue", "status"], clone, env).splitlines())
    return {row[1]: row[-1] for row in rows if len(row) >= 4 and row[-1] in STATES}


def run_mode(clone: Path, env: dict[str, str], target: str, seeds: list[int], jobs: int) -> dict:
    names = []
    for seed in seeds:
        name = f"j{jobs}-seed{seed}"
        _run(["dvc", "exp", "run", "--queue", "-n", name, target, "-S", f"seed={seed}"], clone, env)
        names.append(name)
    start = time.perf_counter()
    _run(["dvc", "queue", "start", "-j", str(jobs)], clone, env)
    finished: dict[str, float] = {}
    while len(finished) < len(names):
        time.sleep(2)
        status = queue_status(clone, env)
        for name in names:
            if name not in finished and status.get(name) in ("Success", "Failed"):
                finished[name] = time.perf_counter() - start
                print(f"  {name}: {status[name]} after {finished[name]:.0f} s", flush=True)
                if status[name] == "Failed":
                    log = subprocess.run(
                        ["dvc", "queue", "logs", name], cwd=clone, env=env, capture_output=True, text=True, check=False
                    )
                    raise SystemExit(f"experiment {name} failed:\n{log.stdout[-3000:]}")
    wall = max(finished.values())
    _run(["dvc", "queue", "stop"], clone, env)
    return {
        "jobs": jobs,
        "seeds": seeds,
        "wall_s": round(wall, 1),
        "finished_s": {k: round(v, 1) for k, v in finished.items()},
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=REPO, help="repository to clone (its HEAD; default: this one)")
    parser.add_argument(
        "--target", default="base_model", help="the stage each experiment runs up to (default %(default)s)"
    )
    parser.add_argument(
        "-S",
        "--set",
        dest="overrides",
        action="append",
        default=[],
        help="params override key=value in the clone, after SMALL (repeatable)",
    )
    parser.add_argument("--no-small", action="store_true", help="the repository's own params, not SMALL")
    parser.add_argument("--seeds", default="601,602,603,604", help="two seeds for -j 1, two for -j 2")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--keep", action="store_true", help="keep the scratch clone (default: removed)")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    if len(seeds) != 4 or len(set(seeds)) != 4:
        raise SystemExit("--seeds: four distinct seeds (two per mode: no mode may reuse the other's run cache)")
    workdir = Path(tempfile.mkdtemp(prefix="emogen-queue-"))
    clone, env = scratch_clone(
        args.repo.resolve(), workdir, ([] if args.no_small else SMALL) + args.overrides, args.target
    )
    print(f"{os.cpu_count()} cores; `dvc exp run --queue {args.target}` × 2 seeds per mode in {clone}", flush=True)
    serial = run_mode(clone, env, args.target, seeds[:2], jobs=1)
    print(f"one after the other (-j 1): {serial['wall_s']:.0f} s", flush=True)
    parallel = run_mode(clone, env, args.target, seeds[2:], jobs=2)
    print(f"side by side (-j 2):        {parallel['wall_s']:.0f} s", flush=True)
    speedup = serial["wall_s"] / parallel["wall_s"]
    print(f"-j 2 vs -j 1: {speedup:.2f}x faster" if speedup >= 1 else f"-j 2 vs -j 1: {1 / speedup:.2f}x slower")
    result = {
        "cores": os.cpu_count(),
        "target": args.target,
        "overrides": args.overrides,
        "small": not args.no_small,
        "serial": serial,
        "parallel": parallel,
        "speedup": round(speedup, 2),
    }
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    if args.keep:
        print(f"scratch clone kept: {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return result


if __name__ == "__main__":
    main()
