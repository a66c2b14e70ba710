"""`mailbridge [--config PATH] COMMAND`: exit 0 ok, 2 usage or config error, 1 anything else.

click gives exit 2 for usage errors and choice lists for free; ours add
the same for config errors and unknown IDs, always as one line on stderr.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
import zlib
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo
from pathlib import Path

import click

from mailbridge.config import Settings, config_path, load_settings
from mailbridge.errors import ConfigError, MailbridgeError, UsageError, error_fields
from mailbridge.ticket_ids import MAX_TICKET_NUMBER
from mailbridge.logs import configure_logging, get_logger
from mailbridge.vocabulary import MANUAL_CHANNELS, TICKET_STATUSES

log = get_logger("mailbridge.cli")
# Row IDs and counts given on the command line: the tables' IDs are 32-bit on PostgreSQL,
# and a bigger number (or 10**20, which no database takes) can name nothing.
ROW_NUMBER = click.IntRange(1, MAX_TICKET_NUMBER)
# Times given on the command line: far enough either way for any real case, and far from
# datetime's edges (years 1 and 9999), where a deadline or retention window would overflow.
EARLIEST_YEAR, LATEST_YEAR = 1900, 9000


class App:
    """What every command needs, loaded on first use (so `--help` needs no config)."""

    def __init__(self, config: str | None):
        self.config = config
        self._settings: Settings | None = None
        self._db = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(config_path(self.config))
            configure_logging(self._settings.logging.level, self._settings.logging.format)
        return self._settings

    @property
    def db(self):  # type: ignore[no-untyped-def]
        from mailbridge.adapters.db import Database

        if self._db is None:
            self._db = Database(self.settings.database.url)
        return self._db

    def ready_db(self):  # type: ignore[no-untyped-def]
        """The database, refusing to run on a schema `init` has not brought up to date."""
        db = self.db
        if db.pending_migrations():
            raise MailbridgeError(f"database {db.where} is not initialised or not up to date: "
                                  "run `mailbridge init` first")
        return db

    def ticket_number(self, text: str) -> int:
        from mailbridge.ticket_ids import parse_ticket_id

        number = parse_ticket_id(text, self.settings.tickets.id_prefix)
        if number is None:
            raise UsageError(f"not a ticket ID: {text!r} (expected like {self.settings.tickets.id_prefix}-000042)")
        return number


pass_app = click.make_pass_decorator(App)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config", metavar="PATH", help="TOML config (default: $MAILBRIDGE_CONFIG or /etc/mailbridge/mailbridge.toml)")
@click.version_option(package_name="mailbridge")
@click.pass_context
def cli(ctx: click.Context, config: str | None) -> None:
    """mailbridge turns a support mailbox into a ticket system."""
    os.umask(0o077)  # everything we create holds customers' data: owner only
    configure_logging()
    ctx.obj = App(config)


@cli.command()
@pass_app
def init(app: App) -> None:
    """Create or migrate the database, storage folders and IMAP folders."""
    from mailbridge.adapters.files import AttachmentStore
    from mailbridge.adapters.imap import imap_session

    before, after = app.db.migrate()
    click.echo(f"database: {'created' if before is None else 'migrated' if before != after else 'up to date'} (schema {after})")
    AttachmentStore(app.settings.storage.path).ensure()
    click.echo(f"storage: {app.settings.storage.path}")
    boxes = app.settings.intake_mailboxes
    for s in boxes:
        with imap_session(s) as imap:
            created = imap.ensure_folders([s.processed_folder, s.quarantine_folder])
        where = f" ({s.name})" if len(boxes) > 1 else ""
        click.echo(f"imap folders{where}: {', '.join(created) + ' created' if created else 'present'}")


@cli.command()
@click.option("--once", is_flag=True, required=True, help="One intake pass over new mail, then exit.")
@pass_app
def poll(app: App, once: bool) -> None:
    """One intake pass over new mail."""
    from mailbridge.adapters.imap import imap_session
    from mailbridge.intake.loop import mailbox_identity
    from mailbridge.intake.run import Intake

    db = app.ready_db()
    boxes = app.settings.intake_mailboxes
    for s in boxes:
        where = f"{s.name}: " if len(boxes) > 1 else ""
        lock = db.poller_lock(mailbox_identity(s))
        if not lock.acquire():  # a daemon on this or another host polls it now
            click.echo(f"{where}skipped: another mailbridge process is polling this mailbox")
            continue
        try:
            intake = Intake(app.settings, db, s)
            with imap_session(s) as imap, imap_session(s) as mover:
                report = intake.poll(imap, mover)
        finally:
            lock.release()
        parts = ", ".join(f"{n} {kind}" for kind, n in sorted(report.outcomes.items())) or "nothing new"
        click.echo(f"{where}fetched {report.fetched}: {parts}; moved {report.moved}")


@cli.command()
@pass_app
def run(app: App) -> None:
    """The daemon, in the foreground."""
    from mailbridge.jobs import run_daemon

    configure_logging(app.settings.logging.level, app.settings.logging.format, stream=sys.stdout)
    run_daemon(app.settings, app.ready_db(), reload=lambda: load_settings(config_path(app.config)))


@cli.command()
@click.option("--at", "at", metavar="ISO-TIME", help="Run as if the clock read this (e.g. 2026-11-27T09:00:00+01:00).")
@pass_app
def tick(app: App, at: str | None) -> None:
    """Run every scheduled job once: acknowledgements, SLA watcher, retention, then the outbox sender.

    A job that fails does not stop the others; the exit status is then 1, with one line
    naming the jobs and why (a read-only or full database is a fault outside the user's hands).
    """
    from mailbridge.jobs import Jobs

    now = parse_time(at) if at else datetime.now(timezone.utc)
    result, failed = Jobs(app.settings, app.ready_db()).tick(now)
    click.echo(", ".join(f"{n} {k.replace('_', ' ')}" for k, n in result.items()) or "nothing to do")
    if failed:
        reasons = "; ".join(dict.fromkeys(failed.values()))
        raise MailbridgeError(f"tick: {', '.join(failed)} failed: {reasons}")


@cli.group()
def sla() -> None:
    """The acknowledgement deadline (P7)."""


@sla.command("deadline")
@click.argument("recorded_at", metavar="ISO-TIME")
@click.option("--explain", is_flag=True, help="Also say which days were skipped and why.")
@pass_app
def sla_deadline(app: App, recorded_at: str, explain: bool) -> None:
    """Print the acknowledgement deadline for a case recorded at ISO-TIME."""
    from mailbridge.policy.deadline import explain_deadline

    # Works without a config file too (the defaults: Hungary, 2 working days).
    given = app.config or os.environ.get("MAILBRIDGE_CONFIG") or config_path(None).exists()
    p = app.settings.policy if given else Settings().policy
    explanation = explain_deadline(parse_time(recorded_at, p.timezone), p.ack_business_days, p.timezone, p.country)
    click.echo(explanation.deadline.isoformat())
    if explain:
        click.echo(explanation.describe("en"))


@cli.command()
@click.option("--agent", metavar="EMAIL", help="Only this agent's notifications.")
@click.option("--all", "show_all", is_flag=True, help="Read ones too.")
@click.option("--mark-read", is_flag=True, help="Mark the listed notifications read.")
@click.option("--json", "as_json", is_flag=True, help="JSON, for scripts.")
@pass_app
def notifications(app: App, agent: str | None, show_all: bool, mark_read: bool, as_json: bool) -> None:
    """Agents' in-system notifications (new assignments, deadlines, failures)."""
    import sqlalchemy as sa

    from mailbridge.ticket_ids import format_ticket_id
    from mailbridge.models import Notification

    if agent and agent.lower() not in app.settings.agent_addresses:
        raise UsageError(f"unknown agent: {agent} (choices: {', '.join(sorted(app.settings.agent_addresses))})")
    table_ = Notification.__table__
    with app.ready_db().session() as session:
        conn = session.connection()
        query = sa.select(table_).order_by(table_.c.id)
        if agent:
            query = query.where(table_.c.agent == agent.lower())
        if not show_all:
            query = query.where(table_.c.read_at.is_(None))
        rows = conn.execute(query).all()
        if mark_read and rows:
            conn.execute(sa.update(table_).where(table_.c.id.in_([r.id for r in rows]))
                         .values(read_at=datetime.now(timezone.utc)))
    prefix = app.settings.tickets.id_prefix
    items = [{"id": r.id, "agent": r.agent, "ticket": format_ticket_id(r.ticket_id, prefix) if r.ticket_id else None,
              "kind": r.kind, "text": r.text, "created_at": r.created_at.isoformat(),
              "read": bool(r.read_at) or mark_read} for r in rows]
    if as_json:
        click.echo(json.dumps(items, ensure_ascii=False, indent=2))
        return
    table(["ID", "AGENT", "TICKET", "KIND", "TEXT"],
          [[str(i["id"]), i["agent"], i["ticket"] or "-", i["kind"], i["text"]] for i in items])


def local_time(iso_text: str | None, zone: str, deadline: bool = False) -> str:
    """A stored UTC time as people at the desk read it: local, to the minute. A deadline at
    local midnight is the end of the day before ("… 24:00"), as the policy words it."""
    if not iso_text:
        return ""
    value = datetime.fromisoformat(iso_text)
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    local = value.astimezone(ZoneInfo(zone))
    if deadline and (local.hour, local.minute, local.second) == (0, 0, 0):
        return f"{(local - timedelta(days=1)):%Y-%m-%d} 24:00 {local:%Z}"
    return f"{local:%Y-%m-%d %H:%M %Z}"


def parse_time(text: str, zone: str = "Europe/Budapest") -> datetime:
    """ISO-8601; without an offset it is local time in `zone`."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"not an ISO-8601 time: {text!r} (e.g. 2024-08-01T10:00:00+02:00)") from None
    if not EARLIEST_YEAR <= value.year <= LATEST_YEAR:
        raise UsageError(f"time out of range: {text!r} (years {EARLIEST_YEAR} to {LATEST_YEAR})")
    return value if value.tzinfo else value.replace(tzinfo=ZoneInfo(zone))


@cli.group()
def tickets() -> None:
    """List and show tickets."""


def _ticket_filters(f):  # type: ignore[no-untyped-def]
    for option in reversed([
        click.option("--json", "as_json", is_flag=True, help="A JSON array, for scripts."),
        click.option("--status", type=click.Choice(["open", *TICKET_STATUSES]),
                     help="Only tickets in this status (open: not resolved or closed)."),
        click.option("--assignee", metavar="AGENT", help="Only this agent's tickets."),
        click.option("--category", help="Only this P4 category."),
        click.option("--area", help="Only this P5 area."),
        click.option("--channel", type=click.Choice(["email", "form", *MANUAL_CHANNELS])),
        click.option("--overdue", is_flag=True, help="Only tickets past their acknowledgement deadline without one."),
        click.option("--limit", type=ROW_NUMBER, help="At most this many."),
    ]):
        f = option(f)
    return f


def _print_tickets(app: App, as_json: bool, search: str | None = None, **filters) -> None:  # type: ignore[no-untyped-def]
    from mailbridge.views import list_tickets

    if filters.get("assignee"):
        filters["assignee"] = _agent(app, filters["assignee"])
    if filters.get("category"):
        filters["category"] = _category(filters["category"])
    if filters.get("area"):
        filters["area"] = _area(filters["area"])
    overdue = filters.pop("overdue", False)
    with app.ready_db().session() as session:
        rows = list_tickets(session, app.settings.tickets.id_prefix, filters.pop("status", None),
                            filters.pop("limit", None), overdue_at=datetime.now(timezone.utc) if overdue else None,
                            search=search, **filters)
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    table(
        ["ID", "STATUS", "CATEGORY", "AREA", "REPORTER", "ASSIGNEE", "MSGS", "FLAGS", "SUBJECT"],
        [
            [r["id"], r["status"], r["category"], r["area"], r["reporter_email"] or r["reporter_name"] or "-",
             r["assignee"] or "-", str(r["message_count"]), ",".join(r["flags"]), r["subject"]]
            for r in rows
        ],
        colour_column=1,
    )


@tickets.command("list")
@_ticket_filters
@pass_app
def tickets_list(app: App, as_json: bool, **filters) -> None:  # type: ignore[no-untyped-def]
    """Tickets, oldest first, filtered."""
    _print_tickets(app, as_json, **filters)


@tickets.command("search")
@click.argument("text")
@_ticket_filters
@pass_app
def tickets_search(app: App, text: str, as_json: bool, **filters) -> None:  # type: ignore[no-untyped-def]
    """Tickets whose subject or any mail contains TEXT."""
    if not text.strip():
        raise UsageError("tickets search: TEXT is empty (it would match every ticket; use `tickets list`)")
    _print_tickets(app, as_json, search=text, **filters)


@tickets.command("show")
@click.argument("ticket_id")
@click.option("--json", "as_json", is_flag=True, help="JSON, for scripts.")
@pass_app
def tickets_show(app: App, ticket_id: str, as_json: bool) -> None:
    from mailbridge.views import show_ticket

    number = app.ticket_number(ticket_id)
    with app.ready_db().session() as session:
        detail = show_ticket(session, number, app.settings.tickets.id_prefix, app.settings.policy)
    if detail is None:
        raise UsageError(f"no such ticket: {ticket_id}")
    if as_json:
        click.echo(json.dumps(detail, ensure_ascii=False, indent=2))
        return
    click.echo(click.style(f"{detail['id']}  {detail['subject']}", bold=True))
    zone = app.settings.policy.timezone
    for key in ("status", "category", "area", "channel", "reporter_name", "reporter_email", "assignee", "created_at",
                "ack_deadline", "acknowledged_at", "linked_ticket"):
        if detail.get(key):
            value = local_time(detail[key], zone, key == "ack_deadline") if key.endswith(("_at", "_deadline")) \
                else detail[key]
            click.echo(f"  {key.replace('_', ' '):<16} {value}")
    if detail["flags"]:
        click.echo(f"  {'flags':<16} {', '.join(detail['flags'])}")
    if detail.get("ack_deadline_explained"):
        click.echo(f"  {'deadline, why':<16} {detail['ack_deadline_explained'][app.settings.tickets.default_language]}")
    for m in detail["messages"]:
        arrow = "<-" if m["direction"] == "in" else "->"
        click.echo("")
        click.echo(click.style(f"{arrow} {local_time(m['created_at'], zone)}  {m['kind']}  "
                               f"{m['sender'] or '(no sender)'}", fg="cyan"))
        click.echo(f"   {m['subject']}")
        for line in (m["new_text"] or m["text"]).splitlines()[:40]:
            click.echo(f"   | {line}")
        for a in m["attachments"]:
            state = " (rejected: " + a["reason"] + ")" if a.get("rejected") else ""
            click.echo(f"   + {a['filename']}  {a['size']} bytes{state}")
    click.echo("")
    for e in detail["events"]:
        click.echo(f"  {local_time(e['at'], zone)}  {e['type']:<22} {e['by']}")


@cli.group()
def ticket() -> None:
    """Act on one ticket."""


def _existing_ticket(app: App, session, text: str) -> int:  # type: ignore[no-untyped-def]
    from mailbridge.models import Ticket

    number = app.ticket_number(text)
    if session.get(Ticket, number) is None:
        raise UsageError(f"no such ticket: {text}")
    return number


def _named(kind: str, value: str) -> str:
    """A P4 category or P5 area as written, or by an English alias; else a usage error."""
    from mailbridge.vocabulary import AREAS, CATEGORIES
    from mailbridge.policy.classify import fold
    from mailbridge.policy.commands import match_area, match_category

    names, match = (CATEGORIES, match_category) if kind == "category" else (AREAS, match_area)
    found = next((name for name in names if fold(name) == fold(value)), None) or match(value)
    if found is None:
        raise UsageError(f"unknown {kind}: {value!r} (choices: {', '.join(names)})")
    return found


def _category(value: str) -> str:
    return _named("category", value)


def _area(value: str) -> str:
    return _named("area", value)


def _agent(app: App, value: str) -> str:
    wanted = value.strip().lower()
    for agent in app.settings.agents:
        if wanted in (agent.email, agent.name.lower()):
            return agent.email
    raise UsageError(f"unknown agent: {value} (choices: {', '.join(a.email for a in app.settings.agents)})")


def _by(app: App, by: str | None) -> str:
    """Who acts, as the journal records it: a configured agent (name or address), else the command line."""
    return _agent(app, by) if by else "cli"


def _casework(app: App, session):  # type: ignore[no-untyped-def]
    from mailbridge.outbox.render import Renderer
    from mailbridge.workflow.actions import Casework

    renderer = Renderer(app.settings.outbox.templates_path, app.settings.policy.timezone)
    return Casework(session.connection(), app.settings, renderer, datetime.now(timezone.utc))


@ticket.command("open")
@click.option("--channel", required=True, type=click.Choice(MANUAL_CHANNELS), help="How the case arrived (P3).")
@click.option("--name", default="", help="The reporter's name.")
@click.option("--email", default="", help="The reporter's e-mail (then they get the acknowledgement).")
@click.option("--category", required=True, help="A P4 category (Hungarian name or English alias).")
@click.option("--area", required=True, help="A P5 area (Hungarian name or English alias).")
@click.option("--subject", required=True, help="Short description.")
@click.option("--body", default="", help="What the reporter said.")
@click.option("--attach", "attachments", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="A file to keep with the ticket (repeatable).")
@click.option("--by", "by", metavar="AGENT", help="Who entered it.")
@click.option("--language", type=click.Choice(["hu", "en"]), help="Language of the notices (default: tickets.default_language).")
@click.option("--json", "as_json", is_flag=True, help="Print the new ticket as JSON.")
@pass_app
def ticket_open(app: App, channel: str, name: str, email: str, category: str, area: str, subject: str, body: str,
                attachments: tuple[str, ...], by: str | None, language: str | None, as_json: bool) -> None:
    """Enter a case that came by phone, post, social media or otherwise (P3)."""
    import hashlib
    import mimetypes

    from mailbridge.adapters.files import AttachmentStore
    from mailbridge.intake.parse import sanitize_filename
    from mailbridge.intake.store import MailStore, StoreContext
    from mailbridge.mail import Address
    from mailbridge.models import Message
    from mailbridge.outbox.render import Renderer
    from mailbridge.views import show_ticket

    category, area = _category(category), _area(area)
    agent = _agent(app, by) if by else None
    if email and ("@" not in email or " " in email.strip()):
        raise UsageError(f"not an e-mail address: {email!r}")
    if not (name.strip() or email.strip()):
        raise UsageError("give the reporter's --name or --email (or both)")
    files = []
    for path in attachments:
        data = Path(path).read_bytes()
        limit = app.settings.storage.max_attachment_bytes
        if limit and len(data) > limit:
            raise UsageError(f"--attach {path}: {len(data)} bytes is over storage.max_attachment_bytes ({limit})")
        files.append((sanitize_filename(Path(path).name), mimetypes.guess_type(path)[0] or "application/octet-stream", data))
    settings = app.settings
    now = datetime.now(timezone.utc)
    db = app.ready_db()  # before the store's folder is made: a refused command writes nothing
    store_files = AttachmentStore(settings.storage.path)
    store_files.ensure()
    renderer = Renderer(settings.outbox.templates_path, settings.policy.timezone)
    with db.session() as session:
        store = MailStore(session, StoreContext(settings, store_files, "manual", now, renderer))
        reporter = Address(email.strip().lower(), name.strip())
        ticket_id = store.create_ticket(subject=subject, channel=channel, reporter=reporter, category=category,
                                        area=area, language=language or settings.tickets.default_language,
                                        by=agent or "cli", text=body)
        message_pk = store._insert(
            Message.__table__, ticket_id=ticket_id, direction="in", kind="manual", channel=channel, internal=False,
            message_id="", sender=reporter.email, sender_name=reporter.name, to_addrs="", cc_addrs="",
            subject=subject, text=body, new_text=body, html="", references="", reason="", raw_sha256="",
            created_at=now,
        )
        for filename, content_type, data in files:
            digest = store_files.put(data)
            store._attachment_rows.append({"message_pk": message_pk, "ticket_id": ticket_id, "filename": filename,
                                           "content_type": content_type, "size": len(data), "sha256": digest,
                                           "content_id": "", "inline": False, "rejected": False, "reason": ""})
        store.finish()
        if not reporter.email:
            # P7 still holds: the agent must acknowledge by the channel the case came in.
            store.event(ticket_id, "ack.by_hand", "system", {"channel": channel})
            store.finish()
            casework = _casework(app, session)
            casework.tell_assignee(ticket_id, "ack_by_hand",
                                   f"Nincs e-mail cím: a visszaigazolást {channel} csatornán kell megadni.")
        detail = show_ticket(session, ticket_id, settings.tickets.id_prefix)
    if as_json:
        click.echo(json.dumps(detail, ensure_ascii=False, indent=2))
    else:
        click.echo(f"{detail['id']}: opened ({channel}), assigned to {detail['assignee'] or 'nobody'}")


@ticket.command("log")
@click.argument("ticket_id")
@click.option("--channel", required=True, type=click.Choice(MANUAL_CHANNELS))
@click.option("--direction", required=True, type=click.Choice(["in", "out"]), help="in: the customer contacted us.")
@click.option("--by", "by", required=True, metavar="AGENT-EMAIL", help="Who logs it.")
@click.option("--note", required=True, help="What was said.")
@pass_app
def ticket_log(app: App, ticket_id: str, channel: str, direction: str, by: str, note: str) -> None:
    """Log a contact that happened outside the mail (P9)."""
    import sqlalchemy as sa

    from mailbridge.models import Message, Reporter, Ticket

    agent = _agent(app, by)
    now = datetime.now(timezone.utc)
    with app.ready_db().session() as session:
        number = _existing_ticket(app, session, ticket_id)
        conn = session.connection()
        ticket_row = session.get(Ticket, number)
        reporter = session.get(Reporter, ticket_row.reporter_id) if ticket_row.reporter_id else None
        conn.execute(sa.insert(Message.__table__), {
            "ticket_id": number, "direction": direction, "kind": "contact", "channel": channel, "internal": True,
            "message_id": "", "sender": agent, "sender_name": "", "to_addrs": (reporter.email or "") if reporter else "",
            "cc_addrs": "", "subject": f"{channel} ({'in' if direction == 'in' else 'out'})", "text": note,
            "new_text": note, "html": "", "references": "", "reason": "", "raw_sha256": "", "created_at": now,
        })
        _casework(app, session).event(number, "contact.logged", agent, {"channel": channel, "direction": direction})
        conn.execute(sa.update(Ticket.__table__).where(Ticket.__table__.c.id == number).values(updated_at=now))
    click.echo(f"{ticket_id.upper()}: {channel} contact logged")


@ticket.command("assign")
@click.argument("ticket_id")
@click.argument("agent")
@click.option("--by", "by", metavar="AGENT-EMAIL")
@pass_app
def ticket_assign(app: App, ticket_id: str, agent: str, by: str | None) -> None:
    """Hand a ticket to an agent (who is told by mail and in-system)."""
    email, who = _agent(app, agent), _by(app, by)
    with app.ready_db().session() as session:
        number = _existing_ticket(app, session, ticket_id)
        _casework(app, session).assign(number, email, who)
    click.echo(f"{ticket_id.upper()}: assigned to {email}")


@ticket.command("status")
@click.argument("ticket_id")
@click.argument("status", type=click.Choice([s for s in TICKET_STATUSES if s != "new"]))
@click.option("--by", "by", metavar="AGENT-EMAIL")
@pass_app
def ticket_status(app: App, ticket_id: str, status: str, by: str | None) -> None:
    """Set a ticket's status (to resolve with an outcome, use `ticket resolve`)."""
    who = _by(app, by)
    with app.ready_db().session() as session:
        number = _existing_ticket(app, session, ticket_id)
        _casework(app, session).set_status(number, status, who)
    click.echo(f"{ticket_id.upper()}: {status}")


@ticket.command("escalate")
@click.argument("ticket_id")
@click.argument("division")
@click.option("--note", default="", help="What the division should know.")
@click.option("--by", "by", metavar="AGENT-EMAIL")
@pass_app
def ticket_escalate(app: App, ticket_id: str, division: str, note: str, by: str | None) -> None:
    """Hand a case to a division (P11): it gets the history and files."""
    wanted = division.strip().lower()
    found = next((d.email for d in app.settings.divisions if wanted in (d.email, d.name.lower())), None)
    if found is None:
        raise UsageError(f"unknown division: {division} (choices: {', '.join(d.name for d in app.settings.divisions)})")
    who = _by(app, by)
    with app.ready_db().session() as session:
        number = _existing_ticket(app, session, ticket_id)
        _casework(app, session).escalate(number, found, note, who)
    click.echo(f"{ticket_id.upper()}: escalated to {division}")


@ticket.command("merge")
@click.argument("ticket_id")
@click.argument("into_id")
@click.option("--by", "by", metavar="AGENT-EMAIL")
@pass_app
def ticket_merge(app: App, ticket_id: str, into_id: str, by: str | None) -> None:
    """Merge TICKET_ID into INTO_ID; later mail to TICKET_ID follows."""
    from mailbridge.workflow.actions import merge_tickets

    who = _by(app, by)
    with app.ready_db().session() as session:
        source, target = _existing_ticket(app, session, ticket_id), _existing_ticket(app, session, into_id)
        if source == target:
            raise UsageError("a ticket cannot be merged into itself")
        merge_tickets(session.connection(), source, target, who, datetime.now(timezone.utc))
    click.echo(f"{ticket_id.upper()} merged into {into_id.upper()}")


@ticket.command("resolve")
@click.argument("ticket_id")
@click.option("--outcome", required=True, help="What the customer is told (P12).")
@click.option("--by", "by", metavar="AGENT-EMAIL", help="Who resolved it (default: the assignee).")
@pass_app
def ticket_resolve(app: App, ticket_id: str, outcome: str, by: str | None) -> None:
    """Resolve a ticket and tell the customer the outcome."""
    from mailbridge.outbox.render import Renderer
    from mailbridge.workflow.actions import Casework

    who = _by(app, by)
    if not outcome.strip():
        raise UsageError("--outcome is empty: the customer must be told what was done")
    renderer = Renderer(app.settings.outbox.templates_path, app.settings.policy.timezone)
    with app.ready_db().session() as session:
        number = _existing_ticket(app, session, ticket_id)
        casework = Casework(session.connection(), app.settings, renderer, datetime.now(timezone.utc))
        casework.resolve(number, outcome.strip(), who)
    click.echo(f"{ticket_id.upper()}: resolved; the outcome is queued for the customer")


@cli.group()
def gdpr() -> None:
    """Personal data: export, erasure, retention (GDPR Art. 5, 15, 17)."""


@gdpr.command("export")
@click.argument("email")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, writable=True), help="The ZIP to write.")
@pass_app
def gdpr_export(app: App, email: str, out: str) -> None:
    """Everything held about EMAIL, as one ZIP (Art. 15)."""
    from mailbridge.gdpr import person_address
    from mailbridge.gdpr.export import export_person

    email = person_address(email)  # before the database is opened: a bad argument writes nothing
    report = export_person(app.ready_db(), app.settings, email, Path(out))
    click.echo(f"{out}: {report.tickets} ticket(s), {report.messages} message(s), "
               f"{report.attachments} attachment(s), {report.raw_messages} raw message(s)")


