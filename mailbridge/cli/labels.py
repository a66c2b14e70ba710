"""The words of the ticket commands' output for people, in each language the desk speaks.

One language per output (`tickets.default_language`, or `--lang`): headers, labels, status,
channel, category and area names. The status words are the notices' (templates/*/ticket_update.j2),
the English category and area names the acknowledgement's, and each is an alias `--category`
and `--area` accept. JSON output keeps the stored values (the contract); journal event types
and message kinds are identifiers and stay as stored in both languages.
"""

from __future__ import annotations

LANGUAGES = ("hu", "en")

WORDS: dict[str, dict[str, str]] = {
    "en": {
        "id": "ID", "status": "STATUS", "created": "CREATED", "category": "CATEGORY", "area": "AREA",
        "reporter": "REPORTER", "assignee": "ASSIGNEE", "messages": "MSGS", "flags": "FLAGS", "subject": "SUBJECT",
        "none": "(no tickets)", "nobody": "-",
        "status_field": "status", "category_field": "category", "area_field": "area",
        "channel": "channel", "reporter_name": "reporter", "reporter_email": "e-mail", "assigned_to": "assignee",
        "created_at": "created", "ack_deadline": "ack deadline", "acknowledged_at": "acknowledged",
        "linked_ticket": "linked ticket", "flag_list": "flags", "deadline_why": "deadline, why",
        "no_sender": "(no sender)", "bytes": "bytes", "rejected": "rejected",
        "notification": "ID", "agent": "AGENT", "ticket": "TICKET", "kind": "KIND", "text": "TEXT",
        "no_notifications": "(no notifications)",
    },
    "hu": {
        "id": "AZONOSÍTÓ", "status": "ÁLLAPOT", "created": "LÉTREHOZVA", "category": "KATEGÓRIA", "area": "TERÜLET",
        "reporter": "BEJELENTŐ", "assignee": "ÜGYINTÉZŐ", "messages": "LEVÉL", "flags": "JELZŐK", "subject": "TÁRGY",
        "none": "(nincs jegy)", "nobody": "-",
        "status_field": "állapot", "category_field": "kategória", "area_field": "terület",
        "channel": "csatorna", "reporter_name": "bejelentő", "reporter_email": "e-mail", "assigned_to": "ügyintéző",
        "created_at": "létrehozva", "ack_deadline": "határidő", "acknowledged_at": "visszaigazolva",
        "linked_ticket": "kapcsolódó jegy", "flag_list": "jelzők", "deadline_why": "határidő, miért",
        "no_sender": "(nincs feladó)", "bytes": "bájt", "rejected": "elutasítva",
        "notification": "AZONOSÍTÓ", "agent": "ÜGYINTÉZŐ", "ticket": "JEGY", "kind": "FAJTA", "text": "SZÖVEG",
        "no_notifications": "(nincs értesítés)",
    },
}

STATUSES = {
    "en": {"new": "new", "acknowledged": "acknowledged", "in_progress": "in progress", "escalated": "with a division",
           "resolved": "resolved", "closed": "closed"},
    "hu": {"new": "új", "acknowledged": "visszaigazolva", "in_progress": "folyamatban", "escalated": "szakterületnél",
           "resolved": "megoldva", "closed": "lezárva"},
}

CHANNELS = {
    "en": {"email": "e-mail", "form": "web form", "phone": "phone", "post": "post", "social": "social media",
           "other": "other"},
    "hu": {"email": "e-mail", "form": "űrlap", "phone": "telefon", "post": "posta", "social": "közösségi média",
           "other": "egyéb"},
}

# The P4 categories and P5 areas are stored by their Hungarian names; English output uses these.
ENGLISH_NAMES = {
    "Általános kérdés": "General question", "Hibabejelentés": "Fault report",
    "Számlázással kapcsolatos kérdés": "Billing question", "Érdeklődés": "Inquiry", "Egyéb": "Other",
    "GDPR Segédanyagok": "GDPR materials", "Üzleti tanácsadás": "Business consulting",
}


class Labels:
    """The words of one output in one language; a value nobody translated is shown as stored."""

    def __init__(self, language: str):
        self.language = language if language in LANGUAGES else "en"
        self.words = WORDS[self.language]

    def __getitem__(self, key: str) -> str:
        return self.words[key]

    def status(self, value: str) -> str:
        return STATUSES[self.language].get(value, value)

    def channel(self, value: str) -> str:
        return CHANNELS[self.language].get(value, value)

    def name(self, value: str) -> str:
        """A P4 category or P5 area."""
        return ENGLISH_NAMES.get(value, value) if self.language == "en" else value
