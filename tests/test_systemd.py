"""The systemd unit (verify, security score, sysusers/tmpfiles) and mailbridge.service.

The unit checks need systemd's tools, not a running systemd: they work in a
container whose PID 1 is something else, and are skipped (with the reason)
where `systemd-analyze` is missing.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import uuid
from pathlib import Path

import pytest

from mailbridge import service

ROOT = Path(__file__).resolve().parent.parent
SYSTEMD = ROOT / "systemd"
UNIT = SYSTEMD / "mailbridge.service"
MAX_EXPOSURE = 1.5
EXECUTABLE = "/opt/mailbridge/bin/mailbridge"

# Where distributions keep the shipped units (sysinit.target and friends).
_UNIT_DIRS = ("/usr/lib/systemd/system", "/lib/systemd/system")


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} not installed (systemd's tools are needed for this check; "
                    f"apt-get install -y systemd)")
    return path


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=60, env={**os.environ, "SYSTEMD_PAGER": "",
                                                                                 "SYSTEMD_COLORS": "0"})


# ===========================================================================
# The unit file
# ===========================================================================


@pytest.fixture(scope="module")
def unit_root(tmp_path_factory) -> Path:
    """A file-system root for `systemd-analyze verify --root`: the unit as shipped,
    the host's own units (verify resolves sysinit.target etc. inside the root)
    and an executable stub where ExecStart= points (verify checks it exists)."""
    _tool("systemd-analyze")
    host_units = next((Path(d) for d in _UNIT_DIRS if (Path(d) / "sysinit.target").exists()), None)
    if host_units is None:
        pytest.skip(f"no systemd unit directory with sysinit.target in {_UNIT_DIRS}")
    root = tmp_path_factory.mktemp("root")
    shutil.copytree(host_units, root / "usr/lib/systemd/system", symlinks=True)
    (root / "etc/systemd/system").mkdir(parents=True)
    stub = root / EXECUTABLE.lstrip("/")
    stub.parent.mkdir(parents=True)
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    return root


def _verify(root: Path, text: str) -> tuple[int, list[str]]:
    """Installs `text` as mailbridge.service in `root`; returns verify's exit code
    and its complaints about our unit (verify exits 0 on mere warnings such as
    an unknown key, so those count too)."""
    (root / "etc/systemd/system/mailbridge.service").write_text(text)
    done = _run(_tool("systemd-analyze"), "verify", "--man=no", f"--root={root}", "mailbridge.service")
    lines = [line for line in (done.stdout + done.stderr).splitlines() if "mailbridge" in line]
    return done.returncode, lines


def test_unit_verifies(unit_root):
    code, complaints = _verify(unit_root, UNIT.read_text())
    assert code == 0 and complaints == [], "\n".join(complaints)


def test_verify_catches_a_typo(unit_root):
    """The check above is not vacuous: a misspelt key is reported."""
    text = UNIT.read_text().replace("ProtectClock=yes", "ProtectClok=yes")
    assert "ProtectClok=yes" in text
    _, complaints = _verify(unit_root, text)
    assert any("ProtectClok" in line for line in complaints), complaints


def test_security_exposure_at_most_1_5():
    done = _run(_tool("systemd-analyze"), "security", "--offline=true", "--no-pager", str(UNIT))
    match = re.search(r"Overall exposure level for mailbridge\.service: (\d+(?:\.\d+)?)", done.stdout)
    assert match, f"no overall exposure in the output:\n{done.stdout}\n{done.stderr}"
    score = float(match.group(1))
    assert score <= MAX_EXPOSURE, f"exposure {score} > {MAX_EXPOSURE}:\n{done.stdout}"


def _directives(text: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")) and "=" in line:
            key, value = line.split("=", 1)
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def test_unit_has_the_required_settings():
    d = _directives(UNIT.read_text())
    expected = {
        "Type": "notify", "NotifyAccess": "main", "WatchdogSec": "60", "Restart": "on-failure",
        "RestartSec": "5", "TimeoutStopSec": "20", "User": "mailbridge", "StateDirectory": "mailbridge",
        "StateDirectoryMode": "0700", "ConfigurationDirectory": "mailbridge", "UMask": "0077",
        "ProtectSystem": "strict", "NoNewPrivileges": "yes", "PrivateTmp": "yes", "PrivateUsers": "yes",
        "CapabilityBoundingSet": "", "MemoryDenyWriteExecute": "yes",
    }
    for key, value in expected.items():
        assert d.get(key) == [value], f"{key}={d.get(key)}, expected {value!r}"
    assert d["ExecStart"] == [f"{EXECUTABLE} --config /etc/mailbridge/mailbridge.toml run"]
    assert d["ExecStartPre"] == [f"{EXECUTABLE} --config /etc/mailbridge/mailbridge.toml init"]
    assert sorted(d["LoadCredential"]) == ["imap-password:/etc/mailbridge/imap-password",
                                           "smtp-password:/etc/mailbridge/smtp-password"]
    assert "PYTHONUNBUFFERED=1" in d["Environment"]
    assert set(d["RestrictAddressFamilies"][0].split()) == {"AF_UNIX", "AF_INET", "AF_INET6"}
    assert "@system-service" in d["SystemCallFilter"]
    # CPython forks (forkserver pool) and sets no rlimits it needs: @resources stays allowed.
    assert not any("@resources" in v for v in d["SystemCallFilter"])


def test_unit_matches_cli_and_example_config():
    from mailbridge.cli import cli

    assert {"init", "run"} <= set(cli.commands)
    example = (ROOT / "config/mailbridge.example.toml").read_text()
    assert 'url = "sqlite:////var/lib/mailbridge/mailbridge.db"' in example
    assert 'path = "/var/lib/mailbridge/storage"' in example
    assert 'password_file = "imap-password"' in example and 'password_file = "smtp-password"' in example


def test_sysusers_and_tmpfiles(tmp_path):
    sysusers, tmpfiles = _tool("systemd-sysusers"), _tool("systemd-tmpfiles")
    # With --root, the files are looked up inside the root, as a package installs them.
    for folder, name in (("sysusers.d", "mailbridge.sysusers"), ("tmpfiles.d", "mailbridge.tmpfiles")):
        (tmp_path / "usr/lib" / folder).mkdir(parents=True)
        shutil.copy(SYSTEMD / name, tmp_path / "usr/lib" / folder / "mailbridge.conf")
    conf = tmp_path / "etc/mailbridge"
    conf.mkdir(parents=True)
    for name in ("mailbridge.toml", "imap-password", "smtp-password"):
        (conf / name).write_text("x\n")
        (conf / name).chmod(0o644)

    done = _run(sysusers, f"--root={tmp_path}", "mailbridge.conf")
    assert done.returncode == 0, done.stderr
    passwd = (tmp_path / "etc/passwd").read_text()
    user = next(line.split(":") for line in passwd.splitlines() if line.startswith("mailbridge:"))
    assert user[5] == "/var/lib/mailbridge" and user[6].endswith("nologin")
    gid = int(user[3])

    if os.geteuid() != 0:
        pytest.skip("sysusers checked; tmpfiles chowns to root:mailbridge, which needs root")
    done = _run(tmpfiles, f"--root={tmp_path}", "--create", "mailbridge.conf")
    assert done.returncode == 0, done.stderr
    toml = (conf / "mailbridge.toml").stat()
    assert (toml.st_mode & 0o777, toml.st_uid, toml.st_gid) == (0o640, 0, gid)
    for name in ("imap-password", "smtp-password"):
        secret = (conf / name).stat()
        assert (secret.st_mode & 0o777, secret.st_uid, secret.st_gid) == (0o600, 0, 0)


# ===========================================================================
# mailbridge.service: sd_notify against a real datagram socket
# ===========================================================================


@pytest.fixture
def notify_socket(tmp_path, monkeypatch):
    """A bound AF_UNIX datagram socket standing in for systemd's; $NOTIFY_SOCKET names it."""
    path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(2)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    yield sock
    sock.close()