@gdpr.command("erase")
@click.argument("email")
@click.option("--yes", is_flag=True, help="Do not ask.")
@click.option("--dry-run", is_flag=True, help="Only show what would change, per table, and which names stay.")
@pass_app
def gdpr_erase(app: App, email: str, yes: bool, dry_run: bool) -> None:
    """Pseudonymise EMAIL everywhere, server copies included (Art. 17)."""
    from mailbridge.gdpr import person_address
    from mailbridge.gdpr.erase import erase_person, plan_erasure

    email = person_address(email)  # before the database is opened: a bad argument writes nothing
    db = app.ready_db()
    plan = plan_erasure(db, app.settings, email)
    if plan.empty:
        raise UsageError(f"nothing held about {email}")
    click.echo(plan.describe(dry_run=dry_run))
    if dry_run:
        return
    if not yes and not click.confirm("Erase this person's data?", default=False):
        raise click.exceptions.Abort()
    report = erase_person(db, app.settings, email)
    click.echo(report.describe())


@gdpr.command("retention")
@click.option("--dry-run", is_flag=True, help="Only list what would go.")
@click.option("--at", "at", metavar="ISO-TIME", help="As if the clock read this.")
@pass_app
def gdpr_retention(app: App, dry_run: bool, at: str | None) -> None:
    """Apply the [retention] rules now (the daemon does it daily)."""
    from mailbridge.gdpr.retention import apply_retention

    now = parse_time(at) if at else datetime.now(timezone.utc)
    report = apply_retention(app.ready_db(), app.settings, now, dry_run=dry_run)
    click.echo(report.describe())


