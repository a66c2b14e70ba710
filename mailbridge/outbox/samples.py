"""What each notice's template is rendered from, as sample data: `check` renders every
template (shipped and ops' overrides, both languages) with these, so a misspelt variable
or a broken tag shows before a customer's mail would need it.

Each template has one or more contexts shaped as the code that queues it builds them
(`outbox/context.py` plus what each notice adds; `templates/README.md` lists them);
more than one where a template takes a different path (a notice about no ticket, an
empty digest). `tests/test_ops_day_one.py` holds these shapes to the real ones.
"""

from __future__ import annotations

from datetime import date, datetime, timezone

# A fixed week in the past: sample data, never compared with the clock.
_CREATED = datetime(2026, 3, 2, 9, 30, tzinfo=timezone.utc)
_DEADLINE = datetime(2026, 3, 4, 23, 0, tzinfo=timezone.utc)

_COMPANY = {"name": "Crossec Solutions Kft.", "support_address": "support@crossec.com",
            "website": "https://crossec.com"}
_COMPANY_NO_WEBSITE = {"name": _COMPANY["name"], "support_address": _COMPANY["support_address"]}  # desk notices
_AGENT = {"name": "Nagy Péter", "email": "nagy.peter@crossec.com"}
_REPORTER = {"name": "Kovács Anna", "email": "kovacs.anna@example.hu"}
_FILES = [{"filename": "hiba.png", "size": 48213}]


def _ticket(language: str) -> dict:
    return {"id": "CRX-000042", "subject": "Nem indul a Crossec Norma", "status": "new",
            "category": "Hibabejelentés", "area": "Crossec Norma", "channel": "email",
            "created_at": _CREATED, "ack_deadline": _DEADLINE, "language": language}


def _about_ticket(language: str, **more: object) -> dict:
    """`ticket_context()`'s shape: every notice about one ticket starts from it."""
    return {"ticket": _ticket(language), "reporter": dict(_REPORTER), "agent": None, "division": None,
            "company": dict(_COMPANY), "reopen_days": 14, **more}


def _digest(language: str) -> list[dict]:
    row = {"id": "CRX-000042", "subject": "Nem indul a Crossec Norma", "reporter": dict(_REPORTER),
           "status": "new", "ack_deadline": _DEADLINE, "acknowledged": False}
    calm = {**row, "id": "CRX-000043", "ack_deadline": None, "status": "in_progress", "acknowledged": True}
    full = {"agent": dict(_AGENT), "groups": [("missed", [row]), ("in_hand", [calm])], "total": 2, "missed": 1,
            "left_out": 0, "day": date(2026, 3, 5), "company": dict(_COMPANY_NO_WEBSITE)}
    return [full, {**full, "groups": [], "total": 0, "missed": 0}]


def _report(language: str) -> list[dict]:
    missed = {"id": "CRX-000042", "category": "Hibabejelentés", "area": "Crossec Norma", "assignee": _AGENT["email"],
              "ack_deadline": _DEADLINE, "acknowledged_at": None}
    figures = {
        "week": {"first_day": "2026-02-23", "last_day": "2026-03-01", "start": "2026-02-22T23:00:00+00:00",
                 "end": "2026-03-01T23:00:00+00:00"},
        "opened": 3, "closed": 2,
        "by_category": [{"category": "Hibabejelentés", "opened": 2, "closed": 1},
                        {"category": "Egyéb", "opened": 1, "closed": 1}],
        "by_area": [{"area": "Crossec Norma", "opened": 3, "closed": 2}],
        "by_channel": [{"channel": "email", "opened": 2, "closed": 2}, {"channel": "phone", "opened": 1, "closed": 0}],
        "acknowledgement_deadlines": 3, "acknowledged_in_time": 2, "share_acknowledged_in_time": 0.6667,
        "median_seconds_to_acknowledge": 5400.0, "median_seconds_to_resolve": 93600.0,
        "missed": [{**missed, "channel": "email", "ack_deadline": _DEADLINE.isoformat()}],
    }
    full = {"figures": figures, "scale": 3, "week": {"first": date(2026, 2, 23), "last": date(2026, 3, 1)},
            "missed": [missed], "company": dict(_COMPANY_NO_WEBSITE),
            "supervisor": {"name": "Tóth Márta", "email": "toth.marta@crossec.com"}}
    quiet = {**figures, "opened": 0, "closed": 0, "by_category": [], "by_area": [], "by_channel": [],
             "acknowledgement_deadlines": 0, "acknowledged_in_time": 0, "share_acknowledged_in_time": None,
             "median_seconds_to_acknowledge": None, "median_seconds_to_resolve": None, "missed": []}
    return [full, {**full, "figures": quiet, "scale": 1, "missed": []}]