def _received(sock: socket.socket) -> str:
    return sock.recv(4096).decode("utf-8")


def test_ready_watchdog_stopping_status(notify_socket):
    assert service.ready() is True
    assert _received(notify_socket) == "READY=1"
    assert service.watchdog() is True
    assert _received(notify_socket) == "WATCHDOG=1"
    assert service.status("polled: 3 new\nmails, ő") is True
    assert _received(notify_socket) == "STATUS=polled: 3 new mails, ő"
    assert service.stopping() is True
    assert _received(notify_socket) == "STOPPING=1"
    assert service.notify("READY=1", "STATUS=up") is True
    assert _received(notify_socket) == "READY=1\nSTATUS=up"


def test_abstract_socket(monkeypatch):
    name = f"mailbridge-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(2)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert service.watchdog() is True
        assert _received(sock) == "WATCHDOG=1"


@pytest.mark.parametrize("value", [None, "", "vsock:2:1234", "relative/path"])
def test_no_op_without_a_usable_socket(monkeypatch, value):
    if value is None:
        monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    else:
        monkeypatch.setenv("NOTIFY_SOCKET", value)
    monkeypatch.setenv("WATCHDOG_USEC", "60000000")
    assert service.ready() is False
    assert service.watchdog() is False
    assert service.stopping() is False
    assert service.status("x") is False
    assert service.watchdog_interval() is None


