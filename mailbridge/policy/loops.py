"""Is a mail from a person, or automatic (RFC 3834, RFC 3464)? Pure.

One verdict per mail, decided here; the store acts on it. Order matters:
our own mail first (the loop we must never start), then delivery reports
(they may also carry Auto-Submitted): RFC 3464 ones, MAILER-DAEMON's free
text, then the notices of delivery systems and gateways recognised by what
they say (policy/bounce_phrases.py); then the RFC 3834 signals, then the
headerless auto-replies recognised by subject.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from mailbridge.mail import ParsedMail
from mailbridge.policy.autoreply_phrases import is_auto_reply_subject
from mailbridge.policy.bounce_phrases import BOUNCE, bounce_subject, is_mailer_daemon, read_notice


class VerdictKind(StrEnum):
    PERSON = "person"
    AUTO_REPLY = "auto_reply"  # an out-of-office or other reply by a machine (RFC 3834)
    BOUNCE = "bounce"  # a delivery report (RFC 3464, or free text from a mailer daemon)
    AUTOMATIC = "automatic"  # anything else a machine sent: lists, newsletters, our own mail


# The header our outgoing mail carries, so a copy that comes back is known.
OWN_MAIL_HEADER = "x-mailbridge-ticket"


@dataclass(frozen=True)
class Verdict:
    kind: VerdictKind
    reason: str = ""

    @property
    def is_person(self) -> bool:
        return self.kind == VerdictKind.PERSON

    @classmethod
    def automatic(cls, reason: str) -> "Verdict":
        return cls(VerdictKind.AUTOMATIC, reason)


Verdict.PERSON = Verdict(VerdictKind.PERSON)  # type: ignore[attr-defined]


def screen(mail: ParsedMail, own_addresses: frozenset[str]) -> Verdict:
    """Why a message is automatic, or Verdict.PERSON."""
    headers = mail.headers
    # The fields' names once (they are lower-cased): seven `in headers` scans cost 25 µs a mail.
    names = {name for name, _ in headers.fields}
    if mail.sender.email in own_addresses or OWN_MAIL_HEADER in names:
        return Verdict.automatic("own-mail")

    report_type = headers.get("content-type").lower()
    if mail.content_type == "multipart/report" and "delivery-status" in report_type:
        return Verdict(VerdictKind.BOUNCE, "multipart/report")
    from_daemon = is_mailer_daemon(mail.sender.email)
    if mail.report is not None and (from_daemon or mail.return_path == ""):
        return Verdict(VerdictKind.BOUNCE, "free-text bounce")
    # No DSN part, no RFC 3834 header, any sender: a delivery system's or gateway's words.
    if notice := read_notice(mail.subject, mail.sender, mail.text, mail.attachments):
        return Verdict(VerdictKind.BOUNCE if notice.kind == BOUNCE else VerdictKind.AUTOMATIC, notice.reason)
    if mail.content_type == "multipart/report":
        return Verdict.automatic("multipart/report")

    auto_submitted = headers.get("auto-submitted", "no").strip().lower()
    if auto_submitted and not auto_submitted.startswith("no"):
        return Verdict(VerdictKind.AUTO_REPLY if auto_submitted.startswith("auto-replied") else VerdictKind.AUTOMATIC,
                       "auto-submitted")
    for name in ("x-autoreply", "x-autorespond"):
        if name in names:
            return Verdict(VerdictKind.AUTO_REPLY, name)
    if "x-auto-response-suppress" in names and is_auto_reply_subject(mail.subject):
        return Verdict(VerdictKind.AUTO_REPLY, "x-auto-response-suppress")
    precedence = headers.get("precedence").strip().lower()
    if precedence in {"bulk", "junk", "list", "auto_reply"}:
        if precedence == "auto_reply" or is_auto_reply_subject(mail.subject):
            return Verdict(VerdictKind.AUTO_REPLY, "precedence")
        return Verdict.automatic("precedence")
    if "list-id" in names:
        return Verdict.automatic("list-id")
    if "list-unsubscribe" in names:
        return Verdict.automatic("list-unsubscribe")
    if "x-auto-response-suppress" in names:
        return Verdict.automatic("x-auto-response-suppress")
    if from_daemon:
        if bounce_subject(mail.subject) == BOUNCE:
            return Verdict(VerdictKind.BOUNCE, "mailer-daemon")
        return Verdict.automatic("mailer-daemon")
    if mail.return_path == "":
        return Verdict.automatic("null-sender")
    if is_auto_reply_subject(mail.subject):
        return Verdict(VerdictKind.AUTO_REPLY, "ooo-subject")
    return Verdict.PERSON  # type: ignore[attr-defined]
