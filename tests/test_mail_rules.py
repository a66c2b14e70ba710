"""Ops' mail rules (sender blocklists, routing by header, subject and body) and the spam verdict."""

from __future__ import annotations

import pytest

from mailbridge.intake.parse import parse_mail
from mailbridge.policy.mail_rules import MailRule, RuleVerdict, SpamPolicy, apply_rules, check_rule, is_spam

SPAM = SpamPolicy()
BILLING = "Számlázással kapcsolatos kérdés"
BUG = "Hibabejelentés"
NORMA = "Crossec Norma"


def mail(*headers: str, sender: str = "Kovács Anna <anna@example.hu>", subject: str = "Kérdés",
         body: str = "Jó napot!\n", to: str = "support@crossec.com"):
    lines = [f"From: {sender}", f"To: {to}", f"Subject: {subject}", "Message-ID: <m1@example.hu>",
             "Date: Mon, 16 Nov 2026 09:00:00 +0100", "MIME-Version: 1.0",
             "Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: 8bit", *headers]
    raw = ("\r\n".join(lines) + "\r\n\r\n" + body.replace("\n", "\r\n")).encode()
    return parse_mail(raw, 10**7)


def verdict(m, *rules: MailRule, spam: SpamPolicy = SPAM) -> RuleVerdict:
    return apply_rules(m, rules, spam)


NOTHING = RuleVerdict(None, None, False, False, False, ())


def test_no_rules_no_verdict():
    assert verdict(mail()) == NOTHING


# --- sender ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "patterns, sender, hit",
    [
        (("*@spam.example",), "x@spam.example", True),
        (("*@spam.example",), "Spammer <X@SPAM.Example>", True),  # case-insensitive
        (("*@SPAM.EXAMPLE",), "x@spam.example", True),
        (("*@spam.example",), "x@notspam.example.hu", False),
        (("*@spam.example",), "x@sub.spam.example", False),  # a glob, not a suffix
        (("*@*spam.example",), "x@sub.spam.example", True),
        (("noreply@*",), "noreply@bank.example", True),
        (("noreply@*",), "no-reply@bank.example", False),
        (("no?reply@*", "donotreply@*"), "no-reply@bank.example", True),  # any pattern is enough
        (("no?reply@*", "donotreply@*"), "donotreply@bank.example", True),
        (("anna@example.hu",), "Kovács Anna <anna@example.hu>", True),
        (("*anna*",), "Anna Kovács <kovacs@example.hu>", False),  # the address, not the name
    ],
)
def test_sender_globs(patterns, sender, hit):
    v = verdict(mail(sender=sender), MailRule("block", sender=patterns, ignore=True))
    assert (v.ignore, v.matched) == ((True, ("block",)) if hit else (False, ()))


def test_a_mail_without_from_matches_no_sender_pattern():
    raw = b"To: support@crossec.com\r\nSubject: x\r\nMessage-ID: <a@b>\r\n\r\nhi\r\n"
    m = parse_mail(raw, 10**7)
    assert verdict(m, MailRule("all", sender=("*",), ignore=True)) == NOTHING


# --- header ---------------------------------------------------------------------------------


def test_header_regex_routes_billing_mailbox():
    rule = MailRule("szamlazas", header=(("To", r"szamlazas@crossec\.com"),), category=BILLING)
    assert verdict(mail(to="szamlazas@crossec.com"), rule).category == BILLING
    assert verdict(mail(to="Számlázás <SZAMLAZAS@crossec.com>"), rule).category == BILLING
    assert verdict(mail(to="support@crossec.com"), rule).category is None


def test_header_name_is_case_insensitive_and_any_value_counts():
    rule = MailRule("via-list", header=(("x-original-to", "^billing@"),), no_ack=True)
    m = mail("X-Original-To: other@crossec.com", "X-Original-To: billing@crossec.com")
    assert verdict(m, rule).no_ack


def test_a_missing_header_fails_the_condition():
    rule = MailRule("prio", header=(("X-Priority", ".*"),), area=NORMA)
    assert verdict(mail(), rule) == NOTHING
    assert verdict(mail("X-Priority: 1"), rule).area == NORMA


def test_every_header_pair_must_hold():
    rule = MailRule("both", header=(("X-Mailer", "outlook"), ("X-Priority", "^1")), no_ack=True)
    assert not verdict(mail("X-Mailer: Microsoft Outlook 16.0"), rule).no_ack
    assert verdict(mail("X-Mailer: Microsoft Outlook 16.0", "X-Priority: 1 (Highest)"), rule).no_ack


