"""The blend pyramid's sparse rendering: a tile computes only the box its mask can reach, and
that box holds every pixel the whole pyramid would change."""

import pytest
import torch
import torch.nn.functional as F

from model.net.bpl import BlendPyramid, Region, pyramid_sizes, reach, support, tiles


@pytest.mark.parametrize(("src", "dst"), [((40, 30), (80, 60)), ((40, 30), (97, 71))])
@pytest.mark.parametrize("box", [Region(10, 13, 4, 9), Region(0, 2, 25, 30), Region(39, 40, 0, 1)])
def test_reach_bounds_a_resized_box_tightly(src, dst, box: Region) -> None:
    level = torch.zeros(1, 1, *src)
    ys, xs = box.within(Region.whole(src))
    level[:, :, ys, xs] = torch.rand(1, 1, box.y1 - box.y0, box.x1 - box.x0) + 0.5
    resized = F.interpolate(level, size=dst, mode="bilinear", align_corners=False)
    reached = reach(box, src, dst)
    assert reached is not None
    inside = torch.zeros(dst, dtype=torch.bool)
    inside[reached.y0 : reached.y1, reached.x0 : reached.x1] = True
    assert not resized[0, 0][~inside].any()
    # Tight: at most one pixel on each side reads the box with a zero weight.
    actual = support(resized, Region.whole(dst))
    assert actual is not None
    assert 0 <= actual.y0 - reached.y0 <= 1 and 0 <= reached.y1 - actual.y1 <= 1
    assert 0 <= actual.x0 - reached.x0 <= 1 and 0 <= reached.x1 - actual.x1 <= 1


def test_support_is_the_bounding_box_of_nonzero_pixels() -> None:
    x = torch.zeros(2, 1, 20, 30)
    x[0, 0, 3, 7] = 1.0
    x[1, 0, 12, 25] = -0.5
    assert support(x, Region(100, 120, 50, 80)) == Region(103, 113, 57, 76)
    assert support(torch.zeros(1, 3, 5, 5), Region(0, 5, 0, 5)) is None


def _pyramid() -> BlendPyramid:
    torch.manual_seed(0)
    pyramid = BlendPyramid(hidden=8)
    with torch.no_grad():
        # Real refiner weights, so every level changes what it carries up.
        pyramid.refiner.conv2.weight.normal_(0, 0.1)
    return pyramid


def test_sparse_tiles_render_what_the_whole_pyramid_does() -> None:
    """Two small spots in the low-res mask: every tile's box is small, holds all the tile's
    change, and matches the whole pyramid there."""
    pyramid = _pyramid()
    sizes = pyramid_sizes((24, 32), (190, 250))
    photo = torch.rand(1, 3, *sizes[-1])

    def image_at(i: int, region: Region) -> torch.Tensor:
        level = F.interpolate(photo, size=sizes[i], mode="area")
        return level[:, :, region.y0 : region.y1, region.x0 : region.x1]

    mask = torch.zeros(1, 1, *sizes[0])
    mask[:, :, 5:7, 6:8] = 0.8
    mask[:, :, 18, 25] = 0.4
    offset = (torch.rand(1, 3, *sizes[0]) - 0.5) * mask.ne(0)
    with torch.no_grad():
        whole_offset, whole_mask = pyramid(offset, mask, sizes, image_at)
        boxes = []
        for region in tiles(sizes[-1], 64):
            rendered = pyramid.render_region(offset, mask, 0, sizes, region, image_at)
            ys, xs = region.within(Region.whole(sizes[-1]))
            if rendered is None:
                assert not whole_mask[:, :, ys, xs].any()
                assert not whole_offset[:, :, ys, xs].any()
                continue
            box, box_offset, box_mask = rendered
            assert box.intersect(region) == box
            by, bx = box.within(Region.whole(sizes[-1]))
            torch.testing.assert_close(box_offset, whole_offset[:, :, by, bx])
            torch.testing.assert_close(box_mask, whole_mask[:, :, by, bx])
            # Outside the box the whole pyramid left the tile untouched.
            outside = whole_offset[:, :, ys, xs].clone()
            in_y, in_x = box.within(region)
            outside[:, :, in_y, in_x] = 0
            assert not outside.any()
            boxes.append(box)
    area = sum((b.y1 - b.y0) * (b.x1 - b.x0) for b in boxes)
    assert 0 < area < 0.1 * sizes[-1][0] * sizes[-1][1]
