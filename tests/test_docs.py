"""The README and docs/ stand alone (issue 17): a clone is all a reader has.

No link out of the repository, the two set-up commands on top as a new user types them,
and every `mailbridge …` command they name is a real one (its `--help` exits 0).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import click
import pytest

from mailbridge.cli import cli

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = [README, ROOT / "systemd" / "README.md", *sorted((ROOT / "docs").glob("**/*.md"))]

DEMO_COMMAND = "pip install -e '.[demo]' && mailbridge demo"
TEST_COMMAND = "python -m pip install -q -e '.[test]' && python -m pytest"

_FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.M | re.S)
_MAIN = "import sys; from mailbridge.cli import main; main(sys.argv[1:])"  # what the `mailbridge` script runs
_SPAN = re.compile(r"`([^`\n]+)`")
# `mailbridge` where a command starts (not a path, a metric, a user or the unit's name), then
# its words up to the first option, placeholder or value.
_COMMAND = re.compile(r"(?:^[ \t]*|\$ |&& |; |\| |\()mailbridge((?: [a-z][a-z-]*)+)")


def code_of(text: str) -> list[str]:
    """The code a page shows: its fenced blocks' lines and its inline code spans."""
    blocks = [line for block in _FENCE.findall(text) for line in block.splitlines()]
    prose = _FENCE.sub("", text)
    return blocks + _SPAN.findall(prose)


def named_commands() -> dict[tuple[str, ...], str]:
    """Each command path the pages name, with the first page that names it."""
    found: dict[tuple[str, ...], str] = {}
    for page in DOCS:
        for code in code_of(page.read_text(encoding="utf-8")):
            for words in _COMMAND.findall(code):
                found.setdefault(tuple(words.split()), page.relative_to(ROOT).as_posix())
    return found


def command_path(words: tuple[str, ...]) -> tuple[str, ...]:
    """The words that name commands and subcommands; a word after a group must be one of its."""
    command: click.Command = cli
    path: list[str] = []
    for word in words:
        if not isinstance(command, click.Group):
            break  # the command's own arguments
        sub = command.commands.get(word)
        if sub is None:
            raise LookupError(" ".join(["mailbridge", *path, word]))
        command = sub
        path.append(word)
    return tuple(path)


@pytest.mark.parametrize("page", DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_no_page_sends_the_reader_outside_the_repository(page):
    text = page.read_text(encoding="utf-8")
    for outside in ("../shared", "/work/shared"):
        assert outside not in text, f"{page.name} refers to {outside}, which a clone lacks"
    # Links to our own files and headings resolve inside the clone.
    for target, heading in re.findall(r"\]\(([^)#\s]*)(?:#([^)\s]*))?\)", text):
        if "://" in target or target.startswith("mailto:"):
            continue
        linked = page.parent / target if target else page
        assert linked.exists(), f"{page.name} links to {target}, which a clone lacks"
        if heading and linked.suffix == ".md":
            assert heading in anchors(linked.read_text(encoding="utf-8")), f"{page.name} links to #{heading}"


def anchors(text: str) -> set[str]:
    """The anchors of a page's headings, as GitHub makes them."""
    headings = re.findall(r"^#{1,6} (.+)$", _FENCE.sub("", text), re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def test_readme_starts_with_the_demo_and_the_test_command():
    first_block = _FENCE.search(README.read_text(encoding="utf-8")).group(1)
    assert first_block.splitlines() == [DEMO_COMMAND, TEST_COMMAND]
    # CI runs exactly the README's test command.
    assert TEST_COMMAND in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()


def test_the_pages_name_the_commands_that_matter():
    paths = {command_path(words) for words in named_commands()}
    for needed in [("init",), ("check",), ("run",), ("demo",), ("db", "backup"), ("tickets", "list")]:
        assert needed in paths, f"no page names mailbridge {' '.join(needed)}"


def test_every_command_the_pages_name_exists():
    unknown, paths = [], set()
    for words, page in named_commands().items():
        try:
            paths.add(command_path(words))
        except LookupError as exc:
            unknown.append(f"{exc.args[0]} ({page})")
    assert unknown == []
    # The real command line agrees, one process per command as a user runs it.
    for path in sorted(paths):
        result = subprocess.run([sys.executable, "-c", _MAIN, *path, "--help"], capture_output=True, text=True,
                                timeout=120, stdin=subprocess.DEVNULL)
        assert result.returncode == 0, (path, result.stderr)
        assert "Usage: mailbridge" in result.stdout
