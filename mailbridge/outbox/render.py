"""Templates -> subject, text and HTML (P8).

One Jinja2 file per notification and language, `templates/<lang>/<name>.j2`,
with blocks `subject`, `text` and optionally `html`. A folder configured as
`outbox.templates_path` is searched first, so ops override a template by
dropping a file with the same relative path there.
"""

from __future__ import annotations

import sys
import traceback
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import jinja2

from mailbridge.errors import ConfigError

# From a checkout (or an editable install) the repository's folder; from a wheel,
# where setuptools' data-files put them.
SHIPPED = next(
    (p for p in (Path(__file__).resolve().parent.parent.parent / "templates",
                 Path(sys.prefix) / "share" / "mailbridge" / "templates") if (p / "hu").is_dir()),
    Path(__file__).resolve().parent.parent.parent / "templates",
)
LANGUAGES = ("hu", "en")

_HU_MONTHS = ("január", "február", "március", "április", "május", "június", "július", "augusztus",
              "szeptember", "október", "november", "december")
_EN_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
              "October", "November", "December")


class TemplateFault(ConfigError):
    """A template that cannot be read or rendered (an override, most often): its file and line.

    `kind` (the error's class) is what a log line may carry; the message may quote the data
    a template choked on."""

    def __init__(self, where: str, line: int | None, problem: str, kind: str):
        self.where, self.line, self.kind = where, line, kind
        super().__init__(f"{where}{f', line {line}' if line else ''}: {problem}")


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str = ""


def format_date(value: datetime | None, language: str = "hu", zone: str = "Europe/Budapest") -> str:
    """A time as people in Budapest read it; midnight is the end of the day before (24:00)."""
    if value is None:
        return "-"
    local = value.astimezone(ZoneInfo(zone))
    day, hour = local, f"{local:%H:%M}"
    if (local.hour, local.minute) == (0, 0):
        from datetime import timedelta

        day, hour = local - timedelta(days=1), "24:00"
    if language == "hu":
        return f"{day.year}. {_HU_MONTHS[day.month - 1]} {day.day}. {hour}"
    return f"{day.day} {_EN_MONTHS[day.month - 1]} {day.year}, {hour}"


def format_size(size: int, language: str = "en") -> str:
    value = float(size)
    for unit in ("bytes", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            if unit == "bytes":
                return f"{int(value)} {'bájt' if language == 'hu' else 'bytes'}"
            text = f"{value:.1f} {unit}"
            return text.replace(".", ",") if language == "hu" else text  # Hungarian: "46,0 MB"
        value /= 1024
    return f"{size} bytes"  # pragma: no cover


def format_day(value: date, language: str = "hu") -> str:
    """A calendar day: "2025. június 2." / "2 June 2025"."""
    if language == "hu":
        return f"{value.year}. {_HU_MONTHS[value.month - 1]} {value.day}."
    return f"{value.day} {_EN_MONTHS[value.month - 1]} {value.year}"


def format_duration(seconds: float | None, language: str = "hu") -> str:
    """A span as people say it, to the minute: "1 nap 4 óra" / "1 d 4 h", "25 perc" / "25 min"."""
    if seconds is None:
        return "-"
    minutes = round(seconds / 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    units = ("nap", "óra", "perc") if language == "hu" else ("d", "h", "min")
    # Beyond a day, the minutes say nothing more.
    shown = (days, hours, 0) if days else (0, hours, minutes)
    return " ".join(f"{n} {unit}" for n, unit in zip(shown, units) if n) or f"0 {units[2]}"


class Renderer:
    def __init__(self, override: str = "", zone: str = "Europe/Budapest"):
        self.override = Path(override) if override else None
        folders = [Path(override)] if override else []
        folders.append(SHIPPED)
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader([str(f) for f in folders]),
            undefined=jinja2.StrictUndefined,
            autoescape=jinja2.select_autoescape(enabled_extensions=()),
            keep_trailing_newline=True,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.zone = zone

        @jinja2.pass_context
        def date(context: jinja2.runtime.Context, value: datetime | None) -> str:
            return format_date(value, context.get("language", "hu"), zone)

        self.env.filters["date"] = date
        @jinja2.pass_context
        def filesize(context: jinja2.runtime.Context, value: int) -> str:
            return format_size(value, context.get("language", "hu"))

        self.env.filters["filesize"] = filesize

        @jinja2.pass_context
        def day(context: jinja2.runtime.Context, value: date) -> str:
            return format_day(value, context.get("language", "hu"))

        @jinja2.pass_context
        def duration(context: jinja2.runtime.Context, value: float | None) -> str:
            return format_duration(value, context.get("language", "hu"))

        self.env.filters["day"] = day
        self.env.filters["duration"] = duration

    def render(self, name: str, language: str, context: dict) -> Rendered:
        """TemplateFault when the template cannot be read or fails on this context."""
        language = language if language in LANGUAGES else "hu"
        path = f"{language}/{name}.j2"
        context = {**context, "language": language}
        try:
            template = self.env.get_template(path)

            def block(block_name: str) -> str:
                if block_name not in template.blocks:
                    return ""
                return "".join(template.blocks[block_name](template.new_context(context))).strip()

            subject = " ".join(block("subject").split())
            return Rendered(subject, block("text") + "\n", block("html"))
        except jinja2.TemplateNotFound as exc:
            raise TemplateFault(f"outbox.templates_path: no template {exc.name}", None, "not found",
                                "TemplateNotFound") from None
        except Exception:  # a template is code ops may write: whatever it raises is its fault
            raise self._fault(path) from None

    def _fault(self, path: str) -> TemplateFault:
        """The exception in hand, placed in its template: Jinja rewrites the traceback so that
        its frames carry the template's file and line (syntax errors carry both themselves)."""
        try:
            self.env.handle_exception()
        except Exception as exc:
            places = [(frame.f_code.co_filename, line) for frame, line in traceback.walk_tb(exc.__traceback__)
                      if frame.f_code.co_filename.endswith(".j2")]
            where, line = places[-1] if places else (path, None)
            if isinstance(exc, jinja2.TemplateSyntaxError):
                where, line = exc.filename or where, exc.lineno
            problem = exc.message if isinstance(exc, jinja2.TemplateError) and exc.message else str(exc)
            return TemplateFault(where, line, f"{type(exc).__name__}: {problem}", type(exc).__name__)
        raise AssertionError("unreachable: handle_exception always raises")  # pragma: no cover

    def check(self) -> list[TemplateFault]:
        """Every template of every notice, both languages, rendered with sample contexts
        (`outbox/samples.py`); an override with a name no notice has is a fault too (a typo
        in its name would leave the shipped one in use)."""
        from mailbridge.outbox.samples import TEMPLATE_NAMES, sample_contexts

        faults: list[TemplateFault] = []
        for language in LANGUAGES:
            for name in TEMPLATE_NAMES:
                for context in sample_contexts(name, language):
                    try:
                        self.render(name, language, context)
                    except TemplateFault as fault:
                        faults.append(fault)
                        break  # one fault a template is enough to name
        known = {f"{language}/{name}.j2" for language in LANGUAGES for name in TEMPLATE_NAMES}
        if self.override is not None:
            for found in sorted(self.override.rglob("*.j2")):
                if found.relative_to(self.override).as_posix() not in known:
                    faults.append(TemplateFault(str(found), None, "no notice has this name (expected e.g. hu/ack.j2)",
                                                "UnknownTemplate"))
        return faults
