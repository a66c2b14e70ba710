"""What a delivery report says: who failed, and which message it returns. Pure.

Three kinds reach us: the RFC 3464 report (``multipart/report``, read by
flufl.bounce, Mailman's detectors), the free text of a MAILER-DAEMON or null
sender (Exim, qmail, old Sendmail), and the notices of delivery systems and
gateways that carry neither (Domino, GroupWise, MDaemon, Kerio, virus
gateways), recognised by what they say (policy/bounce_phrases.py). Whether
a report changes anything is decided later, against our outbox
(policy/bounces.py): most that reach a support desk are backscatter.
"""

from __future__ import annotations

import re

from flufl.bounce import scan_message

from mailbridge.mail import Address, DeliveryReport, Headers, Part
from mailbridge.policy.bounce_phrases import (
    BOUNCE, failed_recipients, is_mailer_daemon, quoted_message_ids, read_notice,
)

_RETURNED_PARTS = ("message/rfc822", "text/rfc822-headers", "message/rfc822-headers")
# Of a returned original attached as a text file, this much is read for its Message-ID.
ATTACHED_TEXT = 64 * 1024


def delivery_report(message, content_type: str, headers: Headers, sender: Address,  # type: ignore[no-untyped-def]
                    return_path: str | None, subject: str, text: str, attachments: tuple[Part, ...]) -> DeliveryReport | None:
    """The report a mail is, or None. `message`: its MIME tree; the rest as ParsedMail will hold them."""
    is_report = content_type == "multipart/report" \
        and str(message.get_param("report-type", "")).lower() == "delivery-status"
    from_daemon = is_mailer_daemon(sender.email) or return_path == ""
    if not is_report and not from_daemon and read_notice(subject, sender, text, attachments).kind != BOUNCE:
        return None
    try:
        recipients = {r.decode("utf-8", "replace").lower() for r in scan_message(message)}
    except Exception:  # a detector choking must not cost us the mail
        recipients = set()
    if not recipients:
        # Exim names them in a header; the free-text styles in a block of their text.
        recipients = {r.strip().lower() for r in headers.get("x-failed-recipients").split(",") if "@" in r}
        recipients |= set(failed_recipients(text))
    message_ids: list[str] = []
    permanent = True
    for part in message.walk():
        part_type = part.get_content_type()
        if part_type in _RETURNED_PARTS:
            inner = part.get_payload()
            if isinstance(inner, list) and inner:
                ids = inner[0].get_all("Message-ID") or []
            else:
                ids = re.findall(r"(?im)^Message-ID:\s*(<[^>]+>)", part.get_payload(decode=False) or "")
            message_ids.extend(str(i).strip() for i in ids)
        elif part_type == "message/delivery-status":
            if re.search(r"(?im)^Action:\s*delayed", part.as_string()):
                permanent = False
    if not message_ids:
        # The original inlined in the text, or attached as a text file (Domino, MDaemon, gateways).
        message_ids.extend(quoted_message_ids(text))
        for part in attachments:
            if part.content_type == "text/plain" and part.data:
                message_ids.extend(quoted_message_ids(part.data[:ATTACHED_TEXT].decode("utf-8", "replace")))
    if not message_ids:
        # Free-text bounces quote the original's headers in their body, in whatever encoding.
        body = re.split(rb"\r?\n\r?\n", message.as_bytes(), maxsplit=1)[-1]
        # [ \t], not \s: "^\s*" is quadratic in a run of blank lines.
        message_ids = [m.decode("ascii", "replace") for m in re.findall(rb"(?im)^[ \t]*Message-ID:\s*(<[^>\s]+>)", body)]
    if not is_report and not recipients and not message_ids:
        return None
    return DeliveryReport(tuple(sorted(recipients)), tuple(dict.fromkeys(message_ids)), permanent)
