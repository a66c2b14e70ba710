"""Intake benchmark: `mailbridge poll --once` against a raw IMAP fetch of the same mailbox.

    python bench/intake.py [--messages 5000] [--big-attachment-mb 25] [--database postgresql]

Starts a private Dovecot on loopback (tests/servers.py), delivers N generated
mails (Hungarian text, some replies, a few with attachments), then prints:
raw fetch rate, intake rate (messages/s, MB/s; without start-up: the poll's
own time, `intake.polled`'s elapsed_s), their ratio, mail-parser alone, our
parse stage and the workers' whole job on one core, the CPU a mail costs in
the poller and in its parse workers, peak RSS of the
poller, the cost of an empty poll after 10 and after N processed messages,
the peak RSS for one message with a large attachment, where the poll's time
went (its `intake.polled` log event: how long the store waited for the parse
workers and for the fetch, storing, moving), the raw copies' stored size, and
the figures of bench/corpora.py (reply stripping and bounces on tests/corpus/).
With `--database postgresql` the same mails are also taken in by a throwaway
PostgreSQL cluster (tests/servers.py), its rate printed beside SQLite's.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from email.message import EmailMessage
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from conftest import write_config  # noqa: E402
from factory import simple_mail  # noqa: E402
from servers import Dovecot, Postgres  # noqa: E402

import corpora  # noqa: E402  (bench/corpora.py: how right the same intake reads real mail)


def corpus(n: int) -> list[bytes]:
    mails = []
    for i in range(n):
        if i % 10 == 9:  # a reply by subject tag to an earlier ticket
            mails.append(simple_mail(i, subject=f"Re: [CRX-{max(1, i // 3):06d}] még mindig nem jó"))
        elif i % 50 == 7:  # a small attachment now and then
            message = EmailMessage()
            message["From"] = f"ugyfel{i}@example.hu"
            message["To"] = "support@crossec.com"
            message["Subject"] = f"Képernyőkép a hibáról #{i}"
            message.set_content("Csatoltam a képernyőképet.")
            message.add_attachment(os.urandom(20_000), maintype="image", subtype="png", filename=f"hiba-{i}.png")
            mails.append(bytes(message))
        else:
            mails.append(simple_mail(i, size_hint=1500))
    return mails


def parser_alone(mails: list[bytes]) -> float:
    """Seconds mail-parser alone takes for these mails on one core: the floor under intake."""
    import mailparser

    start = time.perf_counter()
    for raw in mails:
        mailparser.parse_from_bytes(raw)
    return time.perf_counter() - start


def prepare_alone(mails: list[bytes]) -> float:
    """Seconds the workers' whole job (parse, screen, classify: `prepare_mail`) takes for
    these mails on one core, with the default rules."""
    from mailbridge.intake.prepare import PrepareOptions, prepare_mail
    from mailbridge.policy.classify import DEFAULT_RULES

    options = PrepareOptions(30 * 1024 * 1024, frozenset({"support@crossec.com"}), DEFAULT_RULES, "hu")
    start = time.perf_counter()
    for raw in mails:
        prepare_mail(raw, options)
    return time.perf_counter() - start


def parse_alone(mails: list[bytes]) -> float:
    """Seconds our parse stage (mail-parser plus what we add: charsets, reply stripping,
    attachment names, bounce reading) takes for these mails on one core."""
    from mailbridge.intake.parse import parse_mail

    start = time.perf_counter()
    for raw in mails:
        parse_mail(raw, 30 * 1024 * 1024)
    return time.perf_counter() - start


def raw_fetch(mailbox, batch: int = 200) -> tuple[float, int]:
    with mailbox.client(timeout=120) as client:
        client.select_folder("INBOX", readonly=True)
        start = time.perf_counter()
        uids = client.search(["ALL"])
        total = 0
        for i in range(0, len(uids), batch):
            for data in client.fetch(uids[i : i + batch], ["BODY.PEEK[]"]).values():
                total += len(data[b"BODY[]"])
        return time.perf_counter() - start, total


_WRAPPER = (
    "import resource, subprocess, sys\n"
    "result = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
    "sys.stdout.write(result.stdout); sys.stderr.write(result.stderr)\n"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    "sys.exit(result.returncode)\n"
)
_TICK = os.sysconf("SC_CLK_TCK")


def _watch_workers(stop: threading.Event, seen: dict[str, float]) -> None:
    """The CPU seconds of each parse worker (and the forkserver they fork from), read from
    /proc while they live: they are not the command's waited-for children."""
    while not stop.is_set():
        for pid in os.listdir("/proc"):
            try:
                if pid.isdigit() and b"multiprocessing.forkserver" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                    seen[pid] = max(seen.get(pid, 0.0), (int(fields[11]) + int(fields[12])) / _TICK)
            except OSError:
                pass
        stop.wait(0.02)