def sample_contexts(name: str, language: str) -> list[dict]:
    """The sample contexts of template `name` in `language` (KeyError: not a template we send)."""
    history = [{"at": _CREATED, "direction": "in", "sender": _REPORTER["email"], "text": "Indításkor leáll."},
               {"at": _DEADLINE, "direction": "out", "sender": "support@crossec.com", "text": ""}]
    files = {"attached": list(_FILES), "listed": [{"filename": "naplo.zip", "size": 31457280}],
             "cap_bytes": 10485760}
    errors = [{"line": 2, "reason": "unknown status"}, {"line": "#stauts kesz", "reason": "unknown command"}]
    no_ticket = {"ticket": None, "reporter": None, "division": None, "company": dict(_COMPANY)}
    builders = {
        "ack": lambda: [_about_ticket(language, agent=dict(_AGENT)),
                        _about_ticket(language, ticket={**_ticket(language), "subject": "", "channel": "form"})],
        "agent_assigned": lambda: [_about_ticket(language, agent=dict(_AGENT), text="Indításkor leáll.", **files),
                                   _about_ticket(language, agent=dict(_AGENT), text="")],
        "agent_relay": lambda: [_about_ticket(language, agent=dict(_AGENT), text="A javítás a következő kiadásban.")],
        "escalation": lambda: [_about_ticket(language, agent=dict(_AGENT), text="Adatbázis-hiba.", history=history,
                                             division={"name": "Fejlesztés", "email": "fejlesztes@crossec.com"}),
                               _about_ticket(language, text="", history=[],
                                             division={"name": "Fejlesztés", "email": "fejlesztes@crossec.com"})],
        "outcome": lambda: [_about_ticket(language, agent=dict(_AGENT), text="A 4.2.1-es javítás megoldja."),
                            _about_ticket(language, text="Megoldva.")],
        "sla_warning": lambda: [_about_ticket(language, agent=dict(_AGENT), missed=False, hours_left=3.5),
                                _about_ticket(language, agent=dict(_AGENT), missed=True, hours_left=-2.0)],
        "command_failed": lambda: [_about_ticket(language, agent=dict(_AGENT), errors=errors,
                                                 commands=["#status STATUS", "#resolve"]),
                                   {**no_ticket, "agent": dict(_AGENT), "errors": errors[:1], "commands": ["#mine"]}],
        "attachment_rejected": lambda: [_about_ticket(language, rejected=[{"filename": "naplo.zip", "size": 31457280}],
                                                      kept=list(_FILES), limit_bytes=26214400),
                                        _about_ticket(language, rejected=list(_FILES) * 2, kept=[],
                                                      limit_bytes=26214400)],
        "ticket_update": lambda: [_about_ticket(language, agent=dict(_AGENT), text="A mentés sem fut le.",
                                                role="reporter", sender=dict(_REPORTER), **files),
                                  _about_ticket(language, agent=dict(_AGENT), text="", role="outsider",
                                                sender={"name": "", "email": "valaki@example.com"},
                                                attached=[], listed=[], cap_bytes=10485760)],
        "agent_refused": lambda: [{"agent": dict(_AGENT), "reason": "dkim=fail", "every_minutes": 60,
                                   "ticket": {"id": "CRX-000042", "subject": "Nem indul a Crossec Norma"},
                                   "trusted": ["mx.crossec.com"], "company": dict(_COMPANY_NO_WEBSITE)},
                                  {"agent": dict(_AGENT), "reason": "no Authentication-Results", "every_minutes": 60,
                                   "ticket": None, "trusted": [], "company": dict(_COMPANY_NO_WEBSITE)}],
        "agent_digest": lambda: _digest(language),
        "supervisor_report": lambda: _report(language),
    }
    return builders[name]()


# Every notice rendered from a template, in the order `check` reports them.
TEMPLATE_NAMES = ("ack", "agent_assigned", "agent_relay", "escalation", "outcome", "sla_warning", "command_failed",
                  "attachment_rejected", "ticket_update", "agent_refused", "agent_digest", "supervisor_report")
