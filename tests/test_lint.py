"""ruff's lint rules and formatter (pyproject.toml [tool.ruff]) pass over the whole repository."""

import subprocess
import sys

import pytest

from tests.helpers.paths import REPO


@pytest.mark.parametrize("command", [["check"], ["format", "--check"]], ids=["check", "format"])
def test_ruff(command):
    out = subprocess.run(
        [sys.executable, "-m", "ruff", *command, "--no-cache", "."],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, f"`ruff {' '.join(command)}` found:\n{out.stdout[-6000:]}{out.stderr[-2000:]}"
