"""Config and command-line errors: one clear line, the right exit code, nothing written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mailbridge.config import Settings, load_settings
from mailbridge.errors import ConfigError

EXAMPLE = Path(__file__).parent.parent / "config" / "mailbridge.example.toml"


def run(*args: str, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mailbridge.cli", *args], capture_output=True, text=True, env=env)


def test_example_config_loads_and_documents_every_key():
    settings = load_settings(EXAMPLE)
    text = EXAMPLE.read_text(encoding="utf-8")
    for section, model in Settings.model_fields.items():
        assert f"[{section}]" in text or f"[[{section}]]" in text, section
        inner = getattr(settings, section)
        if isinstance(inner, list) and not inner:  # documented commented out, e.g. [[mailboxes]]
            continue
        fields = (inner[0] if isinstance(inner, list) else inner).__class__.model_fields
        for key in fields:
            assert f"{key} =" in text or f"# {key} =" in text or f"{key}_" in text or key in text, f"{section}.{key}"


@pytest.mark.parametrize(
    "toml, message",
    [
        ("[imap]\nprot = 993\n", "imap.prot: unknown key"),
        ("[imap]\nport = 'nine'\n", "imap.port:"),
        ("[nonsense]\n", "nonsense: unknown key"),
        ("[tickets]\nid_prefix = 'C R X'\n", "tickets.id_prefix:"),
        ("[[agents]]\nname = 'A'\nemail = 'a@crossec.com'\nareas = ['Nincs ilyen']\n", "agents[0].areas: unknown area 'Nincs ilyen'"),
        ("[policy]\ntimezone = 'Mars/Olympus'\n", "policy.timezone: unknown time zone"),
        ("[smtp]\ntls = true\nstarttls = true\n", "smtp: tls and starttls are exclusive"),
        ("[imap\n", "not valid TOML"),
    ],
)
def test_config_errors_name_the_key_and_exit_2(tmp_path, toml, message):
    config = tmp_path / "bad.toml"
    config.write_text(toml, encoding="utf-8")
    result = run("--config", str(config), "tickets", "list")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert message in lines[0] and str(config) in lines[0]


def test_missing_config_file_is_a_config_error(tmp_path):
    result = run("--config", str(tmp_path / "nope.toml"), "check")
    assert result.returncode == 2
    assert "config file not found" in result.stderr


def test_config_from_environment_variable(tmp_path):
    config = tmp_path / "env.toml"
    config.write_text("[imap]\nprot = 1\n", encoding="utf-8")
    import os

    result = run("tickets", "list", env={**os.environ, "MAILBRIDGE_CONFIG": str(config)})
    assert result.returncode == 2 and "imap.prot" in result.stderr


def test_secrets_come_from_env_or_file(tmp_path, monkeypatch):
    secret = tmp_path / "imap-password"
    secret.write_text("from-file\n")
    config = tmp_path / "c.toml"
    config.write_text(f"[imap]\npassword_file = '{secret}'\n[smtp]\nusername = 'x'\n")
    monkeypatch.setenv("MAILBRIDGE_SMTP_PASSWORD", "from-env")
    settings = load_settings(config)
    assert settings.imap.login_password() == "from-file"  # read when logging in, not on load
    assert settings.smtp.login_password() == "from-env"
    assert "from-file" not in repr(settings)  # secrets stay out of reprs and logs
    config.write_text("[imap]\npassword_file = '/nonexistent/secret'\n")
    settings = load_settings(config)  # commands that log in nowhere need not read it
    with pytest.raises(ConfigError, match="imap.password_file: cannot read '/nonexistent/secret'"):
        settings.intake_mailboxes[0].login_password()


def test_unknown_ticket_id_and_bad_choice_are_usage_errors(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text(f"[database]\nurl = 'sqlite:///{tmp_path}/m.db'\n[storage]\npath = '{tmp_path}/s'\n")
    bad = run("--config", str(config), "tickets", "show", "XYZ-1")
    assert bad.returncode == 2 and "not a ticket ID: 'XYZ-1'" in bad.stderr
    choice = run("--config", str(config), "tickets", "list", "--status", "sleeping")
    assert choice.returncode == 2 and "sleeping" in choice.stderr and "in_progress" in choice.stderr
    assert not (tmp_path / "m.db").exists()  # a refused command writes nothing


def test_commands_refuse_an_uninitialised_database(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text(f"[database]\nurl = 'sqlite:///{tmp_path}/m.db'\n[storage]\npath = '{tmp_path}/s'\n")
    result = run("--config", str(config), "tickets", "list")
    assert result.returncode == 1 and "mailbridge init" in result.stderr
    assert not (tmp_path / "m.db").exists()  # no command that only reads creates a database file


def test_a_config_saved_with_a_byte_order_mark_loads(tmp_path):
    config = tmp_path / "c.toml"
    config.write_bytes("\ufeff[tickets]\nid_prefix = 'ABC'\n".encode("utf-8"))  # as Windows Notepad saves it
    assert load_settings(config).tickets.id_prefix == "ABC"


def test_check_names_what_fails(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text(
        f"[imap]\nhost = '127.0.0.1'\nport = 1\ntls = false\n[smtp]\nhost = '127.0.0.1'\nport = 1\nstarttls = false\n"
        f"[database]\nurl = 'sqlite:///{tmp_path}/m.db'\n[storage]\npath = '{tmp_path}/s'\n"
    )
    result = run("--config", str(config), "check")
    assert result.returncode == 1
    assert "FAIL imap" in result.stdout and "FAIL smtp" in result.stdout and "needs `mailbridge init`" in result.stdout
