"""`config/mailbridge.example.toml` is safe to copy (issue 17).

Ops copy the example, put in their servers and start. Whatever they did not choose must
then behave as built in: the Hungarian and English classification, no mail rule, the
defaults of every key that is not about their own site.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from mailbridge.config import Settings, load_settings
from mailbridge.intake.prepare import PrepareOptions
from mailbridge.policy.classify import classify

EXAMPLE = Path(__file__).resolve().parent.parent / "config" / "mailbridge.example.toml"

# The keys that describe a site rather than a behaviour: the example shows Crossec's.
SITE_KEYS = {
    "imap.host", "imap.username", "smtp.host", "smtp.from_address", "smtp.from_name",
    "database.url", "storage.path", "agents", "divisions", "forms.senders", "security.trusted_authserv_ids",
}


@pytest.fixture
def copied(tmp_path) -> Settings:
    """The example as a user installs it: the placeholders replaced by their servers and folders."""
    text = EXAMPLE.read_text(encoding="utf-8")
    for placeholder, theirs in [("imap.example.com", "imap.kovacs-kft.example"),
                                ("smtp.example.com", "smtp.kovacs-kft.example"),
                                ("sqlite:////var/lib/mailbridge/mailbridge.db", f"sqlite:///{tmp_path}/mailbridge.db"),
                                ("/var/lib/mailbridge/storage", str(tmp_path / "storage"))]:
        assert placeholder in text, f"the example no longer has {placeholder}"
        text = text.replace(placeholder, theirs)
    path = tmp_path / "mailbridge.toml"
    path.write_text(text, encoding="utf-8")
    return load_settings(path)


SUBJECTS = [
    ("Nem tudok belépni a Crossec Normába", "", "Hibabejelentés", "Crossec Norma"),
    ("Kérdés az adatvédelmi szabályzat mintáról", "", "Általános kérdés", "GDPR Segédanyagok"),
    ("Question about the GDPR documentation", "", "Általános kérdés", "GDPR Segédanyagok"),
    ("Számla módosítás kérése", "", "Számlázással kapcsolatos kérdés", "Egyéb"),
    ("Login problem", "I cannot log in to Crossec Norma since yesterday.", "Hibabejelentés", "Crossec Norma"),
    ("Érdeklődnék az árakról", "", "Érdeklődés", "Egyéb"),
]


@pytest.mark.parametrize(("subject", "body", "category", "area"), SUBJECTS)
def test_the_copied_example_classifies_as_no_config_does(copied, subject, body, category, area):
    built_in = PrepareOptions.from_settings(Settings())
    found = classify(subject, body, PrepareOptions.from_settings(copied).rules)
    assert found == classify(subject, body, built_in.rules)
    assert (found.category, found.area) == (category, area)


def test_a_gdpr_question_goes_to_the_example_agent_who_covers_gdpr(copied):
    found = classify("Kérdés az adatvédelmi szabályzat mintáról", "", PrepareOptions.from_settings(copied).rules)
    assert [agent.name for agent in copied.agents if found.area in agent.areas] == ["Szabó Péter"]


def test_the_copied_example_has_no_mail_rule_active(copied):
    # A sample rule left live would ignore every noreply@ sender or acknowledge no partner.
    assert copied.mail_rules == []
    assert PrepareOptions.from_settings(copied).mail_rules == ()


def _leaves(model, prefix: str = "") -> dict[str, object]:
    values = {}
    for name, value in model:
        key = f"{prefix}{name}"
        if isinstance(value, BaseModel):
            values.update(_leaves(value, key + "."))
        else:
            values[key] = value
    return values


def test_every_other_key_of_the_example_is_the_built_in_default(copied):
    example, built_in = _leaves(copied), _leaves(Settings())
    differs = {key: (example[key], built_in[key]) for key in example
               if key not in SITE_KEYS and example[key] != built_in[key]}
    assert differs == {}
