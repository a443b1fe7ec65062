"""ABM / R-ABM: exact inverse, neutral layer, strength behaviour."""

import torch

from model.net.blend import BlendParams


def test_abm_inverts_rabm_on_random_tensors() -> None:
    torch.manual_seed(0)
    blend = BlendParams(alpha=1.3, beta=0.07)
    image = torch.rand(2, 3, 32, 40)
    result = torch.rand(2, 3, 32, 40)
    offset = blend.rabm(image, result)
    torch.testing.assert_close(blend.abm(image, offset), result, atol=1e-5, rtol=0)


def test_inverse_holds_at_pure_black_and_white() -> None:
    blend = BlendParams()
    image = torch.tensor([0.0, 1.0, 0.0, 1.0]).view(1, 1, 2, 2)
    result = torch.tensor([0.3, 0.6, 0.0, 1.0]).view(1, 1, 2, 2)
    torch.testing.assert_close(blend.abm(image, blend.rabm(image, result)), result)


def test_neutral_layer_is_identity() -> None:
    image = torch.rand(1, 3, 16, 16)
    blend = BlendParams()
    assert torch.equal(blend.abm(image, torch.zeros_like(image)), image)
    assert torch.equal(blend.rabm(image, image), torch.zeros_like(image))


def test_scaling_the_offset_moves_the_result_linearly() -> None:
    torch.manual_seed(1)
    blend = BlendParams()
    image, result = torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8)
    offset = blend.rabm(image, result)
    half = blend.abm(image, 0.5 * offset)
    torch.testing.assert_close(half, (image + result) / 2, atol=1e-6, rtol=0)


def test_blend_scalars_are_shared_parameters() -> None:
    from model.net.abpn import ABPN

    names = [n for n, _ in ABPN().named_parameters() if "raw_alpha" in n or "raw_beta" in n]
    assert names == ["blend.raw_alpha", "blend.raw_beta"]
