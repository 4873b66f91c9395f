"""The thread policy (emogen/threads.py): threads follow the registered emogen processes, a
user's OMP_NUM_THREADS / torch setting wins, `threads: N` fixes the count, dead PIDs are ignored."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from emogen import threads
from emogen.config import ParamsError, parse_params

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def registry(tmp_path, monkeypatch):
    """An empty registry folder of our own, no user thread settings, torch's count restored after."""
    folder = tmp_path / "procs"
    monkeypatch.setenv(threads.DIR_ENV, str(folder))
    for key in threads.USER_ENV:
        monkeypatch.delenv(key, raising=False)
    before = torch.get_num_threads()
    threads.reset()
    yield folder
    threads.reset()
    torch.set_num_threads(before)


@pytest.fixture
def sleepers():
    """Start real processes (each one an 'other emogen process' once registered); killed after."""
    procs = []

    def start(n: int) -> list[subprocess.Popen]:
        new = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"]) for _ in range(n)]
        procs.extend(new)
        return new

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


def test_share_of_the_cores():
    assert [threads.threads_for(n, 8) for n in (1, 2, 3, 4, 8, 9)] == [8, 4, 2, 2, 1, 1]
    assert threads.threads_for(0, 2) == 2 and threads.threads_for(3, 2) == 1


def test_count_follows_registered_processes(registry, sleepers):
    policy = threads.Policy(mode="auto", n_cores=8, folder=registry)
    policy.registered = threads.register(registry)  # this process
    assert policy.wanted() == 8
    others = sleepers(3)
    threads.register(registry, others[0].pid)
    assert policy.wanted() == 4
    for proc in others[1:]:
        threads.register(registry, proc.pid)
    assert policy.wanted() == 2
    threads.unregister(registry / str(others[0].pid))
    assert policy.wanted() == 2  # 3 processes: 8 // 3
    for proc in others[1:]:
        threads.unregister(registry / str(proc.pid))
    assert policy.wanted() == 8


def test_dead_and_reused_pids_are_ignored_and_removed(registry, sleepers):
    (gone,) = sleepers(1)
    threads.register(registry, gone.pid)
    assert threads.live_processes(registry) == [gone.pid]
    gone.kill()
    gone.wait()
    assert threads.live_processes(registry) == []
    assert not (registry / str(gone.pid)).exists()
    # A live PID whose start time differs from the registered one: the PID was reused.
    (registry / str(os.getpid())).write_text("1")
    assert threads.live_processes(registry) == []
    # A PID that cannot exist; a stray file.
    (registry / "4194999").write_text("")
    (registry / "notes.txt").write_text("")
    assert threads.live_processes(registry) == []


def test_applied_policy_sets_torch_and_rechecks(registry, sleepers, monkeypatch):
    monkeypatch.setattr(threads, "cores", lambda: 4)
    policy = threads.apply_thread_policy()
    assert policy.mode == "auto" and policy.registered == registry / str(os.getpid())
    assert torch.get_num_threads() == 4
    for proc in sleepers(1):
        threads.register(registry, proc.pid)
    assert threads.recheck_threads() is None  # within RECHECK_SECONDS of the last check: not yet
    assert torch.get_num_threads() == 4
    policy.checked_at -= threads.RECHECK_SECONDS
    assert threads.recheck_threads() == 2 and torch.get_num_threads() == 2


def test_user_environment_wins(registry, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    torch.set_num_threads(3)
    policy = threads.apply_thread_policy(parse_params({"threads": 1}))
    assert policy.mode == "user"
    assert threads.recheck_threads(force=True) is None and torch.get_num_threads() == 3
    assert policy.registered is not None  # it still counts as sharing the cores


def test_torch_setting_made_after_the_policy_wins(registry, monkeypatch):
    monkeypatch.setattr(threads, "cores", lambda: 4)
    threads.apply_thread_policy()
    assert torch.get_num_threads() == 4
    torch.set_num_threads(3)
    assert threads.recheck_threads(force=True) is None
    assert threads.current().yielded and torch.get_num_threads() == 3


def test_param_fixes_the_number(registry, sleepers, monkeypatch):
    monkeypatch.setattr(threads, "cores", lambda: 8)
    for proc in sleepers(2):
        threads.register(registry, proc.pid)
    policy = threads.apply_thread_policy(parse_params({"threads": 5}))
    assert policy.mode == "fixed" and torch.get_num_threads() == 5


def test_threads_param_is_validated_and_cpu_threads_is_gone():
    assert parse_params({}).threads == "auto" and parse_params({"threads": 2}).threads == 2
    for bad in (0, -1, "many", True, 1.5):
        with pytest.raises(ParamsError, match=r"threads: .*'auto' or a whole number"):
            parse_params({"threads": bad}, "p.yaml")
    with pytest.raises(ParamsError, match=r"p.yaml: base_model.cpu_threads: removed: .*threads: N"):
        parse_params({"base_model": {"cpu_threads": 0}}, "p.yaml")


def test_busy_registers_only_while_generating(registry):
    threads.apply_thread_policy(register_process=False)
    mine = registry / str(os.getpid())
    assert not mine.exists()
    with threads.busy():
        assert mine.exists() and threads.live_processes(registry) == [os.getpid()]
    assert not mine.exists()


def _child(code: str, folder: Path, **env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if k not in threads.USER_ENV}
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**clean, threads.DIR_ENV: str(folder), **env},
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        cwd=REPO,
    )
    return out.stdout.strip()


def test_a_process_entry_registers_then_unregisters_at_exit_and_skips_its_waiting_parent(registry):
    threads.register(registry)  # this test process: the child's parent, waiting for it
    code = (
        "from emogen import threads; p = threads.apply_thread_policy(); import torch; threads.recheck_threads(force=True);"
        "print(len(threads.live_processes(p.folder, p.exclude)), torch.get_num_threads(), threads.cores())"
    )
    counted, got, n_cores = map(int, _child(code, registry).split())
    assert counted == 1 and got == n_cores  # alone but for its parent
    assert threads.live_processes(registry) == [os.getpid()]  # the child's file went with it


def test_the_command_line_loads_no_torch_before_the_policy():
    code = "import sys, emogen.cli as c; c.build_parser(); print(sorted(m for m in ('torch', 'diffusers') if m in sys.modules))"
    assert _child(code, Path("/nonexistent")) == "[]"


def test_recheck_is_cheap(registry, sleepers):
    policy = threads.apply_thread_policy()
    for proc in sleepers(3):
        threads.register(registry, proc.pid)
    start = time.perf_counter()
    for _ in range(50):
        policy.checked_at = float("-inf")
        threads.recheck_threads()
    assert (time.perf_counter() - start) / 50 < 0.005  # seconds per full recheck (4 registered)
