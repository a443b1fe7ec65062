"""Warming up a replica whose photos arrive parsed (face workers on): everything
`RetouchEngine.warmup` does except loading the face parser, which in the service's process
would only hold memory (the detector, MediaPipe's FaceMesh graph) that the face workers hold
already."""

from __future__ import annotations

import logging

import numpy as np

from model.engine import RetouchEngine
from model.faces import FaceParse

logger = logging.getLogger("abpn.runtime")


def warm_up_parsed(engine: RetouchEngine) -> None:
    """Compile the LRL if the engine is to (a failed compile is logged and leaves it eager,
    as `RetouchEngine.warmup` does) and run one small batch on given parses; blocking."""
    if engine.compiled_lrl is not None:
        try:
            engine.compiled_lrl.warm(engine.device)
        except Exception:  # Inductor fails in many ways (no C++ compiler, say): eager works
            logger.exception("compiling the LRL failed; this replica runs it eager")
            engine.compiled_lrl = None
    image = np.random.default_rng(0).integers(0, 256, size=(96, 128, 3), dtype=np.uint8)
    # Whole-photo parses: the pyramid and the blend run everywhere, as on a real face.
    parses = [FaceParse.whole(image.shape[:2]), FaceParse.whole((64, 128))]
    engine.retouch_batch([image, image[:64]], 1.0, True, 0.5, parses=parses)
