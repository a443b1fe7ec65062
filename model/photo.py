"""Photo codec shared by the service and the CLI: encoded bytes <-> RGB pixels plus what rides
along (alpha, ICC profile, EXIF).

Decoding reads the header first, so a size limit is enforced before any pixel is decoded
(decompression bombs), applies the EXIF orientation to the pixels and resets the tag, and turns
every input mode (L, LA, P, RGBA, CMYK, 16-bit) into 8-bit RGB plus an optional alpha plane.
JPEG goes through simplejpeg (libjpeg-turbo) when it can, Pillow otherwise.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import simplejpeg
from PIL import Image, ImageCms

# This module enforces its own, configurable pixel limit from the header (see `decode`).
# Pillow's process-wide guard would otherwise warn, or raise at a threshold of its own that
# callers cannot configure per call.
Image.MAX_IMAGE_PIXELS = None

MEDIA_TYPES: dict[str, str] = {
    "jpeg": "image/jpeg",
    "png": "image/png",
    "webp": "image/webp",
    "tiff": "image/tiff",
}
"""Format name -> canonical media type."""

FORMATS_BY_MEDIA_TYPE: dict[str, str] = {
    **{media: fmt for fmt, media in MEDIA_TYPES.items()},
    "image/jpg": "jpeg",
    "image/pjpeg": "jpeg",
    "image/tif": "tiff",
    "image/x-tiff": "tiff",
}
"""Media type (common aliases included) -> format name."""

SUFFIXES: dict[str, str] = {
    ".jpg": "jpeg",
    ".jpeg": "jpeg",
    ".png": "png",
    ".webp": "webp",
    ".tif": "tiff",
    ".tiff": "tiff",
}
"""File suffix -> format name."""

DEFAULT_QUALITY = 90
"""JPEG and WebP quality when the caller gives none."""

# Pillow's format names -> ours. MPO is how Pillow names the multi-picture JPEGs that many
# phones and cameras write; the first picture is an ordinary JPEG.
_PIL_FORMATS = {"JPEG": "jpeg", "MPO": "jpeg", "PNG": "png", "WEBP": "webp", "TIFF": "tiff"}
_ORIENTATION = 0x0112
# Pillow modes with an alpha band. Not "has an A in its name": LAB's A is a colour axis.
_ALPHA_MODES = {"LA", "La", "PA", "RGBA", "RGBa"}
# zlib level 1: a 4K PNG takes about 1 s at level 1 and is only ~8% smaller at level 6.
_PNG_COMPRESS_LEVEL = 1
# WebP method 2 encodes 4K in about half the time of Pillow's default (4) at the same size.
_WEBP_METHOD = 2


# What each output format can hold at most. libjpeg refuses sides over 65500 and libwebp over
# 16383; JPEG keeps EXIF in one APP1 marker and the ICC profile in at most 255 APP2 markers.
JPEG_MAX_SIDE = 65500
WEBP_MAX_SIDE = 16383
_JPEG_MARKER_BYTES = 65533
JPEG_MAX_EXIF_BYTES = _JPEG_MARKER_BYTES
JPEG_MAX_ICC_BYTES = 255 * (_JPEG_MARKER_BYTES - 14)  # 14: each marker's ICC_PROFILE header


class PhotoError(ValueError):
    """Bytes that cannot be turned into a photo, or a photo that the asked format cannot hold.
    `code` is one of "unsupported_media_type", "invalid_image", "image_too_large" or
    "format_limit"."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class Photo:
    """Decoded pixels and the metadata that is carried through to the encoded output."""

    rgb: np.ndarray
    """(H, W, 3) uint8, C-contiguous, EXIF orientation already applied."""
    alpha: np.ndarray | None
    """(H, W) uint8 alpha plane, passed through untouched, or None."""
    format: str
    """Source format: "jpeg", "png", "webp" or "tiff"."""
    icc_profile: bytes | None = None
    """Embedded RGB ICC profile, or None (treat as sRGB)."""
    exif: bytes | None = None
    """Original EXIF block with Orientation reset to 1 (the pixels are already upright)."""
    reoriented: bool = False
    """The EXIF orientation turned the pixels: the source bytes do not hold them as they are."""


