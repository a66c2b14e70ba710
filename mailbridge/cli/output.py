"""How results reach the terminal: aligned tables, and stored times as people at the desk read them."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import click


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
