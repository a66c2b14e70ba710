"""Real, throwaway mail servers for integration tests and benchmarks.

Nothing in here is mocked: every class starts a real server on 127.0.0.1.

* :class:`Dovecot` -- a private Dovecot IMAP server (``dovecot -F -c CONF``)
  whose config, logs, runtime dir and Maildirs live in temp dirs (never
  /etc/dovecot or /var).
  Any username logs in with password ``secret``; every user is a fresh, empty
  mailbox, so :meth:`Dovecot.new_mailbox` is the cheap way to isolate tests.
* :class:`Pymap` -- the pure-Python ``pymap`` IMAP server (in-memory ``dict``
  backend) as a child process; by default any username logs in too.
* :class:`Mailbox` -- one IMAP account on either server, with helpers to
  seed and inspect it (``deliver``, ``uids``, ``messages``, ...).
* :class:`SmtpSink` -- an aiosmtpd server capturing what is sent to it.

This module must not import pytest: ``bench/`` scripts use it too.
"""

from __future__ import annotations

import atexit
import email
import email.message
import email.policy
import grp
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import weakref
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from imapclient import IMAPClient, imap_utf7

__all__ = [
    "DOVECOT_BINARY",
    "Dovecot",
    "Envelope",
    "Mailbox",
    "Pymap",
    "ServerStartError",
    "SmtpSink",
    "dovecot_available",
    "free_port",
]

HOST = "127.0.0.1"
DOVECOT_BINARY = os.environ.get("MAILBRIDGE_TEST_DOVECOT", "/usr/sbin/dovecot")
DOVEADM_BINARY = shutil.which("doveadm") or "/usr/bin/doveadm"
# How many messages deliver_many() sends per MULTIAPPEND command.
_APPEND_BATCH = 500


