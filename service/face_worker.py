"""What runs inside a face worker process (service.faces): kept apart so that a worker
imports only the face parser, not torch or the web stack."""

from __future__ import annotations

import signal

import numpy as np

from model.faces import FaceParse, FaceParser

_parser: FaceParser | None = None
"""This process's parser, made by `start`."""


def start() -> None:
    """Process initializer: ignore the group's signals and load the parser."""
    global _parser
    # The service, not a signal sent to its whole process group, decides when a worker stops:
    # it keeps parsing while the service drains.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _parser = FaceParser()


def parse(image: np.ndarray) -> FaceParse:
    """Faces and skin of one (H, W, 3) uint8 RGB photo."""
    if _parser is None:
        raise RuntimeError("the face worker did not start")
    return _parser.parse(image)
