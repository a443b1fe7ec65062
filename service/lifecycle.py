"""The service's phase (starting, ready, draining, failed) and the requests in flight, which is
what readiness answers from and what a drain waits for."""

from __future__ import annotations

import asyncio
import enum
import logging
import math
import time
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from service.errors import ServiceError, unavailable
from service.futures import retrieve
from service.metrics import Metrics

logger = logging.getLogger("abpn.lifecycle")

T = TypeVar("T")


class Phase(enum.Enum):
    """Where the service is in its life."""

    STARTING = "starting"
    READY = "ready"
    DRAINING = "draining"
    FAILED = "failed"


class Lifecycle:
    """Phase and in-flight bookkeeping, used from the event loop only."""

    def __init__(self, metrics: Metrics) -> None:
        self.phase = Phase.STARTING
        self.failure: str | None = None
        self.metrics = metrics
        self.in_flight = 0
        self.drain_deadline = math.inf
        """time.monotonic() by which the drain ends; set by begin_drain."""
        self._idle = asyncio.Event()
        self._idle.set()
        self.uploads_cut = asyncio.Event()
        """Set when the drain is about to end: uploads still arriving are answered 503."""

    def mark_ready(self) -> None:
        """Every replica is loaded and warmed up (ignored once draining)."""
        if self.phase is Phase.STARTING:
            self.phase = Phase.READY
            logger.info("ready")

    def mark_failed(self, reason: str) -> None:
        """Start-up failed: liveness turns 503 so the orchestrator restarts the process."""
        self.phase = Phase.FAILED
        self.failure = reason

    def begin_drain(self, timeout_s: float) -> None:
        """Turn readiness and new requests away (503); requests in flight carry on until
        `drain_deadline`, `timeout_s` from the first call."""
        if self.phase is not Phase.DRAINING:
            self.phase = Phase.DRAINING
            self.drain_deadline = time.monotonic() + timeout_s
            logger.info("draining", extra={"in_flight": self.in_flight, "timeout_s": timeout_s})

    def drain_remaining(self) -> float:
        """Seconds left of the drain (0 once it is over; meaningful while draining)."""
        return max(0.0, self.drain_deadline - time.monotonic())

    def cut_uploads(self) -> None:
        """Answer the uploads still arriving with 503 now, while their clients can still be
        answered, rather than leaving them to be cut off by the exit."""
        self.uploads_cut.set()

    async def unless_cut(self, work: Awaitable[T]) -> T:
        """`work`'s result, or 503 `shutting_down` as soon as `cut_uploads` was called: a
        request decoding or encoding at the end of the drain is answered too. The work itself
        runs on, unawaited."""
        task = asyncio.ensure_future(work)
        cutting = asyncio.ensure_future(self.uploads_cut.wait())
        try:
            await asyncio.wait({task, cutting}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            cutting.cancel()
        if task.done():
            return task.result()
        task.add_done_callback(retrieve)
        raise unavailable("shutting_down", "the service is shutting down")

    def liveness_error(self) -> ServiceError | None:
        """Why the process should be restarted, or None while it is healthy."""
        if self.phase is Phase.FAILED:
            return ServiceError(503, "failed", f"the service failed to start: {self.failure}")
        return None

    def readiness_error(self) -> ServiceError | None:
        """Why new work is refused now, or None when the service takes it."""
        if self.phase is Phase.READY:
            return None
        if self.phase is Phase.DRAINING:
            error = unavailable(
                "draining", "the service is shutting down; retry on another replica"
            )
            # Keep-alive clients should reconnect, and so reach a replica that is not leaving.
            error.headers["Connection"] = "close"
            return error
        if self.phase is Phase.FAILED:
            return self.liveness_error()
        return unavailable("not_ready", "the model is still loading or warming up")

    @contextmanager
    def track(self) -> Iterator[None]:
        """Count a request as in flight for the duration of the block."""
        self.in_flight += 1
        self.metrics.in_flight.set(self.in_flight)
        self._idle.clear()
        try:
            yield
        finally:
            self.in_flight -= 1
            self.metrics.in_flight.set(self.in_flight)
            if self.in_flight == 0:
                self._idle.set()

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until no request is in flight; False if `timeout` seconds pass first."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True
