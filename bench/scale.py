"""Scale benchmark (#7): intake and the CLI's read paths on a PostgreSQL database of 1,000,000 tickets.

    python bench/scale.py [--tickets 1000000] [--mails 1000] [--runs 30] [--rounds 3] [--keep]
    python bench/scale.py --reuse DIR      # a database kept by an earlier --keep run: no generation

Starts a private PostgreSQL (tests/servers.py `Postgres`) and Dovecot, creates the
schema with `mailbridge init` (the alembic migrations, indexes included), then
generates the data server-side with set-based SQL (`INSERT … SELECT … FROM
generate_series`): reporters, tickets (most closed, the newest open), 2-4
messages each with Hungarian text, participants, events, acknowledgements in the
outbox, notifications, intake-log rows, a few attachments' metadata. Exactly
one message carries the rare word `xylofonhiba`. Then it prints:

* intake: `mailbridge poll --once` over N new mails (30 % replies by subject
  tag or In-Reply-To to open, resolved and closed tickets; the rest new, half
  from known customers), best of R rounds, on three databases: the big one;
  "empty+refs", a fresh one holding only the tickets and senders those mails
  refer to, so each mail has the same outcome as on the big one (the target's
  comparison, >= 0.8x); and a truly empty one, where the replies become new
  tickets. Wall time, time without process start-up, and the poller's own
  stage timings (its `intake.polled` log line);
* latency, in-process (the CLI's own entry point, warm, no interpreter start-up),
  p50/p95 of `tickets list --status open --limit 50 --json`, `tickets show ID
  --json` (random IDs) and `tickets search xylofonhiba --json` (targets: p95 <
  100 ms, < 300 ms), plus one subprocess run for the start-up cost;
* a table of the figures with their targets.

Raw copies (`raw_message`) are not generated: retention purges them, and no
measured path reads them. The attachment rows have no files behind them.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(1, str(ROOT))  # mailbridge itself, imported in-process for the latency runs

from conftest import write_config  # noqa: E402
from factory import simple_mail  # noqa: E402
from servers import Dovecot, Postgres  # noqa: E402

RARE_WORD = "xylofonhiba"
OPEN = ("new", "acknowledged", "in_progress", "escalated")
AGENTS = [
    {"name": "Kiss Anna", "email": "kiss.anna@crossec.com", "areas": ["Crossec Norma", "Egyéb"], "fallback": True},
    {"name": "Tóth Béla", "email": "toth.bela@crossec.com", "areas": ["Crossec Norma"]},
    {"name": "Szabó Csilla", "email": "szabo.csilla@crossec.com", "areas": ["Crossec Norma", "GDPR Segédanyagok"]},
    {"name": "Varga Dénes", "email": "varga.denes@crossec.com", "areas": ["GDPR Segédanyagok", "Üzleti tanácsadás"]},
    {"name": "Horváth Emese", "email": "horvath.emese@crossec.com", "areas": ["Üzleti tanácsadás", "Egyéb"]},
    {"name": "Nagy Ferenc", "email": "nagy.ferenc@crossec.com", "areas": ["Crossec Norma", "Egyéb"]},
]
# Commoner words first: picks are skewed towards the head of the list (roughly Zipf-like).
WORDS = """
a az és hogy nem is meg van egy de már csak mert ha akkor még azt ezt itt ott most kérem köszönöm
szeretném kérdezni probléma hiba hibát hibás hibaüzenet nem működik rendszer program alkalmazás
számla számlát számlán fizetés befizetés átutalás összeg tétel díj előfizetés szerződés megrendelés
export import fájl mentés adatbázis felhasználó jelszó belépés bejelentkezés fiók jogosultság
képernyő ablak gomb menü beállítás frissítés verzió telepítés újratelepítés letöltés nyomtatás
jelentés kimutatás lista táblázat sablon dokumentum nyilatkozat adatkezelési tájékoztató hozzájárulás
gdpr adatvédelmi incidens érintett kérelem törlés helyesbítés hozzáférés adathordozhatóság
tanácsadás workshop képzés árajánlat ajánlat időpont egyeztetés konzultáció projekt határidő
tegnap ma holnap reggel délután este hétfőn kedden szerdán csütörtökön pénteken múlt héten
hónapban januárban februárban márciusban áprilisban májusban júniusban szeptemberben októberben
kollégám kolléganőm vezetőm könyvelőnk rendszergazdánk ügyfelünk partnerünk cégünk irodánk
gyorsan lassan ismét újra folyamatosan időnként mindig soha véletlenül sajnos szerencsére
jelenik megjelenik eltűnik lefagy összeomlik kilép elindul betölt betöltődik mentődik
kattintok kattintottam próbáltam megpróbáltam újraindítottam ellenőriztem csatoltam küldöm küldtem
kérjük kérnénk várjuk segítségét válaszát visszajelzését türelmét megértését
norma modul riport export-modul szinkronizáció integráció interfész kapcsolat hálózat szerver
windows böngésző chrome firefox edge excel word pdf csv xml zip nyomtató
szám azonosító ügyszám hivatkozás megjegyzés melléklet képernyőkép naplófájl
pontosan egyáltalán teljesen részben körülbelül legalább legfeljebb azonnal sürgősen
""".split()
SUBJECTS = [
    "Hibás számla érkezett", "Nem működik a Crossec Norma exportja", "Kérdés a GDPR segédanyagokról",
    "Érdeklődés üzleti tanácsadás iránt", "Nem tudok belépni", "Lefagy a program mentéskor",
    "Kétszer terhelték a kártyámat", "Árajánlatkérés workshopra", "Adatkezelési tájékoztató sablon",
    "Jelszó visszaállítása", "Hibaüzenet nyomtatáskor", "Előfizetés meghosszabbítása",
    "Törlési kérelem", "Nem érkezett meg a számla", "Frissítés után nem indul",
    "Question about my invoice", "Export to Excel fails", "Szinkronizációs hiba", "Új felhasználó felvétele",
    "Kimutatás hibás összeget mutat",
]
FIRST = ["József", "Anna", "Gábor", "Eszter", "Ödön", "Tünde", "Péter", "Kata", "Zoltán", "Lilla", "Balázs",
         "Réka", "Márton", "Zsófia", "Levente", "Dóra"]
LAST = ["Kovács", "Nagy", "Tóth", "Szabó", "Horváth", "Varga", "Kiss", "Molnár", "Németh", "Farkas", "Balogh",
        "Papp", "Takács", "Juhász", "Lakatos", "Mészáros"]
DOMAINS = ["example.hu", "pelda.hu", "ceg.example.hu", "freemail.example", "mail.example.com", "iroda.example.hu"]
PG_SETTINGS = {"shared_buffers": "2GB", "maintenance_work_mem": "1GB", "max_wal_size": "8GB",
               "checkpoint_timeout": "30min", "effective_cache_size": "12GB"}


# --------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------

def sql_array(values: list[str]) -> str:
    return "ARRAY[" + ",".join("'" + v.replace("'", "''") + "'" for v in values) + "]::text[]"


def connect(url: str):  # type: ignore[no-untyped-def]
    import psycopg

    return psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True)


def pg_tune(pg: Postgres) -> None:
    """A modest server setup for a 23 GB machine (the defaults are for a Raspberry Pi);
    fsync and synchronous_commit stay on: intake commits are measured as they are."""
    with connect(f"postgresql://postgres@127.0.0.1:{pg.port}/postgres") as conn:
        for name, value in PG_SETTINGS.items():
            conn.execute(f"ALTER SYSTEM SET {name} = '{value}'")
    pg._run(str(pg.bin / "pg_ctl"), "-D", str(pg.data), "-w", "-m", "fast", "-l", str(pg.root / "log"), "restart")


def pg_reuse(root: Path) -> Postgres:
    """The cluster an earlier `--keep` run left in ROOT/pg, started on a new port."""
    pg = Postgres(root / "pg")
    pg._run(str(pg.bin / "pg_ctl"), "-D", str(pg.data), "-w", "-l", str(pg.root / "log"),
            "-o", f"-p {pg.port} -k {pg.root} -h 127.0.0.1", "start")
    return pg


def rnd(expr: str, k: int) -> str:
    """A pseudo-random integer in [0, 2^31) from a row's number: reproducible, no random()."""
    return f"(hashint8(({expr})::bigint * 64 + {k}) & 2147483647)"


