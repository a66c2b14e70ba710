"""How results reach the terminal: tables that fit its width, and stored times as people at the desk read them.

Width: a table fits `shutil.get_terminal_size()` (COLUMNS first, then the terminal) when
stdout is a terminal or COLUMNS is set; piped into a file or another program, it is not cut
(a script wants whole values, and `--json` is the contract). Padding by hand: it is a few
lines, and a library costs every `tickets list` its import (wcwidth alone, for the widths of
characters, took 15 ms to import here; the standard unicodedata serves a table well enough).
"""

from __future__ import annotations

import os
import shutil
import sys
import unicodedata
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import click

STATUS_COLOURS = {"new": "yellow", "acknowledged": "cyan", "in_progress": "blue", "escalated": "magenta",
                  "resolved": "green", "closed": "white"}
GAP = "  "
FREE_TEXT_FLOOR = 12  # a cut column keeps at least this much (or its whole value), else columns are dropped
NARROWEST = 20  # COLUMNS=0 or 5 is a mistake, not a request for one-letter columns


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], colour_column: int | None = None, *,
          free: Sequence[int] | None = None, optional: Sequence[int] = (), colours: Sequence[str] | None = None,
          empty: str = "(none)") -> None:
    """Aligned columns, fitted to the terminal's width.

    `free`: the free-text columns (default: the last), cut with an ellipsis to fit; the others
    (IDs, statuses, times, counts) are printed whole. `optional`: columns left out, first one
    first, when the rest would not fit with each cut column at its floor. `colours`: per row,
    the colour key of `colour_column` (a status), when the shown text is a translation.
    Colour only on a terminal (click strips it elsewhere)."""
    if not rows:
        click.echo(empty)
        return
    rows = [[printable(cell) for cell in row] for row in rows]
    natural = [max(width(h), *(width(r[i]) for r in rows)) for i, h in enumerate(headers)]
    cut = set(range(len(headers))[-1:] if free is None else free)
    shown = _fit(natural, cut, list(optional), _width_limit())
    header_cells = [_pad(clip(headers[i], w), w) for i, w in shown]
    click.echo(click.style(GAP.join(header_cells).rstrip(), bold=True))
    for n, row in enumerate(rows):
        cells = []
        for i, w in shown:
            cell = _pad(clip(row[i], w), w) if (i, w) != shown[-1] else clip(row[i], w)
            if i == colour_column:
                key = colours[n] if colours is not None else row[i]
                cell = click.style(cell, fg=STATUS_COLOURS.get(key.strip()))
            cells.append(cell)
        click.echo(GAP.join(cells).rstrip(), color=None)


def _width_limit() -> int | None:
    if "COLUMNS" not in os.environ and not sys.stdout.isatty():
        return None
    return max(shutil.get_terminal_size().columns, NARROWEST)


def _fit(natural: list[int], cut: set[int], optional: list[int], limit: int | None) -> list[tuple[int, int]]:
    """(column, width) of the columns shown: the optional ones dropped until the rest fit with
    each cut column at its floor, then the widest cut columns narrowed first (the main text,
    the last cut column, keeps twice as much as the others)."""
    shown = list(range(len(natural)))
    if limit is None:
        return [(i, natural[i]) for i in shown]

    main = max(cut, default=None)  # the last cut column is the row's main text (a subject): twice the room

    def floor(i: int) -> int:
        return min(natural[i], FREE_TEXT_FLOOR * (2 if i == main else 1)) if i in cut else natural[i]

    for dropped in [None, *optional]:
        if dropped is not None:
            shown.remove(dropped)
        if sum(floor(i) for i in shown) + len(GAP) * (len(shown) - 1) <= limit:
            break
    room = limit - len(GAP) * (len(shown) - 1) - sum(natural[i] for i in shown if i not in cut)
    widths = {i: natural[i] for i in shown}
    # Water-filling: the narrow cut columns stay whole, the wide ones share what is left (by weight).
    weight = {i: 2 if i == main else 1 for i in shown if i in cut}
    flexible = sorted(weight, key=lambda i: natural[i] / weight[i])
    left = sum(weight.values())
    for i in flexible:
        widths[i] = min(natural[i], max(room * weight[i] // left, 1))
        room, left = room - widths[i], left - weight[i]
    return [(i, widths[i]) for i in shown]


def printable(text: str) -> str:
    """A value from a mail as one table cell: spaces (a newline too) become a space, format
    characters (a right-to-left override, a soft hyphen) go, and other control characters (an
    escape sequence that would drive the terminal) become U+FFFD."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else " " if c.isspace() else "" if unicodedata.category(c) == "Cf"
                   else "\ufffd" for c in text)


def width(text: str) -> int:
    """Columns on a terminal: East Asian wide characters take two, combining marks none."""
    if text.isascii() or max(text) < "\u0300":  # ASCII, Latin-1, Latin Extended-A/B: one each (Hungarian too)
        return len(text)
    return sum(_char_width(c) for c in text)


def _char_width(c: str) -> int:
    if unicodedata.combining(c) or unicodedata.category(c) in ("Mn", "Me"):
        return 0
    return 2 if unicodedata.east_asian_width(c) in ("W", "F") else 1


def clip(text: str, columns: int) -> str:
    """`text` cut to `columns` with an ellipsis, if it is wider."""
    if width(text) <= columns:
        return text
    kept, used = [], 0
    for c in text:
        w = _char_width(c)
        if used + w > columns - 1:
            break
        kept.append(c)
        used += w
    return "".join(kept) + "…"


def _pad(text: str, columns: int) -> str:
    return text + " " * (columns - width(text))


def local_time(iso_text: str | None, zone: str, deadline: bool = False, with_zone: bool = True) -> str:
    """A stored UTC time as people at the desk read it: local, to the minute. A deadline at
    local midnight is the end of the day before ("… 24:00"), as the policy words it."""
    if not iso_text:
        return ""
    value = datetime.fromisoformat(iso_text)
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    local = value.astimezone(ZoneInfo(zone))
    suffix = f" {local:%Z}" if with_zone else ""
    if deadline and (local.hour, local.minute, local.second) == (0, 0, 0):
        return f"{(local - timedelta(days=1)):%Y-%m-%d} 24:00{suffix}"
    return f"{local:%Y-%m-%d %H:%M}{suffix}"
