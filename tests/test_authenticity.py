"""Is an agent's mail really the agent's? Authentication-Results tables, no servers."""

from __future__ import annotations

import pytest

from mailbridge.policy.authenticity import sender_is_authentic

TRUSTED = frozenset({"mx.google.com", "mx.crossec.com"})
ANNA = "kiss.anna@crossec.com"

GMAIL = (
    "mx.google.com; dkim=pass header.i=@crossec.com header.s=s1 header.b=abc; "
    "spf=pass (google.com: domain of kiss.anna@crossec.com designates 1.2.3.4 as permitted sender) "
    "smtp.mailfrom=kiss.anna@crossec.com; dmarc=pass (p=NONE) header.from=crossec.com"
)
GMAIL_FOLDED = (  # as read from a folded header: CRLF + tab continuation lines, ARC comment, dara
    "mx.google.com;\r\n\tdkim=pass header.i=@crossec.com header.s=s1 header.b=qsGI6Y43;\r\n"
    "\tarc=pass (i=1 spf=pass spfdomain=crossec.com dkim=pass dkdomain=crossec.com);\r\n"
    "\tspf=pass (google.com: domain of kiss.anna@crossec.com designates 1.2.3.4 as permitted sender) "
    "smtp.mailfrom=kiss.anna@crossec.com;\r\n\tdara=pass header.i=@crossec.com"
)
M365 = (
    "spf=pass (sender IP is 1.2.3.4) smtp.mailfrom=crossec.com; dkim=pass (signature was verified) "
    "header.d=crossec.com;dmarc=pass action=none header.from=crossec.com;compauth=pass reason=100"
)
OPENDKIM = "mx.crossec.com; dkim=pass (2048-bit key; unprotected) header.d=crossec.com header.i=@crossec.com header.b=xyz"
FORGED = "evil.example; dkim=pass header.d=crossec.com; spf=pass smtp.mailfrom=crossec.com"
BORDER_FAIL = "mx.crossec.com; dkim=fail (bad signature) header.d=crossec.com"


