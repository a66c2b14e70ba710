"""`mailbridge [--config PATH] COMMAND`: exit 0 ok, 2 usage or config error, 1 anything else.

click gives exit 2 for usage errors and choice lists for free; ours add
the same for config errors and unknown IDs, always as one line on stderr.
"""

from __future__ import annotations

import json
import os
import smtplib
import socket
import sys
import zlib
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path

import click

from mailbridge.config import Settings, config_path, load_settings
from mailbridge.errors import ConfigError, MailbridgeError, UsageError
from mailbridge.logs import configure_logging, get_logger
from mailbridge.models import TICKET_STATUSES

log = get_logger("mailbridge.cli")


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
            raise MailbridgeError("database is not initialised or not up to date: run `mailbridge init` first")
        return db

    def ticket_number(self, text: str) -> int:
        from mailbridge.intake.thread import parse_ticket_id

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
    s = app.settings.imap
    with imap_session(s) as imap:
        created = imap.ensure_folders([s.processed_folder, s.quarantine_folder])
    click.echo(f"imap folders: {', '.join(created) + ' created' if created else 'present'}")


@cli.command()
@click.option("--once", is_flag=True, required=True, help="One intake pass over new mail, then exit.")
@pass_app
def poll(app: App, once: bool) -> None:
    """One intake pass over new mail."""
    from mailbridge.adapters.imap import imap_session
    from mailbridge.intake.run import Intake

    db = app.ready_db()
    s = app.settings.imap
    intake = Intake(app.settings, db)
    with imap_session(s) as imap, imap_session(s) as mover:
        report = intake.poll(imap, mover)
    parts = ", ".join(f"{n} {kind}" for kind, n in sorted(report.outcomes.items())) or "nothing new"
    click.echo(f"fetched {report.fetched}: {parts}; moved {report.moved}")


@cli.command()
@pass_app
def run(app: App) -> None:
    """The daemon, in the foreground."""
    from mailbridge.jobs import run_daemon

    configure_logging(app.settings.logging.level, app.settings.logging.format, stream=sys.stdout)
    run_daemon(app.settings, app.ready_db())


@cli.command()
@click.option("--at", "at", metavar="ISO-TIME", help="Run as if the clock read this (e.g. 2026-11-27T09:00:00+01:00).")
@pass_app
def tick(app: App, at: str | None) -> None:
    """Run every scheduled job once: acknowledgements, SLA watcher, then the outbox sender."""
    from mailbridge.jobs import Jobs

    now = parse_time(at) if at else datetime.now(timezone.utc)
    result = Jobs(app.settings, app.ready_db()).tick(now)
    click.echo(", ".join(f"{n} {k.replace('_', ' ')}" for k, n in result.items()) or "nothing to do")


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

    from mailbridge.intake.thread import format_ticket_id
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


def parse_time(text: str, zone: str = "Europe/Budapest") -> datetime:
    """ISO-8601; without an offset it is local time in `zone`."""
    from zoneinfo import ZoneInfo

    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"not an ISO-8601 time: {text!r} (e.g. 2024-08-01T10:00:00+02:00)") from None
    return value if value.tzinfo else value.replace(tzinfo=ZoneInfo(zone))


@cli.group()
def tickets() -> None:
    """List and show tickets."""


@tickets.command("list")
@click.option("--json", "as_json", is_flag=True, help="A JSON array, for scripts.")
@click.option("--status", type=click.Choice(["open", *TICKET_STATUSES]), help="Only tickets in this status (open: not resolved or closed).")
@click.option("--limit", type=click.IntRange(min=1), help="At most this many.")
@pass_app
def tickets_list(app: App, as_json: bool, status: str | None, limit: int | None) -> None:
    from mailbridge.views import list_tickets

    with app.ready_db().session() as session:
        rows = list_tickets(session, app.settings.tickets.id_prefix, status, limit)
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    table(
        ["ID", "STATUS", "CATEGORY", "AREA", "REPORTER", "MSGS", "FLAGS", "SUBJECT"],
        [
            [r["id"], r["status"], r["category"], r["area"], r["reporter_email"] or "-", str(r["message_count"]),
             ",".join(r["flags"]), r["subject"]]
            for r in rows
        ],
        colour_column=1,
    )


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
    for key in ("status", "category", "area", "channel", "reporter_name", "reporter_email", "assignee", "created_at",
                "ack_deadline", "acknowledged_at", "linked_ticket"):
        if detail.get(key):
            click.echo(f"  {key.replace('_', ' '):<16} {detail[key]}")
    if detail["flags"]:
        click.echo(f"  {'flags':<16} {', '.join(detail['flags'])}")
    if detail.get("ack_deadline_explained"):
        click.echo(f"  {'deadline, why':<16} {detail['ack_deadline_explained'][app.settings.tickets.default_language]}")
    for m in detail["messages"]:
        arrow = "<-" if m["direction"] == "in" else "->"
        click.echo("")
        click.echo(click.style(f"{arrow} {m['created_at']}  {m['kind']}  {m['sender'] or '(no sender)'}", fg="cyan"))
        click.echo(f"   {m['subject']}")
        for line in (m["new_text"] or m["text"]).splitlines()[:40]:
            click.echo(f"   | {line}")
        for a in m["attachments"]:
            state = " (rejected: " + a["reason"] + ")" if a.get("rejected") else ""
            click.echo(f"   + {a['filename']}  {a['size']} bytes{state}")
    click.echo("")
    for e in detail["events"]:
        click.echo(f"  {e['at']}  {e['type']:<22} {e['by']}")


