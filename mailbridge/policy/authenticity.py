"""Is a mail from an agent's (or a division's) address really theirs? Pure.

SPEC "Who may do what by mail": a message counts as an agent's or a
division's only when the receiving server's `Authentication-Results`
(RFC 8601), written by a configured trusted `authserv-id`, shows DKIM or SPF
pass for the sender's domain. `authres` parses the header values.

Decisions:

- Only headers whose authserv-id is in the trusted list count; all others are
  ignored, since anyone can put such a header into the mail they send.
  authserv-ids are compared case-insensitively.
- Of those, only the topmost counts, pass or fail. The receiving border adds
  its header on top (RFC 8601 section 5); a lower one carrying a trusted id
  was written by the sender, or by a server further back that we cannot
  vouch for, unless the border strips such headers, and not every setup
  does. So a forger's lower `dkim=pass` under the border's `dkim=fail`
  counts for nothing, and a mail with several headers of a trusted id is
  believed only when the topmost passes. A topmost trusted header that
  authres cannot read is a failure, never a reason to look further down.
- DKIM: `dkim=pass` whose signing domain `header.d` (or, when `header.d` is
  absent, the domain of `header.i`) is the sender's domain, or a parent of it
  (From `a@hu.crossec.com`, d=`crossec.com`). This is DMARC "relaxed" alignment,
  but in one direction only. A signature by a *subdomain* (From `crossec.com`,
  d=`mail.crossec.com`) is not enough: subdomains are often delegated to
  mailing services, and without the public suffix list we cannot work out the
  organisational domain safely. A one-label d= (`com`) never matches.
- SPF: `spf=pass` whose `smtp.mailfrom` domain (`user@domain` or a bare domain)
  equals the sender's domain exactly (strict alignment).
- `dmarc`, `arc`, `compauth`, `auth`, `gateway.spf`, ... are not used: the SPEC
  asks for DKIM or SPF.
- Microsoft 365 / Exchange Online writes its header without an authserv-id
  (`spf=pass (sender IP is ...) smtp.mailfrom=crossec.com; dkim=pass ...`).
  authres then either raises a SyntaxError, or (when the first result has no
  property) takes the first result as the id (`spf=pass`). Both are treated
  as "no authserv-id" and ignored: nothing ties such a header to a server,
  and Microsoft keeps the id-less header that another tenant added when it
  forwards mail, so it cannot be trusted. For a mailbox on Microsoft 365, ops
  turn the check off (`security.require_agent_auth = false`) or fetch from a
  server that writes a proper header. An empty string in the trusted list
  does not make id-less headers trusted.
- A header that authres cannot parse never raises and never counts.
"""

from __future__ import annotations

import re
from email.utils import parseaddr

import authres
from authres.core import AuthenticationResult

# The part before the first ';' is a method=result, not an authserv-id.
_NO_AUTHSERV_ID = re.compile(r"^\s*[A-Za-z][A-Za-z0-9_.-]*\s*=")
# The leading authserv-id of a header authres cannot parse, to name it in the reason.
_LEADING_ID = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9_.-]*)\s*(?:\d+\s*)?;")

M365_IGNORED = "Authentication-Results without authserv-id (Microsoft 365 style) ignored"


def _domain(value: str) -> str:
    """'Kiss.Anna@Crossec.COM.' / '@crossec.com' / 'crossec.com' -> 'crossec.com'; IDN as punycode."""
    domain = value.strip().strip("<>").rpartition("@")[2].strip().rstrip(".").lower()
    if not domain or any(c in domain for c in " \t\"'<>@,;()[]"):
        return ""
    try:
        return domain.encode("idna").decode("ascii")
    except UnicodeError:
        return domain


def _aligned(sender_domain: str, signing_domain: str) -> bool:
    """Sender's domain is the signing domain or a subdomain of it (never a bare TLD)."""
    if not signing_domain or "." not in signing_domain:
        return False
    return sender_domain == signing_domain or sender_domain.endswith("." + signing_domain)


def _property(result: AuthenticationResult, ptype: str, name: str) -> str | None:
    for prop in result.properties:
        if prop.type == ptype and prop.name == name and prop.value:
            return str(prop.value)
    return None


def _dkim_domain(result: AuthenticationResult) -> str:
    d = _property(result, "header", "d")
    if d is not None:
        return _domain(d)
    i = _property(result, "header", "i")
    return _domain(i) if i is not None else ""