def test_header_regex_sees_encoded_words_decoded():
    rule = MailRule("name", header=(("To", "Számlázás"),), category=BILLING)
    m = mail(to="=?utf-8?q?Sz=C3=A1ml=C3=A1z=C3=A1s?= <inbox@crossec.com>")
    assert verdict(m, rule).category == BILLING


# --- subject and body -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "pattern, subject, hit",
    [
        ("számla", "Számla módosítás", True),
        ("számla", "SZAMLA MODOSITAS", True),  # accents and case do not matter
        ("szamla", "Számla módosítás", True),  # either way round
        (r"^\[?crx-\d+", "[CRX-42] Re: x", True),
        (r"\bnorma\b", "Normál ügymenet", False),  # the regex, not a prefix: \b holds
        (r"\S+@\S+", "cím: anna@example.hu", True),  # \S stays \S (no case folding of the regex)
        (r"[€$]\s*\d", "Díj: € 120", True),  # non-Latin characters are kept on both sides
        ("invoice", "Számla", False),
    ],
)
def test_subject_regex(pattern, subject, hit):
    v = verdict(mail(subject=subject), MailRule("s", subject=pattern, category=BILLING))
    assert v.category == (BILLING if hit else None)


def test_body_regex_is_searched_in_the_whole_text():
    rule = MailRule("order", body=r"rendel[ée]ssz[aá]m:\s*RND-\d+", category=BILLING)
    body = "Jó napot!\n\n" + "Részletek.\n" * 300 + "Rendelésszám: RND-88213\n"
    assert verdict(mail(body=body), rule).category == BILLING
    assert verdict(mail(body="Rendelesszam: RND-1"), rule).category == BILLING
    assert verdict(mail(body="Nincs rendelésszám."), rule).category is None


def test_all_given_conditions_must_hold():
    rule = MailRule("partner-bug", sender=("*@partner.example",), subject="hiba", body="norma", category=BUG)
    ok = mail(sender="it@partner.example", subject="Hiba", body="A Norma nem indul.")
    assert verdict(ok, rule).category == BUG
    assert verdict(mail(sender="it@other.example", subject="Hiba", body="A Norma nem indul."), rule) == NOTHING
    assert verdict(mail(sender="it@partner.example", subject="Kérdés", body="A Norma nem indul."), rule) == NOTHING
    assert verdict(mail(sender="it@partner.example", subject="Hiba", body="Az export nem megy."), rule) == NOTHING


# --- combining rules ------------------------------------------------------------------------


def test_first_rule_setting_a_field_wins_it_and_flags_accumulate():
    rules = (
        MailRule("quiet-partner", sender=("*@partner.example",), no_ack=True),
        MailRule("billing-words", subject="számla", category=BILLING),
        MailRule("norma-words", subject="norma", category=BUG, area=NORMA),
        MailRule("blocked", sender=("spam@partner.example",), ignore=True, area="Egyéb"),
    )
    v = verdict(mail(sender="bob@partner.example", subject="Norma számla"), *rules)
    assert v == RuleVerdict(BILLING, NORMA, True, False, False, ("quiet-partner", "billing-words", "norma-words"))
    v = verdict(mail(sender="spam@partner.example", subject="Norma"), *rules)
    assert v == RuleVerdict(BUG, NORMA, True, True, False, ("quiet-partner", "norma-words", "blocked"))
    v = verdict(mail(sender="x@example.hu", subject="Üdv"), *rules)
    assert v == NOTHING


def test_a_rule_that_matches_is_named_even_without_actions():
    assert verdict(mail(subject="x"), MailRule("tag", subject="x")).matched == ("tag",)


def test_a_bad_regex_matches_nothing_instead_of_crashing():
    rules = (MailRule("broken", subject="(unclosed", ignore=True), MailRule("fine", subject="kérdés", no_ack=True))
    v = verdict(mail(subject="Kérdés (unclosed"), *rules)
    assert (v.ignore, v.no_ack, v.matched) == (False, True, ("fine",))


