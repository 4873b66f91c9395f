"""One thread policy for every emogen process (docs/performance.md).

torch's CPU threads per process follow how many of the project's own processes are computing
on the machine's cores at once: alone, a process uses every core; two share them half each;
more processes than cores get one thread each. Two multi-threaded torch processes on the same
cores otherwise collapse (OpenMP threads spin while they wait: 50× slower steps, issue 20).

- Every process entry (``emogen`` commands and stages, the Prefect flows, the demo, the served
  MLflow model) calls :func:`apply_thread_policy` once. It registers the process in a small
  per-machine registry (one file per PID under ``$XDG_RUNTIME_DIR/emogen-procs`` or
  ``/tmp/emogen-procs-<uid>``; ``EMOGEN_PROCS_DIR`` overrides; files of dead PIDs are ignored
  and removed) and sets torch's threads once torch is loaded.
- Long loops (training steps, generation batches) call :func:`recheck_threads`: at most every
  :data:`RECHECK_SECONDS` it counts the registered processes again and adjusts
  ``torch.set_num_threads``.
- Who wins: a user's ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` (the policy then never touches
  threads), a ``torch.set_num_threads`` made by someone else after the policy's own (the policy
  stops adjusting), then the params key ``threads: N``, then ``threads: auto`` (the default).
- A process that is idle most of the time (the demo, a served model) registers only while it
  generates (:func:`busy`), so a retrain beside it keeps every core while nobody asks for
  images.
- A registered process that is an ancestor of the counting one is not counted: it waits for
  its child (a test worker running ``emogen stage``, a stage's launcher).

This module imports neither torch nor anything heavy: the ``emogen`` entry applies the policy
before a stage imports torch.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

USER_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
DIR_ENV = "EMOGEN_PROCS_DIR"
RECHECK_SECONDS = 2.0  # how stale a long loop's thread count may get (a recheck costs ~0.1 ms)


def cores() -> int:
    """CPU cores this process may run on (its affinity mask; else every core)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def threads_for(processes: int, n_cores: int) -> int:
    """Threads per process when ``processes`` share ``n_cores``: an equal share, at least one."""
    return max(1, n_cores // max(1, processes))


def registry_dir() -> Path:
    """The per-machine folder of live emogen processes (created on first use)."""
    if os.environ.get(DIR_ENV):
        return Path(os.environ[DIR_ENV])
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime) and os.access(runtime, os.W_OK):
        return Path(runtime) / "emogen-procs"
    uid = os.getuid() if hasattr(os, "getuid") else "user"
    return Path(tempfile.gettempdir()) / f"emogen-procs-{uid}"


def _start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (tells a reused PID apart), None where /proc is absent."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22, counted after the command name


def _alive(pid: int, started: str) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, another user's
    except OSError:
        return False
    now = _start_time(pid)
    return now is None or not started or now == started


