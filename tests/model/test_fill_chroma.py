"""The fill's colour drawn from wider around, and the learned correction's colour left out
(version 3.2): a red lesion inside a pink flush takes the colour of the skin beyond it."""

from __future__ import annotations

import torch

from model.net.abpn import ABPN
from model.net.config import ABPNConfig
from model.net.lrl import chroma, gaussian_kernel, halved_fill, luma, normalized_fill, with_chroma
from model.weights import load_model

SKIN = (0.80, 0.62, 0.52)
FLUSH = (0.82, 0.56, 0.52)  # the inflamed skin around a cluster: pinker, as light
RED = (0.78, 0.45, 0.42)


def _colour(rgb: tuple[float, float, float]) -> torch.Tensor:
    return torch.tensor(rgb).view(1, 3, 1, 1)


def _flushed_lesion(size: int = 96) -> tuple[torch.Tensor, torch.Tensor]:
    """Skin with a pink flush 10 px in radius around a red disc of 4 px, and the disc grown to
    6 px as the red-blob prior (so the mask fires there and nowhere else)."""
    ys, xs = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    dist = ((ys - size // 2) ** 2 + (xs - size // 2) ** 2).float().sqrt().view(1, 1, size, size)
    image = torch.where(dist <= 10, _colour(FLUSH), _colour(SKIN))
    image = torch.where(dist <= 4, _colour(RED), image)
    return image, (dist <= 6).float()


def _model(**inference: float) -> ABPN:
    torch.manual_seed(0)
    model = ABPN(ABPNConfig(channels=8, depth=2, lrl_size=96, mask_threshold=0.5))
    with torch.no_grad():
        model.lrl.mask_head.bias.fill_(-4.0)  # the network alone fires nowhere
        model.lrl.mask_head.weight.zero_()
    model.set_inference(blob_gain=10.0, **inference)
    return model.eval()


def _run(model: ABPN, image: torch.Tensor, blobs: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.lrl(image, torch.ones_like(blobs), blobs).result


def test_chroma_has_no_luma_and_swapping_it_keeps_the_luma() -> None:
    x = torch.rand((2, 3, 5, 7), generator=torch.Generator().manual_seed(1))
    y = torch.rand((2, 3, 5, 7), generator=torch.Generator().manual_seed(2))
    assert torch.allclose(luma(chroma(x)), torch.zeros_like(luma(x)), atol=1e-6)
    swapped = with_chroma(x, chroma(y))
    assert torch.allclose(luma(swapped), luma(x), atol=1e-6)
    assert torch.allclose(chroma(swapped), chroma(y), atol=1e-6)


def test_the_halved_fill_matches_the_full_one_and_fills_a_flat_colour_exactly() -> None:
    image, blobs = _flushed_lesion()
    support = 1.0 - blobs
    full = normalized_fill(image, support, gaussian_kernel(7.5), 4)
    half = halved_fill(image, support, 7.5, 4)
    assert half.shape == full.shape
    # Within 0.002 on a 0-1 scale: the full fine and wide fills differ by 0.034 here.
    assert (half - full).abs().max() < 0.002
    flat = _colour(SKIN).expand(1, 3, 96, 96)
    assert torch.allclose(halved_fill(flat, support, 7.5, 4), flat, atol=1e-6)


def test_the_wide_fill_gives_a_flushed_lesion_the_skins_colour_and_keeps_the_fills_luma() -> None:
    image, blobs = _flushed_lesion()
    fine = _run(_model(), image, blobs)
    wide = _run(_model(fill_chroma_sigma=7.5), image, blobs)
    centre = (slice(None), slice(None), 48, 48)
    skin_colour = chroma(_colour(SKIN))[:, :, 0, 0]
    # The fine fill draws from the flush right around the disc; the wide one reaches past it.
    off_fine = (chroma(fine)[centre] - skin_colour).abs().max()
    off_wide = (chroma(wide)[centre] - skin_colour).abs().max()
    assert off_wide < 0.6 * off_fine
    assert torch.allclose(luma(wide), luma(fine), atol=1e-5)
    # Outside the mask the photo is returned as it was.
    assert torch.equal(wide[..., :20, :20], image[..., :20, :20])


def test_without_the_corrections_colour_only_its_luma_is_added() -> None:
    image, blobs = _flushed_lesion()
    bias = torch.tensor([0.08, 0.0, -0.02])  # luma +0.022, and redder
    results = {}
    for share in (1.0, 0.0):
        model = _model(correction_chroma=share)
        with torch.no_grad():
            model.lrl.ret_head.bias.copy_(bias)
        results[share] = _run(model, image, blobs)
    plain = _run(_model(), image, blobs)
    mask = (results[1.0] - plain).abs().sum(1, keepdim=True) > 0
    assert mask[..., 48, 48].item() and not mask[..., :20, :20].any()
    # With the colour left out, R, G and B move alike: by the correction's luma times the mask.
    shift = (results[0.0] - plain)[0, :, 48, 48]
    assert torch.allclose(shift, shift[0].expand(3), atol=1e-6)
    assert shift[0].item() > 0.0
    assert not torch.allclose((results[1.0] - plain)[0, :, 48, 48], shift, atol=1e-3)


def test_the_shipped_weights_draw_the_fills_colour_wide_without_the_corrections() -> None:
    # Version 3.2.0: chosen on the real lesions' wide ring and by eye (docs/model.md,
    # "Eleventh pass"); a setting at inference only, the weights are 3.0.0's.
    cfg = load_model().model.cfg
    assert (cfg.fill_chroma_sigma, cfg.correction_chroma) == (7.5, 0.0)
