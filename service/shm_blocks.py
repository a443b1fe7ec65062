"""Shared memory blocks named after the service process that owns them.

Every block the service and its face workers create is called `abpn_<service pid>_<random>`,
so that what one service left behind can be told apart from any other program's blocks in
/dev/shm (Python's own names, `psm_<random>`, say nothing of their owner): the leak checks in
the tests look at one service's blocks only, and an operator can see whose a block is.
"""

from __future__ import annotations

import os
import secrets
from multiprocessing.shared_memory import SharedMemory

PREFIX = "abpn_"


def prefix(owner: int) -> str:
    """The start of every block name of the service whose process id is `owner`."""
    return f"{PREFIX}{owner}_"


def create(size: int, owner: int | None = None) -> SharedMemory:
    """A new block of `size` bytes (at least one) owned by the service process `owner`
    (default: this process)."""
    name = prefix(os.getpid() if owner is None else owner) + secrets.token_hex(8)
    return SharedMemory(name=name, create=True, size=max(1, size))