def sender_is_authentic(
    auth_results: tuple[str, ...],
    sender: str,
    trusted_authserv_ids: frozenset[str] | tuple[str, ...],
) -> tuple[bool, str]:
    """(ok, reason). `auth_results`: the values of the message's Authentication-Results
    headers (without the header name), top first, as in the file; `sender`: the From
    address. The reason names domains and servers, never the address."""
    address = parseaddr(sender)[1] or sender
    sender_domain = _domain(address) if "@" in address else ""
    if not sender_domain:
        return False, "sender has no domain"
    trusted = {t.strip().rstrip(".").lower() for t in trusted_authserv_ids if t and t.strip()}
    if not trusted:
        return False, "no trusted authserv-id configured"
    if not auth_results:
        return False, "no Authentication-Results header"

    untrusted: list[str] = []
    notes: list[str] = []  # about ignored or unreadable headers
    believed: list[tuple[str, authres.AuthenticationResultsHeader | None]] = []  # trusted id, top first
    for value in auth_results:
        if not isinstance(value, str):
            continue
        authserv, header, note = _read(value)
        if authserv in trusted:
            believed.append((authserv, header))
        elif note:
            notes.append(note)
        elif authserv not in untrusted:
            untrusted.append(authserv)

    if not believed:
        if untrusted:
            notes.insert(0, f"untrusted authserv-id {', '.join(untrusted)}")
        reason = "no Authentication-Results from a trusted server"
        return False, f"{reason}: {'; '.join(dict.fromkeys(notes))}" if notes else reason
    authserv, header = believed[0]
    ok, reason = _judge(header, authserv, sender_domain)
    if len(believed) > 1:
        reason += f" (topmost of {len(believed)} from trusted servers; the lower ones are not believed)"
    return ok, reason


def topmost_authserv_id(auth_results: tuple[str, ...]) -> str:
    """The authserv-id of a mail's topmost Authentication-Results ("" for none): the border
    that received it, which `security.trusted_authserv_ids` must name (`mailbridge check`)."""
    for value in auth_results:
        if isinstance(value, str):
            authserv, _, _ = _read(value)
            if authserv:
                return authserv
    return ""


def _read(value: str) -> tuple[str, authres.AuthenticationResultsHeader | None, str]:
    """(authserv-id, parsed header, note). The id is "" when there is none; the header is
    None when authres cannot read it (the id then comes from its leading word, if any)."""
    if _NO_AUTHSERV_ID.match(value):
        return "", None, M365_IGNORED
    try:
        header = authres.AuthenticationResultsHeader.parse_value(value)
    except Exception:  # noqa: BLE001 - a malformed header must never raise
        leading = _LEADING_ID.match(value)
        authserv = leading.group(1).rstrip(".").lower() if leading else ""
        return authserv, None, "unreadable Authentication-Results ignored"
    authserv = (header.authserv_id or "").rstrip(".").lower()
    if not authserv or "=" in authserv:
        return "", None, M365_IGNORED
    return authserv, header, ""


def _judge(header: authres.AuthenticationResultsHeader | None, authserv: str, sender_domain: str) -> tuple[bool, str]:
    """The verdict of one trusted server's header: a DKIM or SPF pass aligned with the sender's domain."""
    if header is None:
        return False, f"unreadable Authentication-Results from {authserv}"
    failures: list[str] = []
    for result in header.results:
        if result.method == "dkim":
            domain = _dkim_domain(result)
            if result.result == "pass" and _aligned(sender_domain, domain):
                return True, f"dkim pass for {domain} by {authserv}"
            failures.append(_describe("dkim", result.result, domain, sender_domain, authserv))
        elif result.method == "spf":
            mailfrom = _property(result, "smtp", "mailfrom")
            domain = _domain(mailfrom) if mailfrom else ""
            if result.result == "pass" and domain == sender_domain:
                return True, f"spf pass for {domain} by {authserv}"
            failures.append(_describe("spf", result.result, domain, sender_domain, authserv))
    if failures:
        return False, "; ".join(dict.fromkeys(failures))
    return False, f"no dkim or spf result from {authserv}"


def _describe(method: str, result: str, domain: str, sender_domain: str, authserv: str) -> str:
    """'dkim fail for crossec.com by mx.crossec.com', 'dkim pass for evil.example (not crossec.com) by …'."""
    text = f"{method} {result}"
    if domain:
        text += f" for {domain}"
    if result == "pass":
        text += f" (not {sender_domain})" if domain else " without a domain"
    return f"{text} by {authserv}"
