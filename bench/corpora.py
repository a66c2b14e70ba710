"""How right intake reads real mail: the figures of the corpora in tests/corpus/.

    python bench/corpora.py

- reply stripping (tests/corpus/replies/): share of replies whose new text is
  exactly what their author wrote, for our stripper and, where installed, for
  the libraries we weighed against it on the same replies (mail-parser-reply,
  which we used before, and quotequail);
- bounces (tests/corpus/bounces/): share of headerless bounces and gateway
  notices recognised, and of the people's mails about bounces left to people.
bench/intake.py prints these next to intake speed.
"""

from __future__ import annotations

import sys
import tomllib
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from mailbridge.intake.parse import parse_mail  # noqa: E402
from mailbridge.policy import loops  # noqa: E402
from test_reply_corpus import CASES as REPLIES, REPLIES as REPLY_DIR, normalised  # noqa: E402

BOUNCES = ROOT / "tests" / "corpus" / "bounces"
OWN = frozenset({"support@crossec.com"})


def _mail_parser_reply() -> Callable[[str], str] | None:
    try:
        from mailparser_reply import EmailReplyParser
    except ImportError:
        return None
    languages = ["en", "de", "fr", "es", "it", "nl", "pl", "cs", "sv", "da", "ja"]
    return lambda text: EmailReplyParser(languages=languages).parse_reply(text=text) or ""


def _quotequail() -> Callable[[str], str] | None:
    try:
        import quotequail
    except ImportError:
        return None

    def strip(text: str) -> str:
        # unwrap() parses a reply into the text above and below the quote and the quote itself.
        found = quotequail.unwrap(text)
        if not found:
            return text
        return "\n".join(found.get(key, "") for key in ("text_top", "text_bottom") if found.get(key))

    return strip


def reply_figures() -> list[tuple[str, int, int]]:
    """(stripper, exact, of) for ours and each library installed."""
    texts = [(parse_mail((REPLY_DIR / case["file"]).read_bytes(), 10_000_000), case) for case in REPLIES]
    figures = [("mailbridge", sum(normalised(mail.new_text) == normalised(case["new_text"]) for mail, case in texts),
                len(texts))]
    for name, make in (("mail-parser-reply", _mail_parser_reply), ("quotequail", _quotequail)):
        strip = make()
        if strip is None:
            continue
        exact = 0
        for mail, case in texts:
            try:
                exact += normalised(strip(mail.text)) == normalised(case["new_text"])
            except Exception:  # a library that fails on a reply has not stripped it
                pass
        figures.append((name, exact, len(texts)))
    return figures


def bounce_figures() -> tuple[int, int, int, int]:
    """(bounces recognised, bounces, people left people, people) on the bounce corpus."""
    manifest = BOUNCES / "cases.toml"
    if not manifest.exists():
        return 0, 0, 0, 0
    cases = tomllib.loads(manifest.read_text(encoding="utf-8"))["case"]
    machine = people = machine_right = people_right = 0
    for case in cases:
        verdict = loops.screen(parse_mail((BOUNCES / case["file"]).read_bytes(), 10_000_000), OWN).kind
        if case["verdict"] == "person":
            people += 1
            people_right += verdict == "person"
        else:
            machine += 1
            machine_right += verdict == case["verdict"]
    return machine_right, machine, people_right, people


def report() -> list[str]:
    lines = []
    for name, exact, of in reply_figures():
        lines.append(f"reply stripping, {name + ':':19} {exact:3d} of {of} replies exact ({exact / of:.0%})")
    machine_right, machine, people_right, people = bounce_figures()
    if machine:
        lines.append(f"bounces without DSN:       {machine_right:3d} of {machine} recognised ({machine_right / machine:.0%});"
                     f" {people_right} of {people} people's mails about bounces kept as people's")
    return lines


if __name__ == "__main__":
    print("\n".join(report()))
