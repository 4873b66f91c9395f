"""State kept outside DVC (resume checkpoints, stage-2 training tensors): where it lives, what
keys it, and how concurrent runs share it.

- Where: ``<workspace>/.emogen-cache/<stage>/`` unless a param names a folder. One per
  workspace, so clones and `dvc exp` temp workspaces never share it by accident.
- Keyed: every entry's key hashes the params, inputs, the stage's own source files
  (:func:`code_hash`) and, where there is one, the base model's identity, so after a bug fix
  DVC's rerun never resumes the old code's half-run.
- Locked: an entry is used under a file lock (:func:`locked`), so two processes given the same
  folder (two runs with ``stage2.work_dir: /shared``, ``dvc queue start -j 2``) take turns on
  the same key and never write the same files at once.
"""

from __future__ import annotations

import ast
import hashlib
import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from emogen.layout import Layout

log = logging.getLogger(__name__)

CACHE_DIR = ".emogen-cache"
_PACKAGE = "emogen"
_PACKAGE_ROOT = Path(__file__).resolve().parent


def cache_dir(layout: Layout, stage: str, override: str | None) -> Path:
    """The stage's cache folder: ``override`` (a param; relative to the workspace) or the
    workspace's own ``.emogen-cache/<stage>``."""
    if override is None:
        return layout.root / CACHE_DIR / stage
    path = Path(override).expanduser()
    return path if path.is_absolute() else layout.root / path


# -- the code a stage runs ------------------------------------------------------------------


def module_file(module: str) -> Path | None:
    """The source file of an ``emogen`` module or package; None for anything else."""
    if module != _PACKAGE and not module.startswith(_PACKAGE + "."):
        return None
    base = _PACKAGE_ROOT.parent.joinpath(*module.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _imports(path: Path, module: str) -> set[str]:
    """emogen modules ``path`` imports anywhere (lazy imports in functions included), with
    the parent packages Python runs on the way; ``from pkg import name`` counts pkg.name
    when that is a module."""
    names: set[str] = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names if module_file(f"{base}.{alias.name}"))
    for name in list(names):
        parts = name.split(".")
        names.update(".".join(parts[:i]) for i in range(1, len(parts)))
    return {n for n in names if module_file(n)}


def _runs_code(path: Path) -> bool:
    """A package ``__init__`` counts only when it imports something (ours are docstrings)."""
    if path.name != "__init__.py":
        return True
    return any(isinstance(n, (ast.Import, ast.ImportFrom)) for n in ast.walk(ast.parse(path.read_text())))


def code_files(*modules: str) -> list[Path]:
    """Source files of every emogen module that ``modules`` import, transitively: what
    dvc.yaml lists as a stage's code deps (tests/test_dvc_deps.py checks it)."""
    seen: set[str] = set()
    todo = list(modules)
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        if module_file(module) is None:
            raise ValueError(f"{module}: not a module of the {_PACKAGE} package")
        seen.add(module)
        todo += _imports(module_file(module), module) - seen
    return sorted(f for f in map(module_file, seen) if _runs_code(f))


def code_hash(*modules: str) -> str:
    """sha256 over the source of :func:`code_files` (paths relative to the package)."""
    digest = hashlib.sha256()
    for path in code_files(*modules):
        digest.update(path.relative_to(_PACKAGE_ROOT).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def files_hash(root: Path, relative_paths: Iterable[str]) -> str:
    """Identity of data files by (path, size, mtime): reading every image again would cost as
    much as using it."""
    digest = hashlib.sha256()
    for rel in sorted(set(relative_paths)):
        stat = (root / rel).stat()
        digest.update(f"{rel}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


# -- sharing ---------------------------------------------------------------------------------


@contextmanager
def locked(entry: Path) -> Iterator[None]:
    """Hold the lock of cache entry ``entry`` (waiting, with a log line, while another process
    holds it). Lock files stay in ``.locks/`` beside the entry: deleting a lock file that
    another process may be opening would break the lock."""
    lock_file = entry.parent / ".locks" / f"{entry.name}.lock"
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(lock_file)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log.info("waiting for another process using %s", entry)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()
