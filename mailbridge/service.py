"""systemd integration: a tiny sd_notify client and the watchdog heartbeat.

The notify protocol is one datagram to the AF_UNIX socket named in
`$NOTIFY_SOCKET` (a path, or an abstract-namespace name when it starts with
`@`), holding newline-separated `KEY=VALUE` lines: `READY=1`, `STOPPING=1`,
`WATCHDOG=1`, `STATUS=…`. That is a single `sendto()`, so no library:
python-systemd (and cysystemd) compile against libsystemd's headers, which a
plain venv in /opt/mailbridge would need a compiler and libsystemd-dev for,
for what is ten lines of socket code here.

Every call is a no-op outside systemd (no `$NOTIFY_SOCKET`) and never
raises: each returns whether the datagram went out, and the caller decides
what to log (this module logs nothing).

The watchdog (`WatchdogSec=` in the unit) must be pinged more often than
`watchdog_interval()` seconds, by convention every half of it. Pinging from
a timer alone would only prove that the timer runs; `Heartbeat` pings only
while the intake loop keeps completing polls, so an IMAP read that hangs
(the thread stuck in `recv()`, the scheduler skipping the next polls) stops
the pings and systemd restarts the service. Used from `mailbridge.jobs`:

    heartbeat = service.Heartbeat(settings.imap.poll_interval + settings.imap.timeout)
    # the intake job: beat in a `finally:` after each round (a poll that
    # failed fast against a dead server still proves the loop runs; only a
    # hang should restart us)
    heartbeat.beat()
    # its own scheduler job, every watchdog_interval() / 2 seconds when that
    # is not None (misfire_grace_time=None: a late ping still counts)
    heartbeat.ping()       # False: withheld, worth a `watchdog.withheld` log line
    service.ready()        # just before scheduler.start()
    service.stopping()     # first thing in the SIGTERM handler
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable

__all__ = ["Heartbeat", "notify", "ready", "status", "stopping", "watchdog", "watchdog_interval"]

_SEND_TIMEOUT = 2.0  # seconds; a backed-up PID 1 must not hang the daemon


def _address() -> str | None:
    """`$NOTIFY_SOCKET` as a socket address; None when unset or not AF_UNIX."""
    name = os.environ.get("NOTIFY_SOCKET", "")
    if name.startswith("@"):
        return "\0" + name[1:]  # abstract namespace
    if name.startswith("/"):
        return name
    return None  # unset, or a kind we do not speak (e.g. vsock:…)


def notify(*assignments: str) -> bool:
    """Sends `KEY=VALUE` assignments as one datagram; True if it went out."""
    address = _address()
    if address is None or not assignments:
        return False
    try:
        data = "\n".join(assignments).encode("utf-8")
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.settimeout(_SEND_TIMEOUT)
            sock.sendto(data, address)
        return True
    except (OSError, ValueError, UnicodeError):
        return False


def ready() -> bool:
    """`READY=1`: start-up is over (Type=notify units count as started now)."""
    return notify("READY=1")


def stopping() -> bool:
    """`STOPPING=1`: shutting down; systemd stops expecting watchdog pings."""
    return notify("STOPPING=1")


def watchdog() -> bool:
    """`WATCHDOG=1`: one keep-alive ping."""
    return notify("WATCHDOG=1")


def status(text: str) -> bool:
    """`STATUS=…`: one line shown by `systemctl status mailbridge`."""
    line = " ".join(str(text).split())  # a newline would start a new assignment
    return notify(f"STATUS={line}")


def watchdog_interval() -> float | None:
    """The watchdog timeout in seconds (`$WATCHDOG_USEC`), or None when not armed for us.

    None without `$NOTIFY_SOCKET` (nothing to ping), without a positive
    `$WATCHDOG_USEC`, or when `$WATCHDOG_PID` names another process (a child
    that inherited the environment). Ping every half of the returned value.
    """
    if _address() is None:
        return None
    try:
        usec = int(os.environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    if usec <= 0:
        return None
    pid = os.environ.get("WATCHDOG_PID")
    if pid:
        try:
            if int(pid) != os.getpid():
                return None
        except ValueError:
            return None
    return usec / 1_000_000


class Heartbeat:
    """Pings the watchdog only while the intake loop keeps beating.

    `beat()` records that a poll completed; `ping()`, run by its own
    scheduler job, sends `WATCHDOG=1` if the last beat is younger than
    `misses × interval` seconds and otherwise withholds it, so systemd's
    `WatchdogSec=` runs out and the service is restarted. Creation counts as
    a beat: the first poll gets the full allowance. Both methods are cheap,
    never raise, and are safe to call from any scheduler thread (they assign
    one float).

    `interval` is the longest a healthy loop goes between beats: the poll
    interval plus the IMAP timeout is a fair value (a poll that overruns the
    interval makes the scheduler skip the next one).
    """

    def __init__(self, interval: float, misses: int = 3, *, clock: Callable[[], float] = time.monotonic,
                 send: Callable[[], bool] = watchdog):
        if interval <= 0 or misses < 1:
            raise ValueError("interval must be > 0 and misses >= 1")
        self.interval = float(interval)
        self.misses = misses
        self._clock = clock
        self._send = send
        self._last = clock()

    @property
    def stale_after(self) -> float:
        """Seconds without a beat after which pings stop."""
        return self.interval * self.misses

    def beat(self) -> None:
        """The intake loop completed a poll."""
        self._last = self._clock()

    def age(self) -> float:
        """Seconds since the last beat."""
        return self._clock() - self._last

    def healthy(self) -> bool:
        return self.age() < self.stale_after

    def ping(self) -> bool:
        """Pings the watchdog if the loop is healthy; False when the ping is withheld.

        A withheld ping is worth one log line (`watchdog.withheld`, with
        `age()`): systemd will restart the service within `WatchdogSec=`.
        """
        if not self.healthy():
            return False
        try:
            self._send()
        except Exception:  # noqa: BLE001 - an injected sender must not kill the scheduler job
            pass
        return True
