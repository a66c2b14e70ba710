"""For operations: set up (`init`), run the desk (`run`, `poll`, `tick`), look after it
(`check`, `sla`, `quarantine`, `db backup`, `db copy`) and show it (`demo`)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from mailbridge.cli.app import ROW_NUMBER, App, clock_at, pass_app, parse_time
from mailbridge.cli.output import local_time, table
from mailbridge.errors import MailbridgeError, UsageError

if TYPE_CHECKING:
    from mailbridge.config import Settings


@click.command()
@pass_app
def init(app: App) -> None:
    """Create or migrate the database, storage folders and IMAP folders."""
    from mailbridge.adapters.files import AttachmentStore
    from mailbridge.adapters.imap import imap_session

    before, after = app.db.migrate()
    click.echo(f"database: {'created' if before is None else 'migrated' if before != after else 'up to date'} "
               f"{app.db.where} (schema {after})")
    AttachmentStore(app.settings.storage.path).ensure()
    click.echo(f"storage: {app.settings.storage.path}")
    boxes = app.settings.intake_mailboxes
    for s in boxes:
        with imap_session(s) as imap:
            created = imap.ensure_folders([s.processed_folder, s.quarantine_folder])
        where = f" ({s.name})" if len(boxes) > 1 else ""
        click.echo(f"imap folders{where}: {', '.join(created) + ' created' if created else 'present'}")


@click.command()
@click.option("--once", is_flag=True, required=True, help="One intake pass over new mail, then exit.")
@pass_app
def poll(app: App, once: bool) -> None:
    """One intake pass over new mail."""
    from mailbridge.intake import forkserver

    forkserver.start()  # the parse workers' imports run beside the ones below
    from mailbridge.adapters.imap import imap_session
    from mailbridge.intake.watch import mailbox_identity
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


@click.command()
@pass_app
def run(app: App) -> None:
    """The daemon, in the foreground."""
    import signal
    import threading

    # A SIGTERM while the daemon still starts (systemd stopping it early) is a clean stop
    # too, not a death by signal: noted now, obeyed once the daemon's own handlers are in.
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    from mailbridge.jobs import run_daemon
    from mailbridge.logs import configure_logging

    settings = app.settings
    # The daemon logs in at once and for good: a secret it cannot read is a config error now
    # (exit 2, systemd's unit log), not a retried outage (other commands read it when they log in).
    for box in settings.intake_mailboxes:
        if box.auth == "password":
            box.login_password()
    if settings.smtp.username and settings.smtp.auth == "password":
        settings.smtp.login_password()
    configure_logging(app.settings.logging.level, app.settings.logging.format, stream=sys.stdout)
    run_daemon(app.settings, app.ready_db(), reload=app.read_settings, stopping=stopping)


@click.command()
@click.option("--at", "at", metavar="ISO-TIME", help="Run as if the clock read this (e.g. 2026-11-27T09:00:00+01:00).")
@pass_app
def tick(app: App, at: str | None) -> None:
    """Run every scheduled job once: acknowledgements, SLA watcher, retention, the agents'
    digest and the supervisors' report (when due), search vectors (PostgreSQL), then the
    outbox sender.

    A job that fails does not stop the others; the exit status is then 1, with one line
    naming the jobs and why (a read-only or full database is a fault outside the user's hands).
    """
    from mailbridge.jobs import Jobs

    now = clock_at(at)
    result, failed = Jobs(app.settings, app.ready_db()).tick(now)
    click.echo(", ".join(f"{n} {k.replace('_', ' ')}" for k, n in result.items()) or "nothing to do")
    if failed:
        reasons = "; ".join(dict.fromkeys(failed.values()))
        raise MailbridgeError(f"tick: {', '.join(failed)} failed: {reasons}")


@click.group()
def sla() -> None:
    """The acknowledgement deadline (P7)."""


@sla.command("deadline")
@click.argument("recorded_at", metavar="ISO-TIME")
@click.option("--explain", is_flag=True, help="Also say which days were skipped and why.")
@pass_app
def sla_deadline(app: App, recorded_at: str, explain: bool) -> None:
    """Print the acknowledgement deadline for a case recorded at ISO-TIME."""
    from mailbridge.config import Settings
    from mailbridge.policy.deadline import explain_deadline

    # Works without a config file too (the defaults: Hungary, 2 working days).
    given = app.config or os.environ.get("MAILBRIDGE_CONFIG") or app.config_file.exists()
    p = app.settings.policy if given else Settings().policy
    explanation = explain_deadline(parse_time(recorded_at, p.timezone), p.ack_business_days, p.timezone, p.country)
    click.echo(explanation.deadline.isoformat())
    if explain:
        click.echo(explanation.describe("en"))


@click.group()
def quarantine() -> None:
    """Mail that could not be parsed or stored."""


@quarantine.command("list")
@click.option("--json", "as_json", is_flag=True, help="JSON, for scripts.")
@pass_app
def quarantine_list(app: App, as_json: bool) -> None:
    from mailbridge.views import list_quarantine

    with app.ready_db().reading() as session:
        rows = list_quarantine(session, app.settings.tickets.id_prefix)
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    zone = app.settings.policy.timezone  # times as the desk reads them, as in `tickets list`
    table(["ID", "TICKET", "STATUS", "SINCE", "REASON"],
          [[str(r["id"]), r["ticket"] or "-", r["status"], local_time(r["created_at"], zone, with_zone=False),
            r["reason"]] for r in rows])


@quarantine.command("retry")
@click.argument("entry_id", required=False, type=ROW_NUMBER)
@pass_app
def quarantine_retry(app: App, entry_id: int | None) -> None:
    """Re-read quarantined mail once (all waiting ones, or ID)."""
    from mailbridge.intake.run import Intake
    from mailbridge.mail import OutcomeKind

    report = Intake(app.settings, app.ready_db()).retry_quarantined(entry_id)
    unreadable = report.outcomes.get(OutcomeKind.QUARANTINED, 0)
    click.echo(f"retried {report.fetched}: {report.fetched - unreadable} read now, {unreadable} still unreadable")


@click.group("db")
def db_group() -> None:  # not `db`: commands hold their database in a local of that name
    """The database itself: backing it up, moving an installation to PostgreSQL (scale-out)."""


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
    click.echo(f"next: set database.url in {app.config_file} to {report.target} (on every host)")


@db_group.command("backup")
@click.argument("target", metavar="PATH", type=click.Path(file_okay=True, dir_okay=True, path_type=Path))
@pass_app
def db_backup(app: App, target: Path) -> None:
    """Copy the SQLite database (while mailbridge runs) and the storage folder into PATH, a new folder.

    PostgreSQL: use pg_dump, and copy the storage folder.
    """
    from mailbridge.adapters.db_backup import back_up, check_target

    if app.db.engine.dialect.name != "sqlite":  # said before a connection is tried
        raise UsageError(f"db backup copies SQLite installations; {app.db.where} is PostgreSQL: back it up with "
                         f"pg_dump (e.g. pg_dump -Fc -f mailbridge.dump) and copy {app.settings.storage.path}")
    # Not ready_db(): its schema check would queue behind a writer (BEGIN IMMEDIATE); the
    # backup reads the schema revision in its own snapshot instead.
    db = app.existing_db()
    target = target.absolute()
    check_target(target)  # before a second is spent copying
    report = back_up(Path(db.where), Path(app.settings.storage.path), target)
    click.echo(f"database: {report.database} (schema {report.schema}, {_megabytes(report.database_bytes)}, checked)")
    files = "1 file" if report.files == 1 else f"{report.files} files"
    click.echo(f"storage: {report.storage} ({files}, {_megabytes(report.storage_bytes)})")
    click.echo("owner-only (0600 files, 0700 folders): it holds customers' data")


def _megabytes(size: int) -> str:
    return f"{size / 1024 / 1024:.1f} MB"


@click.command()
@pass_app
def check(app: App) -> None:
    """Validate the config, render every template and try the database, IMAP and SMTP."""
    from mailbridge.adapters.imap import imap_session
    from mailbridge.intake.watch import mailbox_identity

    settings = app.settings  # a config error exits 2 before anything is tried
    results: list[tuple[str, bool, str]] = [("config", True, str(app.config_file))]
    results.extend(_check_templates(settings))
    pending = True
    try:
        missing = app.db.missing()
        pending = missing or app.db.pending_migrations()
        results.append(("database", not pending, f"needs `mailbridge init` ({app.db.where} does not exist yet)"
                        if missing else "needs `mailbridge init`" if pending else "schema up to date"))
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
    if settings.agents and settings.security.require_agent_auth and not pending:  # reading mail needs the tables
        results.append(_check_agent_auth(app))
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


def _check_agent_auth(app: App) -> tuple[str, bool, str]:
    """Would agents' mail pass? The configured authserv-ids against those on top of recent
    mail: ops learn of a wrong setting before an agent's reply is refused."""
    from mailbridge.workflow.agent_mail import authserv_ids_seen

    trusted = {t.strip().rstrip(".").lower() for t in app.settings.security.trusted_authserv_ids if t.strip()}
    if not trusted:
        return ("agent auth", False, "security.trusted_authserv_ids is empty: every agent's mail is refused")
    try:
        with app.db.transaction() as conn:
            read, seen = authserv_ids_seen(conn)
    except Exception as exc:  # check reports; it must not crash on what it checks
        return ("agent auth", False, _one_line(exc))
    if not read:
        return ("agent auth", True, "no mail taken in yet to compare security.trusted_authserv_ids with")
    hits = sum(n for authserv, n in seen.items() if authserv in trusted)
    if hits:
        return ("agent auth", True, f"{', '.join(sorted(trusted))} on top of {hits} of the last {read} mails")
    found = ", ".join(f"{a} ({n})" for a, n in seen.most_common(3) if a) or "no Authentication-Results"
    return ("agent auth", False, f"none of the last {read} mails came through {', '.join(sorted(trusted))} "
                                 f"(on top: {found}): check security.trusted_authserv_ids")


def _check_templates(settings: Settings) -> list[tuple[str, bool, str]]:
    """Every notice's template in both languages, ops' overrides first, rendered with sample
    data: a broken override is named (file and line) before a customer's mail needs it."""
    from mailbridge.outbox.render import LANGUAGES, Renderer
    from mailbridge.outbox.samples import TEMPLATE_NAMES

    renderer = Renderer(settings.outbox.templates_path, settings.policy.timezone)
    faults = renderer.check()
    if faults:
        return [("templates", False, str(fault)) for fault in faults]
    overridden = len(list(renderer.override.rglob("*.j2"))) if renderer.override else 0
    return [("templates", True, f"{len(TEMPLATE_NAMES) * len(LANGUAGES)} rendered"
             + (f", {overridden} from {settings.outbox.templates_path}" if overridden else ""))]


def _check_smtp(settings: Settings) -> tuple[str, bool, str]:
    """Connects and authenticates exactly as the sender does (password or XOAUTH2)."""
    from mailbridge.adapters.smtp import SmtpConnection
    from mailbridge.errors import ConfigError, SmtpError

    s = settings.smtp
    try:
        with SmtpConnection(s):
            pass
        return ("smtp", True, f"{s.host}:{s.port} ok")
    except ConfigError as exc:  # an unreadable smtp.password_file
        return ("smtp", False, _one_line(exc))
    except SmtpError as exc:
        hint = " (set smtp.starttls = false for a plain local relay)" if "STARTTLS" in str(exc).upper() else ""
        return ("smtp", False, f"{_one_line(exc)}{hint}")


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@click.command()
@click.option("--keep", is_flag=True, help="Keep the demo's folder and servers' data afterwards.")
@click.pass_context
def demo(ctx: click.Context, keep: bool) -> None:
    """Start a local IMAP and SMTP server, feed sample mail, show the tickets."""
    from mailbridge.demo import require_servers

    require_servers()  # the `demo` extra: not every installation has the servers
    from mailbridge.demo.run import run_demo

    cli = ctx.find_root().command  # the whole command line, which imports this module

    def mailbridge(args: list[str]) -> None:
        try:
            cli.main(args=args, prog_name="mailbridge", standalone_mode=False)
        except SystemExit as exc:
            if exc.code:
                raise

    run_demo(mailbridge, keep=keep)


# What this module adds to the command line.
COMMANDS = (init, poll, run, tick, sla, quarantine, db_group, check, demo)