def format_for_media_type(content_type: str | None) -> str | None:
    """Our format name for a Content-Type header value (parameters ignored), or None."""
    if not content_type:
        return None
    media = content_type.split(";", 1)[0].strip().lower()
    return FORMATS_BY_MEDIA_TYPE.get(media)


def format_for_path(path: str | Path) -> str | None:
    """Our format name for a file name's suffix, or None."""
    return SUFFIXES.get(Path(path).suffix.lower())


def _open(data: bytes) -> tuple[Image.Image, str]:
    """Open lazily (header only) and name the format; raises PhotoError."""
    if not data:
        raise PhotoError("invalid_image", "the image is empty")
    try:
        img = Image.open(io.BytesIO(data))
    except Image.UnidentifiedImageError as exc:
        raise PhotoError("invalid_image", "not a JPEG, PNG, WebP or TIFF image") from exc
    except Image.DecompressionBombError as exc:
        # Only reachable if someone re-enabled Pillow's guard; still a size problem, not a 500.
        raise PhotoError("image_too_large", str(exc)) from exc
    except Exception as exc:  # Pillow raises many exception types for malformed headers.
        raise PhotoError("invalid_image", f"not a readable image: {exc}") from exc
    fmt = _PIL_FORMATS.get(img.format or "")
    if fmt is None:
        img.close()
        raise PhotoError(
            "unsupported_media_type",
            f"{img.format} images are not supported; send JPEG, PNG, WebP or TIFF",
        )
    return img, fmt


def probe(data: bytes) -> tuple[str, int, int]:
    """Format, width and height read from the header alone (no pixels are decoded)."""
    img, fmt = _open(data)
    with img:
        width, height = img.size
    return fmt, width, height


def _check_size(width: int, height: int, max_pixels: int | None) -> None:
    if width < 1 or height < 1:
        raise PhotoError("invalid_image", f"the image has no pixels ({width}x{height})")
    if max_pixels is not None and width * height > max_pixels:
        raise PhotoError(
            "image_too_large",
            f"{width}x{height} is {width * height} pixels, more than the limit of {max_pixels}",
        )


MAX_JPEG_SCANS = 32
"""Most scans a JPEG may hold. libjpeg's progressive mode writes 10 (6 for grey) and baseline
files have one; each scan is a pass over every coefficient, so a small file that repeats a
refinement scan hundreds of times costs seconds of decoding at 8K for nothing."""
TIFF_TILE_SLACK = 4
"""A TIFF tile may cover this many times the image's pixels (at least 1024x1024): tiles are
multiples of 16 and writers often use one larger than a small image, never more."""
_TIFF_TILE_WIDTH, _TIFF_TILE_LENGTH, _TIFF_BITS_PER_SAMPLE = 322, 323, 258


@dataclass(frozen=True)
class DecodeCost:
    """What decoding a photo will allocate, read from its header before any pixel is."""

    width: int
    height: int
    decoder_bytes: int
    """The decoder's own buffers: the image in its stored mode (16-bit, CMYK, alpha) and, for a
    tiled TIFF, one tile; the 8-bit RGB and alpha made from them come on top."""


def _decode_cost(img: Image.Image, fmt: str) -> DecodeCost:
    width, height = img.size
    if fmt == "jpeg" and img.mode in ("RGB", "L"):
        return DecodeCost(width, height, 3 * width * height)  # libjpeg-turbo writes the RGB
    # Pillow's modes name their sample size: 1-bit and 8-bit bands take a byte each, I;16* two,
    # I and F four, and 16-bit RGB(A) TIFFs open as their 8-bit modes after a 16-bit read.
    sample = 4 if img.mode in ("I", "F") else 2 if "16" in img.mode else 1
    wide = 2 if fmt == "tiff" and _bits_per_sample(img) > 8 else 1
    per_pixel = len(img.getbands()) * sample * wide
    tile = _tiff_tile(img)[2] if fmt == "tiff" else 0
    return DecodeCost(width, height, per_pixel * (width * height + tile))