@cli.group()
def ticket() -> None:
    """Act on one ticket."""


def _existing_ticket(app: App, session, text: str) -> int:  # type: ignore[no-untyped-def]
    from mailbridge.models import Ticket

    number = app.ticket_number(text)
    if session.get(Ticket, number) is None:
        raise UsageError(f"no such ticket: {text}")
    return number


@ticket.command("resolve")
@click.argument("ticket_id")
@click.option("--outcome", required=True, help="What the customer is told (P12).")
@click.option("--by", "by", metavar="AGENT-EMAIL", help="Who resolved it (default: the assignee).")
@pass_app
def ticket_resolve(app: App, ticket_id: str, outcome: str, by: str | None) -> None:
    """Resolve a ticket and tell the customer the outcome."""
    from mailbridge.outbox.render import Renderer
    from mailbridge.workflow.actions import Casework

    if by and by.lower() not in app.settings.agent_addresses:
        raise UsageError(f"unknown agent: {by} (choices: {', '.join(sorted(app.settings.agent_addresses))})")
    if not outcome.strip():
        raise UsageError("--outcome is empty: the customer must be told what was done")
    renderer = Renderer(app.settings.outbox.templates_path, app.settings.policy.timezone)
    with app.ready_db().session() as session:
        number = _existing_ticket(app, session, ticket_id)
        casework = Casework(session.connection(), app.settings, renderer, datetime.now(timezone.utc))
        casework.resolve(number, outcome.strip(), (by or "cli").lower())
    click.echo(f"{ticket_id.upper()}: resolved; the outcome is queued for the customer")


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
@click.argument("entry_id", required=False, type=int)
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


@cli.command()
@pass_app
def check(app: App) -> None:
    """Validate the config and try the database, IMAP and SMTP."""
    from mailbridge.adapters.imap import imap_session

    settings = app.settings  # a config error exits 2 before anything is tried
    results: list[tuple[str, bool, str]] = [("config", True, str(config_path(app.config)))]
    try:
        pending = app.db.pending_migrations()
        results.append(("database", not pending, "needs `mailbridge init`" if pending else "schema up to date"))
    except Exception as exc:  # check reports; it must not crash on what it checks
        results.append(("database", False, _one_line(exc)))
    s = settings.imap
    try:
        with imap_session(s) as imap:
            missing = [f for f in (s.folder, s.processed_folder, s.quarantine_folder) if not imap._c.folder_exists(f)]
        results.append(("imap", not missing, f"missing folders: {', '.join(missing)}" if missing else f"{s.host}:{s.port} login ok"))
    except Exception as exc:
        results.append(("imap", False, _one_line(exc)))
    results.append(_check_smtp(settings))
    width = max(len(name) for name, _, _ in results)
    for name, ok, detail in results:
        mark = click.style("ok  ", fg="green") if ok else click.style("FAIL", fg="red", bold=True)
        click.echo(f"{mark} {name:<{width}}  {detail}")
    if not all(ok for _, ok, _ in results):
        sys.exit(1)


def _check_smtp(settings: Settings) -> tuple[str, bool, str]:
    s = settings.smtp
    try:
        cls = smtplib.SMTP_SSL if s.tls else smtplib.SMTP
        with cls(s.host, s.port, timeout=s.timeout) as smtp:
            smtp.ehlo()
            if s.starttls and not s.tls:
                if not smtp.has_extn("starttls"):
                    return ("smtp", False, f"{s.host}:{s.port} does not offer STARTTLS (set smtp.starttls = false for a plain local relay)")
                smtp.starttls()
                smtp.ehlo()
            if s.username:
                smtp.login(s.username, s.password)
        return ("smtp", True, f"{s.host}:{s.port} ok")
    except (smtplib.SMTPException, OSError, socket.timeout) as exc:
        return ("smtp", False, f"{s.host}:{s.port}: {_one_line(exc)}")


@cli.command()
@click.option("--keep", is_flag=True, help="Keep the demo's folder and servers' data afterwards.")
def demo(keep: bool) -> None:
    """Start a local IMAP and SMTP server, feed sample mail, show the tickets."""
    from mailbridge.demo.run import run_demo

    run_demo(keep=keep)


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


def main(argv: Iterable[str] | None = None) -> None:
    try:
        cli.main(args=list(argv) if argv is not None else None, prog_name="mailbridge", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("mailbridge: aborted", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except (ConfigError, UsageError) as exc:
        click.echo(f"mailbridge: {exc}", err=True)
        sys.exit(2)
    except MailbridgeError as exc:
        click.echo(f"mailbridge: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