@cli.group()
def quarantine() -> None:
    """Mail that could not be parsed or stored."""


@quarantine.command("list")
@click.option("--json", "as_json", is_flag=True, help="JSON, for scripts.")
@pass_app
def quarantine_list(app: App, as_json: bool) -> None:
    from mailbridge.views import list_quarantine

    with app.ready_db().session() as session:
        rows = list_quarantine(session, app.settings.tickets.id_prefix)
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    table(["ID", "TICKET", "STATUS", "SINCE", "REASON"],
          [[str(r["id"]), r["ticket"] or "-", r["status"], r["created_at"][:19], r["reason"]] for r in rows])


@quarantine.command("retry")
@click.argument("entry_id", required=False, type=ROW_NUMBER)
@pass_app
def quarantine_retry(app: App, entry_id: int | None) -> None:
    """Re-read quarantined mail once (all waiting ones, or ID)."""
    from sqlmodel import select

    from mailbridge.adapters.files import AttachmentStore
    from mailbridge.intake.prepare import PrepareOptions, prepare_mail
    from mailbridge.intake.store import StoreContext, reread_quarantined
    from mailbridge.models import Quarantine, RawMessage, Message

    db = app.ready_db()
    with db.session() as session:
        if entry_id is not None:
            entry = session.get(Quarantine, entry_id)
            if entry is None:
                raise UsageError(f"no such quarantine entry: {entry_id}")
            ids = [entry_id]
        else:
            ids = list(session.exec(select(Quarantine.id).where(Quarantine.status == "waiting")).all())
    fixed = failed = 0
    for qid in ids:
        with db.session() as session:
            entry = session.get(Quarantine, qid)
            message = session.get(Message, entry.message_pk)
            raw_row = session.get(RawMessage, message.raw_id) if message and message.raw_id else None
            raw = zlib.decompress(raw_row.data) if raw_row else b""
            result = prepare_mail(raw, PrepareOptions.from_settings(app.settings))
            ctx = StoreContext(app.settings, AttachmentStore(app.settings.storage.path), "default", datetime.now(timezone.utc))
            if reread_quarantined(session, entry, result, ctx):
                fixed += 1
            else:
                failed += 1
    click.echo(f"retried {len(ids)}: {fixed} read now, {failed} still unreadable")


