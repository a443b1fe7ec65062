"""What every process the service spawns (face workers, model replicas) does first: leave the
process group's signals to the service, and end with it."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from multiprocessing.connection import wait


def detach_from_parent_signals() -> None:
    """Ignore SIGINT and SIGTERM, and exit as soon as the parent process ends.

    The service, not a signal sent to its whole process group (Ctrl-C, a container runtime),
    decides when a child stops: it keeps working while the service drains. A child blocked in
    native code (a parse, a model call, a compile) would not notice its parent's death through
    a pipe until it next read it; the thread started here does at once."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(
            target=_exit_with, args=(parent.sentinel,), name="abpn-parent-watch", daemon=True
        ).start()


def _exit_with(parent_sentinel: int) -> None:
    wait([parent_sentinel])
    os._exit(0)
