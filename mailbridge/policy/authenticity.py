"""Is a mail from an agent address really from that agent? Pure.

SPEC "Who may do what by mail": a message counts as an agent's only when the
receiving server's `Authentication-Results` (RFC 8601), written by a
configured trusted `authserv-id`, shows DKIM or SPF pass for the sender's
domain. `authres` parses the header values.

Decisions:

- Only headers whose authserv-id is in the trusted list count; all others are
  ignored, since anyone can put such a header into the mail they send. This
  relies on the trusted server removing headers that carry its own id from
  incoming mail (RFC 8601 section 5; Gmail, Microsoft and OpenDKIM/OpenDMARC
  setups do this). authserv-ids are compared case-insensitively.
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


def agent_is_authentic(
    auth_results: tuple[str, ...],
    sender: str,
    trusted_authserv_ids: frozenset[str] | tuple[str, ...],
) -> tuple[bool, str]:
    """(ok, reason). `auth_results`: the values of the message's Authentication-Results
    headers (without the header name), top first; `sender`: the From address."""
    address = parseaddr(sender)[1] or sender
    sender_domain = _domain(address) if "@" in address else ""
    if not sender_domain:
        return False, f"sender {sender!r} has no domain"
    trusted = {t.strip().rstrip(".").lower() for t in trusted_authserv_ids if t and t.strip()}
    if not trusted:
        return False, "no trusted authserv-id configured"
    if not auth_results:
        return False, "no Authentication-Results header"

    untrusted: list[str] = []
    notes: list[str] = []  # about ignored or unreadable headers
    seen_trusted: list[str] = []
    failures: list[str] = []
    for value in auth_results:
        if not isinstance(value, str):
            continue
        if _NO_AUTHSERV_ID.match(value):
            notes.append(M365_IGNORED)
            continue
        try:
            header = authres.AuthenticationResultsHeader.parse_value(value)
        except Exception:  # noqa: BLE001 - a malformed header must never raise
            leading = _LEADING_ID.match(value)
            if leading and leading.group(1).rstrip(".").lower() in trusted:
                notes.append(f"unreadable Authentication-Results from {leading.group(1).lower()}")
            else:
                notes.append("unreadable Authentication-Results ignored")
            continue
        authserv = (header.authserv_id or "").rstrip(".").lower()
        if not authserv or "=" in authserv:
            notes.append(M365_IGNORED)
            continue
        if authserv not in trusted:
            if authserv not in untrusted:
                untrusted.append(authserv)
            continue
        seen_trusted.append(authserv)
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
    if seen_trusted:
        return False, f"no dkim or spf result from {', '.join(dict.fromkeys(seen_trusted))}"
    if untrusted:
        notes.insert(0, f"untrusted authserv-id {', '.join(untrusted)}")
    reason = "no Authentication-Results from a trusted server"
    return False, f"{reason}: {'; '.join(dict.fromkeys(notes))}" if notes else reason


def _describe(method: str, result: str, domain: str, sender_domain: str, authserv: str) -> str:
    """'dkim fail for crossec.com by mx.crossec.com', 'dkim pass for evil.example (not crossec.com) by …'."""
    text = f"{method} {result}"
    if domain:
        text += f" for {domain}"
    if result == "pass":
        text += f" (not {sender_domain})" if domain else " without a domain"
    return f"{text} by {authserv}"
