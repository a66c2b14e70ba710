"""Day one for ops (issue 17): `python -m mailbridge`; read-only commands that create no
file and need no mail-server secret; `check` that renders every template and names the
file and line of an error; a template error at run time that fails one notice, not `tick`.

Real parts throughout: the CLI in a process of its own where the terminal is what counts,
Dovecot, an aiosmtpd sink, SQLite files.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

from conftest import Mailbridge, write_config
from factory import simple_mail
from test_hostile_cli import one_line

READ_ONLY = (["tickets", "list"], ["tickets", "show", "CRX-000001"], ["quarantine", "list"],
             ["gdpr", "export", "someone@example.com", "--out", "export.zip"])


def run_module(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """`python -m mailbridge …` as a user types it, from a folder of theirs."""
    return subprocess.run([sys.executable, "-m", "mailbridge", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=120, stdin=subprocess.DEVNULL)


# ---------------------------------------------------------------------------
# python -m mailbridge
# ---------------------------------------------------------------------------
def test_python_dash_m_mailbridge_is_the_mailbridge_command(tmp_path):
    helped = run_module("--help", cwd=tmp_path)
    assert helped.returncode == 0, helped.stderr
    assert helped.stdout.startswith("Usage: mailbridge ") and "tickets" in helped.stdout
    config = tmp_path / "c.toml"
    config.write_text("[imap]\nprot = 1\n", encoding="utf-8")
    refused = run_module("--config", str(config), "tickets", "list", cwd=tmp_path)
    assert refused.returncode == 2 and "imap.prot: unknown key" in one_line(refused)


# ---------------------------------------------------------------------------
# Read-only commands before `init`: no file, one line naming the absolute path
# ---------------------------------------------------------------------------
def test_read_only_commands_before_init_create_nothing_and_name_the_resolved_path(tmp_path):
    # The classic slip: three slashes, so the path is relative to wherever the command runs.
    config = tmp_path / "c.toml"
    config.write_text("[database]\nurl = 'sqlite:///var/mailbridge.db'\n"
                      f"[storage]\npath = '{tmp_path}/storage'\n", encoding="utf-8")
    work = tmp_path / "work"
    work.mkdir()
    (work / "var").mkdir()  # the folder exists: only the database file is missing
    for args in READ_ONLY:
        result = run_module("--config", str(config), *args, cwd=work)
        assert result.returncode == 1, (args, result.stderr)
        line = one_line(result)
        assert f"database {work}/var/mailbridge.db does not exist yet" in line, line
        assert "run `mailbridge init` first" in line and "four slashes" in line
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["c.toml", "var", "work"]


def test_an_absolute_database_path_before_init_gets_no_slash_lesson(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text(f"[database]\nurl = 'sqlite:///{tmp_path}/m.db'\n[storage]\npath = '{tmp_path}/s'\n")
    result = run_module("--config", str(config), "tickets", "list", cwd=tmp_path)
    line = one_line(result)
    assert result.returncode == 1 and f"database {tmp_path}/m.db does not exist yet" in line
    assert "slashes" not in line
    checked = run_module("--config", str(config), "check", cwd=tmp_path)
    assert f"needs `mailbridge init` ({tmp_path}/m.db does not exist yet)" in checked.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.toml"]


# ---------------------------------------------------------------------------
# Secrets are read when a mail server is logged in to, not by every command
# ---------------------------------------------------------------------------
def test_read_only_commands_need_no_mail_server_secret(mailbox, smtp_sink, tmp_path):
    imap_secret, smtp_secret = tmp_path / "imap-password", tmp_path / "smtp-password"
    imap_secret.write_text(mailbox.imap_settings()["password"] + "\n")
    smtp_secret.write_text("anything\n")
    config = write_config(tmp_path / "mailbridge.toml", mailbox.imap_settings(), smtp_sink,
                          imap={"password": "", "password_file": str(imap_secret)})
    # write_config's `smtp` is the sink; the keys of its section go in by hand.
    config.write_text(config.read_text().replace(
        "[smtp]\n", f"[smtp]\nusername = 'support'\npassword_file = '{smtp_secret}'\n"))
    bridge = Mailbridge(config)
    bridge("init")
    mailbox.deliver(simple_mail(1, subject="Nem tudok belépni", sender="kiss.bela@example.hu"))
    bridge("poll", "--once")
    # The secrets go away (root-only files the agents' user cannot read look the same to it).
    imap_secret.unlink()
    smtp_secret.unlink()
    listed = bridge("tickets", "list", "--json", subprocess_=True)
    assert [t["subject"] for t in json.loads(listed.stdout)] == ["Nem tudok belépni"]
    assert bridge("tickets", "show", "CRX-000001", subprocess_=True).returncode == 0
    assert bridge("quarantine", "list", subprocess_=True).returncode == 0
    # What logs in says which key, in one line, as a config error.
    polled = bridge("poll", "--once", check=False, subprocess_=True)
    assert polled.returncode == 2
    assert one_line(polled) == f"mailbridge: imap.password_file: cannot read '{imap_secret}': No such file or directory"
    daemon = bridge("run", check=False, subprocess_=True, timeout=60)
    assert daemon.returncode == 2 and "imap.password_file: cannot read" in one_line(daemon)
    checked = bridge("check", check=False, subprocess_=True)
    assert checked.returncode == 1
    fails = [line for line in checked.stdout.splitlines() if line.startswith("FAIL")]
    assert any("imap" in line and f"imap.password_file: cannot read '{imap_secret}'" in line for line in fails), fails
    assert any("smtp" in line and f"smtp.password_file: cannot read '{smtp_secret}'" in line for line in fails), fails