def timed(command: list[str]) -> tuple[float, int, str, dict, float]:
    """Wall time, peak RSS (KiB) of the command (the largest of it and its waited-for
    workers), its stdout, its `intake.polled` log event (empty if none), and the CPU
    seconds its parse workers and their forkserver took."""
    stop, seen = threading.Event(), {}
    watcher = threading.Thread(target=_watch_workers, args=(stop, seen), daemon=True)
    watcher.start()
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", _WRAPPER, *command], capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    stop.set()
    watcher.join()
    if result.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr}")
    *out, peak = result.stdout.strip().splitlines()
    polled = {}
    for line in result.stderr.splitlines():
        if '"intake.polled"' in line:
            polled = json.loads(line)
    return elapsed, int(peak), "\n".join(out), polled, sum(seen.values())


def mailbridge(config: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "mailbridge.cli", "--config", str(config), *args]


def run_case(root: Path, server: Dovecot, name: str, mails: list[bytes],
             new_database: Callable[[int], str] | None = None, rounds: int = 1) -> dict:
    """The mails taken in by `poll --once` `rounds` times, each into a fresh mailbox and database
    (`new_database(round)` gives its URL; the default: an SQLite file in the round's folder);
    the fastest round counts, and the raw fetch the fastest of its rounds."""
    import sqlalchemy as sa

    best: dict | None = None
    fastest_fetch_s = None
    for r in range(rounds):
        mailbox = server.new_mailbox()
        mailbox.deliver_many(mails)
        folder = root / (name if rounds == 1 else f"{name}-{r + 1}")
        folder.mkdir()
        database = new_database(r) if new_database else f"sqlite:///{folder}/mailbridge.db"
        config = write_config(folder / "mailbridge.toml", mailbox.imap_settings(), None,
                              imap={"batch_size": 200}, storage={"max_attachment_bytes": 30 * 1024 * 1024},
                              database={"url": database}, logging={"level": "info", "format": "json"})
        subprocess.run(mailbridge(config, "init"), check=True, capture_output=True)
        fetch_s, size = raw_fetch(mailbox)
        fastest_fetch_s = min(fetch_s, fastest_fetch_s or fetch_s)
        poll_s, rss, out, polled, workers_cpu_s = timed(mailbridge(config, "poll", "--once"))
        if best is None or polled["elapsed_s"] < best["work_s"]:
            best = {"n": len(mails), "bytes": size, "poll_s": poll_s, "rss_kib": rss, "out": out, "polled": polled,
                    "workers_cpu_s": workers_cpu_s, "work_s": polled["elapsed_s"], "config": config,
                    "database": database, "rounds": rounds}
    assert best is not None
    best["fetch_s"] = fastest_fetch_s
    config, database = best["config"], best["database"]
    best["idle_s"], *_ = timed(mailbridge(config, "poll", "--once"))
    engine = sa.create_engine(database)
    with engine.connect() as db:
        # What the raw copies take in the database, against the mails as they came.
        kept, received = db.execute(sa.text("select sum(length(data)), sum(size) from raw_message")).one()
    best["kept_bytes"], best["received_bytes"] = kept or 0, received or 0
    best["idle_100k_s"] = None
    if len(mails) >= 1000:
        # 100,000 more processed messages in the intake log: an empty poll must not notice.
        with engine.begin() as db:
            uidvalidity = db.execute(sa.text("select uidvalidity from intake_log limit 1")).scalar_one()
            db.execute(
                sa.text("insert into intake_log (mailbox, folder, uidvalidity, uid, state, target, attempts, reason,"
                        " created_at, updated_at) values ('default', 'INBOX', :v, :uid, 'moved', 'processed', 0, '',"
                        " '2026-01-01 00:00:00', '2026-01-01 00:00:00')"),
                [{"v": uidvalidity, "uid": 1_000_000 + i} for i in range(100_000)],
            )
        best["idle_100k_s"], *_ = timed(mailbridge(config, "poll", "--once"))
    engine.dispose()
    return best


