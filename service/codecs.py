"""Decoding and encoding in a bounded thread pool, never on the event loop. Decoding checks the
size in the header before any pixel is decoded (model.photo.decode)."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from concurrent.futures import ThreadPoolExecutor

from model import photo
from model.photo import Photo
from model.result import RetouchResult
from service.batcher import DeadlineExceeded
from service.futures import retrieve
from service.memory_budget import Lease, photo_cost
from service.metrics import Metrics


class Codecs:
    """Runs model.photo on `threads` threads and times it into the metrics."""

    def __init__(self, threads: int, metrics: Metrics) -> None:
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="abpn-codec")
        self._metrics = metrics

    async def decode(
        self, data: bytes, max_pixels: int, lease: Lease, deadline: float
    ) -> tuple[Photo, float]:
        """Decode `data`, taking the photo's memory from `lease` before any pixel is decoded;
        returns the photo and seconds. Raises PhotoError on bad or oversized input, the
        lease's ServiceError when the photo does not fit the budget, and DeadlineExceeded when
        `deadline` (time.monotonic()) passes first: the decode is then abandoned, and runs on
        in its thread, bounded by the decoder's limits, with the lease pinned until it ends."""
        started = time.perf_counter()
        lease.pin()
        try:
            work = asyncio.get_running_loop().run_in_executor(
                self._pool, _decode, data, max_pixels, lease, deadline
            )
        except BaseException:
            lease.unpin()
            raise
        work.add_done_callback(retrieve)  # read even when nobody waits for it any more
        try:
            decoded = await asyncio.wait_for(
                asyncio.shield(work), max(0.0, deadline - time.monotonic())
            )
        except TimeoutError:
            raise DeadlineExceeded("the deadline passed while decoding") from None
        seconds = time.perf_counter() - started
        self._metrics.decode_seconds.observe(seconds)
        return decoded, seconds

    async def encode(
        self,
        source: Photo,
        result: RetouchResult,
        *,
        fmt: str | None,
        quality: int | None,
        mask: bool,
        original: bytes,
    ) -> tuple[bytes, str, float]:
        """Encode the retouched image (or its mask) with the source's alpha, ICC profile and
        EXIF; returns the bytes, their media type and seconds. An image the model left as it
        was, asked for in its own format and not turned upright from its EXIF orientation, is
        `original`, the bytes as uploaded."""
        fmt = fmt or source.format
        started = time.perf_counter()
        data = await asyncio.get_running_loop().run_in_executor(
            self._pool, _render, source, result, fmt, quality, mask, original
        )
        seconds = time.perf_counter() - started
        self._metrics.encode_seconds.observe(seconds)
        return data, photo.MEDIA_TYPES[fmt], seconds

    def close(self) -> None:
        """Stop the threads once the work queued on them is done."""
        self._pool.shutdown(wait=False)


def _decode(data: bytes, max_pixels: int, lease: Lease, deadline: float) -> Photo:
    def admit(cost: photo.DecodeCost) -> None:
        lease.grow(photo_cost(cost), f"a {cost.width}x{cost.height} photo")

    try:
        if time.monotonic() > deadline:  # it waited for a codec thread past the deadline
            raise DeadlineExceeded("the deadline passed before decoding")
        return photo.decode(data, max_pixels, admit)
    finally:
        lease.unpin()


def _render(
    source: Photo,
    result: RetouchResult,
    fmt: str,
    quality: int | None,
    mask: bool,
    original: bytes,
) -> bytes:
    if mask:
        if result.mask is None:
            raise RuntimeError("the engine returned no mask")
        return photo.encode_mask(result.mask, fmt, quality)
    if fmt == source.format and not source.reoriented and result.untouched:
        # No face, or strength and whitening 0: re-encoding would only lose quality (JPEG,
        # WebP) and what the decoder does not carry over (16-bit samples, CMYK, metadata).
        return original
    return photo.encode(dataclasses.replace(source, rgb=result.image), fmt, quality)
