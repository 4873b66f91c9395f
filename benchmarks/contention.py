"""Stage-like torch workloads run 1, 2 and 3 at once, under the old and the new thread policy,
side by side in one run (issue 20).

Workloads, built from params.yaml as the base_model stage builds them (emogen.base.embedded_unet):
- ``train``: one training step of the embedded UNet (batch ``base_model.unet.batch_size``,
  random images and text states of the right shapes, Min-SNR loss, AdamW);
- ``generate``: one denoising step of a generation batch (``generate.batch_size`` images,
  classifier-free guidance: the UNet sees twice the batch, no gradients).

Policies (each worker is a fresh process, so OpenMP reads its environment at load):
- ``old``: today's ``base_model``: every core, OpenMP's default wait policy (``OMP_*`` removed
  from the environment);
- ``new``: emogen/threads.py (``apply_thread_policy`` before torch loads, ``recheck_threads``
  between steps), with a private process registry so that other users' runs do not count;
- ``new-passive`` (optional, ``--policies old,new,new-passive``): the same with
  ``OMP_WAIT_POLICY=PASSIVE``.

N workers of one workload and policy build their model, take ``--warmup`` steps alone, then
wait for each other and run together for ``--seconds``; a step counts if it ended within that
window (so no worker ever runs alone at the end; a worker whose first step outlasts the window
reports the window as a lower bound, printed "≥"). Printed per workload: each policy's median
step time at 1, 2, 3 processes, the ratio to the idle single run under the old policy (today),
and the throughput of all N together relative to that run; then the targets:
- two at once, new policy: each step within 2.5× of the idle single run, together ≥ 0.8× its throughput;
- one alone, new policy: no slower than the old policy by more than 10 %.

The machine must be otherwise idle for the figures to mean anything.

    python benchmarks/contention.py                              # ~6 min on 2 cores
    python benchmarks/contention.py --workloads train --counts 1,2 --seconds 10 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY", "OPENBLAS_NUM_THREADS")
TARGET_EACH, TARGET_TOGETHER, TARGET_ALONE = 2.5, 0.8, 1.10


# ---------------------------------------------------------------- worker (one process)


def _worker(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(REPO))
    from emogen.config import load_params

    params = load_params(args.params)
    threads = None
    if args.policy.startswith("new"):
        from emogen import threads

        threads.apply_thread_policy(params)  # before torch loads, as the `emogen` entry does
    import torch
    import torch.nn.functional as F
    from diffusers.training_utils import compute_snr

    from emogen.base.embedded_unet import build_scheduler, build_unet

    bp = params.base_model
    torch.manual_seed(0)
    unet = build_unet(bp.unet, bp.resolution, bp.contrastive.text_width)
    scheduler = build_scheduler(bp.unet)
    shape = (3, bp.resolution, bp.resolution)
    if args.workload == "train":
        batch = bp.unet.batch_size
        optimizer = torch.optim.AdamW(unet.parameters(), lr=bp.unet.lr)
        unet.train()
        states = torch.randn(batch, bp.max_length, bp.contrastive.text_width)

        def step() -> None:
            x0 = torch.rand(batch, *shape) * 2 - 1
            noise = torch.randn_like(x0)
            t = torch.randint(bp.unet.num_train_timesteps, (batch,))
            pred = unet(scheduler.add_noise(x0, noise, t), t, encoder_hidden_states=states).sample
            snr = compute_snr(scheduler, t)
            loss = (
                F.mse_loss(pred, noise, reduction="none").mean(dim=(1, 2, 3)) * snr.clamp(max=bp.unet.snr_gamma) / snr
            ).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    else:
        batch = 2 * params.generate.batch_size  # classifier-free guidance: conditional + empty prompt
        unet.eval().requires_grad_(False)
        states = torch.randn(batch, bp.max_length, bp.contrastive.text_width)
        latents = torch.randn(batch, *shape)

        def step() -> None:
            with torch.no_grad():
                t = torch.full((batch,), 500)
                eps = unet(latents, t, encoder_hidden_states=states).sample
                latents.sub_(0.01 * eps)

    for _ in range(args.warmup):
        step()
    Path(args.sync, f"ready-{os.getpid()}").touch()
    go = Path(args.sync, "go")
    while not go.exists():
        time.sleep(0.005)
    start = float(go.read_text() or time.time())
    while time.time() < start:
        time.sleep(0.001)
    if threads is not None:
        threads.recheck_threads(force=True)  # every worker registered by now: the steady state
    end, durations, current = start + args.seconds, [], [start]
    n_threads = torch.get_num_threads()

    def report() -> None:  # at the window's end, whatever step is running: no one runs alone after it
        time.sleep(max(0.0, end - time.time()))
        # No step ended within the window: the running one took at least this long (a lower bound).
        print(
            json.dumps(
                {
                    "pid": os.getpid(),
                    "durations": list(durations),
                    "threads": n_threads,
                    "at_least": None if durations else end - current[0],
                }
            ),
            flush=True,
        )
        os._exit(0)

    threading.Thread(target=report, daemon=True).start()
    while True:
        if threads is not None:
            threads.recheck_threads()
        current[0] = t0 = time.time()
        step()
        durations.append(time.time() - t0)


# ---------------------------------------------------------------- driver


def _env(policy: str, registry: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in THREAD_ENV}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["EMOGEN_PROCS_DIR"] = str(registry)
    if policy == "new-passive":
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    return env


def run_group(workload: str, policy: str, count: int, args: argparse.Namespace) -> dict:
    """``count`` workers at once → their median step times and thread counts."""
    with tempfile.TemporaryDirectory(prefix="emogen-contention-") as tmp:
        sync, registry = Path(tmp, "sync"), Path(tmp, "procs")
        sync.mkdir()
        cmd = [
            sys.executable,
            __file__,
            "--worker",
            "--workload",
            workload,
            "--policy",
            policy,
            "--sync",
            str(sync),
            "--seconds",
            str(args.seconds),
            "--warmup",
            str(args.warmup),
            "--params",
            str(args.params),
        ]
        procs = [
            subprocess.Popen(cmd, env=_env(policy, registry), stdout=subprocess.PIPE, text=True, cwd=REPO)
            for _ in range(count)
        ]
        while len(list(sync.glob("ready-*"))) < count:
            if any(p.poll() not in (None, 0) for p in procs):
                break
            time.sleep(0.05)
        (sync / "go").write_text(str(time.time() + 0.5))
        results = []
        for proc in procs:
            out, _ = proc.communicate(timeout=args.seconds * 20 + 600)
            if proc.returncode != 0:
                raise SystemExit(f"{workload}/{policy} worker failed (exit {proc.returncode})")
            results.append(json.loads(out.strip().splitlines()[-1]))
    medians = [statistics.median(r["durations"]) if r["durations"] else r["at_least"] for r in results]
    return {
        "workload": workload,
        "policy": policy,
        "processes": count,
        "step_s": medians,
        "steps": [len(r["durations"]) for r in results],
        "threads": [r["threads"] for r in results],
        "lower_bound": [not r["durations"] for r in results],
    }


def summarize(rows: list[dict]) -> tuple[list[str], dict[str, bool]]:
    """Table lines and the targets' verdicts (per workload) from the groups' results."""
    lines, verdicts = [], {}
    for workload in dict.fromkeys(r["workload"] for r in rows):
        mine = {(r["policy"], r["processes"]): r for r in rows if r["workload"] == workload}
        ref = mine.get(("old", 1))
        ref_s = statistics.mean(ref["step_s"]) if ref else float("nan")
        lines.append(f"{workload}: idle single run, old policy: {ref_s * 1000:.1f} ms/step")
        lines.append(
            f"  {'policy':<12} {'procs':>5} {'threads':>8} {'ms/step (each)':>22} {'vs idle':>8} {'throughput':>10}"
        )
        for (policy, count), r in mine.items():
            each = statistics.mean(r["step_s"])
            steps = "/".join(f"{'≥' if low else ''}{s * 1000:.1f}" for s, low in zip(r["step_s"], r["lower_bound"]))
            lines.append(
                f"  {policy:<12} {count:>5} {'/'.join(map(str, r['threads'])):>8} {steps:>22} "
                f"{each / ref_s:>7.2f}x {count * ref_s / each:>9.2f}x"
            )
        new1, new2 = mine.get(("new", 1)), mine.get(("new", 2))
        if ref and new2:
            worst = max(new2["step_s"]) / ref_s
            together = 2 * ref_s / statistics.mean(new2["step_s"])
            verdicts[f"{workload}: two at once, each ≤ {TARGET_EACH}x"] = worst <= TARGET_EACH
            verdicts[f"{workload}: two at once, together ≥ {TARGET_TOGETHER}x"] = together >= TARGET_TOGETHER
            lines.append(
                f"  two at once (new): slowest {worst:.2f}x of idle (target ≤ {TARGET_EACH}x), "
                f"together {together:.2f}x idle throughput (target ≥ {TARGET_TOGETHER}x)"
            )
        if ref and new1:
            alone = statistics.mean(new1["step_s"]) / ref_s
            verdicts[f"{workload}: one alone, ≤ {TARGET_ALONE:.2f}x of today"] = alone <= TARGET_ALONE
            lines.append(f"  one alone (new): {alone:.2f}x of today (target ≤ {TARGET_ALONE:.2f}x)")
    return lines, verdicts


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", default="train,generate")
    parser.add_argument("--policies", default="old,new")
    parser.add_argument("--counts", default="1,2,3")
    parser.add_argument("--seconds", type=float, default=20.0, help="timed window of each group (default %(default)s)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps, alone, before the window")
    parser.add_argument("--params", type=Path, default=REPO / "params.yaml")
    parser.add_argument("--json", type=Path, help="also write the results here")
    # internal: one worker
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--workload", choices=("train", "generate"), help=argparse.SUPPRESS)
    parser.add_argument("--policy", choices=("old", "new", "new-passive"), help=argparse.SUPPRESS)
    parser.add_argument("--sync", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        _worker(args)
        return {}
    workloads, policies = args.workloads.split(","), args.policies.split(",")
    counts = [int(c) for c in args.counts.split(",")]
    if "old" not in policies:
        policies.insert(0, "old")  # the reference: today's idle single run
    print(
        f"{os.cpu_count()} cores; {args.seconds:g} s per group after {args.warmup} warm-up steps; params {args.params}"
    )
    rows = []
    for workload in workloads:
        for count in counts:
            for policy in policies:
                rows.append(run_group(workload, policy, count, args))
                r = rows[-1]
                print(
                    f"  {workload} × {count} {policy}: "
                    + ", ".join(
                        f"{'≥' if low else ''}{s * 1000:.1f} ms/step ({n} steps, {t} threads)"
                        for s, n, t, low in zip(r["step_s"], r["steps"], r["threads"], r["lower_bound"])
                    ),
                    flush=True,
                )
    lines, verdicts = summarize(rows)
    print("\n".join(lines))
    for name, ok in verdicts.items():
        print(f"{'PASS' if ok else 'FAIL'}  {name}")
    result = {"cores": os.cpu_count(), "seconds": args.seconds, "rows": rows, "targets": verdicts}
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
