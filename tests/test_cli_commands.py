"""Every ``emogen …`` command named in a message of the code or in the docs exists in the CLI
(a message once sent users to `emogen pipeline gate`, which never existed)."""

import argparse
import re
from pathlib import Path

import pytest

from emogen.cli import build_parser
from tests.helpers.paths import REPO

# `emogen ...` in backticks (messages, docstrings, Markdown), and command lines of code blocks.
QUOTED = re.compile(r"`+((?:python -m )?emogen(?: [^`\n]*)?)`+")
CODE_LINE = re.compile(r"^\s*(?:\$ )?((?:python -m )?emogen (?:[^#\n]*))", re.MULTILINE)
WORD = re.compile(r"^[a-z][a-z0-9_@-]*$")


def sources() -> list[Path]:
    files = [*sorted((REPO / "emogen").rglob("*.py")), *sorted((REPO / "flows").glob("*.py"))]
    files += (
        [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
        if (REPO / "docs").is_dir()
        else [REPO / "README.md"]
    )
    return [f for f in files if f.is_file()]


def mentions(path: Path) -> list[str]:
    text = path.read_text()
    found = QUOTED.findall(text)
    if path.suffix == ".md":
        blocks = re.findall(r"```[^\n]*\n(.*?)```", text, re.DOTALL)
        found += [line for block in blocks for line in CODE_LINE.findall(block)]
    return [m.removeprefix("python -m ") for m in found]


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    return next((a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction)), {})


def problem(command: str, parser: argparse.ArgumentParser) -> str | None:
    """Why ``command`` ("emogen pipeline retrain -S x=1") is not a command of ``parser``, or None."""
    words = command.split()[1:]
    while words and words[0].startswith("-"):  # emogen -v pipeline ...
        words.pop(0)
    path = ["emogen"]
    while words:
        subs = _subcommands(parser)
        if not subs:
            break
        word = words.pop(0)
        if not WORD.match(word):
            return None  # a placeholder (<command>, ...): nothing more to check
        if word not in subs:
            return f"`{' '.join(path)}` has no command {word!r} (it has: {', '.join(sorted(subs))})"
        path.append(word)
        parser = subs[word]
    positional = next((a for a in parser._actions if not a.option_strings and a.choices), None)
    if positional is not None and words and WORD.match(words[0]) and words[0] not in positional.choices:
        return f"`{' '.join(path)}`: {words[0]!r} is not one of {', '.join(sorted(positional.choices))}"
    return None


def test_the_extractor_finds_commands_and_rejects_made_up_ones():
    parser = build_parser()
    assert problem("emogen pipeline gate", parser).startswith("`emogen pipeline` has no command 'gate'")
    assert problem("emogen stage nosuch", parser) is not None
    assert problem("emogen -v pipeline retrain -S stage2.lambda_attr=0.02", parser) is None
    assert len([m for f in sources() for m in mentions(f)]) > 20


@pytest.mark.parametrize("path", sources(), ids=lambda p: str(p.relative_to(REPO)))
def test_every_named_command_exists(path):
    parser = build_parser()
    bad = sorted({f"{m!r}: {why}" for m in mentions(path) if (why := problem(m, parser))})
    assert not bad, "\n".join(bad)
