"""The documentation: the mkdocs site builds with --strict, the README stays a front door whose
test command is what CI runs, and no file cites a document that is not in the repository."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
README_MAX_LINES = 200
# Design notes that once lived outside the repository; the project's own pages replace them.
# Built from parts, so that this guard does not itself name the files it forbids.
OUTSIDE_DOCUMENTS = tuple(f"{name}.md" for name in ("SPEC", "DESIGN", "TEAM"))


def tracked_files() -> list[Path]:
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as error:
        pytest.skip(f"not a git checkout ({error}): no list of tracked files")
    return [ROOT / name for name in out.decode().split("\0") if name]


def text_of(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, FileNotFoundError, IsADirectoryError):
        return None


def test_mkdocs_build_strict(tmp_path):
    site = tmp_path / "site"
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    pages = {p.relative_to(site).as_posix() for p in site.rglob("index.html")}
    for page in (
        "index.html",
        "design/index.html",
        "method/index.html",
        "results/index.html",
        "stages/data/index.html",
        "stages/evaluation-stages/index.html",
        "operating/index.html",
    ):
        assert page in pages, f"{page} missing from the built site: {sorted(pages)}"
    # Every page under docs/ is in the site (strict mode fails on pages left out of the nav, too).
    for md in (ROOT / "docs").rglob("*.md"):
        rel = md.relative_to(ROOT / "docs").with_suffix("")
        built = "index.html" if rel.as_posix() == "index" else f"{rel.as_posix()}/index.html"
        assert built in pages, f"docs/{rel}.md was not built"


def test_readme_is_a_front_door_whose_test_command_ci_runs():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    lines = readme.splitlines()
    assert len(lines) <= README_MAX_LINES, (
        f"README.md has {len(lines)} lines (at most {README_MAX_LINES}): move detail into docs/"
    )
    blocks = re.findall(r"```bash\n(.*?)```", readme, flags=re.S)
    commands = [line for block in blocks for line in block.splitlines() if line and not line.startswith("#")]
    assert len(commands) >= 2, f"README.md lost its two commands: {blocks}"
    command_1, command_2 = commands[0], commands[1]
    assert command_1.endswith("dvc repro") and command_2.endswith("pytest"), (command_1, command_2)
    assert command_1.startswith("scripts/setup.sh") and command_2.startswith("scripts/setup.sh --browser")
    ci = [
        line.strip()
        for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert ci[-1] == command_2, f".ci/run's command {ci[-1]!r} is not README command 2 {command_2!r}"
    assert os.access(ROOT / "scripts" / "setup.sh", os.X_OK), "scripts/setup.sh is not executable"


def test_setup_script_refuses_an_unknown_argument():
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "setup.sh"), "--no-such-flag"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2 and "--no-such-flag" in done.stderr, done.stderr


def test_no_file_cites_a_document_outside_the_repository():
    files = tracked_files()
    names = {path.name for path in files} | {path.relative_to(ROOT).as_posix() for path in files}
    pattern = re.compile(r"(?<![\w/.-])(" + "|".join(re.escape(n) for n in OUTSIDE_DOCUMENTS) + r")\b")
    cited = []
    for path in files:
        if path.resolve() == Path(__file__).resolve():
            continue  # this file names them in order to look for them
        text = text_of(path)
        if text is None:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            cited += [f"{path.relative_to(ROOT)}:{number}: {m}" for m in pattern.findall(line) if m not in names]
    assert not cited, "cites a document that is not in the repository:\n" + "\n".join(cited)


def test_every_cited_docs_page_exists():
    files = tracked_files()
    existing = {path.relative_to(ROOT).as_posix() for path in files}
    existing |= {p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").rglob("*.md")}
    pattern = re.compile(r"(?<![\w/.-])(docs/[\w./-]+?\.md)\b")
    missing = []
    for path in files:
        text = text_of(path)
        if text is None:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            missing += [f"{path.relative_to(ROOT)}:{number}: {m}" for m in pattern.findall(line) if m not in existing]
    assert not missing, "cites a docs page that does not exist:\n" + "\n".join(missing)
