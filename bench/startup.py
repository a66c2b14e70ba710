"""Start-up benchmark: what a command costs before it does anything.

    python bench/startup.py [--runs 15] [--tickets 20]

Starts a private Dovecot on loopback (tests/servers.py), makes a real SQLite
installation (`mailbridge init`, a few mails taken in by `poll --once`), then runs
each command N times as its own process from this interpreter's venv and prints
the best wall time of each beside a bare `python -c pass`, with its ratio to it
and the target (issue 16: `--help` and `--version` at most 4x, `tickets list
--json` and `tickets show ID --json` at most 16x). The best run, not the mean:
two cores are shared, and the best is what the command itself costs.

The commands run with their bytecode cached (in the bench's own folder), as an
installed package has it: pip compiles it at install. Where PYTHONDONTWRITEBYTECODE
is set (this project's development machines set it), an editable install would
otherwise compile every module of ours from source on every command.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from conftest import write_config  # noqa: E402
from factory import simple_mail  # noqa: E402
from servers import Dovecot  # noqa: E402


def entry_point() -> list[str]:
    """The `mailbridge` console script of this venv (what agents type), else `-m`."""
    script = Path(sys.executable).parent / "mailbridge"
    return [str(script)] if script.exists() else [sys.executable, "-m", "mailbridge.cli"]


def installed_environment(root: Path) -> dict[str, str]:
    """This environment, with bytecode cached under `root` (see the module's docstring)."""
    environment = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    environment["PYTHONPYCACHEPREFIX"] = str(root / "bytecode")
    return environment


def best_of(commands: dict[str, list[str]], runs: int, environment: dict[str, str]) -> dict[str, float]:
    """Each command's best wall time after one run that caches its bytecode; the commands
    take turns, so a busy moment on the shared cores falls on all of them alike."""
    best = dict.fromkeys(commands, float("inf"))
    for round_ in range(runs + 1):
        for label, command in commands.items():
            start = time.perf_counter()
            result = subprocess.run(command, capture_output=True, stdin=subprocess.DEVNULL, env=environment)
            elapsed = time.perf_counter() - start
            if result.returncode:
                raise SystemExit(f"{' '.join(command)} exited {result.returncode}:\n{result.stderr.decode()}")
            if round_:
                best[label] = min(best[label], elapsed)
    return best


def installation(root: Path, server: Dovecot, tickets: int) -> tuple[Path, str]:
    """A config and the ID of a ticket in its initialised SQLite database."""
    mailbox = server.new_mailbox()
    mailbox.deliver_many([simple_mail(i, size_hint=1500) for i in range(tickets)])
    config = write_config(root / "mailbridge.toml", mailbox.imap_settings(), None, logging={"level": "warning"})
    for args in (["init"], ["poll", "--once"]):
        subprocess.run([*entry_point(), "--config", str(config), *args], check=True, capture_output=True)
    listed = subprocess.run([*entry_point(), "--config", str(config), "tickets", "list", "--json"],
                            check=True, capture_output=True, text=True)
    ids = [t["id"] for t in json.loads(listed.stdout)]
    if len(ids) != tickets:
        raise SystemExit(f"expected {tickets} tickets after the poll, found {len(ids)}")
    return config, ids[len(ids) // 2]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15, help="runs of each command; the best counts")
    parser.add_argument("--tickets", type=int, default=20)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="mailbridge-startup-"))
    try:
        with Dovecot(root / "dovecot") as server:
            config, ticket_id = installation(root, server, args.tickets)
            mailbridge = [*entry_point(), "--config", str(config)]
            cases = [  # label, command, target (times the bare interpreter)
                ("python -c pass", [sys.executable, "-c", "pass"], None),
                ("mailbridge --help", [*mailbridge, "--help"], 4),
                ("mailbridge --version", [*mailbridge, "--version"], 4),
                ("tickets list --json", [*mailbridge, "tickets", "list", "--json"], 16),
                (f"tickets show {ticket_id} --json", [*mailbridge, "tickets", "show", ticket_id, "--json"], 16),
            ]
            times = best_of({label: command for label, command, _ in cases}, args.runs, installed_environment(root))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    bare = times["python -c pass"]
    print(f"start-up, best of {args.runs} runs each, bytecode cached ({sys.executable}, SQLite, {args.tickets} tickets)")
    for label, _, target in cases:
        ratio = times[label] / bare
        verdict = "" if target is None else f"  target <= {target}x: {'met' if ratio <= target else 'MISSED'}"
        print(f"  {label:<30} {times[label] * 1000:7.0f} ms  {ratio:5.1f}x{verdict}")


if __name__ == "__main__":
    main()
