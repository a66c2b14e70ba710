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
    # Agents and a trusted server: `check` would read recent mail for the agents' authenticity.
    config.write_text(f"[database]\nurl = 'sqlite:///{tmp_path}/m.db'\n[storage]\npath = '{tmp_path}/s'\n"
                      "[security]\ntrusted_authserv_ids = ['mx.crossec.com']\n"
                      "[[agents]]\nname = 'Kiss Anna'\nemail = 'kiss.anna@crossec.com'\n")
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


# ---------------------------------------------------------------------------
# Templates: `check` renders them all; a fault at run time fails one notice
# ---------------------------------------------------------------------------
def override(folder: Path, path: str, subject: str, text: str) -> Path:
    file = folder / path
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(f"{{% block subject %}}{subject}{{% endblock %}}\n{{% block text %}}\n{text}{{% endblock %}}\n",
                    encoding="utf-8")
    return file


def template_lines(checked: subprocess.CompletedProcess) -> list[str]:
    return [line.split(None, 2)[2] for line in checked.stdout.splitlines()
            if line.split()[1:2] == ["templates"]]


def test_check_renders_every_template_and_names_file_and_line(mailbox, smtp_sink, mailbridge_for, tmp_path):
    folder = tmp_path / "templates"
    folder.mkdir()
    bridge = mailbridge_for(mailbox, smtp_sink, outbox={"templates_path": str(folder)})
    assert template_lines(bridge("check")) == ["24 rendered"]

    good = override(folder, "hu/ack.j2", "[{{ ticket.id }}] Megkaptuk", "Kedves {{ reporter.name }}!\n")
    unclosed = override(folder, "en/outcome.j2", "[{{ ticket.id }}] Done",
                        "Dear {{ reporter.name }},\n{% if agent %}\n{{ agent.name }}\n")
    misspelt = override(folder, "hu/sla_warning.j2", "[{{ ticket.id }}] Határidő",
                        "Tisztelt {{ agent.name }}!\n\nHátra van: {{ hours_lft }} óra\n")
    astray = override(folder, "hu/akc.j2", "x", "x\n")
    checked = bridge("check", check=False)
    assert checked.returncode == 1
    lines = template_lines(checked)
    # Lines as an editor numbers them: the `{% endblock %}` that meets the open `if`, the misspelt name.
    assert f"{unclosed}, line 6: TemplateSyntaxError: Encountered unknown tag 'endblock'. You probably made a " \
           "nesting mistake. Jinja is expecting this tag, but currently looking for 'elif' or 'else' or 'endif'. " \
           "The innermost block that needs to be closed is 'if'." in lines, lines
    assert f"{misspelt}, line 5: UndefinedError: 'hours_lft' is undefined" in lines, lines
    assert any(line.startswith(f"{astray}: no notice has this name") for line in lines), lines
    assert not any(str(good) in line for line in lines) and len(lines) == 3


