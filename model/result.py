"""What the engine returns and the parameter ranges it takes: plain data, importable without
torch (the service's HTTP process uses them and never loads the model)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

MAX_STRENGTH = 1.5
"""Highest retouch strength: 1 is the model's retouch, past it the change is amplified."""
MAX_WHITENING = 1.5
"""Highest skin whitening (soft light on the skin mask; 0 is off)."""


@dataclass
class RetouchResult:
    """One retouched photo."""

    image: np.ndarray
    """(H, W, 3) uint8, the input's size."""
    mask: np.ndarray | None
    """(H, W) uint8 mask of what was retouched (0-255, gated by the skin mask), when asked for."""
    faces: int = 0
    """Faces retouched (found with landmarks)."""
    untouched: bool = False
    """No pixel could have changed (no face, or strength and whitening 0): `image` equals the
    input, so a caller may hand back the input's own encoded bytes."""
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds spent: "faces" (parsing), "prepare" (resizing), "lrl" (this photo's share of
    the batch), "pyramid" (carrying the blend layer up to full size) and "blend" (ABM, the skin
    gate, whitening and writing the pixels back)."""
    faces_skipped: int = 0
    """Faces detected past the `max_faces` cap (the engine's, or the given parse's): left as
    they were."""