def where_time_went(case: dict) -> str:
    """The poll's own account (`intake.polled`): what the store waited for, and its own work."""
    polled = case["polled"]
    if not polled:
        return "  (no intake.polled event)"
    line = (f"  waited for parse workers {polled['waited_prepare_s']:.2f} s, for the fetch {polled['waited_fetch_s']:.2f} s;"
            f" storing {polled['storing_s']:.2f} s, moving {polled['moving_s']:.2f} s")
    if "statements" in polled:
        line += f"; {polled['statements'] / case['n']:.2f} statements per mail"
    return line


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--big-attachment-mb", type=int, default=25)
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite",
                        help="postgresql: the main case also against a throwaway PostgreSQL cluster")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds of the main case on each database, the fastest counting (one run varies by 10-15 %%)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="mailbridge-bench-"))
    mails = corpus(args.messages)
    parse_s = parser_alone(mails)
    ours_s = parse_alone(mails)
    prepare_s = prepare_alone(mails)
    with Dovecot(root / "dovecot") as server:
        small = run_case(root, server, "small", corpus(10))
        big = run_case(root, server, "main", mails, rounds=args.rounds)
        pg = None
        if args.database == "postgresql":
            # Its own folder: the server runs as the postgres user, who cannot enter ours.
            postgres = Postgres(tempfile.mkdtemp(prefix="mailbridge-bench-pg-")).start()
            try:
                pg = run_case(root, server, "main-postgresql", mails, lambda r: postgres.create_database(f"bench{r}"),
                              rounds=args.rounds)
            finally:
                postgres.stop()
                shutil.rmtree(postgres.root, ignore_errors=True)
        message = EmailMessage()
        message["From"] = "nagy.peter@example.hu"
        message["To"] = "support@crossec.com"
        message["Subject"] = "Nagy melléklet"
        message.set_content("Csatolom a teljes adatbázis-mentést.")
        message.add_attachment(os.urandom(args.big_attachment_mb * 1024 * 1024), maintype="application",
                               subtype="octet-stream", filename="mentes.bak")
        huge = run_case(root, server, "huge", [bytes(message)])

    n, mb = big["n"], big["bytes"] / 1e6
    work_s = big["work_s"]  # the poll itself (`intake.polled`'s elapsed_s): no interpreter or import start-up
    print(f"messages: {n}, {mb:.1f} MB in the mailbox; the fastest of {args.rounds} round(s) counts")
    print(f"raw imapclient fetch:  {n / big['fetch_s']:8.0f} msg/s  {mb / big['fetch_s']:6.1f} MB/s  ({big['fetch_s']:.2f} s)")
    print(f"mailbridge poll --once: {n / big['poll_s']:8.0f} msg/s  {mb / big['poll_s']:6.1f} MB/s  ({big['poll_s']:.2f} s wall,"
          f" {big['poll_s'] - work_s:.2f} s of it process start-up and exit)")
    print(f"  without start-up:     {n / work_s:8.0f} msg/s  ({n / work_s / (n / parse_s):.2f}x mail-parser alone,"
          f" {big['fetch_s'] / work_s:.2f}x the raw fetch)")
    print(where_time_went(big))
    if pg is not None:
        pg_work_s = pg["work_s"]
        print(f"on PostgreSQL, without start-up: {n / pg_work_s:8.0f} msg/s  ({work_s / pg_work_s:.2f}x SQLite's"
              f" {n / work_s:.0f} msg/s in the same run)")
        print(where_time_went(pg))
    print(f"mail-parser alone, one core: {n / parse_s:8.0f} msg/s  ({n / parse_s / (n / big['fetch_s']):.2f}x the raw fetch)")
    print(f"our parse stage, one core:   {n / ours_s:8.0f} msg/s  ({parse_s / ours_s:.2f}x mail-parser alone)")
    print(f"the workers' job alone (parse, screen, classify), one core: {n / prepare_s:8.0f} msg/s"
          f"  ({parse_s / prepare_s:.2f}x mail-parser alone)")
    polled = big["polled"]
    if "cpu_s" in polled:
        # What bounds intake on this machine: all the CPU a mail costs, over its cores.
        poller_ms, workers_ms = polled["cpu_s"] * 1000 / n, big["workers_cpu_s"] * 1000 / n
        cores = os.cpu_count() or 1
        print(f"CPU a mail: poller {poller_ms:.2f} ms, parse workers {workers_ms:.2f} ms (with their start-up):"
              f" at most {cores * n / (polled['cpu_s'] + big['workers_cpu_s']):.0f} msg/s on {cores} cores")
    print(f"ratio to raw fetch:     {big['fetch_s'] / big['poll_s']:.2f}x wall, {big['fetch_s'] / work_s:.2f}x without start-up")
    print(f"peak RSS (poller and workers): {big['rss_kib'] / 1024:.0f} MB")
    print(f"raw copies kept: {big['kept_bytes'] / 1e6:.2f} MB for {big['received_bytes'] / 1e6:.2f} MB received"
          f" ({big['kept_bytes'] / max(1, big['received_bytes']):.0%}); one with a {args.big_attachment_mb} MB attachment:"
          f" {huge['kept_bytes'] / 1e6:.1f} MB for {huge['received_bytes'] / 1e6:.1f} MB")
    print(f"empty poll after 10 processed: {small['idle_s']:.2f} s; after {n}: {big['idle_s']:.2f} s;"
          f" after {n + 100_000}: {big['idle_100k_s']:.2f} s (mostly process start-up)")
    print(f"one message with a {args.big_attachment_mb} MB attachment: {huge['poll_s']:.2f} s, peak RSS {huge['rss_kib'] / 1024:.0f} MB")
    print(f"poller said: {big['out']}")
    print("\n".join(corpora.report()))


if __name__ == "__main__":
    main()