# --- spam -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers, spam",
    [
        ((), False),
        (("X-Spam-Flag: YES",), True),
        (("X-Spam-Flag: yes",), True),
        (("X-Spam-Flag:   Yes  ",), True),
        (("X-Spam-Flag: NO",), False),
        (("X-Spam-Flag: NO", "X-Spam-Flag: YES"), True),  # a sender's own "NO" cannot hide ours
        (("X-Spam-Score: 7.3",), True),
        (("X-Spam-Score: 5.0",), True),  # at the threshold
        (("X-Spam-Score: 4.9",), False),
        (("X-Spam-Score: 7.3 / 5.0",), True),
        (("X-Spam-Score: 1.2 / 5.0",), False),
        (("X-Spam-Score: -2.1",), False),
        (("X-Spam-Score: 12",), True),
        (("X-Spam-Score: 6,4",), True),  # decimal comma
        (("X-Spam-Score: ***",), False),  # not a number: no verdict from it
        (("X-Spam-Score: -100", "X-Spam-Score: 8.0"), True),
        (("X-Spam-Status: Yes, score=7.3 required=5.0 tests=BAYES_99,URIBL_BLACK autolearn=no",), True),
        (("X-Spam-Status: No, score=1.2 required=5.0 tests=BAYES_00",), False),
        (("X-Spam-Status: No, score=-0.5 required=5.0",), False),
        (("X-Spam-Status: Yes, hits=7.3 required=5.0",), False),  # only score= is read
        (("X-Spam-Status: No, score=5.1 required=6.0",), True),  # our threshold, not theirs
    ],
)
def test_spam_headers(headers, spam):
    v = verdict(mail(*headers))
    assert v.spam is spam
    assert v.matched == (("spam",) if spam else ())
    assert is_spam(mail(*headers), SPAM) is spam


def test_spam_policy_is_configurable():
    policy = SpamPolicy(flag_header="X-Barracuda-Spam-Flag", score_header="X-Barracuda-Spam-Score", threshold=3.5)
    assert verdict(mail("X-Barracuda-Spam-Flag: YES"), spam=policy).spam
    assert verdict(mail("X-Barracuda-Spam-Score: 3.5"), spam=policy).spam
    assert not verdict(mail("X-Barracuda-Spam-Score: 3.4"), spam=policy).spam
    assert not verdict(mail("X-Spam-Flag: YES"), spam=policy).spam  # the default header is not read
    assert verdict(mail("X-Spam-Status: Yes, score=3.6"), spam=policy).spam  # SpamAssassin's always is


def test_spam_is_reported_after_the_rules_and_leaves_their_actions_alone():
    rules = (MailRule("billing", subject="számla", category=BILLING),)
    v = verdict(mail("X-Spam-Flag: YES", subject="Számla"), *rules)
    assert v == RuleVerdict(BILLING, None, False, False, True, ("billing", "spam"))


# --- check_rule -----------------------------------------------------------------------------


def test_good_rules_pass():
    assert check_rule(MailRule("block", sender=("*@spam.example",), ignore=True)) is None
    assert check_rule(MailRule("to", header=(("To", r"szamlazas@crossec\.com"),), category=BILLING)) is None
    assert check_rule(MailRule("b", subject=r"^\[CRX-\d+\]", body="norma", area=NORMA, no_ack=True)) is None


@pytest.mark.parametrize(
    "rule, field",
    [
        (MailRule("r", body="(unclosed", category=BUG), "body: bad regex: "),
        (MailRule("r", subject="[a-", category=BUG), "subject: bad regex: "),
        (MailRule("r", subject="*star", category=BUG), "subject: bad regex: "),
        (MailRule("r", header=(("To", "a(b"),), category=BUG), "header: To: bad regex: "),
        (MailRule("r", header=(("Bad Name", "x"),), category=BUG), "header: bad header name"),
        (MailRule("r", header=(("", "x"),), category=BUG), "header: bad header name"),
        (MailRule("r", header=(("To:", "x"),), category=BUG), "header: bad header name"),
        (MailRule("r", sender=("",), ignore=True), "sender: empty pattern"),
        (MailRule("r", subject="x", category="Számla"), "category: unknown category 'Számla'"),
        (MailRule("r", subject="x", area="Norma"), "area: unknown area 'Norma'"),
        (MailRule("", subject="x", ignore=True), "name: must not be empty"),
        (MailRule("spam", subject="x", ignore=True), "name: 'spam' is reserved"),
        (MailRule("r", ignore=True), "rule has no condition"),
        (MailRule("r", subject="x"), "rule has no action"),
    ],
)
def test_bad_rules_are_reported_by_field(rule, field):
    error = check_rule(rule)
    assert error is not None and error.startswith(field), error


def test_the_regex_error_says_what_is_wrong():
    assert check_rule(MailRule("r", body="(unclosed", category=BUG)) == \
        "body: bad regex: missing ), unterminated subpattern at position 0"