def _tiff_tile(img: Image.Image) -> tuple[int, int, int]:
    """A TIFF's tile width, length and pixels (0 for a stripped TIFF)."""
    tags = getattr(img, "tag_v2", {})
    width = int(tags.get(_TIFF_TILE_WIDTH, 0) or 0)
    length = int(tags.get(_TIFF_TILE_LENGTH, 0) or 0)
    return width, length, width * length


def _bits_per_sample(img: Image.Image) -> int:
    bits = getattr(img, "tag_v2", {}).get(_TIFF_BITS_PER_SAMPLE, 8)
    if isinstance(bits, tuple):
        bits = max(bits, default=8)
    return int(bits) if isinstance(bits, int) else 8


def _check_decode_cost(data: bytes, img: Image.Image, fmt: str) -> None:
    """Refuse, from the header bytes, files whose decoding would cost far more than their
    pixels: a TIFF whose tile buffers dwarf the image, a JPEG with more scans than any encoder
    writes."""
    if fmt == "jpeg":
        scans = jpeg_scan_count(data, MAX_JPEG_SCANS + 1)
        if scans > MAX_JPEG_SCANS:
            raise PhotoError(
                "invalid_image",
                f"the JPEG holds more than {MAX_JPEG_SCANS} scans; encoders write 1-10",
            )
    elif fmt == "tiff":
        tile_width, tile_length, tile = _tiff_tile(img)
        width, height = img.size
        if tile > max(TIFF_TILE_SLACK * width * height, 1 << 20):
            raise PhotoError(
                "invalid_image",
                f"the TIFF's tiles ({tile_width}x{tile_length}) are far larger than the image "
                f"({width}x{height})",
            )


def jpeg_scan_count(data: bytes, stop_at: int) -> int:
    """Start-of-scan markers in a JPEG, found by walking its marker segments and skipping each
    scan's entropy-coded data; counting stops at `stop_at`. Malformed structure ends the walk
    (the decoder judges it)."""
    scans, pos, end = 0, 2, len(data)
    while pos + 4 <= end and scans < stop_at:
        if data[pos] != 0xFF:
            return scans
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if marker == 0xD9:  # EOI
            return scans
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # standalone markers
            pos += 2
            continue
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        pos += 2 + length
        if marker != 0xDA:
            continue
        scans += 1
        # Entropy-coded data runs to the next 0xFF that is neither stuffing (FF00) nor a
        # restart marker (FFD0-FFD7).
        while True:
            pos = data.find(b"\xff", pos)
            if pos < 0 or pos + 1 >= end:
                return scans
            following = data[pos + 1]
            if following == 0x00 or 0xD0 <= following <= 0xD7 or following == 0xFF:
                pos += 1 if following == 0xFF else 2
                continue
            break
    return scans


