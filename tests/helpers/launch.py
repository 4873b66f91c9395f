"""`accelerate launch` of an emogen stage as 2 processes on the CPU (torch distributed with gloo),
from the command line the docs give for N GPUs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.helpers.paths import REPO
from tests.helpers.servers import free_port


def cpu_launch_command(line: str) -> list[str]:
    """``accelerate launch --multi_gpu --num_processes N -m emogen stage <name>`` → the same for
    2 processes, with the flags accelerate would otherwise warn about filled in and a free port
    for the process group (not 29500: another test worker may hold it)."""
    launcher, *flags = re.sub(r"--num_processes \d+", "--num_processes 2", line).split()
    return [
        str(Path(sys.executable).parent / launcher),
        *flags[:4],
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(free_port()),
        *flags[4:],
    ]


def run_on_cpu(cmd: list[str], root: Path) -> subprocess.CompletedProcess:
    """Run ``cmd`` in ``root`` with the repository's code, no GPU, accelerate on the CPU and an
    MLflow store in ``root``."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
        "CUDA_VISIBLE_DEVICES": "",
        "ACCELERATE_USE_CPU": "true",
    }
    return subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=600)
