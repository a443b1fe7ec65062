"""Hyperparameters of the network: one dataclass, saved as JSON beside the weights."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ABPNConfig:
    """Every hyperparameter of ABPN; the checkpoint stores it so weights and shape travel together.

    The paper leaves the working resolution, widths and level counts open (see docs/model.md);
    these defaults are sized so that the low-resolution branch costs a few GFLOPs and the
    full-resolution levels a few hundred multiply-adds per pixel.
    """

    lrl_size: int = 512
    """Long side of the copy the low-resolution layer (LRL) works on; smaller photos run as is."""
    channels: int = 12
    """Width of the first LRL encoder stage; each further stage doubles it up to max_channels."""
    max_channels: int = 48
    """Cap on the LRL's widths: the coarse stages see few pixels and need little more."""
    depth: int = 3
    """Number of stride-2 encoder stages, so LRL inputs are padded to a multiple of 2**depth."""
    refine_channels: int = 8
    """Hidden width of the refining module run at every pyramid level."""
    mask_threshold: float = 0.05
    """Soft-mask values at or below this become exactly zero, so untouched pixels stay bit-exact
    and the pyramid can skip tiles with nothing to retouch."""
    mask_gamma: float = 1.0
    """Curve of the effective mask m' = 1 - (1 - m)^gamma, where m is the soft mask above the
    threshold scaled to [0, 1]. Training runs with a near-zero threshold, so there the blend
    follows the soft mask; the threshold that keeps clean skin bit-exact at inference also
    weakens what the network found (a soft 0.75 blends only 0.5 of the retouch). Gamma 2 gives
    that 0.75 back while the mask still rises from exactly zero, with no step at its edge."""
    blob_gain: float = 0.0
    """Weight of the red-blob prior (`model.net.blob_prior`) added to the mask logits at
    inference; 0 turns it off. Training leaves it off: the prior adds evidence of real lesions
    that the painted training defects do not carry."""
    blob_radius: float = 8.0
    """Line radius of the prior's top-hat, in LRL pixels at the full working size: blobs up to
    about this radius count."""
    blob_floor: float = 1.0
    """Top-hat of CIE a* - b* below which the prior is 0."""
    blob_span: float = 2.0
    """How far above `blob_floor` the top-hat reaches a prior of 1."""
    blob_shade: float = 0.0
    """How many L* units darker than the skin around it a blob may be before the prior fades
    (over `model.net.blob_prior.SHADE_SPAN` more): deeper is a shadowed notch, not a lesion.
    0 keeps every blob."""
    blob_blur: float = 0.0
    """Gaussian sigma (LRL pixels at the full working size) that softens the prior's edges: the
    top-hat of a blob is a plateau with steep sides, and a fill cut off that sharply leaves a
    pale patch with straight edges. 0 keeps the plateau."""
    brighten_cap: float | None = None
    """How far (luma, 0-1) the LRL's retouch may rise above the brighter of its smooth fill and
    the input: the LRB's correction learned on painted defects, darker than skin, and on a pink
    blob no darker than its skin it can overshoot into a pale speck. None: no cap."""
    chroma_detail: float = 0.0
    """Share of the photo's colour detail finer than the LRL's working size that the engine
    takes out inside the retouch mask, after the blend. The blend offset carries the LRL's
    change up and leaves the photo's own detail as it was, by design: that keeps pores, but a
    lesion's red core is detail too when the photo is several times the working size. The
    detail's luma (the texture) stays; only its colour goes. 0 turns it off."""
    fill_chroma_sigma: float = 0.0
    """Gaussian sigma (LRL pixels) of a second, wider fill whose colour (the fill minus its
    luma) replaces the fine fill's, the fine fill's luma kept. A lesion inside an inflamed
    patch is filled from the skin around it, which is as pink as the patch; the wider fill
    reaches the skin beyond. 0 keeps the fine fill's colour."""
    correction_chroma: float = 1.0
    """Share of the colour (the correction minus its luma) of the LRB's learned correction that
    is kept; its luma, which carries the texture, always is. Learned on painted defects, the
    correction takes redness out of a real inflamed patch past the skin's own colour, into a
    grey-violet blotch."""
    prior_sigma: float = 2.5
    """Gaussian sigma (LRL pixels) of the fine normalised-convolution fill the LRB refines;
    a second, coarser fill uses four times this."""
    tile_size: int = 256
    """Side of the tiles the pyramid's top levels run in; levels up to this area run whole."""

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form of the config."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ABPNConfig:
        """Build a config from JSON, refusing keys this version does not know."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown ABPN config keys: {', '.join(unknown)}")
        return cls(**data)

    @property
    def stride(self) -> int:
        """Total downsampling of the LRL encoder."""
        return 2**self.depth