@cli.group("db")
def db_group() -> None:  # not `db`: commands hold their database in a local of that name
    """The database itself: moving an installation to PostgreSQL (scale-out)."""


@db_group.command("copy")
@click.option("--to", "to", required=True, metavar="URL",
              help="An empty PostgreSQL database, e.g. postgresql+psycopg://mailbridge@db/mailbridge.")
@pass_app
def db_copy(app: App, to: str) -> None:
    """Copy every table (tickets, mail, events, outbox, ID sequences) into an empty PostgreSQL database.

    Stop every `mailbridge run` first: what it writes during the copy would not be copied.
    """
    from mailbridge.adapters.db_copy import copy_database
    from mailbridge.ticket_ids import format_ticket_id

    report = copy_database(app.ready_db(), to, progress=lambda name, rows: click.echo(f"{name}: {rows} rows"))
    last = report.sequences.get("ticket", 0)
    following = format_ticket_id(last + 1, app.settings.tickets.id_prefix)
    click.echo(f"ticket sequence: {last} (the next ticket is {following})")
    click.echo("verified: row counts equal in both databases")
    click.echo(f"attachments: the files stay in {app.settings.storage.path}; point every host's storage.path "
               "at that folder (a shared volume)")
    click.echo(f"next: set database.url in {config_path(app.config)} to {report.target} (on every host)")


