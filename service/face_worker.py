"""What runs inside a face worker process (service.face_pool): kept apart so that a worker
imports only the face parser, not torch or the web stack. Photos come and masks go through
shared memory (service.shared_parse)."""

from __future__ import annotations

from model.allocator import tune_malloc
from model.faces import FaceParser
from service import shared_parse
from service.child import detach_from_parent_signals
from service.shared_parse import PackedParse, SharedPhoto

_parser: FaceParser | None = None
"""This process's parser, made by `start`."""


def start(tune: bool = False) -> None:
    """Process initializer: ignore the group's signals, tune malloc if asked
    (`model.allocator`) and load the parser."""
    global _parser
    if tune:
        tune_malloc()
    # The pool's pipes do not tell a worker that the service died (each worker holds both
    # ends of its call queue): the parent watch is what makes a killed service take it along.
    detach_from_parent_signals()
    _parser = FaceParser()


def ready() -> bool:
    """Answers once the worker has started (its parser loaded by `start`)."""
    return _parser is not None


def parse_shared(photo: SharedPhoto, max_faces: int | None = None) -> PackedParse:
    """Faces and skin of one (H, W, 3) uint8 RGB photo in shared memory, at most `max_faces`
    of them (`FaceParser.parse`); the masks go back in a block of their own
    (`shared_parse.pack`), which the service unlinks."""
    if _parser is None:
        raise RuntimeError("the face worker did not start")
    block, image = shared_parse.read_photo(photo)
    try:
        parse = _parser.parse(image, max_faces)
    finally:
        del image  # the mapping cannot close while an array still uses it
        block.close()
    return shared_parse.pack(parse)
