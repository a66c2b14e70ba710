"""`mailbridge [--config PATH] COMMAND`: exit 0 ok, 2 usage or config error, 1 anything else.

click gives exit 2 for usage errors and choice lists for free; ours add
the same for config errors and unknown IDs, always as one line on stderr.

The commands live by audience: `tickets` (agents), `operations` (ops), `reports`
(team leads), `gdpr` (data protection); this module is the group that holds them and `main()`.

Agents and ops pay this module's imports on every command, `--help` too: each command
imports the config model, database, mail and scheduler libraries it uses when it runs
(tests/test_startup.py holds them to it; bench/startup.py measures it).
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Iterable

import click

from mailbridge import __version__
from mailbridge.cli import gdpr, operations, reports, tickets
from mailbridge.cli.app import App
from mailbridge.errors import ConfigError, MailbridgeError, UsageError, error_fields


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config", metavar="PATH", help="TOML config (default: $MAILBRIDGE_CONFIG or /etc/mailbridge/mailbridge.toml)")
@click.version_option(version=__version__, prog_name="mailbridge")  # the distribution (crossec-mailbridge) takes its version from here too
@click.option("-v", "--verbose", count=True,
              help="Log info (-vv: debug) on a terminal too; there a command logs only warnings and errors "
                   "without it (the daemon logs at logging.level).")
@click.pass_context
def cli(ctx: click.Context, config: str | None, verbose: int) -> None:
    """mailbridge turns a support mailbox into a ticket system."""
    from mailbridge.logs import command_level, configure_logging

    os.umask(0o077)  # everything we create holds customers' data: owner only
    configure_logging(command_level("info", verbose, sys.stderr))
    ctx.obj = App(config, verbose)


# Each audience's commands under the one group (`--help` lists them by name).
for audience in (operations, tickets, reports, gdpr):
    for command in audience.COMMANDS:
        cli.add_command(command)


def _check_arguments(args: list[str]) -> None:
    """Bytes that are not UTF-8 reach Python as lone surrogates, which no database or file takes."""
    for arg in args:
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:
            shown = arg.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
            raise UsageError(f"an argument is not valid UTF-8 text: {shown!r}") from None


def main(argv: Iterable[str] | None = None) -> None:
    args = list(argv) if argv is not None else sys.argv[1:]
    try:
        _check_arguments(args)
        cli.main(args=args, prog_name="mailbridge", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("mailbridge: aborted", err=True)
        sys.exit(1)
    except click.UsageError as exc:  # one line, like ours; the usage is one `--help` away
        where = exc.ctx.command_path if exc.ctx else "mailbridge"
        click.echo(f"{where}: {exc.format_message()} (see {where} --help)", err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        click.echo(f"mailbridge: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except (ConfigError, UsageError) as exc:
        click.echo(f"mailbridge: {exc}", err=True)
        sys.exit(2)
    except MailbridgeError as exc:
        click.echo(f"mailbridge: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:
        # `mailbridge tickets list | head`: the reader has what it wanted; no complaint, and
        # no second one when the interpreter flushes stdout on exit (Python's documented way).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
    except Exception as exc:
        from mailbridge.logs import get_logger

        # Last resort, for a fault no adapter turned into ours: one line for the user; the frames
        # go to the log at debug level for a bug report. Neither carries the message: a
        # library's message may quote an address or a line of someone's mail.
        get_logger("mailbridge.cli").debug("cli.failed", error=type(exc).__name__, frames="".join(traceback.format_tb(exc.__traceback__)))
        where = error_fields(exc).get("raised_at", "")
        click.echo(f"mailbridge: unexpected {type(exc).__name__} at {where} "
                   "(-vv, or logging.level = \"debug\" off a terminal, logs where it happened)", err=True)
        sys.exit(1)
