"""`gdpr erase` touches the erased person and nobody else (issue 12, "Trust").

Real intake from Dovecot, acknowledgements, assignment notices and an agent's relayed reply
sent through the outbox to the aiosmtpd sink, a real SQLite file; the CLI as a user runs it.
Every table is dumped before and after, and compared row by row.
"""

from __future__ import annotations

import re
import sqlite3
import zlib
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from test_gdpr_erase import mail
from test_workflow import AGENTS, DIVISIONS, TRUSTED, agent_mail

ANNA, ANNA_NAME = "anna@example.hu", "Kovács Anna"
ANNA_SUBJECT, ANNA_PHRASE = "Kétszer terhelt számla", "kék bicikli"
JOHANNA = "johanna@example.hu"
# `_` and `%` are LIKE wildcards: `a_b%c` as a pattern matches `axbc`.
WILD, WILD_TWIN, SHARED_NAME = "a_b%c@example.hu", "axbc@example.hu", "Varga Lilla"
PETER = "peter@example.hu"  # his display name is the agent Szabó Péter's


# --- the database, as rows -------------------------------------------------------------


def dump(desk) -> dict[tuple[str, int], dict]:
    """Every row of every table, keyed by (table, rowid); values exactly as stored."""
    connection = sqlite3.connect(f"file:{desk.config.parent / 'mailbridge.db'}?mode=ro", uri=True)
    try:
        tables = [name for (name,) in connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
        rows = {}
        for table in tables:
            cursor = connection.execute(f'SELECT rowid AS "__rowid", * FROM "{table}"')
            columns = [d[0] for d in cursor.description]
            for values in cursor:
                row = dict(zip(columns, values))
                rows[(table, row.pop("__rowid"))] = row
        return rows
    finally:
        connection.close()


def texts(row: dict) -> list[str]:
    """The readable values of a row (raw copies decompressed)."""
    found = []
    for value in row.values():
        if isinstance(value, bytes):
            try:
                value = zlib.decompress(value)
            except zlib.error:
                pass
            value = value.decode("utf-8", "surrogateescape")
        if isinstance(value, str):
            found.append(value)
    return found


def address_pattern(address: str) -> re.Pattern:
    return re.compile(rf"(?<![\w.+%-]){re.escape(address)}(?![\w-])", re.IGNORECASE)


def word_pattern(words: str) -> re.Pattern:
    return re.compile(rf"(?<!\w){re.escape(words)}(?!\w)", re.IGNORECASE)


def mentions(row: dict, *patterns: re.Pattern) -> bool:
    return any(p.search(text) for text in texts(row) for p in patterns)


def ticket_of(desk, email: str) -> int:
    [ticket] = [t for t in desk.tickets() if t["reporter_email"] == email]
    return int(ticket["id"].split("-")[1])


def rows_of(rows: dict, ticket_id: int, reporter_email: str) -> set[tuple[str, int]]:
    """One person's rows: their reporter row, their ticket and everything on it, their raw copies."""
    reporter_ids = {k[1] for k, r in rows.items() if k[0] == "reporter" and r["email"] == reporter_email}
    keys = {k for k, r in rows.items() if (k[0] == "ticket" and k[1] == ticket_id)
            or (k[0] != "ticket" and r.get("ticket_id") == ticket_id) or k == ("reporter", min(reporter_ids))}
    raw_ids = {r["raw_id"] for k, r in rows.items() if k in keys and k[0] == "message" and r["raw_id"]}
    return keys | {("raw_message", i) for i in raw_ids}


def changes(before: dict, after: dict) -> tuple[set, set, set]:
    changed = {k for k in before if k in after and before[k] != after[k]}
    removed = set(before) - set(after)
    added = set(after) - set(before)
    return changed, removed, added


def file_state(desk) -> dict[str, bytes]:
    root = desk.config.parent
    return {p.name: p.read_bytes() for p in root.glob("mailbridge.db*")}


# --- the desk ----------------------------------------------------------------------------


@pytest.fixture
def desk(mailbox, smtp_sink, mailbridge_for):
    desk = mailbridge_for(mailbox, smtp_sink, agents=AGENTS, divisions=DIVISIONS, security=TRUSTED)
    mailbox.deliver_many([
        mail(1, ANNA, ANNA_NAME, ANNA_SUBJECT,
             f"Tisztelt Ügyfélszolgálat!\n\nA {ANNA_PHRASE} számláját kétszer terhelték a kártyámra.\n"
             f"Kérem, hívjanak: +36 30 123 4567.\n\nÜdvözlettel:\n{ANNA_NAME}\n{ANNA}\n",
             {"anna-szerzodes.pdf": b"%PDF-1.4 Anna's own contract\n" * 40}),
        mail(2, JOHANNA, "Tóth Johanna", "Johanna kérdése az árlistáról",
             "Jó napot!\n\nTóth Johanna vagyok (johanna@example.hu). Kovács Annamária kolléganőm ajánlotta "
             "Önöket; Annával még nem beszéltem.\nKérem az árlistát.\n\nÜdvözlettel:\nTóth Johanna\n",
             {"johanna-ajanlat.pdf": b"%PDF-1.4 Johanna's offer\n" * 40}),
        mail(3, "bela@example.hu", "Nagy Béla", "Ajánlás",
             f"{ANNA_NAME} ({ANNA}) ajánlotta Önöket, ugyanazt kérem, amit ő.\n"),
    ])
    desk("poll", "--once")
    desk("tick")  # acknowledgements to the customers, assignment notices quoting them to the agents
    anna_ticket = f"CRX-{ticket_of(desk, ANNA):06d}"
    mailbox.deliver(agent_mail(f"Tisztelt {ANNA_NAME}!\n\nA számlát javítjuk.\n\n"
                               f"> A {ANNA_PHRASE} számláját kétszer terhelték a kártyámra.\n",
                               subject=f"Re: [{anna_ticket}] {ANNA_SUBJECT}"))
    desk("poll", "--once")
    desk("ticket", "log", anna_ticket, "--channel", "phone", "--direction", "in", "--by", "kiss.anna@crossec.com",
         "--note", f"{ANNA_NAME} telefonált: a {ANNA_PHRASE} ügyében.")
    desk("tick")  # the reply relayed to Anna
    return desk


@pytest.fixture
def twins(mailbox, smtp_sink, mailbridge_for):
    desk = mailbridge_for(mailbox, smtp_sink, agents=AGENTS, divisions=DIVISIONS)
    mailbox.deliver_many([
        mail(11, WILD, SHARED_NAME, "Jelszó", f"Elfelejtettem a jelszavam.\n\n{SHARED_NAME}\n"),
        mail(12, WILD_TWIN, SHARED_NAME, "Számla", f"Kérem a számlát.\n\n{SHARED_NAME}\n{WILD_TWIN}\n"),
        mail(13, PETER, "Szabó Péter", "Norma export", "Az export nem működik.\n\nSzabó Péter\n"),
        mail(14, "tunde@example.hu", "Farkas Tünde", "GDPR sablon", "Kérem a GDPR sablont.\n"),
    ])
    desk("poll", "--once")
    desk("tick")
    return desk


# --- the tests ----------------------------------------------------------------------------


def test_erasing_anna_leaves_johanna_byte_for_byte_and_changes_only_annas_rows(desk):
    before = dump(desk)
    anna, johanna = ticket_of(desk, ANNA), ticket_of(desk, JOHANNA)
    johannas = rows_of(before, johanna, JOHANNA)
    assert len(johannas) >= 8  # reporter, ticket, her mail, its raw copy, file, ack, notice, events...
    assert {k[0] for k in johannas} >= {"reporter", "ticket", "message", "raw_message", "attachment", "outbox",
                                        "notification", "event", "participant"}

    result = desk("gdpr", "erase", ANNA, "--yes")
    assert "erased as erased-" in result.stdout

    after = dump(desk)
    changed, removed, added = changes(before, after)
    assert [k for k in johannas if before[k] != after.get(k)] == []

    # Every row changed or removed is Anna's: on her ticket, her reporter row, her raw copy or
    # file, or a row that mentions her exactly (Béla's mail names her).
    annas = rows_of(before, anna, ANNA)
    annas |= {("attachment", k[1]) for k, r in before.items() if k[0] == "attachment" and r["ticket_id"] == anna}
    mentioning = {k for k, r in before.items() if mentions(r, address_pattern(ANNA), word_pattern(ANNA_NAME))}
    assert (changed | removed) - annas - mentioning == set()
    assert mentioning - annas, "the test must see a mention of Anna outside her ticket"
    assert {k[0] for k in added} <= {"erasure", "event"}
    assert {after[k]["type"] for k in added if k[0] == "event"} == {"erasure"}


def test_annas_words_survive_nowhere_in_the_database(desk):
    before = dump(desk)
    patterns = (address_pattern(ANNA), word_pattern(ANNA_NAME), word_pattern(ANNA_PHRASE), word_pattern(ANNA_SUBJECT))
    assert {k[0] for k, r in before.items() if mentions(r, *patterns)} >= {
        "reporter", "ticket", "message", "outbox", "notification", "raw_message", "participant"}

    desk("gdpr", "erase", ANNA, "--yes")

    after = dump(desk)
    survivors = {k: [p.pattern for p in patterns if any(p.search(t) for t in texts(r))]
                 for k, r in after.items() if mentions(r, *patterns)}
    assert survivors == {}
    # Johanna's own text keeps "Annamária" and "Annával": not Anna's, whatever they contain.
    [johannas_mail] = [r for k, r in after.items() if k[0] == "message" and r["sender"] == JOHANNA]
    assert "Kovács Annamária kolléganőm" in johannas_mail["text"] and "Annával" in johannas_mail["text"]
    tickets = desk.tickets()
    assert len(tickets) == 3 and any(t["subject"] == "[erased]" for t in tickets)


def test_wildcards_and_a_shared_display_name_touch_only_that_address(twins):
    before = dump(twins)
    wild, twin, peter = ticket_of(twins, WILD), ticket_of(twins, WILD_TWIN), ticket_of(twins, PETER)

    dry = twins("gdpr", "erase", WILD, "--dry-run")
    assert SHARED_NAME in dry.stdout and "shared" in dry.stdout  # kept in free text: another reporter's too
    assert dump(twins) == before

    twins("gdpr", "erase", WILD, "--yes")
    after = dump(twins)
    changed, removed, _ = changes(before, after)
    others = rows_of(before, twin, WILD_TWIN) | rows_of(before, peter, PETER)
    assert [k for k in others if before[k] != after.get(k)] == []
    assert (changed | removed) - rows_of(before, wild, WILD) - {
        ("attachment", k[1]) for k, r in before.items() if k[0] == "attachment" and r["ticket_id"] == wild} == set()
    assert {t["reporter_name"] for t in twins.tickets() if t["reporter_email"] == WILD_TWIN} == {SHARED_NAME}


def test_a_customer_named_like_an_agent_is_erased_and_the_agent_is_not(twins):
    before = dump(twins)
    peter = ticket_of(twins, PETER)
    his = rows_of(before, peter, PETER) | {
        ("attachment", k[1]) for k, r in before.items() if k[0] == "attachment" and r["ticket_id"] == peter}
    agent_rows = {k for k, r in before.items() if mentions(r, word_pattern("Szabó Péter"))} - his
    assert {k[0] for k in agent_rows} >= {"outbox", "message"}  # notices to the agent Szabó Péter

    twins("gdpr", "erase", PETER, "--yes")
    after = dump(twins)
    assert [k for k in agent_rows if before[k] != after.get(k)] == []
    changed, removed, _ = changes(before, after)
    assert (changed | removed) - his == set()
    [reporter] = [r for k, r in after.items() if k[0] == "reporter" and r["id"] == before[("ticket", peter)]["reporter_id"]]
    assert reporter["name"].startswith("erased-") and reporter["email"].endswith("@erased.invalid")


@pytest.mark.parametrize("address", ["%", "", "not an email", "  ", "_@%", "anna@", "@example.hu",
                                     "anna@example.hu%", "x" * 400 + "@example.hu"])
def test_an_address_that_is_not_one_is_refused_and_nothing_is_written(desk, address):
    before, files = dump(desk), file_state(desk)
    result = desk("gdpr", "erase", address, "--yes", check=False)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "not an e-mail address" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr
    assert dump(desk) == before and file_state(desk) == files


def test_an_address_we_hold_nothing_about_is_a_usage_error_and_nothing_is_written(desk):
    before, files = dump(desk), file_state(desk)
    for address in ("nobody@example.hu", "ANNA@example.hu.evil", "nna@example.hu"):
        result = desk("gdpr", "erase", address, "--yes", check=False)
        assert result.returncode == 2 and "nothing held about" in result.stderr, (address, result)
    assert dump(desk) == before and file_state(desk) == files


def test_export_refuses_what_is_not_an_address(desk, tmp_path):
    for address in ("", "%", "not an email"):
        result = desk("gdpr", "export", address, "--out", str(tmp_path / "x.zip"), check=False)
        assert result.returncode == 2 and "not an e-mail address" in result.stderr, (address, result)
    assert not (tmp_path / "x.zip").exists()


def test_the_dry_run_says_what_would_change_and_writes_nothing(desk):
    before, files = dump(desk), file_state(desk)
    result = desk("gdpr", "erase", ANNA, "--dry-run")
    assert result.returncode == 0
    assert ANNA_NAME in result.stdout and "would" in result.stdout
    for table in ("reporter", "ticket", "message", "outbox", "notification", "raw_message"):
        assert re.search(rf"\b{table}\b: *[1-9]", result.stdout), (table, result.stdout)
    assert dump(desk) == before and file_state(desk) == files
    assert not (Path(desk.config.parent) / "storage" / "pseudonym.key").exists()  # made by the first real erasure


def test_upper_case_and_spaces_in_the_address_find_the_same_person(desk):
    result = desk("gdpr", "erase", f"  {ANNA.upper()} ", "--yes")
    assert "erased as erased-" in result.stdout
    assert ANNA not in {t["reporter_email"] for t in desk.tickets()}
    assert JOHANNA in {t["reporter_email"] for t in desk.tickets()}


@pytest.mark.parametrize("address", ["support@crossec.com", "kiss.anna@crossec.com", "fejlesztes@crossec.com"])
def test_our_own_an_agents_or_a_divisions_address_is_not_a_customer_to_erase(desk, address):
    before, files = dump(desk), file_state(desk)
    result = desk("gdpr", "erase", address, "--yes", check=False)
    assert result.returncode == 2 and "not a customer's" in result.stderr, result
    assert dump(desk) == before and file_state(desk) == files


def test_a_mail_still_queued_to_them_is_cancelled_not_sent_to_the_pseudonym(mailbox, smtp_sink, mailbridge_for):
    desk = mailbridge_for(mailbox, smtp_sink, agents=AGENTS)
    mailbox.deliver(mail(21, ANNA, ANNA_NAME, ANNA_SUBJECT, f"A {ANNA_PHRASE} ügyében írok.\n"))
    desk("poll", "--once")
    smtp_sink.refuse_next(5)
    desk("tick")  # the acknowledgement and the notice are refused: still queued, to be retried
    assert smtp_sink.messages == []
    desk("gdpr", "erase", ANNA, "--yes")
    smtp_sink.clear()
    later = (datetime.now(timezone.utc) + timedelta(hours=6)).isoformat()
    desk("tick", "--at", later)
    assert [str(m["To"]) for m in smtp_sink.messages] == ["kiss.anna@crossec.com"]  # the agent's notice only
    assert ANNA_PHRASE not in smtp_sink.messages[0].get_body(("plain",)).get_content()
    rows = [r for k, r in dump(desk).items() if k[0] == "outbox" and r["template"] == "ack"]
    assert [(r["status"], r["last_error"]) for r in rows] == [("failed", "recipient erased (GDPR Art. 17)")]


def test_a_person_who_writes_again_after_erasure_is_erased_again(mailbox, desk):
    desk("gdpr", "erase", ANNA, "--yes")
    mailbox.deliver(mail(31, ANNA, ANNA_NAME, "Újra írok", f"Megint a {ANNA_PHRASE} miatt.\n"))
    desk("poll", "--once")
    assert ANNA in {t["reporter_email"] for t in desk.tickets()}
    result = desk("gdpr", "erase", ANNA, "--yes", check=False)
    assert result.returncode == 0 and "erased as erased-" in result.stdout, result
    erased = {t["reporter_email"] for t in desk.tickets()} - {JOHANNA, "bela@example.hu"}
    assert len(erased) == 1 and erased.pop().endswith("@erased.invalid")  # one pseudonymous reporter
    assert not any(mentions(r, word_pattern(ANNA_PHRASE), address_pattern(ANNA)) for r in dump(desk).values())


def test_on_postgresql_the_search_index_follows_the_erasure(mailbox, smtp_sink, mailbridge_for, postgres_server):
    import json

    url = postgres_server.create_database("mailbridge_erase_exact")
    desk = mailbridge_for(mailbox, smtp_sink, database={"url": url}, agents=AGENTS)
    mailbox.deliver_many([
        mail(41, ANNA, ANNA_NAME, ANNA_SUBJECT, f"A {ANNA_PHRASE} számláját kétszer terhelték.\n"),
        mail(42, JOHANNA, "Tóth Johanna", "Johanna kérdése", "Kovács Annamária ajánlotta a bicikli boltot.\n"),
    ])
    desk("poll", "--once")
    desk("tick")

    def found(word: str) -> list[str]:
        return [t["reporter_email"] for t in json.loads(desk("tickets", "search", word, "--json").stdout)]

    assert sorted(found("bicikli")) == sorted([ANNA, JOHANNA]) and found("terhelt") == [ANNA]
    desk("gdpr", "erase", ANNA, "--yes")
    assert found("bicikli") == [JOHANNA] and found("terhelt") == [] and found("Annamária") == [JOHANNA]


@pytest.mark.parametrize("text, expected", [
    ("Kovács Anna (anna@example.hu) írt", "P (P@erased.invalid) írt"),
    ("johanna@example.hu és x.anna@example.hu", "johanna@example.hu és x.anna@example.hu"),
    ("anna@example.hu.evil.com, anna@example.hungary.hu", "anna@example.hu.evil.com, anna@example.hungary.hu"),
    ("Írjon: ANNA@Example.HU.", "Írjon: P@erased.invalid."),
    ("Kovács Annamária, Kovács Annával", "Kovács Annamária, Kovács Annával"),
    ("Kovács Anna-t felhívtam", "P-t felhívtam"),
    ("Dr. Kovács Anna Mária (másik ügyfél)", "Dr. Kovács Anna Mária (másik ügyfél)"),
    ("Kovács\n Anna", "P"),
])
def test_mentions_are_whole_addresses_and_whole_names_only(text, expected):
    from mailbridge.policy.erasure import Mentions

    mentions = Mentions("anna@example.hu", ("Kovács Anna",), "P", protected=("Kovács Anna Mária", "Kiss Anna"))
    assert mentions.replace(text) == expected
    assert mentions.found(text) == (text != expected)


def test_only_a_name_of_their_own_and_long_enough_is_looked_for_in_other_peoples_text():
    from mailbridge.policy.erasure import names_for_text

    names, kept = names_for_text(["Kovács Anna", "Anna", "Szabó  Péter", "", "kovács anna"], ["szabó péter", "Kiss Anna"])
    assert names == ("Kovács Anna",)
    assert dict(kept) == {"Anna": "too short to tell apart",
                          "Szabó Péter": "shared with an agent, a division or another reporter"}
