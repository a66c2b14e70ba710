"""The process parse workers are forked from (see pipeline.py): it imports the parse
stage once, and each worker forked from it starts at once. Light on purpose: a command
starts it before its own imports, so the two run side by side."""

from __future__ import annotations

import multiprocessing
from multiprocessing.context import BaseContext

PRELOAD = ["mailbridge.intake.prepare"]


def context() -> BaseContext:
    # forkserver, not fork: the fetch thread may hold locks at fork time.
    forkserver = multiprocessing.get_context("forkserver")
    forkserver.set_forkserver_preload(PRELOAD)
    return forkserver


def start() -> None:
    """Starts the forkserver unless it runs already: its imports (mail-parser, the phrase
    tables: 0.2-0.4 s) then run beside what this process does before it hands over the
    first mail, not after."""
    from multiprocessing import forkserver

    context()
    forkserver.ensure_running()
