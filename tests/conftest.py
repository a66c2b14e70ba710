"""Shared pytest fixtures."""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

# ===========================================================================
# Test servers (real Dovecot / pymap / aiosmtpd; implementation in servers.py)
# ===========================================================================

_TESTS_DIR = str(Path(__file__).parent)
if _TESTS_DIR not in sys.path:  # `import servers` under any --import-mode
    sys.path.insert(0, _TESTS_DIR)

from servers import Dovecot, Pymap, SmtpSink, dovecot_available  # noqa: E402


def _missing(reason: str) -> None:
    """Skip locally; fail on CI (CI=true), which must provide the server."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} -- CI must install it", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def dovecot_server(tmp_path_factory):
    """One Dovecot for the whole session; any user logs in with "secret"."""
    if not dovecot_available():
        _missing("dovecot-imapd not installed (apt-get install -y dovecot-imapd)")
    server = Dovecot(tmp_path_factory.mktemp("dovecot"))
    server.start()
    yield server
    server.cleanup()  # SIGKILL (a clean stop() takes ~1.1 s) + rm the Maildirs


@pytest.fixture
def mailbox(dovecot_server):
    """A fresh, empty Dovecot account (new user name) for this test."""
    dovecot_server.start()  # no-op unless an earlier test stopped/killed it
    return dovecot_server.new_mailbox()


@pytest.fixture(scope="session")
def pymap_server(tmp_path_factory):
    """One pymap (in-memory) server for the session; any user + "secret"."""
    if importlib.util.find_spec("pymap") is None:
        _missing("pymap not installed (pip install pymap)")
    server = Pymap(log_path=tmp_path_factory.mktemp("pymap") / "pymap.log")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def pymap_mailbox(pymap_server):
    """A fresh, empty pymap account (new user name) for this test."""
    pymap_server.start()  # no-op unless an earlier test stopped it
    return pymap_server.new_mailbox()


@pytest.fixture
def smtp_sink():
    """An SMTP server capturing what it receives (``.messages``)."""
    sink = SmtpSink()
    sink.start()
    yield sink
    sink.stop()


@pytest.fixture(scope="session")
def postgres_server():
    """A throwaway PostgreSQL cluster for the session (skipped where it cannot be installed)."""
    from servers import Postgres, postgres_bin

    if postgres_bin() is None or importlib.util.find_spec("psycopg") is None:
        pytest.skip("PostgreSQL server or psycopg not installed (apt-get install -y postgresql; pip install psycopg)")
    root = Path(tempfile.mkdtemp(prefix="mailbridge-pg-"))
    server = Postgres(root).start()
    yield server
    server.stop()
    shutil.rmtree(root, ignore_errors=True)


# ===========================================================================
# (end of test servers)
# ===========================================================================


# ===========================================================================
# mailbridge itself: a config pointing at the test servers, and the CLI
# ===========================================================================

import json  # noqa: E402
import subprocess  # noqa: E402

import tomllib  # noqa: E402

CORPUS = Path(__file__).parent / "corpus"
SAMPLES = Path(__file__).parent.parent / "mailbridge" / "demo" / "samples"


def _toml(value) -> str:
    """A TOML value: JSON's strings, numbers and booleans are TOML's; tables are inline tables."""
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k, ensure_ascii=False)} = {_toml(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


def write_config(path: Path, imap_settings: dict, smtp=None, **sections) -> Path:
    """A TOML config for the given servers; `sections` override/extend tables."""
    tables = {
        "imap": {"host": imap_settings["host"], "port": imap_settings["port"], "tls": False,
                 "username": imap_settings["username"], "password": imap_settings["password"],
                 "poll_interval": 1, "batch_size": 50},
        "smtp": {"host": smtp.host if smtp else "127.0.0.1", "port": smtp.port if smtp else 2525,
                 "starttls": False, "from_address": "support@crossec.com", "from_name": "Crossec"},
        "database": {"url": f"sqlite:///{path.parent}/mailbridge.db"},
        "storage": {"path": str(path.parent / "storage"), "max_attachment_bytes": 100000},
        # No morning digest unless a test asks (desk={"agent_digest": True}): a tick at a real
        # time of day would otherwise add one to the mail a test counts on working mornings.
        "desk": {"agent_digest": False},
    }
    for name, values in sections.items():
        if isinstance(values, dict):
            tables.setdefault(name, {}).update(values)
        else:
            tables[name] = values
    lines = []
    for name, values in tables.items():
        if isinstance(values, list):
            for item in values:
                lines.append(f"[[{name}]]")
                lines.extend(f"{k} = {_toml(v)}" for k, v in item.items())
        else:
            lines.append(f"[{name}]")
            lines.extend(f"{k} = {_toml(v)}" for k, v in values.items())
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tomllib.loads(path.read_text(encoding="utf-8"))  # the test's own config must be valid TOML
    return path


class Mailbridge:
    """Runs the real CLI (`python -m mailbridge.cli`) against one config."""

    def __init__(self, config: Path):
        self.config = config

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "mailbridge.cli", "--config", str(self.config), *args]

    def __call__(self, *args: str, check: bool = True, timeout: float = 300,
                 subprocess_: bool = False) -> subprocess.CompletedProcess:
        """Runs the CLI in this process (fast) through its real entry point, exit code and
        streams included; `subprocess_=True` (and `start`) run it as its own process."""
        if subprocess_:
            result = subprocess.run(self.command(*args), capture_output=True, text=True, timeout=timeout,
                                    stdin=subprocess.DEVNULL)
        else:
            result = self._in_process(*args)
        if check and result.returncode != 0:
            raise AssertionError(f"mailbridge {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
        return result

    def _in_process(self, *args: str) -> subprocess.CompletedProcess:
        import contextlib
        import io

        from mailbridge.cli import main

        out, err = io.StringIO(), io.StringIO()
        code = 0
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main(["--config", str(self.config), *args])
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())

    def start(self, *args: str, output: Path | None = None) -> subprocess.Popen:
        """A real process; with `output` its stdout and stderr go to that file (a chatty
        daemon would block on a full pipe nobody reads)."""
        if output is None:
            return subprocess.Popen(self.command(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        with open(output, "ab") as sink:
            return subprocess.Popen(self.command(*args), stdout=sink, stderr=subprocess.STDOUT)

    def tickets(self) -> list[dict]:
        return json.loads(self("tickets", "list", "--json").stdout)

    def ticket(self, ticket_id: str) -> dict:
        return json.loads(self("tickets", "show", ticket_id, "--json").stdout)


@pytest.fixture
def mailbridge_for(tmp_path):
    """mailbridge_for(mailbox, smtp=None, **sections) -> an initialised Mailbridge."""

    def make(mailbox, smtp=None, init=True, **sections):
        config = write_config(tmp_path / "mailbridge.toml", mailbox.imap_settings(), smtp, **sections)
        bridge = Mailbridge(config)
        if init:
            bridge("init")
        return bridge

    return make


@pytest.fixture
def mailbridge(mailbox, mailbridge_for):
    """mailbridge on a fresh Dovecot mailbox."""
    return mailbridge_for(mailbox)
