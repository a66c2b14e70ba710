#!/usr/bin/env python3
"""Sanity-check the e-mail corpus manifest (cases.toml).

Checks that every case names an existing file, has the required keys with
the right types, that every .eml file here has a case, and that the files
produced by make_corpus.py are up to date.  Prints the number of cases per
verdict.  Exit status 1 on any problem.

Usage: python3 tests/corpus/check_corpus.py
"""
from __future__ import annotations

import re
import sys
import tomllib
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent

REQUIRED = {
    "file": str, "about": str, "subject": str, "sender": str,
    "sender_name": str, "message_id": str, "text_contains": list,
    "has_html": bool, "attachments": list, "verdict": str,
}
OPTIONAL = {
    "new_text_contains": list, "new_text_excludes": list, "text_excludes": list,
    "rejected_attachments": list, "reason": str, "references": list,
    "tag": str, "needs_review": bool, "bounced_message_id": str, "reply_to": str,
    "sender_source": str, "reporter": str,
}
SENDER_SOURCES = ("from", "reply-to", "sender", "return-path")
VERDICTS = ("person", "auto_reply", "bounce", "automatic")
MSGID = re.compile(r"^<[^<>\s]+>$")
TAG = re.compile(r"^CRX-\d{6,}$")


def check(manifest: dict) -> list[str]:
    errors: list[str] = []
    limit = manifest.get("max_attachment_bytes")
    if not isinstance(limit, int) or limit <= 0:
        errors.append("top level: max_attachment_bytes must be a positive integer")
        limit = None
    cases = manifest.get("case", [])
    if not cases:
        errors.append("no [[case]] tables")
    seen: set[str] = set()
    for i, case in enumerate(cases):
        where = f"case #{i + 1} ({case.get('file', '?')})"
        for key, typ in REQUIRED.items():
            if key not in case:
                errors.append(f"{where}: missing required key {key!r}")
            elif not isinstance(case[key], typ):
                errors.append(f"{where}: {key!r} must be {typ.__name__}")
        for key, value in case.items():
            if key in REQUIRED:
                continue
            if key not in OPTIONAL:
                errors.append(f"{where}: unknown key {key!r}")
            elif not isinstance(value, OPTIONAL[key]):
                errors.append(f"{where}: {key!r} must be {OPTIONAL[key].__name__}")
        name = case.get("file")
        if isinstance(name, str):
            if name in seen:
                errors.append(f"{where}: duplicate file")
            seen.add(name)
            if "/" in name or not (HERE / name).is_file():
                errors.append(f"{where}: file does not exist in {HERE}")
        if case.get("sender_source", "from") not in SENDER_SOURCES:
            errors.append(f"{where}: sender_source must be one of {SENDER_SOURCES}")
        if (case.get("sender_source", "from") != "from") != bool(case.get("reporter")):
            errors.append(f"{where}: reporter goes with a sender_source other than from, and only then")
        if case.get("verdict") not in VERDICTS:
            errors.append(f"{where}: verdict must be one of {VERDICTS}")
        for key in ("text_contains", "new_text_contains", "new_text_excludes", "text_excludes"):
            if not all(isinstance(s, str) and s for s in case.get(key, [])):
                errors.append(f"{where}: {key!r} must hold non-empty strings")
        for key in ("message_id", "bounced_message_id"):
            value = case.get(key)
            if isinstance(value, str) and value and not MSGID.match(value):
                errors.append(f"{where}: {key!r} must look like <id@host>")
        refs = case.get("references", [])
        if not all(isinstance(r, str) and MSGID.match(r) for r in refs):
            errors.append(f"{where}: references must be <id@host> strings")
        if len(set(refs)) != len(refs):
            errors.append(f"{where}: references contain duplicates")
        if "tag" in case and not TAG.match(str(case["tag"])):
            errors.append(f"{where}: tag must look like CRX-000042 (6+ digits)")
        for att in case.get("attachments", []):
            if not (isinstance(att, dict) and set(att) == {"name", "size", "content_id"}
                    and isinstance(att["name"], str) and att["name"]
                    and isinstance(att["size"], int) and isinstance(att["content_id"], str)):
                errors.append(f"{where}: bad attachment entry {att!r}")
            elif limit and att["size"] > limit:
                errors.append(f"{where}: {att['name']!r} is over max_attachment_bytes, "
                              "it belongs in rejected_attachments")
            elif att["size"] < -1 or att["content_id"].startswith("<"):
                errors.append(f"{where}: bad size/content_id in {att!r}")
        for att in case.get("rejected_attachments", []):
            if not (isinstance(att, dict) and set(att) == {"name", "size"}
                    and isinstance(att["name"], str) and isinstance(att["size"], int)):
                errors.append(f"{where}: bad rejected_attachments entry {att!r}")
            elif limit and att["size"] <= limit:
                errors.append(f"{where}: rejected {att['name']!r} is not over the limit")
    on_disk = {p.name for p in HERE.glob("*.eml")}
    for orphan in sorted(on_disk - seen):
        errors.append(f"{orphan}: .eml file without a case")
    return errors


def check_generated() -> list[str]:
    """The files make_corpus.py writes must match what it would write now."""
    sys.dont_write_bytecode = True
    sys.path.insert(0, str(HERE))
    try:
        import make_corpus
    finally:
        sys.path.pop(0)
    errors = []
    for name, fn in make_corpus.GENERATED.items():
        path = HERE / name
        if not path.is_file() or path.read_bytes() != fn():
            errors.append(f"{name}: out of date, run make_corpus.py")
    return errors


def main() -> int:
    with open(HERE / "cases.toml", "rb") as fh:
        manifest = tomllib.load(fh)
    errors = check(manifest) + check_generated()
    cases = manifest.get("case", [])
    counts = Counter(c.get("verdict", "?") for c in cases)
    for verdict in VERDICTS:
        print(f"{verdict:<11} {counts.get(verdict, 0):3d}")
    print(f"{'total':<11} {len(cases):3d}   "
          f"(needs_review: {sum(1 for c in cases if c.get('needs_review'))}, "
          f"corpus size: {sum(p.stat().st_size for p in HERE.iterdir() if p.is_file()) // 1024} KiB)")
    for err in errors:
        print("ERROR:", err, file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