def frac(expr: str, k: int) -> str:
    return f"({rnd(expr, k)} / 2147483648.0)"


def generate(url: str, n: int, say) -> dict:  # type: ignore[no-untyped-def]
    """The data set, server-side. Returns facts the benchmark needs (the rare word's ticket, ...)."""
    reporters = max(1000, n // 5)
    pool = 50_000
    open_window = max(1, int(n * 0.03))  # the newest 3 %: 60 % of them still open
    resolved_window = max(1, int(n * 0.02))  # the 2 % before them: resolved, not closed yet
    w = len(WORDS)
    agent_emails = [a["email"] for a in AGENTS]
    steps: list[tuple[str, list[str]]] = []

    setup = [
        "CREATE TEMP TABLE w (id int PRIMARY KEY, word text NOT NULL)",
        f"INSERT INTO w SELECT i, word FROM unnest({sql_array(WORDS)}) WITH ORDINALITY AS u(word, i)",
        # Sentences of 6-18 words, the words skewed to the head of the list.
        "CREATE TEMP TABLE pool (id int PRIMARY KEY, s text NOT NULL)",
        f"""INSERT INTO pool
            SELECT i, upper(left(s, 1)) || substr(s, 2) || '.' FROM (
              SELECT i, string_agg(w.word, ' ' ORDER BY j) AS s
              FROM generate_series(0, {pool - 1}) i
              CROSS JOIN LATERAL generate_series(1, 6 + i % 13) j
              JOIN w ON w.id = 1 + floor({w} * power({frac('i * 32 + j', 1)}, 2))::int
              GROUP BY i) x""",
        "ANALYZE w", "ANALYZE pool",
    ]
    steps.append(("word pool", setup))
    steps.append(("reporters", [f"""
        INSERT INTO reporter (id, email, name, created_at, undeliverable)
        SELECT r,
               lower(translate(({sql_array(LAST)})[1 + {rnd('r', 1)} % {len(LAST)}],
                               'áéíóöőúüűÁÉÍÓÖŐÚÜŰ', 'aeiooouuuAEIOOOUUU'))
                 || '.' || r || '@' || ({sql_array(DOMAINS)})[1 + {rnd('r', 2)} % {len(DOMAINS)}],
               ({sql_array(LAST)})[1 + {rnd('r', 1)} % {len(LAST)}] || ' '
                 || ({sql_array(FIRST)})[1 + {rnd('r', 3)} % {len(FIRST)}],
               now() - interval '3 years' + (r::float / {reporters}) * interval '3 years',
               false
        FROM generate_series(1, {reporters}) r"""]))

    ticket_rows = f"""
        SELECT t, created,
          CASE
            WHEN t > {n - open_window} AND {frac('t', 1)} < 0.6 THEN
              (ARRAY['new','acknowledged','acknowledged','in_progress','in_progress','in_progress',
                     'in_progress','escalated','acknowledged','in_progress'])[1 + {rnd('t', 2)} % 10]
            WHEN t > {n - open_window - resolved_window} THEN 'resolved'
            WHEN {frac('t', 3)} < 0.0005 THEN (ARRAY['in_progress','escalated'])[1 + {rnd('t', 4)} % 2]
            ELSE 'closed'
          END AS status
        FROM (SELECT t, now() - interval '3 years' + ((t - 1)::float / {n}) * interval '3 years'
                        + {frac('t', 9)} * interval '20 minutes' AS created
              FROM generate_series(1, {n}) t) g"""
    steps.append(("tickets", [f"""
        INSERT INTO ticket (id, subject, status, category, area, channel, reporter_id, assignee, language, flags,
                            linked_ticket_id, created_at, updated_at, ack_deadline, acknowledged_at, resolved_at,
                            assigned_at, merged_into_id)
        SELECT t,
          ({sql_array(SUBJECTS)})[1 + {rnd('t', 10)} % {len(SUBJECTS)}]
            || CASE WHEN {frac('t', 11)} < 0.5 THEN ' – ' || (SELECT word FROM w WHERE w.id = 1 + t % {w}) ELSE '' END,
          status,
          CASE WHEN c < 0.35 THEN 'Hibabejelentés' WHEN c < 0.60 THEN 'Általános kérdés'
               WHEN c < 0.80 THEN 'Számlázással kapcsolatos kérdés' WHEN c < 0.90 THEN 'Érdeklődés' ELSE 'Egyéb' END,
          CASE WHEN a < 0.50 THEN 'Crossec Norma' WHEN a < 0.70 THEN 'GDPR Segédanyagok'
               WHEN a < 0.85 THEN 'Üzleti tanácsadás' ELSE 'Egyéb' END,
          CASE WHEN ch < 0.90 THEN 'email' WHEN ch < 0.96 THEN 'form' ELSE 'phone' END,
          1 + floor({reporters} * power({frac('t', 12)}, 1.5))::int,
          ({sql_array(agent_emails)})[1 + {rnd('t', 13)} % {len(agent_emails)}],
          CASE WHEN {frac('t', 14)} < 0.95 THEN 'hu' ELSE 'en' END,
          '',
          CASE WHEN t > 100 AND {frac('t', 15)} < 0.02 THEN t - 1 - {rnd('t', 16)} % 100 END,
          created,
          CASE WHEN status = 'closed' THEN least(now(), resolved + interval '14 days')
               ELSE coalesce(resolved, acked, created) END,
          created + interval '3 days',
          acked, resolved, created + interval '1 second', NULL
        FROM (
          SELECT t, created, status,
                 {frac('t', 5)} AS c, {frac('t', 6)} AS a, {frac('t', 7)} AS ch,
                 CASE WHEN status <> 'new' THEN created + {frac('t', 8)} * interval '4 hours' END AS acked,
                 CASE WHEN status IN ('resolved', 'closed')
                      THEN least(now() - interval '1 minute', created + interval '2 hours'
                                 + {frac('t', 17)} * interval '10 days') END AS resolved
          FROM ({ticket_rows}) s) x"""]))
    steps.append(("participants", [f"""
        INSERT INTO participant (ticket_id, email, role)
        SELECT t.id, r.email, 'reporter' FROM ticket t JOIN reporter r ON r.id = t.reporter_id""", f"""
        INSERT INTO participant (ticket_id, email, role)
        SELECT id, 'kollega.' || id || '@pelda.hu', 'cc' FROM ticket WHERE {frac('id', 20)} < 0.1"""]))

    # 2-4 messages a ticket: the customer's mail, our acknowledgement, an agent's answer, the customer again.
    chunk = 200_000
    message_sql = []
    for lo in range(1, n + 1, chunk):
        hi = min(n, lo + chunk - 1)
        body = (f"p1.s || ' ' || p2.s || CASE WHEN k % 2 = 0 THEN ' ' || p3.s ELSE '' END || "
                f"CASE WHEN k % 3 = 0 THEN ' ' || p4.s ELSE '' END || "
                f"CASE WHEN {frac('k', 6)} < 0.3 THEN ' Hivatkozási szám: SZ-' || (2020 + k % 6) || '/' || (k % 99991) "
                f"|| '.' ELSE '' END")
        message_sql.append(f"""
        INSERT INTO message (ticket_id, direction, kind, channel, internal, message_id, sender, sender_name, to_addrs,
                             cc_addrs, subject, text, new_text, html, "references", reason, raw_id, raw_sha256,
                             sent_at, created_at)
        SELECT t.id,
          CASE WHEN j = 2 THEN 'out' ELSE 'in' END,
          CASE j WHEN 1 THEN 'customer' WHEN 2 THEN 'ack' WHEN 3 THEN 'agent' ELSE 'customer' END,
          'email', false,
          CASE j WHEN 1 THEN '<gen-' || t.id || '-1@' || split_part(r.email, '@', 2) || '>'
                 WHEN 2 THEN '<ack.CRX-' || lpad(t.id::text, 6, '0') || '.gen' || t.id || '@crossec.com>'
                 WHEN 3 THEN '<gen-' || t.id || '-3@crossec.com>'
                 ELSE '<gen-' || t.id || '-' || j || '@' || split_part(r.email, '@', 2) || '>' END,
          CASE j WHEN 2 THEN 'support@crossec.com' WHEN 3 THEN t.assignee ELSE r.email END,
          CASE j WHEN 2 THEN 'Crossec' WHEN 3 THEN '' ELSE r.name END,
          CASE j WHEN 2 THEN r.email WHEN 3 THEN r.email ELSE 'support@crossec.com' END,
          '',
          CASE WHEN j = 1 THEN t.subject ELSE 'Re: [CRX-' || lpad(t.id::text, 6, '0') || '] ' || t.subject END,
          CASE WHEN j = 2 THEN 'Kedves ' || r.name || '! Bejelentését CRX-' || lpad(t.id::text, 6, '0')
                               || ' számon rögzítettük, munkatársunk hamarosan felveszi Önnel a kapcsolatot.'
               WHEN j = 3 THEN 'Tisztelt ' || r.name || '! ' || {body} || ' Üdvözlettel: Crossec ügyfélszolgálat'
               ELSE 'Tisztelt Ügyfélszolgálat! ' || {body} || ' Üdvözlettel: ' || r.name END,
          CASE WHEN j = 2 THEN 'Bejelentését rögzítettük.' ELSE {body} END,
          '',
          CASE WHEN j > 1 THEN '<gen-' || t.id || '-1@' || split_part(r.email, '@', 2) || '>' ELSE '' END,
          '', NULL, '',
          CASE WHEN j = 2 THEN t.created_at + interval '5 minutes' END,
          t.created_at + (j - 1) * interval '3 hours'
        FROM ticket t
        JOIN reporter r ON r.id = t.reporter_id
        CROSS JOIN LATERAL generate_series(1, 2 + {rnd('t.id', 30)} % 3) j
        CROSS JOIN LATERAL (SELECT t.id * 8 + j AS k) kk
        JOIN pool p1 ON p1.id = {rnd('k', 1)} % {pool}
        JOIN pool p2 ON p2.id = {rnd('k', 2)} % {pool}
        JOIN pool p3 ON p3.id = {rnd('k', 3)} % {pool}
        JOIN pool p4 ON p4.id = {rnd('k', 4)} % {pool}
        WHERE t.id BETWEEN {lo} AND {hi}
        ORDER BY t.id, j""")
    steps.append(("messages", message_sql))
    steps.append(("events", [f"""
        INSERT INTO event (ticket_id, type, at, by, detail)
        SELECT t.id, e.type, e.at, e.by, e.detail
        FROM ticket t
        CROSS JOIN LATERAL (VALUES
          (1, 'ticket.created', t.created_at, 'system',
           json_build_object('channel', t.channel, 'category', t.category, 'area', t.area)::text),
          (2, 'ticket.assigned', t.assigned_at, 'system', json_build_object('agent', t.assignee)::text),
          (3, 'ack.queued', t.acknowledged_at, 'system', '{{}}'),
          (4, 'ticket.status', t.resolved_at, t.assignee, '{{"status": "resolved"}}'),
          (5, 'ticket.status', t.updated_at, 'system', '{{"status": "closed"}}')
        ) AS e(n, type, at, by, detail)
        WHERE e.at IS NOT NULL AND (e.n < 5 OR t.status = 'closed')
        ORDER BY t.id, e.n"""]))
    steps.append(("outbox", [f"""
        INSERT INTO outbox (ticket_id, template, recipients, subject, message_id, headers, body_text, body_html,
                            attachments, status, attempts, next_attempt_at, last_error, created_at, sent_at)
        SELECT m.ticket_id, 'ack', m.to_addrs, m.subject, m.message_id, '{{}}', m.text, '', '[]', 'sent', 1, NULL, '',
               m.created_at, m.sent_at
        FROM message m WHERE m.kind = 'ack' ORDER BY m.id"""]))
    steps.append(("notifications", [f"""
        INSERT INTO notification (agent, ticket_id, kind, text, created_at, read_at)
        SELECT assignee, id, 'assigned', 'Új bejelentés: ' || subject, assigned_at,
               CASE WHEN status IN ('resolved', 'closed') THEN assigned_at + interval '1 hour' END
        FROM ticket ORDER BY id"""]))
    steps.append(("intake log", [f"""
        INSERT INTO intake_log (mailbox, folder, uidvalidity, uid, message_pk, state, target, attempts, reason,
                                created_at, updated_at)
        SELECT 'default', 'INBOX', 1, m.id, m.id, 'moved', 'mailbridge/processed', 0, '', m.created_at, m.created_at
        FROM message m WHERE m.direction = 'in' ORDER BY m.id"""]))
    steps.append(("attachments", [f"""
        INSERT INTO attachment (message_pk, ticket_id, filename, content_type, size, sha256, content_id, inline,
                                rejected, reason)
        SELECT m.id, m.ticket_id, 'kepernyokep-' || m.ticket_id || '.png', 'image/png', 20000 + m.id % 500000,
               encode(sha256(m.id::text::bytea), 'hex'), '', false, false, ''
        FROM message m WHERE m.kind = 'customer' AND {frac('m.id', 40)} < 0.05 ORDER BY m.id"""]))
    rare_ticket = max(1, n // 3)
    steps.append(("rare word", [f"""
        UPDATE message SET text = text || ' Azóta a {RARE_WORD} minden reggel előjön.',
                           new_text = new_text || ' Azóta a {RARE_WORD} minden reggel előjön.'
        WHERE id = (SELECT min(id) FROM message WHERE ticket_id = {rare_ticket} AND kind = 'customer')"""]))
    # What the daemon's search_index job does after intake (migration 0006), here for all at once.
    from mailbridge.adapters.db import MESSAGE_SEARCH_VECTOR

    with connect(url) as conn:
        config = "hungarian" if conn.execute("SELECT 1 FROM pg_ts_config WHERE cfgname = 'hungarian'").fetchone() \
            else "simple"
    steps.append(("search vectors", [f"UPDATE message SET search = {MESSAGE_SEARCH_VECTOR.format(config=config)}"]))

    with connect(url) as conn:
        for name, statements in steps:
            start = time.perf_counter()
            for sql in statements:
                with conn.transaction():
                    conn.execute(sql)
            say(f"  {name:<14} {time.perf_counter() - start:7.1f} s")
        start = time.perf_counter()
        bump_sequences(conn)
        conn.execute("VACUUM (ANALYZE)")
        say(f"  {'vacuum/analyze':<14} {time.perf_counter() - start:7.1f} s")
    return {"rare_ticket": rare_ticket}


def bump_sequences(conn) -> None:  # type: ignore[no-untyped-def]
    """Every serial/identity column's sequence past the generated IDs, so the app's inserts don't collide;
    a free-standing sequence named after a table (e.g. for ticket numbers) past that table's IDs too."""
    owned = conn.execute("""
        SELECT c.table_name, c.column_name, pg_get_serial_sequence(quote_ident(c.table_name), c.column_name)
        FROM information_schema.columns c
        WHERE c.table_schema = 'public' AND (c.column_default LIKE 'nextval(%' OR c.is_identity = 'YES')""").fetchall()
    done = set()
    for table, column, seq in owned:
        if seq:
            conn.execute(f'SELECT setval(%s, greatest(1, (SELECT max("{column}") FROM "{table}")))', (seq,))
            done.add(seq.split(".")[-1].strip('"'))
    tables = {r[0] for r in conn.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'").fetchall()}
    for (seq,) in conn.execute("SELECT sequence_name FROM information_schema.sequences WHERE sequence_schema = 'public'"):
        if seq in done:
            continue
        table = next((t for t in sorted(tables, key=len, reverse=True) if seq.startswith(t)), None)
        if table is not None:
            conn.execute(f"SELECT setval('{seq}', greatest(1, (SELECT max(id) FROM \"{table}\")))")


def database_facts(url: str) -> dict:
    with connect(url) as conn:
        size = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
        counts = {t: conn.execute(f"SELECT reltuples::bigint FROM pg_class WHERE relname = '{t}'").fetchone()[0]
                  for t in ("reporter", "ticket", "message", "event", "participant", "outbox", "notification",
                            "intake_log", "attachment")}
        counts["ticket"] = conn.execute("SELECT count(*) FROM ticket").fetchone()[0]
        counts["open"] = conn.execute("SELECT count(*) FROM ticket WHERE status IN %s" % (OPEN,)).fetchone()[0]
    return {"size": size, "counts": counts}


# --------------------------------------------------------------------------
# Intake
# --------------------------------------------------------------------------

def reply_targets(url: str, want: int, seed: int) -> dict[str, list[tuple]]:
    """Tickets the replies go to: open ones (most), recently resolved ones (reopen), old closed ones (follow-up)."""
    with connect(url) as conn:
        conn.execute(f"SELECT setseed({(seed % 1000) / 1000})")
        query = ("SELECT t.id, t.subject, r.email, r.name FROM ticket t JOIN reporter r ON r.id = t.reporter_id "
                 "WHERE {} ORDER BY random() LIMIT %s")
        return {
            "open": conn.execute(query.format(f"t.status IN {OPEN}"), (want,)).fetchall(),
            "resolved": conn.execute(query.format("t.status = 'resolved'"), (want,)).fetchall(),
            "closed": conn.execute(query.format("t.status = 'closed'"), (want,)).fetchall(),
            "reporters": conn.execute(
                "SELECT email, name FROM reporter TABLESAMPLE SYSTEM (5) WHERE email IS NOT NULL LIMIT %s",
                (want,)).fetchall(),
        }


def mail_corpus(m: int, targets: dict[str, list[tuple]], start: int) -> tuple[list[bytes], set[int], set[str]]:
    """M mails: 30 % replies (tag, In-Reply-To, to open/resolved/closed tickets), 70 % new
    (half of them from existing customers). Also returns the tickets and addresses they refer to."""
    pick = random.Random(start)
    mails: list[bytes] = []
    tickets: set[int] = set()
    emails: set[str] = set()
    for i in range(m):
        n = start + i
        kind = i % 10
        if kind in (0, 1, 2) and targets["open"]:
            group = pick.choice(["open", "open", "resolved", "closed"]) if kind == 2 else "open"
            rows = targets[group] or targets["open"]
            tid, subject, email, _name = rows[pick.randrange(len(rows))]
            tickets.add(tid)
            emails.add(email)
            domain = email.rpartition("@")[2]
            if kind == 0:  # by the subject tag
                mails.append(simple_mail(n, sender=email, subject=f"Re: [CRX-{tid:06d}] {subject}", size_hint=800))
            else:  # by In-Reply-To our generated Message-ID of the first mail
                mails.append(simple_mail(n, sender=email, subject=f"Re: {subject}", size_hint=800,
                                         in_reply_to=f"<gen-{tid}-1@{domain}>"))
        elif i % 2 and targets["reporters"]:
            email, _name = targets["reporters"][pick.randrange(len(targets["reporters"]))]
            emails.add(email)
            mails.append(simple_mail(n, sender=email, size_hint=1500))
        else:
            mails.append(simple_mail(n, sender=f"uj.ugyfel{n}@example.hu", size_hint=1500))
    return mails, tickets, emails


def seed_referenced(big_url: str, url: str, tickets: set[int], emails: set[str]) -> int:
    """Copies into a fresh database only what the corpus refers to (those tickets with their reporters,
    participants and messages; the known senders), so the same mails have the same outcomes there as on
    the big database: new tickets stay new tickets, replies stay replies."""
    ids = sorted(tickets)
    plan = [
        ("reporter", "id IN (SELECT reporter_id FROM ticket WHERE id = ANY(%(ids)s)) OR email = ANY(%(emails)s)"),
        ("ticket", "id = ANY(%(ids)s)"),
        ("participant", "ticket_id = ANY(%(ids)s)"),
        ("message", "ticket_id = ANY(%(ids)s)"),
        ("event", "ticket_id = ANY(%(ids)s)"),
    ]
    copied = 0
    with connect(big_url) as src, connect(url) as dst, dst.transaction():
        for table, where in plan:
            cur = src.execute(f"SELECT * FROM {table} WHERE {where} ORDER BY id", {"ids": ids, "emails": sorted(emails)})
            columns = [d.name for d in cur.description]
            rows = cur.fetchall()
            # links to rows not copied: other tickets, raw copies
            cut = [columns.index(c) for c in {"ticket": ("linked_ticket_id", "merged_into_id"),
                                              "message": ("raw_id",)}.get(table, ())]
            rows = [tuple(None if i in cut else v for i, v in enumerate(row)) for row in rows]
            if rows:
                names = ", ".join(f'"{c}"' for c in columns)
                marks = ", ".join(["%s"] * len(columns))
                dst.cursor().executemany(f"INSERT INTO {table} ({names}) VALUES ({marks})", rows)
            copied += len(rows)
        bump_sequences(dst)
        dst.execute("ANALYZE")
    return copied


def mailbridge(config: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "mailbridge.cli", "--config", str(config), *args]


def timed(command: list[str]) -> tuple[float, str, str]:
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    elapsed = time.perf_counter() - start
    if result.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")
    return elapsed, result.stdout, result.stderr


def make_config(folder: Path, mailbox, url: str) -> Path:  # type: ignore[no-untyped-def]
    folder.mkdir(parents=True, exist_ok=True)
    return write_config(folder / "mailbridge.toml", mailbox.imap_settings(), None, database={"url": url},
                        imap={"batch_size": 200}, logging={"level": "info", "format": "json"}, agents=AGENTS)


def polled_line(stderr: str) -> dict:
    for line in reversed(stderr.splitlines()):
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if entry.get("event") == "intake.polled":
                return entry
    return {}


def intake_case(server: Dovecot, folder: Path, url: str, mails: list[bytes]) -> dict:
    mailbox = server.new_mailbox()
    mailbox.deliver_many(mails)
    config = make_config(folder, mailbox, url)
    timed(mailbridge(config, "init"))  # the schema on a fresh database; the new mailbox's IMAP folders
    startup_s, _, _ = timed(mailbridge(config, "tickets", "list", "--limit", "1", "--json"))  # start-up cost
    poll_s, out, err = timed(mailbridge(config, "poll", "--once"))
    return {"n": len(mails), "poll_s": poll_s, "startup_s": startup_s, "out": out.strip(),
            "stages": polled_line(err), "config": config}


# --------------------------------------------------------------------------
# Latency, in-process
# --------------------------------------------------------------------------

def run_cli(config: Path, *args: str) -> tuple[float, str]:
    from mailbridge.cli import main

    out, err = io.StringIO(), io.StringIO()
    code = 0
    start = time.perf_counter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(["--config", str(config), *args])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    elapsed = time.perf_counter() - start
    if code:
        raise SystemExit(f"mailbridge {' '.join(args)} exited {code}:\n{err.getvalue()}")
    return elapsed, out.getvalue()


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))]  # nearest rank