def decode(
    data: bytes,
    max_pixels: int | None = None,
    admit: Callable[[DecodeCost], None] | None = None,
) -> Photo:
    """Decode JPEG, PNG, WebP or TIFF bytes into a Photo. The size in the header is checked
    against `max_pixels` (None: no limit) before any pixel is decoded, and so is what decoding
    would cost beyond the pixels (`MAX_JPEG_SCANS`, `TIFF_TILE_SLACK`); then `admit`, when
    given, is called with what the decode will allocate and may raise to refuse it. Raises
    PhotoError, or what `admit` raises."""
    img, fmt = _open(data)
    with img:
        _check_size(*img.size, max_pixels)
        _check_decode_cost(data, img, fmt)
        if admit is not None:
            admit(_decode_cost(img, fmt))
        orientation = _orientation(img)
        icc = img.info.get("icc_profile") or None
        exif = _reset_orientation(img.info.get("exif")) if img.info.get("exif") else None
        rgb = alpha = None
        if fmt == "jpeg":
            rgb = _decode_jpeg_checked(data, img.mode)
        if rgb is None:
            try:
                img.load()
                if orientation is None:
                    # PNG may keep its eXIf chunk after the pixels: only readable now.
                    orientation = _orientation(img)
                    if exif is None and img.info.get("exif"):
                        exif = _reset_orientation(img.info["exif"])
                rgb, alpha, icc = _to_rgb(img, icc)
            except Exception as exc:  # truncated or corrupt data, in any of Pillow's types
                raise PhotoError("invalid_image", f"the image data is corrupt: {exc}") from exc
    if icc is not None and not _is_rgb_profile(icc):
        icc = None
    rgb = _orient(rgb, orientation or 1)
    alpha = _orient(alpha, orientation or 1) if alpha is not None else None
    reoriented = (orientation or 1) != 1
    return Photo(
        rgb=rgb, alpha=alpha, format=fmt, icc_profile=icc, exif=exif, reoriented=reoriented
    )


def _decode_jpeg_checked(data: bytes, mode: str) -> np.ndarray | None:
    """RGB and grey JPEGs decoded by libjpeg-turbo (simplejpeg); None for the rest, which
    Pillow decodes. Pillow fills a JPEG whose data ends early with grey and says nothing, so
    libjpeg-turbo's warning decides for those too: a tiny body whose header claims 8K must
    not buy an 8K decode and model run (checked at 1/8 scale, which reads every byte)."""
    fast = mode in ("RGB", "L")
    try:
        if fast:
            return simplejpeg.decode_jpeg(data, colorspace="RGB")
        simplejpeg.decode_jpeg(data, colorspace="CMYK" if mode == "CMYK" else "RGB", min_factor=8)
    except ValueError as exc:
        if "premature end" in str(exc).lower():
            raise PhotoError("invalid_image", f"the JPEG data is truncated: {exc}") from exc
        # Other warnings (extraneous bytes before a marker, ...) are common in camera files
        # that every viewer shows: Pillow decodes those.
    return None


def _orientation(img: Image.Image) -> int | None:
    """The EXIF orientation (1-8) if it is known without decoding pixels, else None."""
    if img.format == "PNG" and "exif" not in img.info:
        return None  # reading it would decode the pixels; asked again after load()
    try:
        value = img.getexif().get(_ORIENTATION)
    except Exception:  # a malformed EXIF block must not cost the whole photo
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _to_rgb(
    img: Image.Image, icc: bytes | None
) -> tuple[np.ndarray, np.ndarray | None, bytes | None]:
    """Any Pillow mode -> (RGB, alpha or None, ICC profile that still applies)."""
    mode = img.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        # 16-bit grey: scale 0-65535 to 0-255 (Pillow's convert("L") would clip at 255 instead).
        grey = np.asarray(img, dtype=np.float64 if mode == "F" else np.int64)
        if mode != "F":
            grey = np.clip(grey, 0, 65535) / 257.0
        grey = np.clip(np.rint(grey), 0, 255).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2), None, None
    if mode == "CMYK":
        return _cmyk_to_rgb(img, icc), None, None
    if mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in img.info
        img = img.convert("RGBA" if has_alpha else "RGB")
    elif mode == "1":
        img = img.convert("L")
    elif mode not in ("RGB", "RGBA", "L", "LA"):
        img = img.convert("RGBA" if mode in _ALPHA_MODES else "RGB")
    arr = np.asarray(img)
    if img.mode in ("L", "LA"):
        grey = arr if arr.ndim == 2 else arr[:, :, 0]
        rgb = np.repeat(grey[:, :, None], 3, axis=2)
        alpha = np.ascontiguousarray(arr[:, :, 1]) if img.mode == "LA" else None
        return rgb, alpha, None  # a grey profile no longer describes the RGB pixels
    if img.mode == "RGBA":
        return np.ascontiguousarray(arr[:, :, :3]), np.ascontiguousarray(arr[:, :, 3]), icc
    return arr, None, icc


