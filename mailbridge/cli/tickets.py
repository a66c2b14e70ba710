"""For agents: find tickets (`tickets list/search/show`), act on one (`ticket open/log/assign/
status/escalate/merge/resolve`), and read their notifications."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import click

from mailbridge.cli.app import ROW_NUMBER, App, pass_app
from mailbridge.cli.output import local_time, table
from mailbridge.errors import UsageError
from mailbridge.vocabulary import MANUAL_CHANNELS, TICKET_ORDERS, TICKET_STATUSES

# `--lang`: the language of an output for people (JSON keeps the stored values).
LANGUAGE_OPTION = click.option("--lang", "lang", type=click.Choice(["hu", "en"]),
                               help="Language of the output (default: tickets.default_language).")


@click.group()
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
        click.option("--sort", "order", default="id", show_default=True,
                     type=click.Choice([*TICKET_ORDERS, *(f"-{name}" for name in TICKET_ORDERS)]),
                     help="Order (a leading - reverses it: -created is newest first); "
                          "tickets without a deadline or assignee come last."),
        LANGUAGE_OPTION,
    ]):
        f = option(f)
    return f


def _labels(app: App, lang: str | None):  # type: ignore[no-untyped-def]
    from mailbridge.cli.labels import Labels

    return Labels(lang or app.settings.tickets.default_language)


def _print_tickets(app: App, as_json: bool, lang: str | None, search: str | None = None,
                   **filters) -> None:  # type: ignore[no-untyped-def]
    from mailbridge.views import list_tickets

    if filters.get("assignee"):
        filters["assignee"] = _agent(app, filters["assignee"])
    if filters.get("category"):
        filters["category"] = _category(filters["category"])
    if filters.get("area"):
        filters["area"] = _area(filters["area"])
    overdue = filters.pop("overdue", False)
    with app.ready_db().reading() as session:
        rows = list_tickets(session, app.settings.tickets.id_prefix, filters.pop("status", None),
                            filters.pop("limit", None), overdue_at=datetime.now(timezone.utc) if overdue else None,
                            search=search, **filters)
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    words, zone = _labels(app, lang), app.settings.policy.timezone
    # ID, status and time whole; on a narrow terminal the counts, area, flags, assignee and
    # category go (in that order), and the free texts are cut.
    table(
        [words[key] for key in ("id", "status", "created", "category", "area", "reporter", "assignee", "messages",
                                "flags", "subject")],
        [
            [r["id"], words.status(r["status"]), local_time(r["created_at"], zone, with_zone=False),
             words.name(r["category"]), words.name(r["area"]), r["reporter_email"] or r["reporter_name"] or "-",
             r["assignee"] or words["nobody"], str(r["message_count"]), ",".join(r["flags"]), r["subject"]]
            for r in rows
        ],
        colour_column=1, colours=[r["status"] for r in rows], free=(3, 4, 5, 6, 8, 9), optional=(7, 4, 8, 6, 3),
        empty=words["none"],
    )


@tickets.command("list")
@_ticket_filters
@pass_app
def tickets_list(app: App, as_json: bool, lang: str | None, **filters) -> None:  # type: ignore[no-untyped-def]
    """Tickets, oldest first (or --sort), filtered; times in policy.timezone."""
    _print_tickets(app, as_json, lang, **filters)


@tickets.command("search")
@click.argument("text")
@_ticket_filters
@pass_app
def tickets_search(app: App, text: str, as_json: bool, lang: str | None, **filters) -> None:  # type: ignore[no-untyped-def]
    """Tickets whose subject or any mail contains TEXT."""
    if not text.strip():
        raise UsageError("tickets search: TEXT is empty (it would match every ticket; use `tickets list`)")
    _print_tickets(app, as_json, lang, search=text, **filters)


@tickets.command("show")
@click.argument("ticket_id")
@click.option("--json", "as_json", is_flag=True, help="JSON, for scripts.")
@LANGUAGE_OPTION
@pass_app
def tickets_show(app: App, ticket_id: str, as_json: bool, lang: str | None) -> None:
    """One ticket: its fields, every message and the journal; times in policy.timezone."""
    from mailbridge.views import show_ticket

    number = app.ticket_number(ticket_id)
    with app.ready_db().reading() as session:
        detail = show_ticket(session, number, app.settings.tickets.id_prefix, app.settings.policy)
    if detail is None:
        raise UsageError(f"no such ticket: {ticket_id}")
    if as_json:
        click.echo(json.dumps(detail, ensure_ascii=False, indent=2))
        return
    _print_ticket(detail, _labels(app, lang), app.settings.policy.timezone)


def _print_ticket(detail: dict, words, zone: str) -> None:  # type: ignore[no-untyped-def]
    """`tickets show` for people: one language, times in policy.timezone, mail text made printable."""
    from mailbridge.cli.output import printable

    click.echo(click.style(f"{detail['id']}  {printable(detail['subject'])}", bold=True))
    shown = {
        "status_field": words.status(detail["status"]), "category_field": words.name(detail["category"] or ""),
        "area_field": words.name(detail["area"] or ""), "channel": words.channel(detail["channel"] or ""),
        "reporter_name": detail["reporter_name"], "reporter_email": detail["reporter_email"],
        "assigned_to": detail["assignee"], "created_at": local_time(detail["created_at"], zone),
        "ack_deadline": local_time(detail["ack_deadline"], zone, deadline=True),
        "acknowledged_at": local_time(detail["acknowledged_at"], zone), "linked_ticket": detail["linked_ticket"],
        "flag_list": ", ".join(detail["flags"]),
        "deadline_why": (detail.get("ack_deadline_explained") or {}).get(words.language),
    }
    label_width = max(len(words[key]) for key in shown) + 1
    for key, value in shown.items():
        if value:
            click.echo(f"  {words[key]:<{label_width}} {printable(value)}")
    for m in detail["messages"]:
        arrow = "<-" if m["direction"] == "in" else "->"
        click.echo("")
        click.echo(click.style(f"{arrow} {local_time(m['created_at'], zone)}  {m['kind']}  "
                               f"{printable(m['sender'] or words['no_sender'])}", fg="cyan"))
        click.echo(f"   {printable(m['subject'] or '')}")
        for line in (m["new_text"] or m["text"] or "").splitlines()[:40]:
            click.echo(f"   | {printable(line)}")
        for a in m["attachments"]:
            state = f" ({words['rejected']}: {a['reason']})" if a.get("rejected") else ""
            click.echo(f"   + {printable(a['filename'])}  {a['size']} {words['bytes']}{state}")
    click.echo("")
    for e in detail["events"]:
        click.echo(f"  {local_time(e['at'], zone)}  {e['type']:<22} {printable(e['by'] or '')}")


@click.group()
def ticket() -> None:
    """Act on one ticket."""


def _existing_ticket(app: App, session, text: str) -> int:  # type: ignore[no-untyped-def]
    from mailbridge.views import ticket_exists

    number = app.ticket_number(text)
    if not ticket_exists(session, number):
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


def _act(app: App, ticket_id: str, act) -> None:  # type: ignore[no-untyped-def]
    """One change to one existing ticket, through the workflow's Casework, in one transaction."""
    with app.ready_db().session() as session:
        number = _existing_ticket(app, session, ticket_id)
        act(_desk(app, session).casework, number)


