"""One batch in one shared memory block, between the service and a replica process
(service.replicas, service.replica_process), so that no pixel goes through a pickle.

The service lays the block out and copies in, for each image, its photo and, when a face worker
found its faces, the skin masks; it leaves room for the retouch mask where one is asked for.
The replica writes each retouched photo over its own input and each mask into its room; the
service copies the results out and unlinks the block. Only offsets, shapes, parameters and
the faces' landmarks are pickled through the replica's pipe.

The service creates and unlinks every block; the replica only maps it. Blocks are registered
with multiprocessing's resource tracker, which spawned children share with the service, so a
block is unlinked when the service exits even if it died holding one. No numpy view over a
block may outlive its mapping: every array handed out of here is a copy.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.shared_memory import SharedMemory

import numpy as np

from model.faces import Box, Face, FaceParse, FaceRegion
from service import shm_blocks

ALIGN = 64
"""Every array starts on a cache line."""


@dataclass(frozen=True)
class SharedRegion:
    """A FaceRegion whose skin mask, (box.height, box.width) uint8, lies at `skin`."""

    box: Box
    faces: tuple[Face, ...]
    skin: int


@dataclass(frozen=True)
class SharedItem:
    """One image of a batch: where its photo (and result) and its mask room lie, what to do
    with it and, when found ahead, its faces."""

    shape: tuple[int, int, int]
    photo: int
    """Offset of the (H, W, 3) uint8 photo; the replica writes the result over it."""
    mask: int | None
    """Offset of the room for the (H, W) uint8 retouch mask; None: no mask asked for."""
    strength: float
    whitening: float
    faces: tuple[Face, ...] | None
    """The parse's faces, or None when the replica finds them itself."""
    regions: tuple[SharedRegion, ...] = ()
    skipped: int = 0
    """The parse's faces left out by the cap (`FaceParse.skipped`)."""


@dataclass(frozen=True)
class ItemRequest:
    """What the service knows of an image when it lays the batch out."""

    image: np.ndarray
    strength: float
    whitening: float
    return_mask: bool
    parse: FaceParse | None


def _aligned(offset: int) -> int:
    return -(-offset // ALIGN) * ALIGN


def _layout(requests: Sequence[ItemRequest]) -> tuple[list[SharedItem], int]:
    items, offset = [], 0
    for request in requests:
        h, w, _ = request.image.shape
        photo, offset = offset, _aligned(offset + request.image.nbytes)
        mask = None
        if request.return_mask:
            mask, offset = offset, _aligned(offset + h * w)
        faces, regions, skipped = None, [], 0
        if request.parse is not None:
            faces, skipped = request.parse.faces, request.parse.skipped
            for region in request.parse.regions:
                regions.append(SharedRegion(region.box, region.faces, offset))
                offset = _aligned(offset + region.skin.nbytes)
        shape = (h, w, 3)
        items.append(
            SharedItem(
                shape,
                photo,
                mask,
                request.strength,
                request.whitening,
                faces,
                tuple(regions),
                skipped,
            )
        )
    return items, offset


def write(requests: Sequence[ItemRequest]) -> tuple[SharedMemory, list[SharedItem]]:
    """A new block holding the batch's photos and skin masks (service side; blocking: call it
    off the event loop). The caller unlinks it with `release`."""
    items, size = _layout(requests)
    block = shm_blocks.create(size)
    try:
        for request, item in zip(requests, items, strict=True):
            _view(block, item.photo, item.shape)[...] = request.image
            if request.parse is not None:
                for region, shared in zip(request.parse.regions, item.regions, strict=True):
                    _view(block, shared.skin, region.skin.shape)[...] = region.skin
    except BaseException:
        release(block)
        raise
    return block, items


def _view(block: SharedMemory, offset: int, shape: tuple[int, ...]) -> np.ndarray:
    return np.ndarray(shape, np.uint8, buffer=block.buf, offset=offset)


def photo(block: SharedMemory, item: SharedItem) -> np.ndarray:
    """The item's photo, in place (replica side): drop it before closing the block."""
    return _view(block, item.photo, item.shape)


def mask_room(block: SharedMemory, item: SharedItem) -> np.ndarray | None:
    """Where the item's retouch mask goes, in place (replica side), or None."""
    return None if item.mask is None else _view(block, item.mask, item.shape[:2])


def parse(block: SharedMemory, item: SharedItem) -> FaceParse | None:
    """The item's faces and skin with the masks in place (replica side), or None."""
    if item.faces is None:
        return None
    regions = tuple(
        FaceRegion(r.box, r.faces, _view(block, r.skin, (r.box.height, r.box.width)))
        for r in item.regions
    )
    return FaceParse(item.faces, regions, item.skipped)


def copy_photo(block: SharedMemory, item: SharedItem) -> np.ndarray:
    """A copy of the item's result (service side; blocking)."""
    return photo(block, item).copy()  # the view goes with this frame


def copy_mask(block: SharedMemory, item: SharedItem) -> np.ndarray | None:
    """A copy of the item's retouch mask, or None when none was asked for (service side)."""
    room = mask_room(block, item)
    return None if room is None else room.copy()


def attach(name: str) -> SharedMemory:
    """Map a block the service made (replica side); `close` it, never unlink it."""
    return SharedMemory(name=name)


def close(block: SharedMemory) -> None:
    """Unmap a block. A view still held (by a traceback, say) keeps the mapping until it goes:
    the mapping then closes with it rather than under it."""
    with contextlib.suppress(BufferError):
        block.close()


def release(block: SharedMemory) -> None:
    """Unmap and unlink a block this process made (service side)."""
    close(block)
    with contextlib.suppress(FileNotFoundError):
        block.unlink()