@cli.command()
@pass_app
def check(app: App) -> None:
    """Validate the config and try the database, IMAP and SMTP."""
    from mailbridge.adapters.imap import imap_session
    from mailbridge.intake.loop import mailbox_identity

    settings = app.settings  # a config error exits 2 before anything is tried
    results: list[tuple[str, bool, str]] = [("config", True, str(config_path(app.config)))]
    try:
        pending = app.db.pending_migrations()
        results.append(("database", not pending, "needs `mailbridge init`" if pending else "schema up to date"))
    except Exception as exc:  # check reports; it must not crash on what it checks
        results.append(("database", False, _one_line(exc)))
    boxes = settings.intake_mailboxes
    for s in boxes:
        label = f"imap {s.name}" if len(boxes) > 1 else "imap"
        try:
            with imap_session(s) as imap:
                missing = [f for f in (s.folder, s.processed_folder, s.quarantine_folder)
                           if not imap._c.folder_exists(f)]
            results.append((label, not missing, f"missing folders: {', '.join(missing)}" if missing
                            else f"{s.host}:{s.port} login ok"))
        except Exception as exc:
            results.append((label, False, _one_line(exc)))
    results.append(_check_smtp(settings))
    from mailbridge import metrics

    limit = settings.alarm.poll_stale_minutes * 60
    for box in boxes:
        label = f"intake {box.name}" if len(boxes) > 1 else "intake"
        age = metrics.poll_age(settings.storage.path, box.name)
        try:  # several hosts: which process polls it now
            holder = app.db.poller_lock(mailbox_identity(box)).holder()
        except Exception:
            holder = None
        by = f"; polled by {holder}" if holder else ""
        if age is None:
            results.append((label, True, "no successful poll recorded yet" + by))
        else:
            results.append((label, age <= limit, f"last successful poll {age / 60:.1f} min ago" + by
                            + ("" if age <= limit else f": silent longer than alarm.poll_stale_minutes ({limit / 60:g})")))
    width = max(len(name) for name, _, _ in results)
    for name, ok, detail in results:
        mark = click.style("ok  ", fg="green") if ok else click.style("FAIL", fg="red", bold=True)
        click.echo(f"{mark} {name:<{width}}  {detail}")
    if not all(ok for _, ok, _ in results):
        sys.exit(1)