def _desk(app: App, session):  # type: ignore[no-untyped-def]
    """The workflow layer, in this command's transaction: every change goes through it."""
    from mailbridge.outbox.render import Renderer
    from mailbridge.workflow.tickets import TicketBook

    renderer = Renderer(app.settings.outbox.templates_path, app.settings.policy.timezone)
    return TicketBook(session.connection(), app.settings, datetime.now(timezone.utc), renderer)


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
    import mimetypes

    from mailbridge.adapters.files import AttachmentStore
    from mailbridge.intake.parse import sanitize_filename
    from mailbridge.mail import Address
    from mailbridge.policy.addresses import normalise_address
    from mailbridge.views import show_ticket
    from mailbridge.workflow.tickets import NewTicket, StoredFile

    category, area = _category(category), _area(area)
    agent = _agent(app, by) if by else None
    address = normalise_address(email) if email.strip() else ""
    if address is None:
        raise UsageError(f"not an e-mail address: {email!r}")
    if not (name.strip() or address):
        raise UsageError("give the reporter's --name or --email (or both)")
    files = []
    for path in attachments:
        data = Path(path).read_bytes()
        limit = app.settings.storage.max_attachment_bytes
        if limit and len(data) > limit:
            raise UsageError(f"--attach {path}: {len(data)} bytes is over storage.max_attachment_bytes ({limit})")
        files.append((sanitize_filename(Path(path).name), mimetypes.guess_type(path)[0] or "application/octet-stream", data))
    settings = app.settings
    db = app.ready_db()  # before the store's folder is made: a refused command writes nothing
    store_files = AttachmentStore(settings.storage.path)
    store_files.ensure()
    stored = [StoredFile(filename, content_type, len(data), store_files.put(data))
              for filename, content_type, data in files]
    new = NewTicket(subject=subject, channel=channel, reporter=Address(address, name.strip()), category=category,
                    area=area, language=language or settings.tickets.default_language, by=agent or "cli", text=body)
    with db.session() as session:
        ticket_id = _desk(app, session).open_by_hand(new, body, stored)
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
    agent = _agent(app, by)
    with app.ready_db().session() as session:
        number = _existing_ticket(app, session, ticket_id)
        desk = _desk(app, session)
        desk.log_contact(number, channel, direction, agent, note)
        desk.finish()
    click.echo(f"{ticket_id.upper()}: {channel} contact logged")


