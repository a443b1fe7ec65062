"""How long the work queued for the replicas will take, from what recent batches took: the
batcher refuses a request at once (503 `overloaded`, with a Retry-After from the estimate)
when the work ahead of it would outlast its deadline, rather than let it wait to a 504.

The cost model is one number, seconds per pixel, smoothed over recent batches; each photo
counts at least `MIN_PIXELS`, because below that its faces (landmarks, skin, the LRL on each
face crop) cost more than its pixels. An estimate, not a promise: it only decides for requests
that would wait behind others, never for the first in an empty queue.
"""

from __future__ import annotations

MIN_PIXELS = 2_000_000
"""Pixels a photo counts at least. On 2 CPUs the engine did 8.35 portraits of 512x384 a second
(0.12 s each, the face crop's LRL most of it; issue 20's quiet figure) and 8K photos of three
faces took 2.1-2.9 s (0.05-0.07 s a megapixel): a small portrait costs about two megapixels'
worth."""
SMOOTHING = 0.3
"""Weight of the latest batch in the running estimate."""


def work_pixels(height: int, width: int) -> int:
    """What one photo counts for."""
    return max(MIN_PIXELS, height * width)


class WorkEstimate:
    """Seconds per pixel of model time, learnt from finished batches."""

    def __init__(self) -> None:
        self._seconds_per_pixel: float | None = None

    @property
    def known(self) -> bool:
        """Whether a batch has been measured yet."""
        return self._seconds_per_pixel is not None

    def observe(self, pixels: int, seconds: float) -> None:
        """A batch of `pixels` (summed `work_pixels`) took `seconds` in its replica."""
        if pixels <= 0 or seconds <= 0:
            return
        rate = seconds / pixels
        previous = self._seconds_per_pixel
        self._seconds_per_pixel = (
            rate if previous is None else SMOOTHING * rate + (1 - SMOOTHING) * previous
        )

    def seconds(self, pixels: int) -> float:
        """Model seconds `pixels` of work should take (0 until a batch was measured)."""
        return pixels * (self._seconds_per_pixel or 0.0)
