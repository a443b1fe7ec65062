"""Photos to the face workers and skin masks back through shared memory, not through the pool's
pipe: an 8K photo is 118 MB, which a pickle copies several times over (into the pickle, through
the pipe, out of it) on both sides. Here the service copies the pixels once into a block the
worker maps, and the worker writes the masks into one block the service copies them out of;
only names, shapes and the faces' landmarks are pickled.

Every block is unlinked by the service once it is done with it. Blocks are registered with
multiprocessing's resource tracker, which the spawned workers share with the service, so a
block left behind by a worker that died mid-parse is unlinked when the service exits.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from multiprocessing.shared_memory import SharedMemory

import numpy as np

from model.faces import Box, Face, FaceParse, FaceRegion
from service import shm_blocks


@dataclass(frozen=True)
class SharedPhoto:
    """An (H, W, 3) uint8 photo in the shared memory block `name`."""

    name: str
    shape: tuple[int, int, int]


@dataclass(frozen=True)
class PackedParse:
    """A FaceParse whose skin masks lie in the block `masks` (None when there is no region),
    one after the other, each (box.height, box.width) uint8 in the regions' order."""

    faces: tuple[Face, ...]
    regions: tuple[tuple[Box, tuple[Face, ...]], ...]
    masks: str | None
    skipped: int = 0


def share(image: np.ndarray) -> tuple[SharedMemory, SharedPhoto]:
    """A new block holding a copy of `image` (the caller unlinks it with `release`)."""
    block = shm_blocks.create(image.nbytes)
    np.ndarray(image.shape, np.uint8, buffer=block.buf)[...] = image
    return block, SharedPhoto(block.name, image.shape)


def release(block: SharedMemory) -> None:
    """Unmap and unlink a block this process made or attached."""
    block.close()
    block.unlink()


def read_photo(photo: SharedPhoto) -> tuple[SharedMemory, np.ndarray]:
    """Map a shared photo (worker side): the block, to close once the array is dropped, and
    the array over it."""
    block = SharedMemory(name=photo.name)
    return block, np.ndarray(photo.shape, np.uint8, buffer=block.buf)


def pack(parse: FaceParse) -> PackedParse:
    """Write the parse's skin masks into a new block (worker side: the block is named after
    the worker's parent, the service), left for the service to unpack and unlink."""
    regions = tuple((r.box, r.faces) for r in parse.regions)
    total = sum(r.skin.nbytes for r in parse.regions)
    if not total:
        return PackedParse(parse.faces, regions, None, parse.skipped)
    block = shm_blocks.create(total, owner=os.getppid())
    try:
        offset = 0
        for region in parse.regions:
            size = region.skin.nbytes
            block.buf[offset : offset + size] = np.ascontiguousarray(region.skin).reshape(-1)
            offset += size
    finally:
        block.close()
    return PackedParse(parse.faces, regions, block.name, parse.skipped)


def unpack(packed: PackedParse) -> FaceParse:
    """The FaceParse, its masks copied out of their block, which is then unlinked."""
    if packed.masks is None:
        return FaceParse(packed.faces, (), packed.skipped)
    block = SharedMemory(name=packed.masks)
    try:
        regions, offset = [], 0
        for box, faces in packed.regions:
            size = box.height * box.width
            flat = np.frombuffer(block.buf, np.uint8, size, offset)
            regions.append(FaceRegion(box, faces, flat.reshape(box.height, box.width).copy()))
            del flat  # no view may outlive the mapping
            offset += size
    finally:
        release(block)
    return FaceParse(packed.faces, tuple(regions), packed.skipped)


def discard(packed: PackedParse) -> None:
    """Unlink the masks of a parse nobody will use (its request ended first)."""
    if packed.masks is not None:
        release(SharedMemory(name=packed.masks))
