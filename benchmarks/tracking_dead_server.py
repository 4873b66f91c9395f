"""Seconds a dead tracking server costs one stage run (emogen.tracking's bounded HTTP settings).

Three servers, each with a stage run that logs params, 20 metric calls and one artifact:
- closed: nothing listens on the port (connection refused) → fallback to the local store;
- silent: a socket accepts and never answers (a hung server) → timeouts, then fallback;
- none:   the local SQLite store itself, for reference.

    python benchmarks/tracking_dead_server.py
"""

from __future__ import annotations

import logging
import os
import socket
import tempfile
import threading
import time
from pathlib import Path

from emogen.tracking import log_artifact, log_metrics, stage_run


def silent_server() -> str:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    accepted = []
    threading.Thread(target=lambda: [accepted.append(sock.accept()) for _ in iter(int, 1)], daemon=True).start()
    return f"http://127.0.0.1:{sock.getsockname()[1]}"


def one_stage(uri: str | None, folder: Path) -> float:
    if uri:
        os.environ["MLFLOW_TRACKING_URI"] = uri
    else:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    artifact = folder / "metrics.json"
    artifact.write_text("{}")
    started = time.perf_counter()
    with stage_run("benchmark", {"lr": 0.1}):
        for step in range(20):
            log_metrics({"loss": 1.0 / (step + 1)}, step=step)
        log_artifact(str(artifact))
    return time.perf_counter() - started


def main() -> None:
    logging.basicConfig(level=logging.ERROR)
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        for name, uri in (
            ("none (local SQLite)", None),
            ("closed port", "http://127.0.0.1:9"),
            ("silent server", silent_server()),
        ):
            print(f"{name:>20}: {one_stage(uri, Path(tmp)):5.1f} s")


if __name__ == "__main__":
    main()