def latencies(config: Path, args_for, runs: int) -> tuple[list[float], str]:
    _, first = run_cli(config, *args_for(-1))  # warm-up: imports, templates, the connection's first query
    times = []
    for i in range(runs):
        elapsed, _ = run_cli(config, *args_for(i))
        times.append(elapsed)
    return times, first


def fixed_cost(config: Path, runs: int) -> list[float]:
    """What every command pays before its query: `App(config).ready_db()` and a first statement."""
    try:
        import sqlalchemy as sa

        from mailbridge.cli import App
    except ImportError:
        return []
    times = []
    for _ in range(runs + 1):
        start = time.perf_counter()
        app = App(str(config))
        db = app.ready_db()
        with db.session() as session:
            session.execute(sa.text("SELECT 1"))
        times.append(time.perf_counter() - start)
        db.engine.dispose()
    return times[1:]


# --------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickets", type=int, default=1_000_000)
    parser.add_argument("--mails", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=30, help="Timed runs of each CLI command.")
    parser.add_argument("--rounds", type=int, default=3, help="Intake rounds on each database (the best counts).")
    parser.add_argument("--keep", action="store_true", help="Keep the folder (PostgreSQL data) afterwards.")
    parser.add_argument("--reuse", metavar="DIR", help="A folder an earlier --keep run left: skip the generation.")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    def say(text: str) -> None:
        print(text, flush=True)

    if args.reuse:
        root = Path(args.reuse)
        pg = pg_reuse(root)
        big_url = f"postgresql+psycopg://postgres@127.0.0.1:{pg.port}/big"
    else:
        root = Path(tempfile.mkdtemp(prefix="mailbridge-scale-", dir=os.environ.get("MAILBRIDGE_BENCH_DIR")))
        root.chmod(0o711)  # the `postgres` user (PostgreSQL won't run as root) passes through to ROOT/pg
        pg = Postgres(root / "pg").start()
        pg_tune(pg)
        big_url = pg.create_database("big")
    say(f"folder: {root}  (PostgreSQL {pg.bin.parent.name} on port {pg.port}; "
        + ", ".join(f"{k}={v}" for k, v in PG_SETTINGS.items()) + ")")
    rows: list[tuple[str, str, str, bool | None]] = []
    try:
        with Dovecot(root / "dovecot") as server:
            # --- the big database ------------------------------------------------
            mailbox = server.new_mailbox()
            config = make_config(root / "big", mailbox, big_url)
            start = time.perf_counter()
            _, out, _ = timed(mailbridge(config, "init"))
            say(f"mailbridge init: {out.splitlines()[0]} ({time.perf_counter() - start:.1f} s)")
            if not args.reuse:
                say(f"generating {args.tickets:,} tickets server-side:")
                start = time.perf_counter()
                facts = generate(big_url, args.tickets, say)
                gen_s = time.perf_counter() - start
                (root / "facts.json").write_text(json.dumps(facts))
                say(f"  total          {gen_s:7.1f} s")
            facts = json.loads((root / "facts.json").read_text())
            db = database_facts(big_url)
            c = db["counts"]
            say(f"database: {db['size'] / 2**30:.2f} GiB; {c['ticket']:,} tickets ({c['open']:,} open), "
                f"{c['message']:,} messages, {c['event']:,} events, {c['reporter']:,} reporters, "
                f"{c['participant']:,} participants, {c['outbox']:,} outbox, {c['notification']:,} notifications, "
                f"{c['intake_log']:,} intake-log, {c['attachment']:,} attachments (planner estimates)")

            # --- latency ---------------------------------------------------------
            rng = random.Random(args.seed)
            ids = [rng.randint(1, args.tickets if not args.reuse else c["ticket"]) for _ in range(args.runs + 1)]
            say(f"\nlatency, in-process, {args.runs} runs each after a warm-up (no interpreter start-up);"
                f" load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs:")
            lat: dict[str, list[float]] = {}
            lat["list"], out = latencies(config, lambda i: ("tickets", "list", "--status", "open", "--limit", "50",
                                                            "--json"), args.runs)
            listed = json.loads(out)
            lat["show"], out = latencies(config, lambda i: ("tickets", "show", str(ids[i]), "--json"), args.runs)
            lat["search"], out = latencies(config, lambda i: ("tickets", "search", RARE_WORD, "--json"),
                                           max(5, args.runs // 3))
            found = [t["id"] for t in json.loads(out)]
            want = f"CRX-{facts['rare_ticket']:06d}"
            for name, label in (("list", "tickets list --status open --limit 50 --json"),
                                ("show", "tickets show ID --json (random IDs)"),
                                ("search", f"tickets search {RARE_WORD} --json")):
                t = lat[name]
                say(f"  {label:<46} p50 {percentile(t, 50) * 1000:7.1f} ms  p95 {percentile(t, 95) * 1000:7.1f} ms"
                    f"  max {max(t) * 1000:7.1f} ms")
            say(f"  list returned {len(listed)} tickets ({listed[0]['id'] if listed else '-'} … "
                f"{listed[-1]['id'] if listed else '-'}); search found {found} (want [{want!r}])")
            fixed = fixed_cost(config, args.runs)
            if fixed:
                say(f"  of each, the fixed cost of a command (settings, engine, first connection, schema check):"
                    f" p50 {percentile(fixed, 50) * 1000:.1f} ms")
            sub_s, _, _ = timed(mailbridge(config, "tickets", "show", str(ids[0]), "--json"))
            say(f"  one subprocess `tickets show ID --json`: {sub_s * 1000:.0f} ms "
                f"(process start-up ≈ {(sub_s - percentile(lat['show'], 50)) * 1000:.0f} ms, not counted above)")
            rows.append(("tickets list --status open --limit 50 (p95)", f"{percentile(lat['list'], 95) * 1000:.0f} ms",
                         "< 100 ms", percentile(lat["list"], 95) < 0.1))
            rows.append(("tickets show ID (p95)", f"{percentile(lat['show'], 95) * 1000:.0f} ms", "< 100 ms",
                         percentile(lat["show"], 95) < 0.1))
            search_p95 = percentile(lat["search"], 95)
            rows.append((f"tickets search {RARE_WORD} (p95)", f"{search_p95 * 1000:.0f} ms", "< 300 ms",
                         search_p95 < 0.3 and found == [want]))

            # --- intake ----------------------------------------------------------
            say(f"\nintake of {args.mails} mails (`poll --once`, subprocess), {args.rounds} round(s) each;"
                f" load average {os.getloadavg()[0]:.2f}:")
            targets = reply_targets(big_url, max(50, args.mails), args.seed)
            results: dict[str, list[dict]] = {"empty": [], "seeded": [], "big": []}
            labels = {"empty": "empty", "seeded": "empty+refs", "big": "1M" if c["ticket"] >= 10**6 else "big"}
            admin = f"postgresql://postgres@127.0.0.1:{pg.port}/postgres"
            for r in range(args.rounds):
                mails, referenced, senders = mail_corpus(args.mails, targets, 1_000_000 * (r + 1))
                stamp = int(time.time())
                empty_url = pg.create_database(f"empty_{r}_{stamp}")
                seeded_url = pg.create_database(f"seeded_{r}_{stamp}")
                timed(mailbridge(make_config(root / f"seeded-{r}-init", server.new_mailbox(), seeded_url), "init"))
                copied = seed_referenced(big_url, seeded_url, referenced, senders)
                if r == 0:
                    say(f"  (empty+refs: a fresh database holding only the {len(referenced)} tickets and {len(senders)}"
                        f" known senders the mails refer to, {copied} rows: the same outcomes as on the big one)")
                for name, url in (("empty", empty_url), ("seeded", seeded_url), ("big", big_url)):
                    res = intake_case(server, root / f"{name}-{r}", url, mails)
                    results[name].append(res)
                    st = res["stages"]
                    work = res["poll_s"] - res["startup_s"]
                    say(f"  round {r + 1}, {labels[name]:<10}: {res['n'] / res['poll_s']:4.0f} mails/s wall"
                        f" ({res['poll_s']:5.2f} s, {res['startup_s']:.2f} s of it start-up), {res['n'] / work:4.0f}"
                        f" without; stages: storing {st.get('storing_s', float('nan')):.2f} s, waited fetch"
                        f" {st.get('waited_fetch_s', float('nan')):.2f} s, prepare"
                        f" {st.get('waited_prepare_s', float('nan')):.2f} s, moving {st.get('moving_s', float('nan')):.2f} s")
                    say(f"      {res['out']}")
                with connect(admin) as conn:
                    for url in (empty_url, seeded_url):
                        conn.execute(f"DROP DATABASE {url.rsplit('/', 1)[1]}")
            best = {k: min(v, key=lambda x: x["poll_s"]) for k, v in results.items()}

            def rate(name: str) -> float:
                return args.mails / best[name]["poll_s"]

            def work(name: str) -> float:
                return best[name]["poll_s"] - best[name]["startup_s"]

            def storing(name: str) -> float | None:
                return best[name]["stages"].get("storing_s")

            def median_ratio(base: str) -> float:
                mid = len(results[base]) // 2
                return (sorted(x["poll_s"] for x in results[base])[mid]
                        / sorted(x["poll_s"] for x in results["big"])[mid])

            for base in ("seeded", "empty"):
                wall, bare = best[base]["poll_s"] / best["big"]["poll_s"], work(base) / work("big")
                store = (f", storing stage alone {storing(base) / storing('big'):.2f}x"
                         if storing(base) and storing("big") else "")
                say(f"  best of {args.rounds}: {labels['big']} {rate('big'):.0f} mails/s vs {labels[base]}"
                    f" {rate(base):.0f} mails/s: {wall:.2f}x wall, {bare:.2f}x without start-up{store};"
                    f" median round {median_ratio(base):.2f}x wall")
            wall = best["seeded"]["poll_s"] / best["big"]["poll_s"]
            bare = work("seeded") / work("big")
            rows.insert(0, (f"intake, {args.mails} mails: {labels['big']} vs empty+refs",
                            f"{wall:.2f}x ({rate('big'):.0f} vs {rate('seeded'):.0f}/s; median {median_ratio('seeded'):.2f}x)",
                            ">= 0.8x", wall >= 0.8))
            rows.insert(1, ("  the same without process start-up", f"{bare:.2f}x", ">= 0.8x", bare >= 0.8))
            literal = best["empty"]["poll_s"] / best["big"]["poll_s"]
            rows.insert(2, ("  vs a truly empty DB (replies become new)", f"{literal:.2f}x ({rate('empty'):.0f}/s)",
                            ">= 0.8x", literal >= 0.8))

        size = database_facts(big_url)["size"]
        say(f"\nfigures ({c['ticket']:,} tickets, {size / 2**30:.2f} GiB in PostgreSQL {pg.bin.parent.name}):")
        width, vwidth = max(len(r[0]) for r in rows), max(len(r[1]) for r in rows)
        for label, value, target, ok in rows:
            say(f"  {label:<{width}}  {value:<{vwidth}}  target {target:<9} {'PASS' if ok else 'MISS'}")
    finally:
        pg.stop()
        if args.keep or args.reuse:
            print(f"kept: {root} (again: python bench/scale.py --reuse {root})")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
