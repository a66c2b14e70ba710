"""For the data protection officer: a person's data exported or erased, and the retention rules applied."""

from __future__ import annotations

from pathlib import Path

import click

from mailbridge.cli.app import App, clock_at, pass_app
from mailbridge.errors import UsageError


@click.group()
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

    now = clock_at(at)
    report = apply_retention(app.ready_db(), app.settings, now, dry_run=dry_run)
    click.echo(report.describe())


# What this module adds to the command line.
COMMANDS = (gdpr,)
