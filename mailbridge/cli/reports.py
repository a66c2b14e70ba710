"""For team leads and ops: `report --week`, the figures of the supervisors' Monday report."""

from __future__ import annotations

import json

import click

from mailbridge.cli.app import App, clock_at, pass_app
from mailbridge.cli.output import local_time, table


@click.command()
@click.option("--week", is_flag=True, required=True,
              help="The last full week, Monday to Sunday in policy.timezone, before the current one.")
@click.option("--json", "as_json", is_flag=True, help="JSON, for scripts.")
@click.option("--at", "at", metavar="ISO-TIME", help="As if the clock read this: the week before this time's week.")
@pass_app
def report(app: App, week: bool, as_json: bool, at: str | None) -> None:
    """The week's tickets opened and closed by category, area and channel, the share acknowledged
    within the deadline, median times to acknowledge and to resolve, and the deadlines missed:
    the figures the supervisors get on Mondays."""
    from mailbridge.cli.labels import Labels
    from mailbridge.outbox.render import format_duration
    from mailbridge.policy.desk import week_before
    from mailbridge.workflow.desk import figures_as_dict, figures_for_week

    settings = app.settings
    zone = settings.policy.timezone
    now = clock_at(at, zone)
    with app.ready_db().transaction() as conn:
        figures = figures_as_dict(figures_for_week(conn, week_before(now, zone)), settings.tickets.id_prefix)
    if as_json:
        click.echo(json.dumps(figures, ensure_ascii=False, indent=2))
        return
    share = figures["share_acknowledged_in_time"]
    click.echo(f"week {figures['week']['first_day']} to {figures['week']['last_day']} ({zone})")
    click.echo(f"opened {figures['opened']}, closed {figures['closed']}")
    click.echo(f"acknowledged within the deadline: {figures['acknowledged_in_time']} of "
               f"{figures['acknowledgement_deadlines']}" + (f" ({share:.0%})" if share is not None else ""))
    click.echo(f"median time to acknowledge: {format_duration(figures['median_seconds_to_acknowledge'], 'en')}, "
               f"to resolve: {format_duration(figures['median_seconds_to_resolve'], 'en')}")
    words = Labels("en")  # the report speaks English: the P4/P5 names and channels too
    for key in ("category", "area", "channel"):
        click.echo("")
        name = words.channel if key == "channel" else words.name
        table([key.upper(), "OPENED", "CLOSED"],
              [[name(row[key]), str(row["opened"]), str(row["closed"])] for row in figures[f"by_{key}"]], free=(0,))
    click.echo("")
    click.echo(f"deadline missed ({len(figures['missed'])}):")
    table(["ID", "CATEGORY", "AREA", "ASSIGNEE", "DEADLINE", "ACKNOWLEDGED"],
          [[t["id"], words.name(t["category"]), words.name(t["area"]), t["assignee"] or "-",
            local_time(t["ack_deadline"], zone, deadline=True), local_time(t["acknowledged_at"], zone) or "no"]
           for t in figures["missed"]], free=(1, 2, 3), optional=(2, 1))


# What this module adds to the command line.
COMMANDS = (report,)