def _check_smtp(settings: Settings) -> tuple[str, bool, str]:
    """Connects and authenticates exactly as the sender does (password or XOAUTH2)."""
    from mailbridge.adapters.smtp import SmtpConnection
    from mailbridge.errors import SmtpError

    s = settings.smtp
    try:
        with SmtpConnection(s):
            pass
        return ("smtp", True, f"{s.host}:{s.port} ok")
    except SmtpError as exc:
        hint = " (set smtp.starttls = false for a plain local relay)" if "STARTTLS" in str(exc).upper() else ""
        return ("smtp", False, f"{_one_line(exc)}{hint}")


@cli.command()
@click.option("--keep", is_flag=True, help="Keep the demo's folder and servers' data afterwards.")
def demo(keep: bool) -> None:
    """Start a local IMAP and SMTP server, feed sample mail, show the tickets."""
    from mailbridge.demo.run import run_demo

    def mailbridge(args: list[str]) -> None:
        try:
            cli.main(args=args, prog_name="mailbridge", standalone_mode=False)
        except SystemExit as exc:
            if exc.code:
                raise

    run_demo(mailbridge, keep=keep)


def table(headers: list[str], rows: list[list[str]], colour_column: int | None = None) -> None:
    """Aligned columns; the last column runs free; colour only on a terminal."""
    if not rows:
        click.echo("(none)")
        return
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers[:-1])]
    click.echo(click.style("  ".join(h.ljust(w) for h, w in zip(headers, widths)) + "  " + headers[-1], bold=True))
    colours = {"new": "yellow", "acknowledged": "cyan", "in_progress": "blue", "escalated": "magenta",
               "resolved": "green", "closed": "white"}
    for row in rows:
        cells = [c.ljust(w) for c, w in zip(row, widths)] + [row[-1]]
        if colour_column is not None:
            cells[colour_column] = click.style(cells[colour_column], fg=colours.get(row[colour_column].strip()))
        click.echo("  ".join(cells), color=None)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _check_arguments(args: list[str]) -> None:
    """Bytes that are not UTF-8 reach Python as lone surrogates, which no database or file takes."""
    for arg in args:
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:
            shown = arg.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
            raise UsageError(f"an argument is not valid UTF-8 text: {shown!r}") from None


