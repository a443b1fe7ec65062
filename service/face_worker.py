"""What runs inside a face worker process (service.face_pool): kept apart so that a worker
imports only the face parser, not torch or the web stack. Photos come and masks go through
shared memory (service.shared_parse)."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from multiprocessing.connection import wait

from model.allocator import tune_malloc
from model.faces import FaceParser
from service import shared_parse
from service.shared_parse import PackedParse, SharedPhoto

_parser: FaceParser | None = None
"""This process's parser, made by `start`."""


def start(tune: bool = False) -> None:
    """Process initializer: ignore the group's signals, tune malloc if asked
    (`model.allocator`) and load the parser."""
    global _parser
    if tune:
        tune_malloc()
    # The service, not a signal sent to its whole process group, decides when a worker stops:
    # it keeps parsing while the service drains.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    parent = multiprocessing.parent_process()
    if parent is not None:
        # The pool's pipes do not tell a worker that the service died (each worker holds
        # both ends of its call queue): without this, a killed service would leave it behind.
        threading.Thread(
            target=_exit_with, args=(parent.sentinel,), name="abpn-parent-watch", daemon=True
        ).start()
    _parser = FaceParser()


def _exit_with(parent_sentinel: int) -> None:
    wait([parent_sentinel])
    os._exit(0)


def ready() -> bool:
    """Answers once the worker has started (its parser loaded by `start`)."""
    return _parser is not None


def parse_shared(photo: SharedPhoto) -> PackedParse:
    """Faces and skin of one (H, W, 3) uint8 RGB photo in shared memory; the masks go back in
    a block of their own (`shared_parse.pack`), which the service unlinks."""
    if _parser is None:
        raise RuntimeError("the face worker did not start")
    block, image = shared_parse.read_photo(photo)
    try:
        parse = _parser.parse(image)
    finally:
        del image  # the mapping cannot close while an array still uses it
        block.close()
    return shared_parse.pack(parse)