@pytest.mark.parametrize(
    "headers, sender, ok, reason",
    [
        # real servers
        ((GMAIL,), ANNA, True, "dkim pass for crossec.com by mx.google.com"),
        ((GMAIL_FOLDED,), ANNA, True, "dkim pass for crossec.com by mx.google.com"),
        ((OPENDKIM,), ANNA, True, "dkim pass for crossec.com by mx.crossec.com"),
        ((OPENDKIM,), "Kiss Anna <Kiss.Anna@CROSSEC.COM>", True, "dkim pass for crossec.com by mx.crossec.com"),
        (("MX.Crossec.COM; DKIM=Pass header.d=Crossec.Com",), ANNA, True, "dkim pass for crossec.com by mx.crossec.com"),
        (("mx.crossec.com 1; dkim=pass header.d=crossec.com",), ANNA, True, "dkim pass for crossec.com"),
        # Microsoft 365: no authserv-id -> never trusted (authres raises, or takes "spf=pass" as the id)
        ((M365,), ANNA, False, "without authserv-id"),
        (("spf=pass; dkim=pass header.d=crossec.com",), ANNA, False, "without authserv-id"),
        (("dkim=pass header.d=crossec.com",), ANNA, False, "without authserv-id"),
        # forged by the sender, untrusted ids
        ((FORGED,), ANNA, False, "untrusted authserv-id evil.example"),
        ((FORGED, "other.example; spf=pass smtp.mailfrom=crossec.com"), ANNA, False,
         "untrusted authserv-id evil.example, other.example"),
        # several headers, only one trusted
        ((FORGED, OPENDKIM), ANNA, True, "dkim pass for crossec.com by mx.crossec.com"),
        ((M365, "garbage", FORGED, GMAIL), ANNA, True, "by mx.google.com"),
        ((FORGED, "mx.crossec.com; dkim=fail header.d=crossec.com"), ANNA, False, "dkim fail for crossec.com by mx.crossec.com"),
        # only the topmost header of a trusted server counts (RFC 8601: the border adds its own on top)
        ((BORDER_FAIL, OPENDKIM), ANNA, False, "dkim fail for crossec.com by mx.crossec.com (topmost of 2"),
        ((OPENDKIM, BORDER_FAIL), ANNA, True, "dkim pass for crossec.com by mx.crossec.com (topmost of 2"),
        ((BORDER_FAIL, OPENDKIM, OPENDKIM), ANNA, False, "topmost of 3"),
        ((FORGED, BORDER_FAIL, OPENDKIM), ANNA, False, "dkim fail"),  # untrusted headers above do not matter
        ((M365, "mx.crossec.com; dkim=none; spf=none smtp.mailfrom=crossec.com", OPENDKIM), ANNA, False, "dkim none"),
        (("mx.crossec.com; none", OPENDKIM), ANNA, False, "no dkim or spf result from mx.crossec.com"),
        (("mx.crossec.com; dkim=pass header.d=crossec.com; garbage!!", OPENDKIM), ANNA, False,
         "unreadable Authentication-Results from mx.crossec.com"),  # unreadable on top: a fail, not a skip
        ((GMAIL, BORDER_FAIL), ANNA, True, "by mx.google.com"),  # two trusted servers: the topmost decides
        ((BORDER_FAIL, GMAIL), ANNA, False, "dkim fail for crossec.com by mx.crossec.com"),
        # fails and misalignment from a trusted server
        (("mx.crossec.com; dkim=fail (bad signature) header.d=crossec.com",), ANNA, False, "dkim fail"),
        (("mx.crossec.com; dkim=pass header.d=gmail.com",), ANNA, False, "dkim pass for gmail.com (not crossec.com)"),
        (("mx.crossec.com; dkim=pass header.d=mail.crossec.com",), ANNA, False, "not crossec.com"),  # child d= is not enough
        (("mx.crossec.com; dkim=pass header.d=com",), "a@crossec.com", False, "dkim pass"),  # a bare TLD never aligns
        (("mx.crossec.com; dkim=pass header.d=evilcrossec.com",), ANNA, False, "not crossec.com"),
        (("mx.crossec.com; spf=softfail smtp.mailfrom=crossec.com",), ANNA, False, "spf softfail for crossec.com"),
        (("mx.crossec.com; dkim=none; spf=none smtp.mailfrom=crossec.com",), ANNA, False, "dkim none"),
        (("mx.crossec.com; dmarc=pass header.from=crossec.com",), ANNA, False, "no dkim or spf result from mx.crossec.com"),
        (("mx.crossec.com; none",), ANNA, False, "no dkim or spf result"),
        (("mx.google.com; gateway.spf=pass smtp.mailfrom=a@crossec.com",), ANNA, False, "no dkim or spf result"),
        # relaxed DKIM: the sender's domain may be a subdomain of d=
        (("mx.crossec.com; dkim=pass header.d=crossec.com",), "anna@hu.crossec.com", True, "dkim pass for crossec.com"),
        # header.i when header.d is missing
        (("mx.crossec.com; dkim=pass header.i=kiss.anna@crossec.com",), ANNA, True, "dkim pass for crossec.com"),
        # SPF: strict, user@domain or a bare domain
        (("mx.crossec.com; spf=pass smtp.mailfrom=kiss.anna@crossec.com",), ANNA, True, "spf pass for crossec.com by mx.crossec.com"),
        (("mx.crossec.com; spf=pass smtp.mailfrom=crossec.com",), ANNA, True, "spf pass for crossec.com"),
        (("mx.crossec.com; spf=pass smtp.mailfrom=bounce.crossec.com",), ANNA, False, "spf pass for bounce.crossec.com (not crossec.com)"),
        (("mx.crossec.com; dkim=fail header.d=crossec.com; spf=pass smtp.mailfrom=crossec.com",), ANNA, True, "spf pass"),
        # accented (IDN) domains compare as punycode
        (("mx.crossec.com; dkim=pass header.d=xn--plda-bpa.hu",), "anna@példa.hu", True, "dkim pass for xn--plda-bpa.hu"),
        # garbage never raises and never counts
        (("garbage ;;; ===",), ANNA, False, "unreadable"),
        (("",), ANNA, False, "no Authentication-Results from a trusted server"),
        (("mx.crossec.com; dkim=pass header.d=crossec.com; garbage!!",), ANNA, False, "unreadable Authentication-Results from mx.crossec.com"),
        (('"quoted id"; dkim=pass header.d=crossec.com',), ANNA, False, "unreadable"),
        (("mx.crossec.com; dkim=pass header.d=crossec.com\x00\xff(",), ANNA, False, "unreadable"),
        ((), ANNA, False, "no Authentication-Results header"),
        ((OPENDKIM,), "not an address", False, "sender has no domain"),
        ((OPENDKIM,), "", False, "has no domain"),
    ],
)
def test_sender_is_authentic(headers, sender, ok, reason):
    got_ok, got_reason = sender_is_authentic(headers, sender, TRUSTED)
    assert (got_ok, reason in got_reason) == (ok, True), got_reason


@pytest.mark.parametrize(
    "trusted, ok, reason",
    [
        (frozenset(), False, "no trusted authserv-id configured"),
        (("",), False, "no trusted authserv-id configured"),  # "" never trusts id-less headers
        (("MX.CROSSEC.COM.",), True, "by mx.crossec.com"),  # config case and trailing dot
        (("mx.google.com",), False, "untrusted authserv-id mx.crossec.com"),
    ],
)
def test_trusted_list(trusted, ok, reason):
    got_ok, got_reason = sender_is_authentic((OPENDKIM,), ANNA, trusted)
    assert got_ok is ok
    assert reason in got_reason


def test_m365_not_trusted_even_with_empty_id_in_list():
    assert sender_is_authentic((M365,), ANNA, ("", "mx.crossec.com"))[0] is False


def test_the_parsed_mail_gives_the_headers_top_first():
    """The order the check relies on: first in the file = topmost = added last, by our border."""
    from mailbridge.intake.parse import parse_mail

    raw = (f"Authentication-Results: {BORDER_FAIL}\r\nAuthentication-Results: {OPENDKIM}\r\n"
           f"From: Kiss Anna <{ANNA}>\r\nTo: support@crossec.com\r\nSubject: x\r\nMessage-ID: <a@b>\r\n\r\nszia\r\n")
    headers = parse_mail(raw.encode(), 1000).headers.get_all("authentication-results")
    assert headers == (BORDER_FAIL, OPENDKIM)
    assert sender_is_authentic(headers, ANNA, TRUSTED)[0] is False


def test_no_address_in_the_reason():
    for headers in ((), ("garbage",), (FORGED,), (BORDER_FAIL,), (OPENDKIM,)):
        for sender in (ANNA, "Kiss Anna <kiss.anna@crossec.com>", "kiss.anna"):
            assert "kiss.anna" not in sender_is_authentic(headers, sender, TRUSTED)[1]