def main(argv: Iterable[str] | None = None) -> None:
    args = list(argv) if argv is not None else sys.argv[1:]
    try:
        _check_arguments(args)
        cli.main(args=args, prog_name="mailbridge", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("mailbridge: aborted", err=True)
        sys.exit(1)
    except click.UsageError as exc:  # one line, like ours; the usage is one `--help` away
        where = exc.ctx.command_path if exc.ctx else "mailbridge"
        click.echo(f"{where}: {exc.format_message()} (see {where} --help)", err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        click.echo(f"mailbridge: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except (ConfigError, UsageError) as exc:
        click.echo(f"mailbridge: {exc}", err=True)
        sys.exit(2)
    except MailbridgeError as exc:
        click.echo(f"mailbridge: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:
        # `mailbridge tickets list | head`: the reader has what it wanted; no complaint, and
        # no second one when the interpreter flushes stdout on exit (Python's documented way).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
    except Exception as exc:
        # Last resort, for a fault no adapter turned into ours: one line for the user; the frames
        # go to the log at debug level for a bug report. Neither carries the message: a
        # library's message may quote an address or a line of someone's mail.
        log.debug("cli.failed", error=type(exc).__name__, frames="".join(traceback.format_tb(exc.__traceback__)))
        where = error_fields(exc).get("raised_at", "")
        click.echo(f"mailbridge: unexpected {type(exc).__name__} at {where} "
                   "(logging.level = \"debug\" logs where it happened)", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
