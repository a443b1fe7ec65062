"""Decoder bombs: small files whose decoding would cost far more than their pixels (issue 21).
Built here from their structure, for the codec's tests and the service's fuzzing."""

from __future__ import annotations

import io
import struct

import numpy as np
from PIL import Image


def progressive_jpeg(h: int = 256, w: int = 384, noise: bool = True) -> bytes:
    """A progressive JPEG as libjpeg writes it (10 scans), of noise or of a smooth gradient
    (whose refinement scans are a few bytes each)."""
    if noise:
        pixels = np.random.default_rng(1).integers(0, 255, (h, w, 3), dtype=np.uint8)
    else:
        ramp = np.linspace(0, 255, w, dtype=np.float32)[None, :, None]
        pixels = np.broadcast_to(ramp, (h, w, 3)).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="JPEG", progressive=True)
    return out.getvalue()


def repeat_last_scan(data: bytes, times: int) -> bytes:
    """`data` (a progressive JPEG) with its last refinement scan repeated `times` more times:
    each repeat is one more full decoding pass."""
    last, eoi = data.rfind(b"\xff\xda"), data.rfind(b"\xff\xd9")
    return data[:eoi] + data[last:eoi] * times + data[eoi:]


def jpeg_scan_bomb() -> bytes:
    """The scan bomb: a smooth progressive JPEG with 310 scans, a few kilobytes in all."""
    return repeat_last_scan(progressive_jpeg(noise=False), 300)


def tiled_tiff(width: int, height: int, tile_w: int, tile_h: int) -> bytes:
    """A little-endian TIFF, 16-bit RGBA, one deflated tile of tile_w x tile_h whose data the
    file does not even hold: what the header alone promises the decoder. At 16384x16368 libtiff
    allocated the 2 GB tile buffer for it (+2,097 MB peak RSS, 16 s, then a decoder error)."""
    entries = [
        (256, 4, 1, width),  # ImageWidth
        (257, 4, 1, height),  # ImageLength
        (258, 3, 1, 16),  # BitsPerSample (one value stands for every sample)
        (259, 3, 1, 8),  # Compression: deflate, so that libtiff decodes it
        (262, 3, 1, 2),  # Photometric: RGB
        (277, 3, 1, 4),  # SamplesPerPixel
        (284, 3, 1, 1),  # PlanarConfiguration: chunky
        (322, 4, 1, tile_w),  # TileWidth
        (323, 4, 1, tile_h),  # TileLength
        (324, 4, 1, 8 + 2 + 12 * 11 + 4),  # TileOffsets: just after the IFD
        (325, 4, 1, 16),  # TileByteCounts
        (338, 3, 1, 2),  # ExtraSamples: unassociated alpha
    ]
    ifd = struct.pack("<H", len(entries))
    for tag, kind, count, value in entries:
        packed = struct.pack("<HH", value, 0) if kind == 3 else struct.pack("<I", value)
        ifd += struct.pack("<HHI", tag, kind, count) + packed
    return b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0) + bytes(16)


def tiff_tile_bomb() -> bytes:
    """A 174-byte tile bomb: a 16x16 TIFF whose one tile claims 16384x16368 RGBA16."""
    return tiled_tiff(16, 16, 16384, 16368)
