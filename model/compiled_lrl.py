"""The LRL compiled with TorchInductor for one fixed square canvas, for CPU replicas.

Inductor freezes the weights into prepacked oneDNN convolutions and fuses the concatenations,
activations and valid-mask products around them. On this project's 2-core CPU the engine's LRL
stage ran 1.2-1.8x faster for it (0.12-0.16 s per face crop against 0.14-0.24 s eager,
docs/benchmarks.md), with results within 2e-4/255 of eager.

Compiling takes seconds with a warm Inductor cache and tens of seconds cold (figures:
docs/benchmarks.md, "Compile time"), so it happens once, for one canvas shape: every crop that
fills at least half of that canvas is padded to it. Smaller crops (small faces) stay eager,
where padding would cost more than compiling saves. Padding never changes a result: the LRL
re-applies the valid-pixel mask in every block.
"""

from __future__ import annotations

import torch

from model.net.abpn import round_up
from model.net.bpl import Size
from model.net.lrl import LocalRetouchingLayer, LRLOutput


class CompiledLRL:
    """A frozen, compiled copy of an LRL for the canvas of a full working-size crop: square,
    the working size rounded up to the LRL's stride."""

    def __init__(self, lrl: LocalRetouchingLayer) -> None:
        side = round_up(lrl.cfg.lrl_size, lrl.cfg.stride)
        self.canvas: Size = (side, side)
        self._blob_gain = lrl.cfg.blob_gain
        # Freezing folds the weights into the graph; the LRL's mask threshold is read at
        # compile time too (a guard recompiles if it ever changes).
        self._fn = torch.compile(lrl, dynamic=False, options={"freezing": True})

    def fits(self, image: torch.Tensor) -> bool:
        """Whether the (3, h, w) working-size crop `image` should run on the compiled canvas:
        it fits, and fills enough of it that padding costs less than eager would."""
        h, w = image.shape[-2:]
        side = self.canvas[0]
        return h <= side and w <= side and 2 * h * w >= side * side

    def __call__(
        self, canvas: torch.Tensor, valid: torch.Tensor, blobs: torch.Tensor | None = None
    ) -> LRLOutput:
        """Run the compiled LRL on a padded (1, 3, side, side) canvas, its valid mask and, when
        the config has a blob gain, its red-blob prior."""
        out = self._fn(canvas, valid, blobs)
        # Inductor writes the mask straight into the buffer of the concatenation that reads
        # it, so the outputs are views that would keep ~21 MB of intermediates alive per crop
        # (a 12-face photo held 250 MB more than eager). Copies are 3 MB.
        return LRLOutput(out.result.clone(), out.mask.clone(), out.mask_logits.clone())

    def warm(self, device: torch.device) -> None:
        """Compile now, so no request pays for it."""
        valid = torch.ones((1, 1, *self.canvas), device=device)
        # The same inputs as the engine will pass, so that call finds this graph.
        blobs = torch.zeros_like(valid) if self._blob_gain else None
        with torch.inference_mode():
            self._fn(torch.zeros((1, 3, *self.canvas), device=device), valid, blobs)