def _parent(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


def ancestors(pid: int | None = None) -> set[int]:
    """PIDs of ``pid``'s parent, its parent's parent, ... (empty where /proc is absent)."""
    found, pid = set(), _parent(pid or os.getpid())
    while pid and pid > 1 and pid not in found:
        found.add(pid)
        pid = _parent(pid)
    return found


def live_processes(folder: Path | None = None, exclude: set[int] = frozenset()) -> list[int]:
    """PIDs registered in ``folder`` whose process still runs (the files of dead ones are
    removed), except those in ``exclude``."""
    folder = folder or registry_dir()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    pids = []
    for entry in entries:
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            started = Path(entry.path).read_text().strip()
        except OSError:
            continue  # removed meanwhile
        if not _alive(pid, started):
            Path(entry.path).unlink(missing_ok=True)
            continue
        if pid not in exclude:
            pids.append(pid)
    return sorted(pids)


def register(folder: Path | None = None, pid: int | None = None) -> Path:
    """Add ``pid`` (default: this process) to the registry; → its file."""
    folder = folder or registry_dir()
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    pid = pid or os.getpid()
    path = folder / str(pid)
    tmp = folder / f".{pid}.tmp"
    tmp.write_text(_start_time(pid) or "")
    os.replace(tmp, path)
    return path


def unregister(path: Path) -> None:
    path.unlink(missing_ok=True)


@dataclass
class Policy:
    mode: str  # "user" (OMP_NUM_THREADS/MKL_NUM_THREADS set) | "fixed" (params threads: N) | "auto"
    fixed: int | None = None
    n_cores: int = field(default_factory=lambda: cores())
    folder: Path = field(default_factory=registry_dir)
    exclude: set[int] = field(default_factory=set)  # this process's ancestors
    registered: Path | None = None
    # The count the policy last gave torch, per thread: torch's count is the calling thread's
    # (OpenMP's nthreads ICV), e.g. a demo generating in a worker thread.
    applied: dict[int, int] = field(default_factory=dict)
    checked_at: float = float("-inf")
    yielded: bool = False  # someone else set torch's threads: the policy stopped adjusting

    def wanted(self) -> int | None:
        """Threads this process should use now (None: leave torch alone)."""
        if self.mode == "user" or self.yielded:
            return None
        if self.mode == "fixed":
            return self.fixed
        processes = len(live_processes(self.folder, self.exclude))
        return threads_for(max(1, processes + (self.registered is None)), self.n_cores)


_policy: Policy | None = None


def _threads_param(params: object) -> int | str:
    value = getattr(params, "threads", "auto") if params is not None else "auto"
    return value if isinstance(value, int) else "auto"


def apply_thread_policy(params: object = None, register_process: bool = True) -> Policy:
    """Decide this process's thread policy from the environment and ``params.threads`` (a
    :class:`emogen.config.Params`, or None for ``auto``), register the process (unless
    ``register_process`` is False: see :func:`busy`) and set torch's threads if torch is
    loaded (else the first :func:`recheck_threads` does). Idempotent: a second call with the same
    params only rechecks; a call with a ``threads`` key updates the mode."""
    global _policy
    threads = _threads_param(params)
    user = [key for key in USER_ENV if os.environ.get(key)]
    mode = "user" if user else ("fixed" if threads != "auto" else "auto")
    if _policy is None:
        _policy = Policy(mode=mode, fixed=threads if mode == "fixed" else None, exclude=ancestors())
        if register_process:
            _policy.registered = register(_policy.folder)
            atexit.register(_unregister_at_exit, os.getpid())
        log.debug("thread policy: %s (%s)", mode, ", ".join(user) or threads)
    elif params is not None:
        _policy.mode, _policy.fixed = mode, (threads if mode == "fixed" else None)
    recheck_threads(force=True)
    return _policy


def _unregister_at_exit(pid: int) -> None:
    # A forked child (a DataLoader worker) inherits atexit handlers: only the registrant unregisters.
    if _policy is not None and _policy.registered is not None and os.getpid() == pid:
        unregister(_policy.registered)


def recheck_threads(force: bool = False) -> int | None:
    """Between steps of a long loop: at most every :data:`RECHECK_SECONDS` (or now with
    ``force``), set torch's threads to the policy's count. → the count set, else None."""
    policy = _policy
    if policy is None or policy.mode == "user" or policy.yielded:
        return None
    now = time.monotonic()
    if not force and now - policy.checked_at < RECHECK_SECONDS:
        return None
    torch = sys.modules.get("torch")
    if torch is None or not hasattr(torch, "set_num_threads"):
        return None  # not loaded yet (or half-way through loading): the next call sets it
    policy.checked_at = now
    thread = threading.get_ident()
    current_count = torch.get_num_threads()
    if policy.applied.get(thread, current_count) != current_count:
        policy.yielded = True  # set by its user after us: theirs wins from now on
        log.info("torch threads set to %d outside the thread policy: left as they are", current_count)
    wanted = policy.wanted()
    if wanted is None:
        return None
    if wanted != current_count:
        log.debug("torch threads %d -> %d", current_count, wanted)
        torch.set_num_threads(wanted)
    policy.applied[thread] = wanted
    return wanted


@contextmanager
def busy() -> Iterator[None]:
    """Register this process for the block (a demo or served model while it generates): other
    emogen processes give it its share of the cores only while it computes."""
    policy = _policy or apply_thread_policy(register_process=False)
    if policy.registered is not None:
        recheck_threads()
        yield
        return
    policy.registered = register(policy.folder)
    try:
        recheck_threads(force=True)
        yield
    finally:
        unregister(policy.registered)
        policy.registered = None


def current() -> Policy | None:
    """The policy this process applied (None before :func:`apply_thread_policy`)."""
    return _policy


def reset() -> None:
    """Forget this process's policy and leave the registry (tests)."""
    global _policy
    if _policy is not None and _policy.registered is not None:
        unregister(_policy.registered)
    _policy = None