def _cmyk_to_rgb(img: Image.Image, icc: bytes | None) -> np.ndarray:
    """CMYK through its embedded profile to sRGB when there is one (a naive conversion is
    visibly off for print profiles), naively otherwise."""
    if icc:
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            srgb = ImageCms.createProfile("sRGB")
            converted = ImageCms.profileToProfile(img, source, srgb, outputMode="RGB")
            if converted is not None:
                return np.asarray(converted)
        except (ImageCms.PyCMSError, OSError, ValueError):
            pass
    return np.asarray(img.convert("RGB"))


def _is_rgb_profile(icc: bytes) -> bool:
    # Bytes 16-19 of an ICC header name the data colour space.
    return len(icc) >= 20 and icc[16:20] == b"RGB "


def _orient(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation to (H, W) or (H, W, C) pixels; returns C-contiguous pixels."""
    p = pixels
    if orientation == 2:
        p = p[:, ::-1]
    elif orientation == 3:
        p = p[::-1, ::-1]
    elif orientation == 4:
        p = p[::-1]
    elif orientation == 5:
        p = p.swapaxes(0, 1)
    elif orientation == 6:
        p = p.swapaxes(0, 1)[:, ::-1]
    elif orientation == 7:
        p = p.swapaxes(0, 1)[::-1, ::-1]
    elif orientation == 8:
        p = p.swapaxes(0, 1)[::-1]
    return np.ascontiguousarray(p)


def _reset_orientation(exif: bytes) -> bytes:
    """The EXIF block with its IFD0 Orientation set to 1, patched in place so that everything
    else (maker notes, sub-IFDs, offsets) stays byte-identical. Unparseable blocks are kept."""
    prefix = b"Exif\x00\x00" if exif.startswith(b"Exif\x00\x00") else b""
    tiff = bytearray(exif[len(prefix) :])
    try:
        order = {b"II": "<", b"MM": ">"}[bytes(tiff[:2])]
        (ifd,) = struct.unpack_from(order + "I", tiff, 4)
        (count,) = struct.unpack_from(order + "H", tiff, ifd)
        for i in range(count):
            entry = ifd + 2 + 12 * i
            tag, kind = struct.unpack_from(order + "HH", tiff, entry)
            if tag == _ORIENTATION and kind == 3:  # SHORT, stored in the value field
                struct.pack_into(order + "H", tiff, entry + 8, 1)
                break
    except (KeyError, struct.error):
        return exif
    return prefix + bytes(tiff)


def check_encodable(photo: Photo, fmt: str, mask: bool = False) -> None:
    """Raise PhotoError("format_limit") naming the limit when `photo` (or, with `mask`, its
    mask, which carries no metadata) cannot be written as `fmt`; cheap, so callers check
    before doing the work whose result would be thrown away."""
    height, width = photo.rgb.shape[:2]
    side, limit = max(width, height), {"jpeg": JPEG_MAX_SIDE, "webp": WEBP_MAX_SIDE}.get(fmt)
    if limit is not None and side > limit:
        raise PhotoError(
            "format_limit",
            f"{fmt.upper()} images are at most {limit} pixels a side; this one is "
            f"{width}x{height}: ask for another format",
        )
    if fmt != "jpeg" or mask:
        return
    for what, data, most in (
        ("EXIF", photo.exif, JPEG_MAX_EXIF_BYTES),
        ("ICC profile", photo.icc_profile, JPEG_MAX_ICC_BYTES),
    ):
        if data and len(data) > most:
            raise PhotoError(
                "format_limit",
                f"JPEG holds at most {most} bytes of {what}; this image has {len(data)}: ask "
                "for png, webp or tiff",
            )


def encode(photo: Photo, fmt: str | None = None, quality: int | None = None) -> bytes:
    """Encode a Photo as `fmt` (default: its source format), keeping its ICC profile, EXIF and,
    where the format has one, alpha (JPEG drops it). `quality` (1-100) applies to JPEG and WebP;
    PNG and TIFF are lossless."""
    fmt = fmt or photo.format
    check_encodable(photo, fmt)
    pixels = photo.rgb
    if photo.alpha is not None and fmt != "jpeg":
        pixels = np.dstack([photo.rgb, photo.alpha])
    return _encode(pixels, fmt, quality, photo.icc_profile, photo.exif)


def encode_mask(mask: np.ndarray, fmt: str, quality: int | None = None) -> bytes:
    """Encode an (H, W) uint8 mask as a greyscale image in `fmt`."""
    check_encodable(Photo(rgb=mask, alpha=None, format=fmt), fmt, mask=True)
    return _encode(mask, fmt, quality, None, None)


def _encode(
    pixels: np.ndarray, fmt: str, quality: int | None, icc: bytes | None, exif: bytes | None
) -> bytes:
    if fmt not in MEDIA_TYPES:
        raise PhotoError("unsupported_media_type", f"cannot encode {fmt!r}")
    quality = DEFAULT_QUALITY if quality is None else quality
    if not 1 <= quality <= 100:
        raise ValueError(f"quality must be within 1 and 100, got {quality}")
    grey = pixels.ndim == 2
    if fmt == "jpeg" and not icc and not exif:
        return simplejpeg.encode_jpeg(
            np.ascontiguousarray(pixels if not grey else pixels[:, :, None]),
            quality=quality,
            colorspace="GRAY" if grey else "RGB",
            colorsubsampling="Gray" if grey else "420",
        )
    img = Image.fromarray(np.ascontiguousarray(pixels))
    options: dict[str, object] = {}
    if icc:
        options["icc_profile"] = icc
    if exif and fmt == "tiff" and not _exif_parses(exif):
        # TIFF stores EXIF as tags, so only a block Pillow can parse can be written; the other
        # formats copy the block as it is.
        exif = None
    if exif:
        options["exif"] = exif
    if fmt == "jpeg":
        options.update(quality=quality, subsampling="4:2:0")
    elif fmt == "png":
        options.update(compress_level=_PNG_COMPRESS_LEVEL)
    elif fmt == "webp":
        options.update(quality=quality, method=_WEBP_METHOD)
    out = io.BytesIO()
    img.save(out, format=fmt.upper(), **options)
    return out.getvalue()


def _exif_parses(exif: bytes) -> bool:
    try:
        Image.Exif().load(exif)
    except Exception:  # Pillow raises many types for a malformed block
        return False
    return True


def read_file(path: str | Path, max_pixels: int | None = None) -> Photo:
    """Decode the photo stored at `path`."""
    return decode(Path(path).read_bytes(), max_pixels)


def write_file(
    photo: Photo, path: str | Path, fmt: str | None = None, quality: int | None = None
) -> None:
    """Encode `photo` into `path`; the format comes from `fmt`, else from the suffix, else is
    the photo's source format."""
    fmt = fmt or format_for_path(path) or photo.format
    Path(path).write_bytes(encode(photo, fmt, quality))


def resize_long_side(image: np.ndarray, side: int) -> np.ndarray:
    """`image` with its long side `side`: bicubic when enlarging, area average when shrinking."""
    h, w = image.shape[:2]
    scale = side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    method = Image.Resampling.BICUBIC if scale > 1 else Image.Resampling.BOX
    return np.asarray(Image.fromarray(image).resize(size, method))
