"""Photo codec: round trips, orientation, ICC, alpha, modes, and bad or oversized input."""

from __future__ import annotations

import io
import struct
import zlib

import bombs
import numpy as np
import pytest
from PIL import Image, ImageCms

from model import photo
from model.photo import Photo, PhotoError


def _gradient(h: int = 48, w: int = 64) -> np.ndarray:
    """A smooth test picture: lossy codecs keep it close, so round trips can be compared."""
    y, x = np.mgrid[0:h, 0:w]
    rgb = np.stack([x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1), (x + y) % 256], axis=2)
    return rgb.astype(np.uint8)


def _save(img: Image.Image, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    img.save(out, format=fmt, **options)
    return out.getvalue()


def _srgb_icc() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _exif(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "TestMaker"  # Make: checks the rest of the block survives
    return exif.tobytes()


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG signature and IHDR claiming a size, followed by a few bytes of pixel data."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat)


LOSSLESS = ("png", "tiff")


@pytest.mark.parametrize("fmt", ["jpeg", "png", "webp", "tiff"])
def test_round_trip_per_format(fmt: str) -> None:
    rgb = _gradient()
    data = photo.encode(Photo(rgb=rgb, alpha=None, format=fmt))
    assert photo.probe(data) == (fmt, 64, 48)
    decoded = photo.decode(data)
    assert decoded.format == fmt
    assert decoded.rgb.shape == (48, 64, 3) and decoded.rgb.dtype == np.uint8
    assert decoded.rgb.flags.c_contiguous
    assert decoded.alpha is None
    error = np.abs(decoded.rgb.astype(int) - rgb).mean()
    assert error == 0 if fmt in LOSSLESS else error < 4


@pytest.mark.parametrize("fmt", ["png", "webp", "tiff"])
def test_alpha_is_kept(fmt: str) -> None:
    rgb = _gradient()
    alpha = np.tile(np.arange(64, dtype=np.uint8) * 4, (48, 1))
    kwargs = {"lossless": True} if fmt == "webp" else {}
    data = _save(Image.fromarray(np.dstack([rgb, alpha])), fmt.upper(), **kwargs)
    decoded = photo.decode(data)
    np.testing.assert_array_equal(decoded.alpha, alpha)
    again = photo.decode(photo.encode(decoded))
    np.testing.assert_array_equal(again.alpha, alpha)


def test_jpeg_output_drops_alpha() -> None:
    rgba = Photo(rgb=_gradient(), alpha=np.full((48, 64), 7, np.uint8), format="png")
    decoded = photo.decode(photo.encode(rgba, "jpeg"))
    assert decoded.format == "jpeg" and decoded.alpha is None


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_and_reset(fmt: str, orientation: int) -> None:
    rgb = _gradient(30, 40)
    source = Image.fromarray(rgb)
    kwargs = {"lossless": True} if fmt == "WEBP" else {"quality": 100} if fmt == "JPEG" else {}
    data = _save(source, fmt, exif=_exif(orientation), **kwargs)
    with Image.open(io.BytesIO(data)) as reference_img:
        from PIL import ImageOps

        upright = np.asarray(ImageOps.exif_transpose(reference_img).convert("RGB"))
    decoded = photo.decode(data)
    assert decoded.rgb.shape == upright.shape
    assert np.abs(decoded.rgb.astype(int) - upright).mean() < 3
    assert decoded.exif is not None
    exif = Image.Exif()
    exif.load(decoded.exif)
    assert exif[0x0112] == 1
    assert exif[0x010F] == "TestMaker"


def test_icc_profile_is_kept_through_every_encoder() -> None:
    icc = _srgb_icc()
    data = _save(Image.fromarray(_gradient()), "JPEG", icc_profile=icc)
    decoded = photo.decode(data)
    assert decoded.icc_profile == icc
    for fmt in ("jpeg", "png", "webp", "tiff"):
        assert photo.decode(photo.encode(decoded, fmt)).icc_profile == icc, fmt


def test_exif_survives_encoding() -> None:
    data = _save(Image.fromarray(_gradient()), "JPEG", exif=_exif(6))
    decoded = photo.decode(data)
    for fmt in ("jpeg", "png", "webp"):
        out = photo.decode(photo.encode(decoded, fmt))
        assert out.rgb.shape == decoded.rgb.shape, fmt  # not rotated a second time
        exif = Image.Exif()
        exif.load(out.exif)
        assert exif[0x010F] == "TestMaker", fmt


@pytest.mark.parametrize(
    ("mode", "has_alpha"), [("L", False), ("LA", True), ("P", False), ("1", False)]
)
def test_modes_become_rgb(mode: str, has_alpha: bool) -> None:
    img = Image.fromarray(_gradient()).convert(mode)
    decoded = photo.decode(_save(img, "PNG"))
    assert decoded.rgb.shape == (48, 64, 3)
    assert (decoded.alpha is not None) == has_alpha


def test_palette_with_transparency_gets_alpha() -> None:
    img = Image.fromarray(_gradient()).convert("P")
    decoded = photo.decode(_save(img, "PNG", transparency=0))
    assert decoded.alpha is not None and decoded.alpha.shape == (48, 64)


def test_16_bit_grey_is_scaled_not_clipped() -> None:
    grey = (np.arange(48 * 64).reshape(48, 64) * 21).astype(np.uint16)
    decoded = photo.decode(_save(Image.fromarray(grey), "PNG"))
    expected = np.rint(grey / 257.0).astype(np.uint8)
    np.testing.assert_array_equal(decoded.rgb[:, :, 0], expected)


def test_cmyk_jpeg_becomes_rgb() -> None:
    img = Image.fromarray(_gradient()).convert("CMYK")
    decoded = photo.decode(_save(img, "JPEG"))
    assert decoded.rgb.shape == (48, 64, 3)
    assert decoded.icc_profile is None
    assert np.abs(decoded.rgb.astype(int) - _gradient()).mean() < 8


def test_grey_jpeg_takes_the_fast_path_to_rgb() -> None:
    img = Image.fromarray(_gradient()).convert("L")
    decoded = photo.decode(_save(img, "JPEG"))
    assert decoded.rgb.shape == (48, 64, 3)
    assert (decoded.rgb[:, :, 0] == decoded.rgb[:, :, 2]).all()


def test_mask_encodes_as_grey() -> None:
    mask = np.tile(np.arange(64, dtype=np.uint8) * 4, (48, 1))
    for fmt in ("jpeg", "png", "webp", "tiff"):
        data = photo.encode_mask(mask, fmt)
        with Image.open(io.BytesIO(data)) as img:
            assert img.size == (64, 48), fmt


@pytest.mark.parametrize(
    "data",
    [b"", b"not an image at all", b"\x89PNG\r\n\x1a\n" + b"\x00" * 10],
    ids=["empty", "garbage", "bad-header"],
)
def test_unreadable_bytes_are_invalid(data: bytes) -> None:
    with pytest.raises(PhotoError) as info:
        photo.decode(data)
    assert info.value.code == "invalid_image"


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "TIFF"])
def test_truncated_images_are_invalid(fmt: str) -> None:
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    data = _save(Image.fromarray(noise), fmt)
    with pytest.raises(PhotoError) as info:
        photo.decode(data[: len(data) * 2 // 3])
    assert info.value.code == "invalid_image"


def test_unsupported_format_is_named() -> None:
    with pytest.raises(PhotoError) as info:
        photo.decode(_save(Image.fromarray(_gradient()), "GIF"))
    assert info.value.code == "unsupported_media_type"


def test_pixel_limit_is_checked_from_the_header() -> None:
    bomb = _png_header_only(100_000, 100_000)
    assert photo.probe(bomb) == ("png", 100_000, 100_000)
    with pytest.raises(PhotoError) as info:
        photo.decode(bomb, max_pixels=40_000_000)
    assert info.value.code == "image_too_large"


def test_limit_allows_images_up_to_it() -> None:
    data = photo.encode(Photo(rgb=_gradient(), alpha=None, format="png"))
    assert photo.decode(data, max_pixels=64 * 48).rgb.shape == (48, 64, 3)
    with pytest.raises(PhotoError):
        photo.decode(data, max_pixels=64 * 48 - 1)


class _Refused(Exception):
    pass


def _refuse(cost: photo.DecodeCost) -> None:
    raise _Refused(cost)


def test_admit_is_told_the_decode_cost_and_can_refuse_before_any_pixel() -> None:
    # The header claims 100,000 x 100,000: refused by `admit`, the decode never allocates.
    with pytest.raises(_Refused) as refused:
        photo.decode(_png_header_only(100_000, 100_000), admit=_refuse)
    assert refused.value.args[0] == photo.DecodeCost(100_000, 100_000, 3 * 10**10)
    jpeg = _save(Image.fromarray(_gradient()), "JPEG")
    with pytest.raises(_Refused) as refused:
        photo.decode(jpeg, admit=_refuse)
    assert refused.value.args[0] == photo.DecodeCost(64, 48, 3 * 64 * 48)
    seen: list[photo.DecodeCost] = []
    assert photo.decode(jpeg, admit=seen.append).rgb.shape == (48, 64, 3)
    assert seen == [photo.DecodeCost(64, 48, 3 * 64 * 48)]


def test_a_16_bit_tiled_tiff_costs_its_samples_and_its_tile() -> None:
    # 16-bit RGBA: 8 bytes a pixel, for the image and for its one 1024x1024 tile.
    with pytest.raises(_Refused) as refused:
        photo.decode(bombs.tiled_tiff(1000, 800, 1024, 1024), admit=_refuse)
    assert refused.value.args[0] == photo.DecodeCost(1000, 800, 8 * (1000 * 800 + 1024 * 1024))


def test_media_types_and_suffixes() -> None:
    assert photo.format_for_media_type("image/JPEG; q=0.9") == "jpeg"
    assert photo.format_for_media_type("image/jpg") == "jpeg"
    assert photo.format_for_media_type("text/plain") is None
    assert photo.format_for_media_type(None) is None
    assert {photo.FORMATS_BY_MEDIA_TYPE[m] for m in photo.MEDIA_TYPES.values()} == set(
        photo.MEDIA_TYPES
    )
    assert photo.format_for_path("a/b.TIF") == "tiff"


def test_file_helpers(tmp_path) -> None:
    source = Photo(rgb=_gradient(), alpha=None, format="jpeg")
    photo.write_file(source, tmp_path / "out.png")
    loaded = photo.read_file(tmp_path / "out.png")
    assert loaded.format == "png"
    np.testing.assert_array_equal(loaded.rgb, source.rgb)
