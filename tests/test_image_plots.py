"""The per-emotion grids are DVC image plots: `dvc plots diff` shows two revisions' grids."""

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from emogen.emotions import EMOTIONS
from tests.helpers.paths import REPO
from tests.helpers.scratch_repo import command_env, init_repo

METHODS = ("emogen", "prompt", "textual_inversion", "dreambooth")

# A stand-in for the generate/baseline stages: real write_generated, one colour per revision.
MAKE = """
import sys
from PIL import Image
from emogen.emotions import EMOTIONS
from emogen.pipelines.writer import ImageRecord, write_generated
shade = int(open("shade.txt").read())
for method in sys.argv[1:]:
    items = ((ImageRecord(e, e, 0, "{}", "single"), Image.new("RGB", (8, 8), (shade, i * 30, 0))) for i, e in enumerate(EMOTIONS))
    write_generated(f"data/generated/{method}", method, items, replace=True)
"""


def run(cmd, repo, env):
    out = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out.stdout


@pytest.mark.slow
def test_plots_diff_shows_both_revisions_of_every_method_grid(tmp_path):
    declared = [p for p in yaml.safe_load((REPO / "dvc.yaml").read_text())["plots"] if isinstance(p, str)]
    assert declared == [f"data/generated/{m}/grids" for m in METHODS]

    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "make.py").write_text(MAKE)
    (repo / "shade.txt").write_text("10")
    dvc_yaml = {
        "stages": {
            "generate": {
                "cmd": f"python make.py {' '.join(METHODS)}",
                "deps": ["make.py", "shade.txt"],
                "outs": [f"data/generated/{m}" for m in METHODS],
            }
        },
        "plots": declared,
    }
    (repo / "dvc.yaml").write_text(yaml.safe_dump(dvc_yaml))
    env = command_env(None)
    init_repo(repo, env)
    for cmd in (["dvc", "repro", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "first"]):
        run(cmd, repo, env)
    (repo / "shade.txt").write_text("200")
    for cmd in (["dvc", "repro", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "second"]):
        run(cmd, repo, env)

    data = json.loads(run(["dvc", "plots", "diff", "HEAD~1", "HEAD", "--json", "-o", "plots"], repo, env))["data"]
    for method in METHODS:
        for emotion in EMOTIONS:
            entries = data[f"data/generated/{method}/grids/{emotion}.png"]
            assert [e["revisions"] for e in entries] == [["HEAD~1"], ["HEAD"]]
            first, second = (Path(e["url"]).read_bytes() for e in entries)
            assert first != second  # each revision's own image