def test_never_raises_when_the_socket_is_gone(tmp_path, monkeypatch):
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody-listens"))
    assert service.ready() is False
    monkeypatch.setenv("NOTIFY_SOCKET", "/" + "x" * 200)  # longer than sun_path
    assert service.watchdog() is False
    monkeypatch.setenv("NOTIFY_SOCKET", f"@mailbridge-unbound-{uuid.uuid4().hex}")
    assert service.stopping() is False


def test_watchdog_interval(notify_socket, monkeypatch):
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    assert service.watchdog_interval() is None
    monkeypatch.setenv("WATCHDOG_USEC", "60000000")
    assert service.watchdog_interval() == 60.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert service.watchdog_interval() == 60.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))  # armed for another process
    assert service.watchdog_interval() is None
    monkeypatch.setenv("WATCHDOG_PID", "nonsense")
    assert service.watchdog_interval() is None
    monkeypatch.delenv("WATCHDOG_PID")
    for bad in ("0", "-5", "soon", ""):
        monkeypatch.setenv("WATCHDOG_USEC", bad)
        assert service.watchdog_interval() is None


# ===========================================================================
# Heartbeat: pings only while the intake loop beats
# ===========================================================================


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_heartbeat_pings_while_beating_and_stops_when_the_loop_hangs():
    clock, sent = FakeClock(), []
    heart = service.Heartbeat(60, misses=3, clock=clock, send=lambda: sent.append(clock.now) or True)
    assert heart.stale_after == 180
    assert heart.ping() is True  # creation counts as a beat: the first poll gets its allowance
    for _ in range(10):  # a healthy loop: a poll completes every minute, pings every 30 s
        clock.now += 30
        assert heart.ping() is True
        clock.now += 30
        heart.beat()
        assert heart.ping() is True
    assert len(sent) == 21
    # The intake hangs on an IMAP read: no more beats.
    clock.now += 179
    assert heart.healthy() and heart.ping() is True
    clock.now += 1
    assert heart.age() == 180 and not heart.healthy()
    assert heart.ping() is False
    clock.now += 30
    assert heart.ping() is False
    assert len(sent) == 22  # withheld since: systemd's WatchdogSec runs out
    heart.beat()  # the loop recovers (if systemd had not restarted us yet)
    assert heart.ping() is True and len(sent) == 23


def test_heartbeat_uses_the_real_watchdog_by_default(notify_socket):
    heart = service.Heartbeat(1)
    assert heart.ping() is True
    assert _received(notify_socket) == "WATCHDOG=1"


def test_heartbeat_survives_a_failing_sender():
    def boom() -> bool:
        raise RuntimeError("x")

    assert service.Heartbeat(5, send=boom).ping() is True


@pytest.mark.parametrize("interval, misses", [(0, 3), (-1, 3), (60, 0)])
def test_heartbeat_rejects_nonsense(interval, misses):
    with pytest.raises(ValueError):
        service.Heartbeat(interval, misses)
