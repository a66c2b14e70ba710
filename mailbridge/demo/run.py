"""`mailbridge demo`: the whole intake on loopback, with nothing to configure.

Starts pymap (an IMAP server in Python, in-memory) as a child process and an
aiosmtpd sink in this process, writes a config for them into a temporary
folder, delivers the sample mail in `samples/` and runs the same commands an
operator would: init, poll --once, tickets list, tickets show.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from email import message_from_bytes, policy
from collections.abc import Callable
from pathlib import Path

import click
import imapclient
from aiosmtpd.controller import Controller

SAMPLES = Path(__file__).resolve().parent / "samples"
USER, PASSWORD = "support", "demo-password"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Sink:
    """Collects what mailbridge sends, to show it."""

    def __init__(self) -> None:
        self.messages: list = []

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        self.messages.append(message_from_bytes(envelope.content, policy=policy.default))
        return "250 OK"


def _start_pymap(port: int, log: Path) -> subprocess.Popen:
    # pymap has no __main__ module; its console script is pymap.main:main.
    launcher = "import sys; sys.argv[0] = 'pymap'; from pymap.main import main; main()"
    command = [sys.executable, "-c", launcher, "--host", "127.0.0.1", "--port", str(port), "--no-tls",
               "--no-service", "admin", "--no-service", "managesieve", "--no-service", "swim",
               "dict", "--demo-user", USER, "--demo-password", PASSWORD]
    process = subprocess.Popen(command, stdout=log.open("wb"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise click.ClickException(f"pymap exited early; see {log}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise click.ClickException("pymap did not start within 20 s")


def _deliver(port: int, files: list[Path]) -> None:
    with imapclient.IMAPClient("127.0.0.1", port=port, ssl=False, timeout=30) as client:
        client.login(USER, PASSWORD)
        for path in files:
            client.append("INBOX", path.read_bytes())


def _config(folder: Path, imap_port: int, smtp_port: int) -> Path:
    path = folder / "mailbridge.toml"
    path.write_text(
        f"""# Written by `mailbridge demo`: loopback servers, files in this folder.
[imap]
host = "127.0.0.1"
port = {imap_port}
tls = false
username = "{USER}"
password = "{PASSWORD}"
poll_interval = 5

[smtp]
host = "127.0.0.1"
port = {smtp_port}
starttls = false
from_address = "support@crossec.com"
from_name = "Crossec ügyfélszolgálat"

[database]
url = "sqlite:///{folder}/mailbridge.db"

[storage]
path = "{folder}/storage"
max_attachment_bytes = 10485760

[forms]
senders = ["wordpress@crossec.com"]

[security]
# The demo's "receiving server" that checked the agent's DKIM signature.
trusted_authserv_ids = ["mx.crossec.com"]

[[divisions]]
name = "Fejlesztés"
email = "fejlesztes@crossec.com"
areas = ["Crossec Norma"]

[logging]
level = "warning"  # the demo shows results; the daemon logs JSON events

[[agents]]
name = "Kiss Anna"
email = "kiss.anna@crossec.com"
areas = ["Crossec Norma", "Egyéb"]

[[agents]]
name = "Szabó Péter"
email = "szabo.peter@crossec.com"
areas = ["GDPR Segédanyagok", "Üzleti tanácsadás", "Egyéb"]
""",
        encoding="utf-8",
    )
    return path


def run_demo(mailbridge: Callable[[list[str]], None], keep: bool = False) -> None:
    """`mailbridge` runs one command line as the `mailbridge` command would (the command line
    hands itself in: the demo is one of its commands, not a layer under it)."""

    def _mailbridge(config: Path, *args: str) -> None:
        click.echo(click.style(f"\n$ mailbridge {' '.join(args)}", fg="green", bold=True))
        mailbridge(["--config", str(config), *args])

    folder = Path(tempfile.mkdtemp(prefix="mailbridge-demo-"))
    imap_port, smtp_port = _free_port(), _free_port()
    sink = _Sink()
    controller = Controller(sink, hostname="127.0.0.1", port=smtp_port)
    pymap = None
    try:
        pymap = _start_pymap(imap_port, folder / "pymap.log")
        controller.start()
        config = _config(folder, imap_port, smtp_port)
        click.echo(f"IMAP (pymap) on 127.0.0.1:{imap_port}, SMTP sink on 127.0.0.1:{smtp_port}, files in {folder}")
        samples = sorted(SAMPLES.glob("*.eml"))
        # Replies come after the mails they answer have become tickets.
        replies = [p for p in samples if re.search(rb"(?im)^In-Reply-To:", p.read_bytes())]
        first = [p for p in samples if p not in replies]
        _mailbridge(config, "init")
        _deliver(imap_port, first)
        click.echo(f"\n(delivered {len(first)} sample mails to INBOX)")
        _mailbridge(config, "poll", "--once")
        if replies:
            _deliver(imap_port, replies)
            click.echo(f"\n(delivered {len(replies)} customer replies to INBOX)")
            _mailbridge(config, "poll", "--once")
        _mailbridge(config, "tick")
        _mailbridge(config, "tickets", "list")
        _mailbridge(config, "tickets", "show", "CRX-000001")
        _mailbridge(config, "quarantine", "list")
        if sink.messages:
            click.echo(click.style(f"\nThe SMTP sink received {len(sink.messages)} message(s):", bold=True))
            for message in sink.messages:
                click.echo(f"  to {message['To']}: {message['Subject']}")
            customer = [m for m in sink.messages if "crossec.com" not in str(m["To"])]
            acks = [m for m in customer if m["Auto-Submitted"]]
            relays = [m for m in customer if not m["Auto-Submitted"]]
            for title, shown in (("The first acknowledgement, as the customer reads it:", acks[:1]),
                                 ("An agent's reply, relayed to the customer from the support address:", relays[:1])):
                for message in shown:
                    click.echo(click.style(f"\n{title}", bold=True))
                    click.echo(f"From: {message['From']}\nTo: {message['To']}\nSubject: {message['Subject']}\n")
                    click.echo(message.get_body(("plain",)).get_content().strip())
        click.echo(f"\nTry more: mailbridge --config {config} tickets show CRX-000002 --json" if keep else "")
    finally:
        controller.stop() if controller.loop.is_running() else None
        if pymap is not None:
            pymap.terminate()
            pymap.wait(10)
        if not keep:
            shutil.rmtree(folder, ignore_errors=True)
