"""The tricky-mail corpus (tests/corpus/cases.toml): what parse and screen make of each."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from mailbridge.errors import UnparseableMail
from mailbridge.intake.parse import parse_mail
from mailbridge.ticket_ids import find_tag
from mailbridge.policy import loops

CORPUS = Path(__file__).parent / "corpus"
MANIFEST = tomllib.loads((CORPUS / "cases.toml").read_text(encoding="utf-8"))
LIMIT = MANIFEST["max_attachment_bytes"]
OWN = frozenset({"support@crossec.com"})


def _cases():
    return [pytest.param(case, id=case["file"]) for case in MANIFEST["case"]]


def test_the_corpus_is_big_enough():
    verdicts = [case["verdict"] for case in MANIFEST["case"]]
    assert len(verdicts) >= 40
    assert {"person", "auto_reply", "bounce", "automatic"} <= set(verdicts)


@pytest.mark.parametrize("case", _cases())
def test_corpus_case(case):
    raw = (CORPUS / case["file"]).read_bytes()
    if case.get("needs_review"):
        with pytest.raises(UnparseableMail):
            parse_mail(raw, LIMIT)
        return
    mail = parse_mail(raw, LIMIT)
    assert mail.subject == case["subject"]
    assert mail.sender.email == case["sender"]
    if "sender_name" in case:
        assert mail.sender.name == case["sender_name"]
    assert mail.message_id == case["message_id"]
    assert mail.sender_source == case.get("sender_source", "from")
    assert mail.reporter.email == case.get("reporter", case["sender"])
    if "reply_to" in case:
        assert mail.reply_to is not None and mail.reply_to.email == case["reply_to"]
    for fragment in case.get("text_contains", []):
        assert fragment in mail.text
    for fragment in case.get("text_excludes", []):
        assert fragment not in mail.text
    for fragment in case.get("new_text_contains", []):
        assert fragment in mail.new_text
    for fragment in case.get("new_text_excludes", []):
        assert fragment not in mail.new_text
    if "has_html" in case:
        assert bool(mail.html) == case["has_html"]
    expected = case.get("attachments", [])
    stored = [(p.filename, p.size if e["size"] >= 0 else -1)
              for p, e in zip((p for p in mail.attachments if not p.rejected), expected + [{"size": 0}] * 99)]
    assert stored == [(a["name"], a["size"]) for a in expected]
    for part, expected in zip((p for p in mail.attachments if not p.rejected), case.get("attachments", [])):
        if expected.get("content_id"):
            assert part.content_id == expected["content_id"]
    rejected = [(p.filename, p.size) for p in mail.attachments if p.rejected]
    assert rejected == [(a["name"], a["size"]) for a in case.get("rejected_attachments", [])]
    if "references" in case:
        assert list(mail.references) == case["references"]
    if "tag" in case:
        assert find_tag(mail.subject, "CRX") == int(case["tag"].split("-")[1])
    verdict = loops.screen(mail, OWN)
    assert verdict.kind == case["verdict"], verdict.reason
    if case.get("bounced_message_id"):
        assert case["bounced_message_id"] in mail.report.message_ids