def test_a_templates_path_that_is_not_there_is_a_config_error(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text(f"[outbox]\ntemplates_path = '{tmp_path}/templates'\n")
    result = run_module("--config", str(config), "check", cwd=tmp_path)
    assert result.returncode == 2
    assert one_line(result) == f"mailbridge: {config}: outbox.templates_path: not a folder: '{tmp_path}/templates'"


def test_a_template_that_fails_on_one_ticket_fails_that_notice_not_tick(mailbox, smtp_sink, mailbridge_for, tmp_path):
    folder = tmp_path / "templates"
    # Passes `check` (its sample subjects: none, or words to spare), fails on a one-word subject.
    broken = override(folder, "hu/ack.j2", "[{{ ticket.id }}] {{ ticket.subject.split()[1] if ticket.subject }}",
                      "Kedves {{ reporter.name }}!\n\nRögzítettük: {{ ticket.id }}\n")
    agents = [{"name": "Kiss Anna", "email": "kiss.anna@crossec.com", "areas": [], "fallback": True}]
    bridge = mailbridge_for(mailbox, smtp_sink, outbox={"templates_path": str(folder)}, agents=agents)
    assert template_lines(bridge("check", check=False)) == ["24 rendered, 1 from " + str(folder)]
    mailbox.deliver(simple_mail(1, subject="Hiba", sender="kovacs.anna@example.hu"))
    mailbox.deliver(simple_mail(2, subject="Nem tudok belépni", sender="toth.akos@example.hu"))
    bridge("poll", "--once")
    ticked = bridge("tick", subprocess_=True)  # exit 0: one notice failed, the job did not
    assert "Traceback" not in ticked.stdout + ticked.stderr
    logged = [json.loads(line) for line in ticked.stderr.splitlines() if line.startswith("{")]
    failures = [{k: e.get(k) for k in ("level", "template", "language", "ticket", "file", "line", "error")}
                for e in logged if e["event"] == "outbox.render_failed"]
    assert failures == [{"level": "error", "template": "ack", "language": "hu", "ticket": 1, "file": str(broken),
                         "line": 1, "error": "UndefinedError"}], ticked.stderr
    acks = [m for m in smtp_sink.messages if m["Message-ID"].startswith("<ack.")]
    assert [m["To"] for m in acks] == ["toth.akos@example.hu"]
    assert acks[0]["Subject"] == "[CRX-000002] tudok"

    with sqlite3.connect(tmp_path / "mailbridge.db") as db:
        rows = db.execute("SELECT ticket_id, status, last_error FROM outbox WHERE template = 'ack'").fetchall()
    assert sorted(rows)[0] == (1, "failed", f"{broken}, line 1: UndefinedError: list object has no element 1")
    shown = json.loads(bridge("tickets", "show", "CRX-000001", "--json").stdout)
    assert "outbox.failed" in [e["type"] for e in shown["events"]]
    assert not [m for m in shown["messages"] if m["direction"] == "out" and m["subject"].startswith("(ack")]
    told = json.loads(bridge("notifications", "--agent", "kiss.anna@crossec.com", "--json").stdout)
    assert any("ack" in n["text"] and str(broken) in n["text"] for n in told), told
    bridge("tick")  # the failed one is not tried again, and nothing fails
    with sqlite3.connect(tmp_path / "mailbridge.db") as db:
        assert db.execute("SELECT count(*) FROM outbox WHERE template = 'ack'").fetchone()[0] == 2


def _paths(value: object, prefix: str = "") -> set[str]:
    """The names a template can reach in a context: `ticket.id`, `groups[].[].id`, …"""
    if isinstance(value, dict):
        return {p for key, item in value.items() for p in {f"{prefix}{key}", *_paths(item, f"{prefix}{key}.")}}
    if isinstance(value, (list, tuple)):
        return {p for item in value for p in _paths(item, f"{prefix}[].")}
    return set()


def test_checks_samples_have_the_shape_the_real_notices_have(dovecot_server, tmp_path, monkeypatch):
    """`check` is only as good as its samples: a name the real code gives and the samples lack
    would fail a good override; one the samples have and the code does not would pass a bad one."""
    from test_templates import run_a_day

    from mailbridge.outbox.render import Renderer
    from mailbridge.outbox.samples import TEMPLATE_NAMES, sample_contexts

    real: dict[str, set[str]] = {}
    render = Renderer.render

    def recording(self, name, language, context):  # the real render, noted on the way
        real.setdefault(name, set()).update(_paths(context))
        return render(self, name, language, context)

    monkeypatch.setattr(Renderer, "render", recording)
    run_a_day(dovecot_server, tmp_path, "en")
    assert sorted(real) == sorted(TEMPLATE_NAMES)
    lacking, extra = {}, {}
    for name in TEMPLATE_NAMES:
        sampled = set().union(*(_paths(c) for c in sample_contexts(name, "en")))
        lacking[name] = sorted(real[name] - sampled)
        # A list the day left empty (no files listed, no history) names nothing inside it.
        extra[name] = sorted(p for p in sampled - real[name] if "[]" not in p)
    assert {k: v for k, v in lacking.items() if v} == {}
    assert {k: v for k, v in extra.items() if v} == {}
