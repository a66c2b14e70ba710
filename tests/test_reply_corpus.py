"""The replies corpus (tests/corpus/replies/): the new text of replies from many
clients in many languages, stripped of the quoted history, exactly."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from mailbridge.intake.parse import parse_mail

REPLIES = Path(__file__).parent / "corpus" / "replies"
CASES = [case for manifest in sorted(REPLIES.glob("cases_*.toml"))
         for case in tomllib.loads(manifest.read_text(encoding="utf-8"))["case"]]
TARGET = 0.95  # issue 15: at least 95% stripped exactly


def normalised(text: str) -> str:
    """Lines without surrounding blanks, no blank lines at either end, runs of blank lines as one."""
    lines: list[str] = []
    for line in text.strip().splitlines():
        line = line.strip()
        if line or (lines and lines[-1]):
            lines.append(line)
    return "\n".join(lines).strip()


def stripped(case: dict) -> str:
    return normalised(parse_mail((REPLIES / case["file"]).read_bytes(), 10_000_000).new_text)


def test_the_corpus_covers_the_clients_and_languages():
    assert len(CASES) >= 80
    languages = {case["language"] for case in CASES}
    assert {"hu", "en", "de", "fr", "es", "it", "pt", "nl", "pl", "cs", "ru", "fi", "sv", "no", "da"} <= languages
    assert len({case["client"] for case in CASES}) >= 12


def test_at_least_95_percent_are_stripped_exactly():
    exact = [case["file"] for case in CASES if stripped(case) == normalised(case["new_text"])]
    missed = sorted({case["file"] for case in CASES} - set(exact))
    assert len(exact) >= TARGET * len(CASES), f"{len(exact)} of {len(CASES)} exact; missed: {missed}"


@pytest.mark.parametrize("case", [pytest.param(c, id=c["file"]) for c in CASES])
def test_reply(case):
    expected = normalised(case["new_text"])
    got = stripped(case)
    if got != expected and case.get("known_miss"):
        pytest.xfail(case["known_miss"])
    assert got == expected
