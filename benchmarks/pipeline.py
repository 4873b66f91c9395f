"""Cold time of the default DAG: `dvc repro` in a fresh clone, per stage, with its import share.

Clones the repository's HEAD (``git clone``: committed work only) into a temporary folder,
gives the clone its own DVC cache (so nothing is restored from a run cache), its own MLflow
store and its own ``XDG_CACHE_HOME`` (stage 1 checkpoints and stage 2 training tensors are
not reused either), runs ``dvc repro --force`` (or ``dvc repro --force <target>``: a stage whose
git-tracked metrics still match the committed dvc.lock would otherwise be skipped, as evaluate
and intensity were when generate reproduced its images byte for byte) and prints, per stage, its
wall time (from DVC's "Running stage" lines: includes DVC's own hashing), the time its
process spends importing (``import emogen.cli, <the stage's module>`` timed in a separate
process, minus a bare interpreter's start) and that share; then the total against the 12-minute
budget (issue 8). Threads are what a user's ``dvc repro`` gets: the thread policy
(emogen/threads.py: every core for a stage running alone) unless ``OMP_NUM_THREADS`` is set in
your environment, which passes through. The machine must be otherwise idle for the absolute numbers to mean much;
the shares hold on a loaded machine too.

    python benchmarks/pipeline.py                         # the whole default DAG (~10 min on 2 cores)
    python benchmarks/pipeline.py --target ingest -S prepare_data.num_images=240 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from emogen.threads import USER_ENV  # noqa: E402 - imports nothing heavy

# What overrides the thread policy, and OpenMP's wait policy (changes the times, not the bits).
THREAD_ENV = (*USER_ENV, "OMP_WAIT_POLICY")
BUDGET_S = 12 * 60
_STAGE_LINE = re.compile(r"Running stage '([\w@-]+)'")


def set_param(params: dict, assignment: str) -> None:
    """``a.b=value`` (value parsed as YAML) into the params mapping, like ``dvc exp run -S``."""
    key, sep, value = assignment.partition("=")
    if not sep:
        raise SystemExit(f"-S {assignment!r}: expected key=value")
    *parents, leaf = key.split(".")
    node = params
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = yaml.safe_load(value)


def clone(repo: Path, into: Path, overrides: list[str]) -> Path:
    clone_dir = into / "repo"
    subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(repo), str(clone_dir)], check=True)
    subprocess.run(["dvc", "cache", "dir", "--local", str(into / "dvc-cache")], cwd=clone_dir, check=True)
    if overrides:
        params = yaml.safe_load((clone_dir / "params.yaml").read_text())
        for assignment in overrides:
            set_param(params, assignment)
        (clone_dir / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return clone_dir


def environment(workdir: Path, clone_dir: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(clone_dir),  # the clone's code, not an editable install elsewhere
        "MLFLOW_TRACKING_URI": f"sqlite:///{workdir / 'mlflow.db'}",
        "XDG_CACHE_HOME": str(workdir / "cache"),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }


def run_repro(clone_dir: Path, env: dict[str, str], target: str | None) -> tuple[dict[str, float], float]:
    """Seconds per stage (in run order) and the total, timed from DVC's streamed output."""
    cmd = ["dvc", "repro", "--force", *([target] if target else [])]
    start = time.perf_counter()
    stages: dict[str, float] = {}
    current, since = None, start
    with subprocess.Popen(
        cmd, cwd=clone_dir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    ) as proc:
        tail: list[str] = []
        for line in proc.stdout:
            tail = (tail + [line])[-40:]
            match = _STAGE_LINE.search(line)
            if match:
                now = time.perf_counter()
                if current:
                    stages[current] = now - since
                current, since = match.group(1), now
                print(f"  {current} ...", flush=True)
    end = time.perf_counter()
    if proc.returncode:
        raise SystemExit(f"dvc repro failed ({proc.returncode}):\n{''.join(tail)}")
    if current:
        stages[current] = end - since
    return stages, end - start


