"""Photo codec against hostile input found by the reliability review (issue 11): a JPEG whose
header claims far more than its data holds, LAB TIFFs, metadata and sizes that an output
format cannot hold, and EXIF that TIFF cannot write."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from bombs import jpeg_scan_bomb, progressive_jpeg, repeat_last_scan, tiff_tile_bomb
from PIL import Image

from model import photo
from model.photo import Photo, PhotoError


def _jpeg(h: int = 48, w: int = 64, mode: str = "RGB") -> bytes:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    img = Image.fromarray(pixels)
    if mode != "RGB":
        img = img.convert(mode)
    out = io.BytesIO()
    img.save(out, format="JPEG", quality=90)
    return out.getvalue()


def _claim_size(jpeg: bytes, width: int, height: int) -> bytes:
    """The same JPEG with its SOF0 frame header claiming another size."""
    data = bytearray(jpeg)
    sof = data.find(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, height, width)
    return bytes(data)


@pytest.mark.parametrize("mode", ["RGB", "L", "CMYK"])
def test_a_jpeg_claiming_more_than_its_data_is_invalid(mode: str) -> None:
    data = _claim_size(_jpeg(mode=mode), 7680, 5120)
    assert photo.probe(data) == ("jpeg", 7680, 5120) and len(data) < 20_000
    with pytest.raises(PhotoError) as caught:
        photo.decode(data)
    assert caught.value.code == "invalid_image"
    assert "truncated" in caught.value.message


@pytest.mark.parametrize("mode", ["RGB", "L", "CMYK"])
def test_a_jpeg_cut_short_is_invalid(mode: str) -> None:
    data = _jpeg(256, 256, mode)
    with pytest.raises(PhotoError) as caught:
        photo.decode(data[: len(data) // 2])
    assert caught.value.code == "invalid_image"


def test_a_jpeg_with_extraneous_bytes_before_a_marker_still_decodes() -> None:
    # libjpeg warns about these, as about truncation, but every viewer shows such files.
    data = _jpeg()
    eoi = data.rfind(b"\xff\xd9")
    decoded = photo.decode(data[:eoi] + b"\x00\x00\x00" + data[eoi:])
    assert decoded.rgb.shape == (48, 64, 3)


def test_a_lab_tiff_decodes_to_rgb_without_alpha() -> None:
    out = io.BytesIO()
    Image.new("LAB", (32, 24), (140, 150, 160)).save(out, format="TIFF")
    decoded = photo.decode(out.getvalue())
    assert decoded.alpha is None
    assert decoded.rgb.shape == (24, 32, 3)
    reference = Image.open(io.BytesIO(out.getvalue())).convert("RGB").getpixel((0, 0))
    assert tuple(decoded.rgb[0, 0]) == reference


def _plain(h: int, w: int, **meta: bytes) -> Photo:
    return Photo(rgb=np.zeros((h, w, 3), np.uint8), alpha=None, format="png", **meta)


@pytest.mark.parametrize(
    ("size", "fmt", "limit"),
    [((4, 20000), "webp", "16383"), ((2, 70000), "jpeg", "65500"), ((70000, 2), "jpeg", "65500")],
)
def test_sizes_the_format_cannot_hold_are_named(size, fmt: str, limit: str) -> None:
    image = _plain(*size)
    for mask in (False, True):
        with pytest.raises(PhotoError) as caught:
            photo.check_encodable(image, fmt, mask=mask)
        assert caught.value.code == "format_limit" and limit in caught.value.message
    with pytest.raises(PhotoError):
        photo.encode(image, fmt)
    with pytest.raises(PhotoError):
        photo.encode_mask(image.rgb[:, :, 0], fmt)
    photo.check_encodable(image, "png")  # PNG holds it


def test_exif_too_long_for_jpeg_is_named_and_fine_elsewhere() -> None:
    image = _plain(48, 64, exif=b"Exif\x00\x00" + b"\x00" * 400_000)
    with pytest.raises(PhotoError) as caught:
        photo.check_encodable(image, "jpeg")
    assert caught.value.code == "format_limit"
    assert str(photo.JPEG_MAX_EXIF_BYTES) in caught.value.message
    photo.check_encodable(image, "jpeg", mask=True)  # the mask carries no EXIF
    for fmt in ("png", "webp"):
        assert photo.decode(photo.encode(image, fmt)).rgb.shape == (48, 64, 3)


def test_exif_that_tiff_cannot_parse_is_dropped_not_fatal() -> None:
    image = _plain(8, 8, exif=b"Exif\x00\x00not a tiff header at all")
    decoded = photo.decode(photo.encode(image, "tiff"))
    assert decoded.rgb.shape == (8, 8, 3)


def test_png_with_a_huge_exif_chunk_decodes_with_it() -> None:
    """The issue's first input: the EXIF survives decoding, so the limit check sees it."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

    png = io.BytesIO()
    Image.new("RGB", (64, 48)).save(png, format="PNG")
    data = png.getvalue()
    iend = data.rfind(b"IEND") - 4
    exif = b"MM\x00\x2a\x00\x00\x00\x08\x00\x00" + b"\x00" * 400_000
    data = data[:iend] + chunk(b"eXIf", exif) + data[iend:]
    decoded = photo.decode(data)
    assert decoded.exif is not None and len(decoded.exif) > photo.JPEG_MAX_EXIF_BYTES
    with pytest.raises(PhotoError):
        photo.check_encodable(decoded, "jpeg")


def test_scans_are_counted_from_the_marker_segments() -> None:
    assert photo.jpeg_scan_count(_jpeg(), 100) == 1
    assert photo.jpeg_scan_count(progressive_jpeg(), 100) == 10
    grey = io.BytesIO()
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(grey, format="JPEG", progressive=True)
    assert photo.jpeg_scan_count(grey.getvalue(), 100) == 6


def test_a_jpeg_repeating_a_scan_hundreds_of_times_is_refused_before_decoding() -> None:
    """The scan bomb: one refinement scan repeated, each repeat one more full decoding pass."""
    data = progressive_jpeg()
    bomb = jpeg_scan_bomb()
    assert photo.jpeg_scan_count(bomb, 1000) == 310
    with pytest.raises(PhotoError) as caught:
        photo.decode(bomb)
    assert caught.value.code == "invalid_image" and "scans" in caught.value.message
    # At the limit it still decodes: real files are never near it.
    allowed = repeat_last_scan(data, photo.MAX_JPEG_SCANS - 10)
    assert photo.jpeg_scan_count(allowed, 100) == photo.MAX_JPEG_SCANS
    assert photo.decode(allowed).rgb.shape == (256, 384, 3)


def test_a_tiff_whose_tiles_dwarf_the_image_is_refused_from_its_header() -> None:
    bomb = tiff_tile_bomb()
    assert len(bomb) < 200 and photo.probe(bomb) == ("tiff", 16, 16)
    with pytest.raises(PhotoError) as caught:
        photo.decode(bomb)
    assert caught.value.code == "invalid_image" and "tiles" in caught.value.message


def test_a_tiled_tiff_from_a_real_writer_decodes() -> None:
    out = io.BytesIO()
    rng = np.random.default_rng(2)
    pixels = rng.integers(0, 255, (100, 120, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(out, format="TIFF", tiffinfo={322: 256, 323: 256})
    assert photo.decode(out.getvalue()).rgb.shape == (100, 120, 3)