@ticket.command("assign")
@click.argument("ticket_id")
@click.argument("agent")
@click.option("--by", "by", metavar="AGENT-EMAIL")
@pass_app
def ticket_assign(app: App, ticket_id: str, agent: str, by: str | None) -> None:
    """Hand a ticket to an agent (who is told by mail and in-system)."""
    email, who = _agent(app, agent), _by(app, by)
    _act(app, ticket_id, lambda casework, number: casework.assign(number, email, who))
    click.echo(f"{ticket_id.upper()}: assigned to {email}")


@ticket.command("status")
@click.argument("ticket_id")
@click.argument("status", type=click.Choice([s for s in TICKET_STATUSES if s != "new"]))
@click.option("--by", "by", metavar="AGENT-EMAIL")
@pass_app
def ticket_status(app: App, ticket_id: str, status: str, by: str | None) -> None:
    """Set a ticket's status (to resolve with an outcome, use `ticket resolve`)."""
    who = _by(app, by)
    _act(app, ticket_id, lambda casework, number: casework.set_status(number, status, who))
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
    _act(app, ticket_id, lambda casework, number: casework.escalate(number, found, note, who))
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
    who = _by(app, by)
    if not outcome.strip():
        raise UsageError("--outcome is empty: the customer must be told what was done")
    _act(app, ticket_id, lambda casework, number: casework.resolve(number, outcome.strip(), who))
    click.echo(f"{ticket_id.upper()}: resolved; the outcome is queued for the customer")


@click.command()
@click.option("--agent", metavar="EMAIL", help="Only this agent's notifications.")
@click.option("--all", "show_all", is_flag=True, help="Read ones too.")
@click.option("--mark-read", is_flag=True, help="Mark the listed notifications read.")
@click.option("--json", "as_json", is_flag=True, help="JSON, for scripts.")
@LANGUAGE_OPTION
@pass_app
def notifications(app: App, agent: str | None, show_all: bool, mark_read: bool, as_json: bool,
                  lang: str | None) -> None:
    """Agents' in-system notifications (new assignments, deadlines, failures)."""
    from mailbridge.workflow.notifications import read_notifications

    if agent and agent.lower() not in app.settings.agent_addresses:
        raise UsageError(f"unknown agent: {agent} (choices: {', '.join(sorted(app.settings.agent_addresses))})")
    with app.ready_db().session() as session:
        items = read_notifications(session.connection(), app.settings.tickets.id_prefix, datetime.now(timezone.utc),
                                   agent.lower() if agent else None, include_read=show_all, mark_read=mark_read)
    if as_json:
        click.echo(json.dumps(items, ensure_ascii=False, indent=2))
        return
    words = _labels(app, lang)
    table([words[key] for key in ("notification", "agent", "ticket", "kind", "text")],
          [[str(i["id"]), i["agent"], i["ticket"] or "-", i["kind"], i["text"]] for i in items],
          free=(1, 4), empty=words["no_notifications"])


# What this module adds to the command line.
COMMANDS = (tickets, ticket, notifications)
