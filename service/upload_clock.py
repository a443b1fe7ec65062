"""The upload deadline: a body gets `grace_s` seconds, then must keep arriving at `min_rate`
bytes per second on average. A client that stalls, trickles bytes or declares more than it
sends is cut at `grace_s` plus what it did send over the rate, so it holds its queue place for
bounded time; an honest slow upload of N bytes gets `grace_s + N / min_rate` seconds."""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(frozen=True)
class UploadClock:
    """The deadline rule of one upload, from `started` (time.monotonic(), the arrival)."""

    started: float
    grace_s: float
    min_rate: int
    """Bytes per second."""

    def due(self, received: int) -> float:
        """time.monotonic() by which more than `received` bytes must have arrived (or the body
        ended)."""
        return self.started + self.grace_s + received / self.min_rate

    def elapsed(self) -> float:
        """Seconds since the upload started."""
        return time.monotonic() - self.started
