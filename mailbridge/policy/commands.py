"""Commands at the top of an agent's reply (SPEC "Who may do what by mail"). Pure.

    #status in progress
    #category számlázással kapcsolatos kérdés

    Kedves Ügyfelünk, ...

Rules:

- The command block is the run of lines at the top that start with `#`
  (after optional spaces), blank lines allowed between and before them. The
  first other line ends it; that line and everything after it is the agent's
  text (the caller has already cut the quoted history).
- `#` followed by a letter starts a command; `#` followed by a digit, a space,
  another `#` or nothing is ordinary text (`#123 in the invoice`,
  `# Heading`) and ends the block. A `#word` that is not a command is a
  problem, never ordinary text: a typo must not pass silently.
- Command names are case-insensitive, `#status: closed` (a colon) is accepted.
  Values are matched case- and accent-insensitively (`fold()`): the exact
  Hungarian category/area name, or one of a few English aliases.
- One command of each kind: a repeat with the same value is kept once, a
  repeat with another value is a problem. `#resolve` with `#status`,
  `#resolve` with `#note`, `#escalate` with `#status` (escalating sets the
  status) and `#escalate` with `#resolve` are problems.
- `#note` and `#resolve` take no value (the text goes below the commands);
  `#resolve` needs a non-empty outcome.
- When the reply is not `ok`, the caller changes nothing and relays nothing
  (the text may have been meant as internal) and tells the agent the reasons.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from email.utils import parseaddr

from mailbridge.policy.classify import fold
from mailbridge.policy.addresses import normalise_address
from mailbridge.vocabulary import AREAS, CATEGORIES, MANUAL_CHANNELS, TICKET_STATUSES

COMMAND_NAMES = ("note", "status", "category", "area", "assign", "escalate", "resolve")
SETTABLE_STATUSES = tuple(s for s in TICKET_STATUSES if s != "new")

VALID_COMMANDS: tuple[str, ...] = (
    "#note",
    "#status in_progress",
    "#category Hibabejelentés",
    "#area Crossec Norma",
    "#assign <agent's e-mail or name>",
    "#escalate <division's e-mail or name>",
    "#resolve",
)

_CATEGORY_ALIASES = {
    "general question": "Általános kérdés",
    "bug report": "Hibabejelentés",
    "bug": "Hibabejelentés",
    "fault": "Hibabejelentés",
    "fault report": "Hibabejelentés",
    "billing question": "Számlázással kapcsolatos kérdés",
    "billing": "Számlázással kapcsolatos kérdés",
    "invoice": "Számlázással kapcsolatos kérdés",
    "inquiry": "Érdeklődés",
    "enquiry": "Érdeklődés",
    "other": "Egyéb",
}
_AREA_ALIASES = {
    "norma": "Crossec Norma",
    "gdpr": "GDPR Segédanyagok",
    "gdpr materials": "GDPR Segédanyagok",
    "business consulting": "Üzleti tanácsadás",
    "consulting": "Üzleti tanácsadás",
    "other": "Egyéb",
}

# `#` then a letter: a command word (any script, so `#státusz` is reported, not passed).
_COMMAND_LINE = re.compile(r"#(?P<name>[^\W\d_][\w-]*)\s*:?(?P<value>.*)\Z", re.DOTALL)
_LEADING_JUNK = " \t\u00a0\ufeff\u200b\u200e\u200f"  # spaces, NBSP, BOM, zero-width marks


@dataclass(frozen=True)
class Command:
    name: str  # note, status, category, area, assign, escalate, resolve
    value: str  # status value, Hungarian category/area name, agent's/division's e-mail; "" for note/resolve
    line: int  # 1-based line number in the text


@dataclass(frozen=True)
class CommandProblem:
    line: int
    text: str  # the line as written
    reason: str  # short English reason for the agent


@dataclass(frozen=True)
class AgentReply:
    commands: tuple[Command, ...]
    problems: tuple[CommandProblem, ...]
    text: str  # the agent's text without the command block (leading blank lines stripped)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def internal(self) -> bool:
        return any(c.name == "note" for c in self.commands)

    def command(self, name: str) -> Command | None:
        """The command of that name, if given."""
        return next((c for c in self.commands if c.name == name), None)


def _key(text: str) -> str:
    """Folded, quotes dropped, runs of spaces/-/_ made one space: 'In-Progress' -> 'in progress'."""
    return " ".join(re.sub(r"[\s_\-]+", " ", fold(text).strip().strip("\"'")).split())


def _suggest(word: str, choices: dict[str, str]) -> str | None:
    """The canonical choice whose key is closest to `word` (difflib), if any is close."""
    close = difflib.get_close_matches(_key(word), list(choices), n=1, cutoff=0.6)
    return choices[close[0]] if close else None


def _unknown(kind: str, value: str, keys: dict[str, str], shown: tuple[str, ...]) -> str:
    hint = _suggest(value, keys)
    did_you_mean = f"did you mean '{hint}'? " if hint else ""
    return f"unknown {kind} '{value}' ({did_you_mean}choices: {', '.join(shown)})"


def _choice_keys(names: tuple[str, ...], aliases: dict[str, str]) -> dict[str, str]:
    """{_key(name or alias): canonical name} for the categories or the areas."""
    return {_key(n): n for n in names} | {_key(a): n for a, n in aliases.items()}


def match_category(value: str) -> str | None:
    """The exact P4 category name for a Hungarian name or English alias (case, accents,
    quotes and spacing ignored: 'szamlazassal kapcsolatos kerdes', 'Billing question'), else None."""
    return _choice_keys(CATEGORIES, _CATEGORY_ALIASES).get(_key(value)) if value else None


def match_area(value: str) -> str | None:
    """The exact P5 area name for a Hungarian name or English alias ('GDPR materials'), else None."""
    return _choice_keys(AREAS, _AREA_ALIASES).get(_key(value)) if value else None


def _named_choice(kind: str, value: str, names: tuple[str, ...], aliases: dict[str, str]) -> tuple[str, str]:
    """(canonical name, "") or ("", reason) for a category or an area."""
    keys = _choice_keys(names, aliases)
    if not value:
        return "", f"#{kind} needs a value (choices: {', '.join(names)})"
    if _key(value) in keys:
        return keys[_key(value)], ""
    return "", _unknown(kind, value, keys, names)


def _status(value: str) -> tuple[str, str]:
    if not value:
        return "", f"#status needs a value (choices: {', '.join(SETTABLE_STATUSES)})"
    key = _key(value).replace(" ", "_")
    if key == "new":
        return "", f"status 'new' cannot be set (choices: {', '.join(SETTABLE_STATUSES)})"
    if key in SETTABLE_STATUSES:
        return key, ""
    return "", _unknown("status", value, {_key(s): s for s in SETTABLE_STATUSES}, SETTABLE_STATUSES)


def _person(kind: str, value: str, people: dict[str, str]) -> tuple[str, str]:
    """An agent or division by e-mail, name (any word order) or e-mail local part -> its e-mail."""
    shown = tuple(f"{name} <{email}>" if name else email for email, name in people.items())
    if not people:
        return "", f"no {kind}s are configured"
    if not value:
        command = "#assign needs an agent" if kind == "agent" else "#escalate needs a division"
        return "", f"{command} (choices: {', '.join(shown)})"
    address = parseaddr(value)[1] if "@" in value else ""
    if address:
        for email in people:
            if email.casefold() == address.casefold():
                return email, ""
        return "", _unknown(kind, value, {_key(email): email for email in people}, shown)

    key = _key(value)
    words = sorted(key.split())
    for match in (
        lambda email, name: _key(name) == key,
        lambda email, name: sorted(_key(name).split()) == words,
        lambda email, name: _key(email.partition("@")[0]) == key,
    ):
        found = [email for email, name in people.items() if match(email, name)]
        if len(found) == 1:
            return found[0], ""
        if len(found) > 1:
            return "", f"{kind} '{value}' is ambiguous ({', '.join(found)}): use the e-mail address"
    keys = {_key(name): email for email, name in people.items() if name}
    keys |= {_key(email.partition("@")[0]): email for email in people}
    return "", _unknown(kind, value, keys, shown)


# Pairs that cannot go together in one reply, and why.
_EXCLUSIVE = {
    frozenset({"resolve", "status"}): "#resolve sets the status to resolved",
    frozenset({"resolve", "note"}): "#note keeps the mail internal, #resolve tells the customer",
    frozenset({"escalate", "status"}): "#escalate sets the status to escalated",
    frozenset({"escalate", "resolve"}): "an escalated case is not resolved yet",
}


@dataclass(frozen=True)
class _CommandLine:
    number: int  # 1-based line of the text
    written: str  # the line as written
    name: str  # as written, without the #
    value: str  # white space folded


def _command_block(text: str) -> tuple[list[str], list[_CommandLine], int]:
    """The text's lines, the command lines at its top (blank lines between them are skipped),
    and the index of the first line below them."""
    lines = text.splitlines(keepends=True)
    found: list[_CommandLine] = []
    for index, raw in enumerate(lines):
        line = raw.rstrip("\r\n")
        stripped = line.strip(_LEADING_JUNK + "\r\n\f\v")
        if not stripped:
            continue
        matched = _COMMAND_LINE.match(stripped)
        if not matched:
            return lines, found, index
        found.append(_CommandLine(index + 1, line, matched.group("name"), " ".join(matched.group("value").split())))
    return lines, found, len(lines)


def read_commands(text: str, agents: dict[str, str], divisions: dict[str, str]) -> AgentReply:
    """Reads the command block at the top of `text`. `agents`/`divisions`: {email: name}."""
    lines, block, body_start = _command_block(text)
    commands: list[Command] = []
    problems: list[CommandProblem] = []
    for command_line in block:
        number, line, value = command_line.number, command_line.written, command_line.value
        name = command_line.name.casefold()

        def problem(reason: str) -> None:
            problems.append(CommandProblem(number, line, reason))

        if name not in COMMAND_NAMES:
            close = difflib.get_close_matches(fold(name), COMMAND_NAMES, n=1, cutoff=0.6)
            hint = f"did you mean #{close[0]}?" if close else f"commands: {', '.join('#' + c for c in COMMAND_NAMES)}"
            problem(f"unknown command #{command_line.name} ({hint})")
            continue
        if name in ("note", "resolve"):
            if value:
                problem(f"#{name} takes no value: write the text below the commands")
                continue
            normalised, reason = "", ""
        elif name == "status":
            normalised, reason = _status(value)
        elif name == "category":
            normalised, reason = _named_choice("category", value, CATEGORIES, _CATEGORY_ALIASES)
        elif name == "area":
            normalised, reason = _named_choice("area", value, AREAS, _AREA_ALIASES)
        elif name == "assign":
            normalised, reason = _person("agent", value, agents)
        else:
            normalised, reason = _person("division", value, divisions)
        if reason:
            problem(reason)
            continue

        earlier = next((c for c in commands if c.name == name), None)
        if earlier is not None:
            if earlier.value != normalised:
                problem(f"conflicting #{name}: line {earlier.line} already says {earlier.value!r}")
            continue
        clash = next((c for c in commands if frozenset({c.name, name}) in _EXCLUSIVE), None)
        if clash is not None:
            why = _EXCLUSIVE[frozenset({clash.name, name})]
            problem(f"#{name} cannot go with #{clash.name} on line {clash.line}: {why}")
            continue
        commands.append(Command(name, normalised, number))

    body = "".join(lines[body_start:])
    resolve = next((c for c in commands if c.name == "resolve"), None)
    if resolve is not None and not body.strip():
        problems.append(CommandProblem(resolve.line, lines[resolve.line - 1].rstrip("\r\n"),
                                       "#resolve needs the outcome for the customer below the commands"))
    return AgentReply(tuple(commands), tuple(problems), body)


# ---------------------------------------------------------------------------
# Desk commands: an agent's mail that opens a ticket, logs a contact or asks for her queue
# (SPEC "The agent's day by mail"). Read like reply commands; the first command names it.
# ---------------------------------------------------------------------------

DESK_COMMANDS = ("open", "log", "mine")
_OPEN_EXTRAS = ("reporter", "phone", "category", "area", "assign")
_PHONE = re.compile(r"\+?[0-9][0-9 ()./-]{2,30}\Z")

DESK_HELP: tuple[str, ...] = (
    "#open phone|post|social|other",
    "#reporter Name <e-mail>   (or #reporter Name with #phone NUMBER)",
    "#category / #area / #assign   (optional, with #open)",
    "#log phone|post|social|other in|out   (at the top of a reply to a ticket)",
    "#mine",
)


@dataclass(frozen=True)
class DeskCommand:
    name: str  # open, log, mine
    channel: str = ""
    direction: str = ""  # #log: in (they contacted us) or out
    reporter_name: str = ""
    reporter_email: str = ""  # normalised by the caller's rule; "" with a phone number
    phone: str = ""
    category: str = "Egyéb"
    area: str = "Egyéb"
    assign: str = ""  # an agent's e-mail; "" = the sender
    problems: tuple[CommandProblem, ...] = ()
    text: str = ""  # below the commands

    @property
    def ok(self) -> bool:
        return not self.problems


def read_desk_command(text: str, agents: dict[str, str]) -> DeskCommand | None:
    """The desk command at the top of `text`, or None when its first command is not one (an
    ordinary reply, read by `read_commands`). `agents`: {email: name}."""
    lines, block, body_start = _command_block(text)
    # (line, name, value, line as written)
    found = [(c.number, c.name.casefold(), c.value, c.written) for c in block]
    if not found or found[0][1] not in DESK_COMMANDS:
        return None
    first_line, name, value, written = found[0]
    problems: list[CommandProblem] = []
    values: dict[str, str] = {}
    body = "".join(lines[body_start:])
    words = value.casefold().split()
    if name == "mine":
        if value:
            problems.append(CommandProblem(first_line, written, "#mine takes no value"))
    elif not words or words[0] not in MANUAL_CHANNELS:
        problems.append(CommandProblem(first_line, written, f"#{name} needs a channel: {', '.join(MANUAL_CHANNELS)}"))
    else:
        values["channel"] = words[0]
        if name == "log":
            if len(words) != 2 or words[1] not in ("in", "out"):
                problems.append(CommandProblem(first_line, written, "#log needs a channel and in or out, "
                                                                    "e.g. #log phone out"))
            else:
                values["direction"] = words[1]
        elif len(words) != 1:
            problems.append(CommandProblem(first_line, written, "#open takes only the channel; the reporter goes "
                                                                "on a #reporter line"))
    allowed = _OPEN_EXTRAS if name == "open" else ()
    for number, extra, given, written in found[1:]:
        def problem(reason: str) -> None:
            problems.append(CommandProblem(number, written, reason))

        if extra not in allowed:
            problem(f"#{extra} cannot go with #{name}" if extra in COMMAND_NAMES + DESK_COMMANDS + _OPEN_EXTRAS
                    else f"unknown command #{extra}")
        elif extra in values:
            problem(f"#{extra} is given twice")
        elif extra == "reporter":
            person_name, _, rest = given.partition("<")
            if rest:
                address = normalise_address(rest.rstrip(">").strip())
                if address is None:
                    problem(f"not an e-mail address: {rest.rstrip('>').strip()!r}")
                    continue
                values["reporter_email"] = address
            values["reporter"] = person_name.strip().strip("\"'")[:200]
            if not values["reporter"] and not rest:
                problem("#reporter needs a name, an address in <>, or both")
        elif extra == "phone":
            if not _PHONE.match(given):
                problem(f"not a phone number: {given!r}")
                continue
            values["phone"] = given
        elif extra in ("category", "area"):
            canonical, reason = (_named_choice("category", given, CATEGORIES, _CATEGORY_ALIASES) if extra == "category"
                                 else _named_choice("area", given, AREAS, _AREA_ALIASES))
            if reason:
                problem(reason)
            else:
                values[extra] = canonical
        else:
            email, reason = _person("agent", given, agents)
            if reason:
                problem(reason)
            else:
                values["assign"] = email
    if name == "open" and not problems:
        if "reporter" not in values:
            problems.append(CommandProblem(first_line, written, "#open needs #reporter Name <e-mail> "
                                                                "(or #reporter Name with #phone NUMBER)"))
        elif not values.get("reporter_email") and not values.get("phone"):
            problems.append(CommandProblem(first_line, written, "a #reporter without an e-mail address needs "
                                                                "#phone NUMBER"))
    return DeskCommand(
        name=name, channel=values.get("channel", ""), direction=values.get("direction", ""),
        reporter_name=values.get("reporter", ""), reporter_email=values.get("reporter_email", ""),
        phone=values.get("phone", ""), category=values.get("category", "Egyéb"), area=values.get("area", "Egyéb"),
        assign=values.get("assign", ""), problems=tuple(problems), text=body.lstrip("\r\n"))
