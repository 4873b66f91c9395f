"""Servers the tests start on 127.0.0.1: a free port, waiting for one to answer, a real MLflow
tracking server, and stopping a server with its whole process group."""

import contextlib
import os
import signal
import subprocess
from pathlib import Path


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_http(url: str, proc, timeout: float = 120.0) -> None:
    """Poll ``url`` until it answers 200; fail with the server's log if ``proc`` dies first."""
    import time
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


def start_mlflow_server(folder: Path):
    """A real ``mlflow server`` (SQLite backend, artifacts served) on a free 127.0.0.1 port:
    → (process, uri). The caller stops it."""
    import sys

    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    mlflow_bin = Path(sys.executable).parent / "mlflow"
    proc = subprocess.Popen(
        [
            str(mlflow_bin),
            "server",
            "--backend-store-uri",
            f"sqlite:///{folder / 'mlflow.db'}",
            "--artifacts-destination",
            str(folder / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        stdout=(folder / "server.log").open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: stop_server ends its workers too
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{uri}/health", proc)
    except Exception:
        stop_server(proc)
        raise
    return proc, uri


def stop_server(proc, sig=None) -> None:
    """End a server started in its own process group, workers included (SIGKILL by default).
    A gentler ``sig`` (SIGINT: Prefect's graceful shutdown) gets 30 s, then SIGKILL (a served
    Prefect process started with SIGINT ignored never ends on it: see the top of this file)."""
    for signum in (sig or signal.SIGKILL, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signum)
        try:
            proc.wait(timeout=30)
            return
        except subprocess.TimeoutExpired:
            if signum == signal.SIGKILL:
                raise
