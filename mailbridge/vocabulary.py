"""The desk's words: statuses, channels, categories (P4) and areas (P5).

Plain constants, importable by the pure policy rules without pulling in the
database or the config loader.
"""

from __future__ import annotations

TICKET_STATUSES = ("new", "acknowledged", "in_progress", "escalated", "resolved", "closed")
OPEN_STATUSES = ("new", "acknowledged", "in_progress", "escalated")
# The same, as SQL: the partial index of open tickets is built on exactly this text.
OPEN_SQL = "status IN (" + ", ".join(f"'{status}'" for status in OPEN_STATUSES) + ")"

# `tickets list --sort`: each also with a leading "-" (newest, latest, last first); "id" is the default.
TICKET_ORDERS = ("id", "created", "updated", "deadline", "status", "assignee")

CHANNELS = ("email", "form", "phone", "post", "social", "other")
MANUAL_CHANNELS = ("phone", "post", "social", "other")  # entered by an agent (P3)

CATEGORIES = (  # P4
    "Általános kérdés",
    "Hibabejelentés",
    "Számlázással kapcsolatos kérdés",
    "Érdeklődés",
    "Egyéb",
)
AREAS = ("Crossec Norma", "GDPR Segédanyagok", "Üzleti tanácsadás", "Egyéb")  # P5