def stage_modules(clone_dir: Path, names: list[str]) -> dict[str, str]:
    """DVC stage → the module its ``emogen stage <name>`` command imports (from the resolved lock)."""
    lock = yaml.safe_load((clone_dir / "dvc.lock").read_text())["stages"]
    sys.path.insert(0, str(clone_dir))
    from emogen.cli import STAGES

    modules = {}
    for name in names:
        command = lock[name]["cmd"]
        stage = command.split("emogen stage ", 1)[1].split()[0]
        modules[name] = STAGES[stage].partition(":")[0]
    return modules


def interpreter_seconds(code: str, env: dict[str, str], clone_dir: Path, repeats: int = 2) -> float:
    """Best of ``repeats`` wall times of a fresh interpreter running ``code``."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], cwd=clone_dir, env=env, check=True)
        best = min(best, time.perf_counter() - start)
    return best


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", type=Path, default=REPO, help="repository to clone (default: this one)")
    parser.add_argument("--target", help="dvc repro only up to this stage (default: the whole DAG)")
    parser.add_argument(
        "-S",
        "--set",
        dest="overrides",
        action="append",
        default=[],
        help="params override key=value in the clone (repeatable)",
    )
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    parser.add_argument("--keep", action="store_true", help="keep the temporary clone")
    args = parser.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="emogen-bench-"))
    clone_dir = clone(args.repo.resolve(), workdir, args.overrides)
    env = environment(workdir, clone_dir)
    print(f"dvc repro {args.target or ''} in {clone_dir} (fresh DVC cache, MLflow store, XDG cache)", flush=True)
    # A set OMP_NUM_THREADS overrides the thread policy and changes both the times and the bits.
    thread_env = {key: os.environ[key] for key in THREAD_ENV if os.environ.get(key)}
    print(f"thread settings from the environment: {thread_env or 'none (the thread policy decides)'}", flush=True)
    stages, total = run_repro(clone_dir, env, args.target)

    start_up = interpreter_seconds("pass", env, clone_dir)
    cli = interpreter_seconds("import emogen.cli", env, clone_dir) - start_up
    modules = stage_modules(clone_dir, list(stages))
    imports = {
        name: interpreter_seconds(f"import emogen.cli, {module}", env, clone_dir) - start_up
        for name, module in modules.items()
    }
    rows = []
    print(f"\n{'stage':<30}{'seconds':>9}{'import s':>10}{'import %':>10}{'share %':>9}")
    for name, seconds in stages.items():
        imported = imports[name]
        rows.append(
            {
                "stage": name,
                "seconds": round(seconds, 2),
                "import_seconds": round(imported, 2),
                "import_share": round(imported / seconds, 4),
                "share_of_total": round(seconds / total, 4),
            }
        )
        print(
            f"{name:<30}{seconds:>9.1f}{imported:>10.1f}{100 * imported / seconds:>10.0f}{100 * seconds / total:>9.0f}"
        )
    import_total = sum(imports.values())
    print(f"{'total':<30}{total:>9.1f}{import_total:>10.1f}{100 * import_total / total:>10.0f}")
    print(f"(of each stage's import time, `import emogen.cli` alone: {cli:.1f} s; interpreter start {start_up:.2f} s)")
    print(f"budget {BUDGET_S} s: {total / BUDGET_S:.2f} of it ({'within' if total <= BUDGET_S else 'OVER'})")
    result = {
        "total_seconds": round(total, 2),
        "import_seconds": round(import_total, 2),
        "budget_seconds": BUDGET_S,
        "cli_import_seconds": round(cli, 2),
        "interpreter_start_seconds": round(start_up, 2),
        "stages": rows,
        "overrides": args.overrides,
        "target": args.target,
        "cpu_count": os.cpu_count(),
        "thread_environment": thread_env,
    }
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        print(f"kept {workdir}")
    return result


if __name__ == "__main__":
    main()
