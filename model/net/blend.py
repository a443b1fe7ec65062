"""ABM and R-ABM: the adaptive soft-light blend and its exact inverse.

The paper's blend layer B lives in [0, 1] with 1/2 as the neutral value. We carry the signed
offset D = B - 1/2 instead, so "nothing to change" is exactly zero: it survives bilinear
upsampling bit-exactly and lets the pyramid skip whole tiles.

    ABM:    R = I + 2 D (alpha I (1 - I) + beta)
    R-ABM:  D = (R - I) / (2 (alpha I (1 - I) + beta))

With D = B - 1/2 this is Pegtop soft light (alpha = 1, beta = 0) made adaptive: alpha scales the
mid-tone response, beta > 0 lets pure black and white pixels change too. Both are kept positive
through softplus so the inverse always exists. All blend math runs in float32, also when the
convolutions around it run in half precision.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def _inverse_softplus(y: float) -> float:
    return math.log(math.expm1(y))


class BlendParams(nn.Module):
    """The two learnable scalars shared by every ABM and R-ABM in the network."""

    def __init__(self, alpha: float = 1.0, beta: float = 0.1) -> None:
        super().__init__()
        self.raw_alpha = nn.Parameter(torch.tensor(_inverse_softplus(alpha)))
        self.raw_beta = nn.Parameter(torch.tensor(_inverse_softplus(beta)))

    def gain(self, image: torch.Tensor) -> torch.Tensor:
        """Per-pixel gain 2 (alpha I (1 - I) + beta) linking the blend offset to the change."""
        image = image.float()
        alpha = F.softplus(self.raw_alpha.float())
        beta = F.softplus(self.raw_beta.float())
        return 2.0 * (alpha * image * (1.0 - image) + beta)

    def abm(self, image: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
        """ABM: blend `image` with the blend-layer offset D (neutral D = 0 returns the image)."""
        return image.float() + offset.float() * self.gain(image)

    def rabm(self, image: torch.Tensor, result: torch.Tensor) -> torch.Tensor:
        """R-ABM: the offset D for which abm(image, D) == result, in closed form."""
        return (result.float() - image.float()) / self.gain(image)


WHITENING_GAIN = 0.2
"""Blend-layer offset per unit of whitening: B = 1/2 + 0.2 * degree * skin, as in the
production skin-retouching pipeline (shared/ABPN.md)."""


def whiten(image: torch.Tensor, amount: torch.Tensor) -> torch.Tensor:
    """Soft-light whitening (Pegtop form, the production pipeline's): R = I + (2B - 1) I (1 - I)
    with B = 1/2 + WHITENING_GAIN * amount; `amount` (degree times skin mask) 0 leaves I as is."""
    image = image.float()
    return image + (2.0 * WHITENING_GAIN) * amount.float() * image * (1.0 - image)