class ServerStartError(RuntimeError):
    """A test server did not come up (message includes its log tail)."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def dovecot_available() -> bool:
    return os.access(DOVECOT_BINARY, os.X_OK)


def _fast_tmp(min_free: int = 1 << 30) -> str | None:
    """/dev/shm if it is a usable tmpfs with >= *min_free* bytes, else None
    (= tempfile's default).  Docker's default /dev/shm is only 64 MB."""
    try:
        st = os.statvfs("/dev/shm")
    except OSError:
        return None
    if st.f_bavail * st.f_frsize >= min_free and os.access("/dev/shm", os.W_OK | os.X_OK):
        return "/dev/shm"
    return None


_RUNTIME_PREFIX = "mailbridge-dovecot-"


def _sweep_stale_runtime_dirs(tmp: str | None) -> None:
    """Remove runtime dirs left by test processes that were SIGKILLed
    (their servers died with them, see _die_with_parent; the Maildirs would
    otherwise pile up -- on /dev/shm that is RAM)."""
    for d in Path(tmp or tempfile.gettempdir()).glob(_RUNTIME_PREFIX + "*"):
        try:
            if d.stat().st_uid != os.geteuid():
                continue
            pid = int((d / "owner.pid").read_text())
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(d, ignore_errors=True)
        except (OSError, ValueError):
            continue


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


try:  # resolved here, not in the child: preexec_fn must not import
    import ctypes
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except Exception:  # not Linux / no libc
    _prctl = None


def _die_with_parent() -> None:  # runs in the child between fork and exec
    """Linux: SIGTERM the child when the process that started it dies, so a
    crashed/killed test run leaves no orphan servers behind.  (Tied to the
    *thread* that called Popen: start servers from a long-lived thread.)"""
    if _prctl is not None:
        _prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


_live_servers: "weakref.WeakSet" = weakref.WeakSet()


@atexit.register
def _stop_live_servers() -> None:
    for server in list(_live_servers):
        try:
            # Dovecot: kill + remove its temp runtime dir; others: stop
            (getattr(server, "cleanup", None) or getattr(server, "kill", server.stop))()
        except Exception:
            pass


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no {path.name})"
    return "\n".join(text.splitlines()[-lines:]) or f"({path.name} is empty)"


# --------------------------------------------------------------------------
# One IMAP account
# --------------------------------------------------------------------------

_APPENDUID_RE = re.compile(rb"APPENDUID (\d+) ([0-9:,]+)", re.IGNORECASE)


def _flatten(resp) -> bytes:
    if isinstance(resp, bytes):
        return resp
    if isinstance(resp, (tuple, list)):  # multiappend() gives ('OK', [b'...'])
        return b" ".join(_flatten(r) for r in resp)
    return b""


def _appended_uids(resp) -> list[int]:
    """UIDs from an APPEND/MULTIAPPEND response's [APPENDUID v set] code."""
    m = _APPENDUID_RE.search(_flatten(resp))
    return _parse_uid_set(m.group(2)) if m else []


def _parse_uid_set(text: bytes) -> list[int]:
    uids: list[int] = []
    for part in text.decode().split(","):
        if ":" in part:
            lo, hi = sorted(int(x) for x in part.split(":"))
            uids.extend(range(lo, hi + 1))
        else:
            uids.append(int(part))
    return uids


def _chunks(items: list, size: int = 1000) -> Iterator[list]:
    """Keep UID lists in IMAP commands short (servers cap line length)."""
    for i in range(0, len(items), size):
        yield items[i:i + size]


class Mailbox:
    """One user's mailbox on a running IMAP server.

    Every helper opens its own short-lived IMAP connection, so the helpers
    behave like "another mail client" and keep working across server
    restarts.  Use :meth:`client` for anything not covered here.
    """

    def __init__(self, host: str, port: int, username: str, password: str,
                 *, server: object = None) -> None:
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.server = server

    def __repr__(self) -> str:
        return f"<Mailbox {self.username}@{self.host}:{self.port}>"

    def imap_settings(self) -> dict:
        return {"host": self.host, "port": self.port, "tls": False,
                "username": self.username, "password": self.password}

    @contextmanager
    def client(self, timeout: float = 10) -> Iterator[IMAPClient]:
        """A logged-in :class:`IMAPClient` (logged out on exit)."""
        c = IMAPClient(self.host, self.port, ssl=False, timeout=timeout)
        try:
            c.login(self.username, self.password)
            yield c
        finally:
            try:
                c.logout()
            except Exception:
                try:
                    c.shutdown()
                except Exception:
                    pass

    @staticmethod
    def _ensure_folder(c: IMAPClient, folder: str) -> None:
        if folder.upper() != "INBOX" and not c.folder_exists(folder):
            c.create_folder(folder)

    # -- seeding -----------------------------------------------------------

    def deliver(self, raw: bytes, folder: str = "INBOX",
                flags: Sequence[str | bytes] = (), msg_time=None) -> int | None:
        """APPEND one message (creating *folder* if needed).

        Returns the new UID when the server reports APPENDUID (UIDPLUS).
        """
        with self.client() as c:
            self._ensure_folder(c, folder)
            resp = c.append(folder, raw, flags=tuple(flags), msg_time=msg_time)
        uids = _appended_uids(resp)
        return uids[0] if uids else None

    def deliver_many(self, raws: Iterable[bytes], folder: str = "INBOX",
                     flags: Sequence[str | bytes] = ()) -> list[int]:
        """APPEND many messages over one connection.

        Uses MULTIAPPEND (RFC 3502, one command per ``_APPEND_BATCH``
        messages; with LITERAL+ that is a single round trip per batch) when
        the server offers it, else one APPEND per message on the same
        connection.  Returns the new UIDs if the server reports APPENDUID.
        """
        uids: list[int] = []
        with self.client(timeout=120) as c:
            self._ensure_folder(c, folder)
            multi = b"MULTIAPPEND" in c.capabilities()
            batch: list = []

            def flush() -> None:
                if not batch:
                    return
                if multi:
                    uids.extend(_appended_uids(c.multiappend(folder, batch)))
                else:
                    for item in batch:
                        uids.extend(_appended_uids(c.append(
                            folder, item["msg"], flags=item.get("flags", ()))))
                batch.clear()

            for raw in raws:
                item = {"msg": raw}
                if flags:
                    item["flags"] = tuple(flags)
                batch.append(item)
                if len(batch) >= _APPEND_BATCH:
                    flush()
            flush()
        return uids

    # -- inspecting ---------------------------------------------------------

    def folders(self) -> list[str]:
        """Selectable folders (\\Noselect parents like "A" of "A/B" omitted)."""
        skip = {b"\\NOSELECT", b"\\NONEXISTENT"}
        with self.client() as c:
            return [name for flags, _delim, name in c.list_folders()
                    if not skip & {f.upper() for f in flags}]

    def _status(self, folder: str, what: list[str]) -> dict:
        with self.client() as c:
            return c.folder_status(folder, what)

    def uidvalidity(self, folder: str = "INBOX") -> int:
        return int(self._status(folder, ["UIDVALIDITY"])[b"UIDVALIDITY"])

    def uidnext(self, folder: str = "INBOX") -> int:
        return int(self._status(folder, ["UIDNEXT"])[b"UIDNEXT"])

    def count(self, folder: str = "INBOX") -> int:
        return int(self._status(folder, ["MESSAGES"])[b"MESSAGES"])

    def uids(self, folder: str = "INBOX") -> list[int]:
        with self.client() as c:
            c.select_folder(folder, readonly=True)
            return sorted(c.search(["ALL"]))

    def messages(self, folder: str = "INBOX") -> list[bytes]:
        """Raw messages in UID order (BODY.PEEK[]: \\Seen is not set)."""
        return [raw for _uid, raw in self.fetch(folder)]

    def fetch(self, folder: str = "INBOX") -> list[tuple[int, bytes]]:
        """``[(uid, raw), ...]`` in UID order, without setting \\Seen."""
        with self.client() as c:
            c.select_folder(folder, readonly=True)
            data = {}
            for chunk in _chunks(c.search(["ALL"])):
                data.update(c.fetch(chunk, ["BODY.PEEK[]"]))
        return sorted((int(uid), bytes(v[b"BODY[]"])) for uid, v in data.items())

    def flags(self, folder: str = "INBOX") -> dict[int, tuple[bytes, ...]]:
        """``{uid: flags}`` for every message in *folder*."""
        with self.client() as c:
            c.select_folder(folder, readonly=True)
            result: dict[int, tuple[bytes, ...]] = {}
            for chunk in _chunks(c.search(["ALL"])):
                result.update((int(u), tuple(f)) for u, f in c.get_flags(chunk).items())
            return result

    # -- acting as another mail client -------------------------------------

    def set_flags(self, uids: Iterable[int], flags: Sequence[str | bytes],
                  folder: str = "INBOX") -> None:
        """Add *flags* (e.g. ``[b"\\\\Seen"]``) to *uids*; no expunge."""
        uids = list(uids)
        if not uids:
            return
        with self.client() as c:
            c.select_folder(folder)
            for chunk in _chunks(uids):
                c.add_flags(chunk, list(flags), silent=True)

    def expunge(self, folder: str = "INBOX") -> None:
        """Expunge everything flagged \\Deleted in *folder*."""
        with self.client() as c:
            c.select_folder(folder)
            c.expunge()

    def kick(self) -> int:
        """Drop this user's open connections (server side); Dovecot only."""
        kick = getattr(self.server, "kick", None)
        if kick is None:
            raise NotImplementedError(f"{type(self.server).__name__} cannot kick sessions")
        return kick(self.username)

    def reset_uidvalidity(self, folder: str = "INBOX") -> int:
        """Make the server give *folder* a new UIDVALIDITY (messages kept).

        Returns the new UIDVALIDITY.  Only servers with on-disk state can do
        this (Dovecot); see :meth:`Dovecot.reset_uidvalidity`.
        """
        reset = getattr(self.server, "reset_uidvalidity", None)
        if reset is None:
            raise NotImplementedError(f"{type(self.server).__name__} cannot reset UIDVALIDITY")
        return reset(self, folder)


# --------------------------------------------------------------------------
# Dovecot
# --------------------------------------------------------------------------

_DOVECOT_CONF = """\
# Generated by tests/servers.py -- a throwaway test server.
protocols = imap
listen = {host}
base_dir = {base_dir}
state_dir = {state_dir}
instance_name = mailbridge-test-{tag}
log_path = {log}
info_log_path = {log}
debug_log_path = {log}
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = {auth_failure_delay}
default_login_user = {login_user}
default_internal_user = {internal_user}
default_internal_group = {internal_group}
first_valid_uid = 1
mail_uid = {mail_user}
mail_gid = {mail_group}
mail_location = maildir:~/Maildir
mail_fsync = never
mail_max_userip_connections = 1000
verbose_proctitle = yes

namespace inbox {{
  inbox = yes
  separator = /
}}

passdb {{
  driver = static
  args = password={password}
}}
userdb {{
  driver = static
  args = uid={mail_user} gid={mail_group} home={home_root}/%u
}}

service imap-login {{
  inet_listener imap {{
    address = {host}
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
  # High-performance mode: one long-lived login process.
  service_count = 0
  process_min_avail = 1
}}
service imap {{
  process_limit = 1000
}}
service anvil {{
  # No auth penalty (escalating delays after failed logins from 127.0.0.1).
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service stats {{
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
{extra}"""

# Appended when not running as root: everything runs as the current user.
# (Unprivileged processes cannot chroot; these services chroot by default.)
_DOVECOT_UNPRIVILEGED = "".join(
    f"service {name} {{\n  chroot =\n}}\n" for name in (
        "imap-login", "imap-urlauth-login", "pop3-login", "submission-login",
        "anvil", "ipc", "old-stats", "aggregator", "director"))


class _ChildServer:
    """What Dovecot and Pymap share: a child process serving on HOST:_port."""

    _port: int
    _proc: "subprocess.Popen | None"

    @property
    def host(self) -> str:
        return HOST

    @property
    def port(self) -> int:
        return self._port

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


class Dovecot(_ChildServer):
    """A private Dovecot IMAP server on 127.0.0.1.

    *root* holds ``dovecot.conf``, ``state/``, ``dovecot.log`` (+
    ``dovecot.stderr``); nothing outside it or *runtime_dir* is touched.
    Any username logs in with :attr:`password` (``secret``).

    *runtime_dir* holds ``run/`` (base_dir, its sockets) and
    ``home/<user>/Maildir``; by default a fresh ``mailbridge-dovecot-*``
    directory on /dev/shm (tmpfs; /tmp if /dev/shm is small or missing),
    symlinked as ``root/run`` and ``root/home`` for browsing, and removed by
    :meth:`cleanup`.  Why not inside *root*: (1) as root, Dovecot's
    unprivileged processes (nobody, dovenull, dovecot) must traverse to it,
    and pytest's ``/tmp/pytest-of-root`` is 0700 -- re-chmodded to 0700 by
    every pytest session that starts, so o+x would not survive a concurrent
    run; (2) Maildir delivery is metadata-heavy: 5,000 APPENDs took 0.4 s
    on tmpfs but 4-5 s on this VM's disk while other tests were fsyncing.
    """

    password = "secret"

    def __init__(self, root: str | os.PathLike, *, port: int | None = None,
                 runtime_dir: str | os.PathLike | None = None,
                 mail_user: str | None = None, mail_group: str | None = None,
                 auth_failure_delay: str = "0", start_timeout: float = 10.0,
                 binary: str = DOVECOT_BINARY) -> None:
        self.root = Path(root).resolve()
        self.binary = binary
        self.as_root = os.geteuid() == 0
        if self.as_root:
            # Dovecot refuses to serve mail as uid 0.
            self.mail_user = mail_user or "nobody"
            self.mail_group = mail_group or grp.getgrgid(
                pwd.getpwnam(self.mail_user).pw_gid).gr_name
        else:
            # Unprivileged mode: Dovecot cannot switch users, so every
            # process (login, internal, mail) runs as the current user.
            self.mail_user = mail_user or pwd.getpwuid(os.geteuid()).pw_name
            self.mail_group = mail_group or grp.getgrgid(os.getegid()).gr_name
        self._own_runtime_dir = runtime_dir is None
        if runtime_dir is None:
            tmp = _fast_tmp()
            _sweep_stale_runtime_dirs(tmp)
            self.runtime_dir = Path(tempfile.mkdtemp(prefix=_RUNTIME_PREFIX, dir=tmp))
            os.chmod(self.runtime_dir, 0o711)
            (self.runtime_dir / "owner.pid").write_text(f"{os.getpid()}\n")
            _live_servers.add(self)  # atexit: cleanup()
        else:
            self.runtime_dir = Path(runtime_dir).resolve()
        self.auth_failure_delay = auth_failure_delay
        self.start_timeout = start_timeout
        self._auto_port = port is None
        self._port = port or free_port()
        self.conf = self.root / "dovecot.conf"
        self.state_dir = self.root / "state"
        self.log = self.root / "dovecot.log"
        self.stderr_log = self.root / "dovecot.stderr"
        self.base_dir = self.runtime_dir / "run"
        self.home_root = self.runtime_dir / "home"
        self._proc: subprocess.Popen | None = None
        self._counter = 0

    # -- properties ----------------------------------------------------------

    def __repr__(self) -> str:
        return f"<Dovecot {self.host}:{self.port} root={self.root}>"

    # -- setup ---------------------------------------------------------------

    def _prepare(self) -> None:
        # Unix socket paths are limited to 107 bytes; the longest one Dovecot
        # creates is base_dir + "/token-login/imap-urlauth" (26 chars).
        if len(os.fsencode(self.base_dir)) > 107 - 27:
            raise ServerStartError(f"path too long for Dovecot's unix sockets: {self.base_dir} "
                                   "(use a shorter temp dir, e.g. pytest --basetemp=/tmp/t)")
        uid = pwd.getpwnam(self.mail_user).pw_uid
        gid = grp.getgrnam(self.mail_group).gr_gid
        for d in (self.root, self.base_dir, self.state_dir, self.home_root):
            d.mkdir(parents=True, exist_ok=True)
        os.chmod(self.base_dir, 0o755)
        os.chmod(self.home_root, 0o755)
        if self.as_root:
            os.chown(self.home_root, uid, gid)
        if self.runtime_dir != self.root:
            for name, target in (("run", self.base_dir), ("home", self.home_root)):
                link = self.root / name
                if not link.is_symlink() and not link.exists():
                    link.symlink_to(target)
        self._check_reachable()
        self.conf.write_text(_DOVECOT_CONF.format(
            login_user="dovenull" if self.as_root else self.mail_user,
            internal_user="dovecot" if self.as_root else self.mail_user,
            internal_group="dovecot" if self.as_root else self.mail_group,
            extra="" if self.as_root else _DOVECOT_UNPRIVILEGED,
            host=HOST, port=self._port, tag=self._port,
            base_dir=self.base_dir, state_dir=self.state_dir,
            home_root=self.home_root, log=self.log,
            mail_user=self.mail_user, mail_group=self.mail_group,
            password=self.password,
            auth_failure_delay=self.auth_failure_delay))

    def _check_reachable(self) -> None:
        """Fail early (not with an obscure login error) if the mail user
        cannot traverse to the homes, e.g. a 0700 *runtime_dir* parent."""
        if not self.as_root:
            return
        for p in [self.home_root, *self.home_root.parents]:
            if not p.stat().st_mode & stat.S_IXOTH:
                raise ServerStartError(
                    f"{p} is not traversable (o+x) for {self.mail_user}; Dovecot's "
                    f"imap processes could not reach {self.home_root}.  Pass a "
                    "runtime_dir under a world-traversable directory such as /tmp.")

    def _spawn(self) -> None:
        if not os.access(self.binary, os.X_OK):
            raise ServerStartError(f"{self.binary} not found "
                                   "(apt-get install -y dovecot-imapd)")
        self._prepare()
        with open(self.stderr_log, "ab") as err:
            self._proc = subprocess.Popen(
                [self.binary, "-F", "-c", str(self.conf)],
                stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                start_new_session=True,  # own process group -> kill() gets all
                preexec_fn=_die_with_parent)
        _live_servers.add(self)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise ServerStartError(
                    f"dovecot exited with {self._proc.returncode}\n"
                    f"--- {self.stderr_log}:\n{_tail(self.stderr_log)}\n"
                    f"--- {self.log}:\n{_tail(self.log)}")
            if _port_open(self._port):
                try:
                    c = IMAPClient(HOST, self._port, ssl=False, timeout=2)
                    try:
                        c.login("startup-probe", self.password)
                        c.select_folder("INBOX", readonly=True)
                    finally:
                        c.logout()
                    return
                except Exception as e:  # noqa: BLE001 -- retried until deadline
                    last_error = e
            time.sleep(0.02)
        self._kill_group()
        raise ServerStartError(
            f"dovecot did not accept a login on {HOST}:{self._port} within "
            f"{self.start_timeout}s (last error: {last_error!r})\n"
            f"--- {self.stderr_log}:\n{_tail(self.stderr_log)}\n"
            f"--- {self.log}:\n{_tail(self.log)}")

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> "Dovecot":
        """Start (no-op if running); returns once a LOGIN + SELECT works."""
        if self.running:
            return self
        self._spawn()
        try:
            self._wait_ready()
        except ServerStartError as e:
            # Lost the race for an auto-picked port before the first start:
            # pick another one.  (Restarts must keep their port.)
            if not (self._auto_port and "Address already in use" in str(e)):
                raise
            self._port = free_port()
            self._spawn()
            self._wait_ready()
        self._auto_port = False
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Clean shutdown (SIGTERM to the master, which stops its children)."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._kill_group()
        self._kill_group()  # reap any straggler children
        self._proc = None
        self._wait_port_closed()

    def kill(self) -> None:
        """Simulate a crash: SIGKILL the master and all its children at once.

        Open client connections are dropped; mail on disk is kept.
        """
        if self._proc is None:
            return
        self._kill_group()
        self._proc = None
        self._wait_port_closed()

    def restart(self) -> None:
        """Stop (cleanly) and start again on the same port; mail is kept."""
        self.stop()
        self.start()

    def cleanup(self) -> None:
        """Kill the server and delete the runtime dir we created (mail!)."""
        self.kill()
        if self._own_runtime_dir:
            shutil.rmtree(self.runtime_dir, ignore_errors=True)

    def _kill_group(self) -> None:
        if self._proc is None:
            return
        try:
            os.killpg(self._proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            self._proc.wait(5)
        except subprocess.TimeoutExpired:
            pass

    def _wait_port_closed(self, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _port_open(self._port):
            time.sleep(0.02)

    # -- mailboxes -------------------------------------------------------------

    def new_mailbox(self, username: str | None = None) -> Mailbox:
        """A mailbox for a fresh, unused user (Dovecot creates it on login)."""
        if username is None:
            self._counter += 1
            username = f"user{self._counter}-{uuid.uuid4().hex[:8]}"
        return Mailbox(HOST, self._port, username, self.password, server=self)

    def maildir(self, username: str, folder: str = "INBOX") -> Path:
        """On-disk Maildir++ directory of *folder* for *username*."""
        base = self.home_root / username / "Maildir"
        if folder.upper() == "INBOX":
            return base
        encoded = imap_utf7.encode(folder)
        encoded = encoded.decode() if isinstance(encoded, bytes) else encoded
        return base / ("." + encoded.replace("/", "."))

    def doveadm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run ``doveadm -c <our conf> ARGS`` against this server."""
        return subprocess.run([DOVEADM_BINARY, "-c", str(self.conf), *args],
                              capture_output=True, text=True, check=check, timeout=30)

    def session_pids(self, username: str) -> list[int]:
        """PIDs of *username*'s open IMAP sessions (``doveadm who``)."""
        out = self.doveadm("who", "-1", username).stdout.splitlines()[1:]
        return [int(f[2]) for f in (line.split() for line in out)
                if len(f) >= 3 and f[0] == username and f[2].isdigit()]

    def kick(self, username: str, timeout: float = 5.0) -> int:
        """Drop every open IMAP connection of *username* (``doveadm kick``),
        like a server that goes away under the client; other users' sessions
        are untouched.  Waits until those processes are gone; returns how
        many were kicked."""
        pids = self.session_pids(username)
        if not pids:
            return 0
        self.doveadm("kick", username, check=False)  # exit 68 = nobody kicked
        deadline = time.monotonic() + timeout
        for pid in pids:
            while time.monotonic() < deadline:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.005)
        return len(pids)

    def reset_uidvalidity(self, mailbox: Mailbox, folder: str = "INBOX") -> int:
        """Give *folder* a new UIDVALIDITY while keeping its messages.

        The server keeps running, but the user's open connections are
        dropped first (:meth:`kick`): a Dovecot session that still had the
        old index open would otherwise hit "[SERVERBUG] Internal error" on
        its next write/SELECT -- something no real server does.  Then the
        folder's ``dovecot-uidlist`` and index files (and the user's
        mailbox-list index, which caches UIDVALIDITY for STATUS) are deleted;
        the next access rescans the Maildir, takes UIDVALIDITY from
        ``dovecot-uidvalidity`` (always > the old value) and numbers the
        messages from UID 1 in their old order.  Returns the new UIDVALIDITY.
        """
        old = mailbox.uidvalidity(folder)
        count = mailbox.count(folder)
        path = self.maildir(mailbox.username, folder)
        if not (path / "cur").is_dir():
            raise FileNotFoundError(f"no Maildir for {folder!r} at {path}")
        self.kick(mailbox.username)
        doomed = [path / "dovecot-uidlist", *path.glob("dovecot.index*"),
                  *(self.home_root / mailbox.username / "Maildir").glob("dovecot.list.index*")]
        for f in doomed:
            try:
                f.unlink()
            except FileNotFoundError:
                pass
        new = mailbox.uidvalidity(folder)  # new session -> resync
        if new == old:
            raise AssertionError(f"UIDVALIDITY of {folder!r} did not change ({old})")
        if mailbox.count(folder) != count:
            raise AssertionError(f"{folder!r} lost messages while resetting UIDVALIDITY")
        return new

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""


# --------------------------------------------------------------------------
# pymap
# --------------------------------------------------------------------------

# Code run in the pymap child process.  Both shims are auth-only; IMAP
# behaviour is pymap's own code from the login on.
#
# multi_user: pymap's dict backend only knows its one --demo-user (adding
# users needs the gRPC admin service: grpclib + pymap-admin, not installed).
# This makes ANY user name log in with the demo password -- each new name is
# a new, empty account, exactly like the Dovecot fixture's static passdb.
_PYMAP_MULTI_USER = r"""
from pymap.backend.dict import Identity, Login
from pymap.exceptions import CannotReplaceUser
from pymap.user import Passwords, UserMetadata

_authenticate = Login.authenticate

async def authenticate(self, credentials):
    name = credentials.authcid
    if name not in self.users_dict:
        hashed = await Passwords(self.config).hash_password(self.config.demo_password)
        try:
            await Identity(name, self, None, frozenset()).set(
                UserMetadata(self.config, name, password=hashed))
        except CannotReplaceUser:  # a concurrent login created it first
            pass
    return await _authenticate(self, credentials)

Login.authenticate = authenticate
"""
# fast_hash: without passlib, pymap hashes passwords with PBKDF2-SHA256 at
# 500,000 rounds, so every LOGIN costs ~0.3 s of CPU (on a one-thread pool).
# Same algorithm, 1,000 rounds.
_PYMAP_FAST_HASH = r"""
from pymap.config import IMAPConfig
from pysasl.hashing import BuiltinHash

IMAPConfig._get_hash_context = classmethod(lambda cls, cfg: BuiltinHash(rounds=1000))
"""
_PYMAP_MAIN = r"""
import sys
sys.argv[0] = "pymap"
from pymap.main import main
main()
"""


class Pymap(_ChildServer):
    """pymap (``pymap dict``, in-memory) as a child process on 127.0.0.1.

    Stock pymap's dict backend knows exactly one user (``--demo-user`` /
    ``--demo-password``, defaults demouser/demopass; we pass
    ``demouser``/``secret``); without ``--demo-data`` its INBOX starts empty.
    With ``multi_user=True`` (default) a small auth shim (``_PYMAP_MULTI_USER``)
    lets any user name log in with the password, so :meth:`new_mailbox` is a
    fresh account on the same process.  With ``multi_user=False``
    :meth:`new_mailbox` restarts the process (~1 s).  ``fast_hash=True``
    (default) cuts pymap's ~0.3 s per LOGIN to ~1 ms (``_PYMAP_FAST_HASH``);
    both False = stock pymap.  All mail is lost when the process stops.
    """

    def __init__(self, *, port: int | None = None, username: str = "demouser",
                 password: str = "secret", log_path: str | os.PathLike | None = None,
                 demo_data: bool = False, multi_user: bool = True,
                 fast_hash: bool = True, start_timeout: float = 10.0) -> None:
        self._port = port or free_port()
        self.username = username
        self.password = password
        self.demo_data = demo_data
        self.multi_user = multi_user
        self.fast_hash = fast_hash
        self.start_timeout = start_timeout
        self.log = Path(log_path) if log_path else None
        self._proc: subprocess.Popen | None = None
        self._log_file = None
        self._counter = 0

    def __repr__(self) -> str:
        return f"<Pymap {self.host}:{self.port}>"

    def command(self) -> list[str]:
        code = ((_PYMAP_MULTI_USER if self.multi_user else "")
                + (_PYMAP_FAST_HASH if self.fast_hash else "") + _PYMAP_MAIN)
        cmd = [sys.executable, "-c", code,
               "--host", HOST, "--port", str(self._port),
               # only IMAP: no managesieve (port 4190), admin, swim
               "--no-service", "admin", "--no-service", "managesieve",
               "--no-service", "swim",
               "--no-tls",  # else STARTTLS is advertised (with no cert configured)
               "dict", "--demo-user", self.username,
               "--demo-password", self.password]
        if self.demo_data:
            cmd.append("--demo-data")
        return cmd

    def start(self) -> "Pymap":
        if self.running:
            return self
        if self.log is not None:
            self._log_file = open(self.log, "ab")
            out = self._log_file
        else:
            out = subprocess.DEVNULL
        self._proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL,
                                      stdout=out, stderr=out,
                                      preexec_fn=_die_with_parent)
        _live_servers.add(self)
        deadline = time.monotonic() + self.start_timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise ServerStartError(f"pymap exited with {self._proc.returncode}"
                                       + (f"\n{_tail(self.log)}" if self.log else ""))
            if _port_open(self._port):
                try:
                    with self.mailbox().client(timeout=2):
                        return self
                except Exception as e:  # noqa: BLE001
                    last_error = e
            time.sleep(0.02)
        self.kill()
        raise ServerStartError(f"pymap did not come up on {HOST}:{self._port} within "
                               f"{self.start_timeout}s (last error: {last_error!r})"
                               + (f"\n{_tail(self.log)}" if self.log else ""))

    def stop(self, timeout: float = 5.0) -> None:
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.terminate()
                try:
                    self._proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait()
            self._proc = None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def kill(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
        self.stop()

    def restart(self) -> None:
        """Restart on the same port. NOTE: the dict backend loses all mail."""
        self.stop()
        self.start()

    def mailbox(self, username: str | None = None) -> Mailbox:
        """The mailbox of *username* (default: the demo user)."""
        return Mailbox(HOST, self._port, username or self.username, self.password,
                       server=self)

    def new_mailbox(self, username: str | None = None) -> Mailbox:
        """A fresh, empty mailbox.

        multi_user: a new user name on the running process (instant).
        Otherwise: restarts the process and returns the demo user's mailbox.
        """
        if not self.multi_user:
            if username not in (None, self.username):
                raise ValueError("stock pymap has only one user; use multi_user=True")
            self.restart()
            return self.mailbox()
        if username is None:
            self._counter += 1
            username = f"user{self._counter}-{uuid.uuid4().hex[:8]}"
        return self.mailbox(username)


# --------------------------------------------------------------------------
# SMTP sink
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class Envelope:
    mail_from: str
    rcpt_tos: list[str]
    raw: bytes


class _SinkHandler:
    def __init__(self, sink: "SmtpSink") -> None:
        self.sink = sink

    async def handle_DATA(self, server, session, envelope) -> str:
        return self.sink._on_data(envelope)


class SmtpSink:
    """An aiosmtpd server on 127.0.0.1 capturing every message it accepts.

    ``messages`` are parsed with ``email.policy.default`` (line ends
    normalised to ``\n``); ``envelopes`` keep the exact wire bytes.  Any
    sender/recipient is accepted; no AUTH, no STARTTLS.
    """

    def __init__(self, *, port: int | None = None, smtputf8: bool = True) -> None:
        self._port = port or free_port()
        self._smtputf8 = smtputf8  # False: a server that offers no SMTPUTF8 (RFC 6531), as many still do
        self._controller = None
        self._cond = threading.Condition()
        self.envelopes: list[Envelope] = []
        self.messages: list[email.message.EmailMessage] = []
        self._refusals: list[tuple[int, str]] = []
        self.refused = 0  # DATA commands refused so far

    @property
    def host(self) -> str:
        return HOST

    @property
    def port(self) -> int:
        return self._port

    def __repr__(self) -> str:
        return f"<SmtpSink {self.host}:{self.port} messages={len(self.messages)}>"

    def __enter__(self) -> "SmtpSink":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def settings(self) -> dict:
        return {"host": HOST, "port": self._port, "starttls": False, "tls": False,
                "username": None, "password": None}

    def start(self) -> "SmtpSink":
        from aiosmtpd.controller import Controller

        if self._controller is None:
            self._controller = Controller(
                _SinkHandler(self), hostname=HOST, port=self._port,
                decode_data=False, enable_SMTPUTF8=self._smtputf8, ready_timeout=10)
            self._controller.start()
            _live_servers.add(self)
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def refuse_next(self, n: int = 1, code: int = 451,
                    text: str = "Try again later") -> None:
        """Make the next *n* DATA commands fail with ``code text``."""
        with self._cond:
            self._refusals.extend([(code, text)] * n)

    def clear(self) -> None:
        with self._cond:
            self.envelopes.clear()
            self.messages.clear()
            self._refusals.clear()
            self.refused = 0

    def wait_for(self, count: int, timeout: float = 10) -> list[email.message.EmailMessage]:
        """Block until at least *count* messages arrived; return all of them."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.messages) >= count, timeout):
                raise TimeoutError(f"SmtpSink got {len(self.messages)} message(s), "
                                   f"expected {count} within {timeout}s")
            return list(self.messages)

    def _on_data(self, envelope) -> str:
        with self._cond:
            if self._refusals:
                code, text = self._refusals.pop(0)
                self.refused += 1
                return f"{code} {text}"
            raw = envelope.original_content or envelope.content
            if isinstance(raw, str):
                raw = raw.encode("utf-8", "surrogateescape")
            self.envelopes.append(Envelope(envelope.mail_from,
                                           list(envelope.rcpt_tos), bytes(raw)))
            # Parse with \n line ends (so get_content() has no stray \r);
            # envelopes[i].raw keeps the exact bytes from the wire.
            self.messages.append(email.message_from_bytes(
                raw.replace(b"\r\n", b"\n"), policy=email.policy.default))
            self._cond.notify_all()
        return "250 Message accepted for delivery"


# --------------------------------------------------------------------------
# A misbehaving server: a loopback proxy in front of a real one
# --------------------------------------------------------------------------

_LITERAL = re.compile(rb"\{(\d+)\}\r\n$")


def _shut(*sockets: socket.socket) -> None:
    for s in sockets:
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class GarblingProxy:
    """Relays IMAP between a client and a real server on 127.0.0.1, and garbles
    the server's answer to any FETCH whose body contains ``poison``.

    ``mode``: ``"nil"`` answers ``BODY[] NIL``; ``"short"`` answers a body cut to
    its first 40 bytes (so not the size the server announced); ``"desync"``
    announces a literal longer than what follows, leaving the connection out of
    step (the client must reconnect). ``poison = None`` relays faithfully.
    """

    def __init__(self, target_port: int, poison: bytes | None, mode: str = "nil") -> None:
        self.target_port = target_port
        self.poison = poison
        self.mode = mode
        self.garbled = 0
        self._listener = socket.create_server((HOST, 0))
        self.port = self._listener.getsockname()[1]
        self._closing = False
        threading.Thread(target=self._accept, daemon=True).start()

    def settings_for(self, mailbox: "Mailbox") -> dict:
        return {**mailbox.imap_settings(), "port": self.port}

    def close(self) -> None:
        self._closing = True
        self._listener.close()

    def _accept(self) -> None:
        while not self._closing:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection((HOST, self.target_port))
            threading.Thread(target=self._pipe, args=(client, server), daemon=True).start()
            threading.Thread(target=self._answers, args=(server, client), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            _shut(source, sink)

    def _answers(self, server: socket.socket, client: socket.socket) -> None:
        """Server -> client, one whole response (literals included) at a time."""
        buffer = b""
        try:
            while True:
                response, buffer = self._one_response(server, buffer)
                if response is None:
                    return
                client.sendall(self._garble(response))
        except OSError:
            pass
        finally:
            _shut(server, client)

    @staticmethod
    def _one_response(sock: socket.socket, buffer: bytes) -> tuple[bytes | None, bytes]:
        response = b""
        while True:
            while b"\r\n" not in buffer:
                data = sock.recv(65536)
                if not data:
                    return None, b""
                buffer += data
            end = buffer.index(b"\r\n") + 2
            line, buffer = buffer[:end], buffer[end:]
            response += line
            literal = _LITERAL.search(line)
            if not literal:
                return response, buffer
            size = int(literal.group(1))
            while len(buffer) < size:
                data = sock.recv(65536)
                if not data:
                    return None, b""
                buffer += data
            response, buffer = response + buffer[:size], buffer[size:]

    def _garble(self, response: bytes) -> bytes:
        if self.poison is None or b" FETCH " not in response[:40] or self.poison not in response:
            return response
        head = re.match(rb"(\* \d+ FETCH \(.*?BODY\[\] )\{(\d+)\}\r\n", response, re.S)
        if head is None:
            return response
        self.garbled += 1
        body = response[head.end() : head.end() + int(head.group(2))]
        rest = response[head.end() + int(head.group(2)) :]
        if self.mode == "nil":
            return head.group(1) + b"NIL" + rest
        if self.mode == "short":
            return head.group(1) + b"{40}\r\n" + body[:40] + rest
        return head.group(1) + b"{%d}\r\n" % (len(body) + 500) + body + rest  # desync


# --------------------------------------------------------------------------
# PostgreSQL: a throwaway cluster on a loopback port
# --------------------------------------------------------------------------

def postgres_bin() -> Path | None:
    """The newest installed PostgreSQL server's bin folder (Debian layout), if any."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    return found[-1].parent if found else None


class Postgres:
    """initdb in a temp folder, started on 127.0.0.1. PostgreSQL refuses to run as
    root, so on a root machine it runs as the `postgres` system user, who owns the folder."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.bin = postgres_bin()
        if self.bin is None:
            raise ServerStartError("PostgreSQL is not installed (apt-get install -y postgresql)")
        self.root = Path(root)
        self.port = free_port()
        self.data = self.root / "data"
        self._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def _run(self, *args: str) -> None:
        subprocess.run([*self._as, *args], check=True, capture_output=True, timeout=120)

    def start(self) -> "Postgres":
        self.root.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres")
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-w", "-l", str(self.root / "log"),
                  "-o", f"-p {self.port} -k {self.root} -h 127.0.0.1", "start")
        return self

    def create_database(self, name: str) -> str:
        self._run(str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name)
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}"

    def restart(self) -> None:
        """A fast restart (every session cut), as an upgrade or a failover would do."""
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "-l", str(self.root / "log"),
                  "restart")  # -l again: else the server's output would hold our pipe open

    def stop(self) -> None:
        try:
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "stop")
        except (subprocess.SubprocessError, OSError):
            pass
