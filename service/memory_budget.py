"""Admission by memory: the bytes that requests in flight may hold at once.

A request's cost is counted before the memory is taken: its body as it is declared (or as it
arrives, for a chunked upload), then its pixels as the image header states them, before any
pixel is decoded (`model.photo.decode`'s `admit`). A request that would take the total past the
budget is answered 503 `memory_full` with Retry-After, and one that could never fit, even
alone, 413; so a burst of 8K uploads gets some answers later rather than the pod OOM-killed with
every request in it. The replicas' own working memory (the model, one photo's blend pyramid at
a time) is not counted here: it is fixed per replica, and the budget is sized beside it
(README, "Memory").

The memory is given back when the request is done with it and no thread still uses it: a
decode abandoned at the deadline runs on in its codec thread, so it pins the lease until it
ends.
"""

from __future__ import annotations

import threading

from model.photo import DecodeCost
from service.errors import ServiceError, unavailable
from service.metrics import Metrics

RESIDENT_BYTES_PER_PIXEL = 4
"""Held from decode to response: the decoded RGB and, where the photo has one, its alpha."""
TRANSIENT_BYTES_PER_PIXEL = 8
"""Held for a while on top, at most this much at a time: the photo and mask in the batch's
shared memory block and their copies out (3 + 1 each), or the encoder's copy of the pixels and
its output."""


def photo_cost(header: DecodeCost) -> int:
    """Bytes a photo holds at its peak, from its header: what it keeps from decode to response,
    plus the larger of the pipeline's transient copies and the decoder's buffers (alive twice
    over while the decoder's image is copied out)."""
    pixels = header.width * header.height
    transient = max(pixels * TRANSIENT_BYTES_PER_PIXEL, 2 * header.decoder_bytes)
    return pixels * RESIDENT_BYTES_PER_PIXEL + transient


class MemoryBudget:
    """`budget_bytes` shared by every request in flight, shown in the metrics."""

    def __init__(self, budget_bytes: int, metrics: Metrics) -> None:
        self.budget_bytes = budget_bytes
        self._held = 0
        self._lock = threading.Lock()
        self._metrics = metrics
        metrics.memory_budget.set(budget_bytes)

    @property
    def held(self) -> int:
        """Bytes held by requests in flight now."""
        return self._held

    def lease(self) -> Lease:
        """A lease holding nothing yet, for one request; use it as a context manager."""
        return Lease(self)

    def _take(self, nbytes: int, what: str) -> None:
        if nbytes > self.budget_bytes:
            raise ServiceError(
                413,
                "image_too_large",
                f"{what} needs {_mb(nbytes)} of memory, more than this server's whole budget of "
                f"{_mb(self.budget_bytes)} (ABPN_MEMORY_BUDGET_MB)",
            )
        with self._lock:
            if self._held + nbytes > self.budget_bytes:
                raise unavailable(
                    "memory_full",
                    f"the photos in flight hold {_mb(self._held)} of the {_mb(self.budget_bytes)} "
                    f"memory budget; {what} needs {_mb(nbytes)} more: try again shortly",
                )
            self._held += nbytes
            self._metrics.memory_in_flight.set(self._held)

    def _give_back(self, nbytes: int) -> None:
        with self._lock:
            self._held -= nbytes
            self._metrics.memory_in_flight.set(self._held)


class Lease:
    """What one request holds of the budget. `grow` takes more (raising 503 or 413 when it
    does not fit); everything is given back once the request closed the lease and every `pin`
    was undone. Thread-safe: the codec threads grow and unpin it."""

    def __init__(self, budget: MemoryBudget) -> None:
        self._budget = budget
        self._lock = threading.Lock()
        self._bytes = 0
        self._pins = 0
        self._closed = False

    def grow(self, nbytes: int, what: str) -> None:
        """Take `nbytes` more for `what` (named in the error), or raise ServiceError."""
        if nbytes <= 0:
            return
        self._budget._take(nbytes, what)
        with self._lock:
            self._bytes += nbytes

    def pin(self) -> None:
        """A thread starts using the leased memory: it stays held until `unpin`."""
        with self._lock:
            self._pins += 1

    def unpin(self) -> None:
        """The thread is done with it."""
        with self._lock:
            self._pins -= 1
        self._release_if_done()

    def close(self) -> None:
        """The request is done with it; idempotent."""
        with self._lock:
            self._closed = True
        self._release_if_done()

    def _release_if_done(self) -> None:
        with self._lock:
            if not self._closed or self._pins or not self._bytes:
                return
            nbytes, self._bytes = self._bytes, 0
        self._budget._give_back(nbytes)

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _mb(nbytes: int) -> str:
    return f"{nbytes / 2**20:.0f} MiB"
