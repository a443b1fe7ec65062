"""Inference engine: uint8 photos of any sizes in, retouched uint8 photos of the same sizes out.

Per batch:

1. every photo is parsed for faces and skin (`model.faces`, on the CPU); each face region (the
   face plus a margin) becomes one crop, so what the LRL sees of a face does not shrink as the
   photo grows;
2. every crop is resized to the LRL's working size (Pillow, on uint8: fast and light at 8K) and
   the LRL runs over all crops of all photos (mixed sizes, one padded canvas per chunk);
3. each crop's blend pyramid runs on its own, its large levels in tiles, and ABM applies the
   blend layer gated by the skin mask: nothing outside skin changes, and everything outside
   every face's skin is the input, bit for bit. Whitening (soft light on the skin mask)
   follows. Regions of nearby faces may overlap; each writes back only its own face's skin.

A tile whose mask or skin is zero everywhere it depends on is neutral by construction and copied
through untouched, which is where most of an 8K portrait goes. A photo with no face found is
returned unchanged (and its mask is empty).
"""

from __future__ import annotations

import copy
import logging
import threading
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from model.compiled_lrl import CompiledLRL
from model.cpu import native_bf16
from model.faces import FaceParse, FaceParser, FaceRegion, blob_zone
from model.net.abpn import ABPN, working_size
from model.net.blend import whiten
from model.net.blob_prior import blob_radius
from model.net.bpl import Region, Size, pyramid_sizes, resize_region, tiles
from model.net.lrl import LRLOutput, chroma
from model.result import MAX_STRENGTH, MAX_WHITENING, RetouchResult

logger = logging.getLogger("abpn.engine")

MIN_TILE = 64


def validate_image(image: np.ndarray) -> None:
    """Raise ValueError unless `image` is a non-empty (H, W, 3) uint8 array."""
    if not isinstance(image, np.ndarray):
        raise ValueError(f"expected a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise ValueError(f"expected uint8 pixels, got {image.dtype}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB array, got shape {image.shape}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"empty image of shape {image.shape}")


def _per_image(values: Sequence[float] | float, n: int, name: str, top: float) -> list[float]:
    out = [float(values)] * n if isinstance(values, (int, float)) else [float(v) for v in values]
    if len(out) != n:
        raise ValueError(f"one {name} per image is required")
    for v in out:
        if not 0.0 <= v <= top:
            raise ValueError(f"{name} must be within 0 and {top}, got {v}")
    return out


def _resize_u8(image: np.ndarray, size: Size) -> np.ndarray:
    if image.shape[:2] == size:
        return image
    # Box filter = area averaging, the same downsampling the network was trained with. Exact
    # halvings (every level below the first) are OpenCV's 2x2 means: the same values within
    # one level of rounding, several times faster than a trip through Pillow. For other ratios
    # OpenCV's area filter is not a true box filter (up to 45 levels off Pillow's here).
    if image.shape[0] == 2 * size[0] and image.shape[1] == 2 * size[1]:
        return cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_AREA)
    return np.asarray(Image.fromarray(image).resize((size[1], size[0]), Image.Resampling.BOX))


class RetouchEngine:
    """Owns one model replica on one device and retouches batches of photos with it.

    `compile_lrl` (CPU only) runs the LRL compiled for face crops at the working size
    (`model.compiled_lrl`): 1.2-1.8x faster here, after a one-time compile in `warmup`.
    `max_faces` caps the faces retouched per photo where the engine parses (the largest are
    kept; `FaceParser.parse`); None retouches every face found."""

    def __init__(
        self,
        model: ABPN,
        device: str | torch.device = "cpu",
        half: bool | None = None,
        tile_size: int | None = None,
        lrl_chunk: int | None = None,
        face_parser: FaceParser | None = None,
        bf16: bool | None = None,
        compile_lrl: bool = False,
        max_faces: int | None = None,
    ) -> None:
        self.device = torch.device(device)
        cuda = self.device.type == "cuda"
        self.half = cuda if half is None else half
        if self.half and not cuda:
            raise ValueError("half precision is only supported on CUDA devices")
        if compile_lrl and cuda:
            raise ValueError("the compiled LRL is the CPU path; CUDA replicas run eager")
        self.model = copy.deepcopy(model).eval().to(self.device)
        if cuda:
            self.model = self.model.to(memory_format=torch.channels_last)
        else:
            # Eager oneDNN convolutions with 12-48 channels ran ~1.2x faster channels-last on
            # a 384x384 crop; the compiled LRL chooses its own layouts either way.
            self.model.lrl.to(memory_format=torch.channels_last)
        # On a CPU with hardware bfloat16 the refining convolutions run ~20x faster in bfloat16
        # channels-last than in float32 (tiny channel counts leave float32 oneDNN kernels
        # memory-bound); the blend offset they correct stays float32 (docs/benchmarks.md).
        self.bf16 = (not cuda and native_bf16()) if bf16 is None else bf16
        if self.bf16:
            if cuda:
                raise ValueError("bfloat16 is the CPU path; CUDA uses half precision")
            self.model.pyramid.refiner.to(torch.bfloat16, memory_format=torch.channels_last)
        self.cfg = self.model.cfg
        # GPUs have the memory to run 8K whole; tiles there only add launch overhead.
        self.tile_size = tile_size or (4096 if cuda else self.cfg.tile_size)
        # How many crops one LRL call takes. A GPU wants the whole batch; on the CPU a batch
        # of 8 ran ~1.6x slower per photo than one at a time (memory-bound convolutions, see
        # docs/benchmarks.md), and results do not depend on the grouping.
        self.lrl_chunk = lrl_chunk or (1 << 30 if cuda else 1)
        self.compiled_lrl: CompiledLRL | None = None
        if compile_lrl:
            self.compiled_lrl = CompiledLRL(self.model.lrl)
        if max_faces is not None and max_faces < 1:
            raise ValueError(f"max_faces must be at least 1, got {max_faces}")
        self.max_faces = max_faces
        self._parser = face_parser
        self._parser_lock = threading.Lock()

    @property
    def face_parser(self) -> FaceParser:
        """The face and skin parser, created on first use (it loads two small networks)."""
        with self._parser_lock:
            if self._parser is None:
                self._parser = FaceParser()
            return self._parser

    def parse(self, image: np.ndarray) -> FaceParse:
        """Faces and skin of one photo, as `retouch_batch` would find them."""
        validate_image(image)
        return self.face_parser.parse(image, self.max_faces)

    def _to_device(self, array: np.ndarray) -> torch.Tensor:
        """(H, W, C) uint8 -> (1, C, H, W) uint8 on the device, through pinned memory on CUDA."""
        with warnings.catch_warnings():
            # Read-only inputs (e.g. from Pillow) are fine: tensors made here are never written.
            warnings.simplefilter("ignore", UserWarning)
            t = torch.from_numpy(np.ascontiguousarray(array))
        if self.device.type == "cuda":
            t = t.pin_memory().to(self.device, non_blocking=True)
        return t.permute(2, 0, 1).unsqueeze(0)

    def _autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=torch.float16, enabled=self.half)

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def warmup(self, parse_faces: bool = True) -> None:
        """Run one small batch so the first real request does not pay for lazy initialisation
        (the compiled LRL included; a compile that fails is logged and leaves the replica
        eager). `parse_faces` warms the face parser too; without it none is loaded, for an
        engine that is always given its parses (the service's face workers make them)."""
        rng = np.random.default_rng(0)
        image = rng.integers(0, 256, size=(96, 128, 3), dtype=np.uint8)
        if parse_faces:
            self.face_parser.parse(image)
        if self.compiled_lrl is not None:
            try:
                self.compiled_lrl.warm(self.device)
            except Exception:  # Inductor fails in many ways (no C++ compiler, say): eager works
                logger.exception("compiling the LRL failed; this replica runs it eager")
                self.compiled_lrl = None
        parses = [FaceParse.whole(image.shape[:2]), FaceParse.whole((64, 128))]
        self.retouch_batch([image, image[:64]], 1.0, True, 0.5, parses=parses)

    def retouch(
        self,
        image: np.ndarray,
        strength: float = 1.0,
        return_mask: bool = False,
        whitening: float = 0.0,
    ) -> RetouchResult:
        """Retouch one photo; see `retouch_batch`."""
        return self.retouch_batch([image], strength, return_mask, whitening)[0]

    def retouch_batch(
        self,
        images: Sequence[np.ndarray],
        strengths: Sequence[float] | float = 1.0,
        return_mask: bool = False,
        whitening: Sequence[float] | float = 0.0,
        parses: Sequence[FaceParse] | None = None,
    ) -> list[RetouchResult]:
        """Retouch (H, W, 3) uint8 photos of any sizes.

        `strength` 0 returns the input bit-exactly, 1 the model's result; values between
        interpolate and up to 1.5 extrapolate, all in blend space. `whitening` 0-1.5 lightens
        the skin (0, the default, changes nothing). `parses` gives each photo's faces and skin
        when the caller already has them (see `parse`); otherwise the engine finds them.
        Blocking: call it from a worker thread, not an event loop."""
        strengths = _per_image(strengths, len(images), "strength", MAX_STRENGTH)
        whitenings = _per_image(whitening, len(images), "whitening", MAX_WHITENING)
        for image in images:
            validate_image(image)
        if parses is not None and len(parses) != len(images):
            raise ValueError("one face parse per image is required")
        if not images:
            return []
        with torch.inference_mode():
            return self._retouch(images, strengths, whitenings, return_mask, parses)

    def _retouch(
        self,
        images: Sequence[np.ndarray],
        strengths: list[float],
        whitenings: list[float],
        return_mask: bool,
        parses: Sequence[FaceParse] | None,
    ) -> list[RetouchResult]:
        face_times = [0.0] * len(images)
        if parses is None:
            parses = []
            for i, image in enumerate(images):
                t = time.perf_counter()
                parses.append(self.face_parser.parse(image, self.max_faces))
                face_times[i] = time.perf_counter() - t
        t0 = time.perf_counter()
        jobs: list[_RegionJob] = []
        for i, (image, parse) in enumerate(zip(images, parses, strict=True)):
            if strengths[i] == 0.0 and whitenings[i] == 0.0 and not return_mask:
                continue
            for region in parse.regions:
                jobs.append(_plan(i, image, region, self.cfg.lrl_size))
        t1 = time.perf_counter()
        # The LRL only matters where a retouch or its mask is asked for; whitening alone skips it.
        needs_lrl = [j for j in jobs if strengths[j.photo] > 0.0 or return_mask]
        with self._autocast():
            lows = [self._to_device(j.levels[0] if j.levels else j.crop) for j in needs_lrl]
            low_inputs = [low[0].float() / 255.0 for low in lows]
            zones = [self._blob_zone(j) for j in needs_lrl] if self.cfg.blob_gain else None
            outputs = []
            for start in range(0, len(low_inputs), self.lrl_chunk):
                end = start + self.lrl_chunk
                outputs += self._low_res(low_inputs[start:end], zones and zones[start:end])
        for job, low, out in zip(needs_lrl, low_inputs, outputs, strict=True):
            job.offset = self.model.blend.rabm(low.unsqueeze(0), out.result)
            job.low_mask = out.mask
        self._sync()
        t2 = time.perf_counter()
        prepare_share = (t1 - t0) / len(images)
        lrl_share = (t2 - t1) / len(images)

        results = []
        for i, image in enumerate(images):
            rendered = any(j.photo == i for j in jobs)
            untouched = not rendered or (strengths[i] == 0 and whitenings[i] == 0)
            out = image.copy()
            mask = np.zeros(image.shape[:2], np.uint8) if return_mask else None
            spent = [0.0, 0.0]
            for job in (j for j in jobs if j.photo == i):
                b = job.region.box
                target = _Target(
                    out[b.y0 : b.y1, b.x0 : b.x1],
                    None if mask is None else mask[b.y0 : b.y1, b.x0 : b.x1],
                )
                pyramid_s, blend_s = self._render(job, strengths[i], whitenings[i], target)
                spent[0] += pyramid_s
                spent[1] += blend_s
            results.append(
                RetouchResult(
                    image=out,
                    mask=mask,
                    faces=sum(len(r.faces) for r in parses[i].regions),
                    faces_skipped=parses[i].skipped,
                    untouched=untouched,
                    timings={
                        "faces": face_times[i],
                        "prepare": prepare_share,
                        "lrl": lrl_share,
                        "pyramid": spent[0],
                        "blend": spent[1],
                    },
                )
            )
        return results

    def _blob_zone(self, job: _RegionJob) -> torch.Tensor:
        """The face's area and where the region's red-blob prior may act, at the LRL's working
        size: (2, h, w) of 0 or 1 (`model.faces.blob_zone`)."""
        size = job.sizes[0]
        zone = blob_zone(_resize_u8(job.region.skin, size), blob_radius(self.cfg, size))
        return torch.from_numpy(zone).to(self.device).float()

    def _low_res(
        self, group: list[torch.Tensor], zones: list[torch.Tensor] | None
    ) -> list[LRLOutput]:
        compiled = self.compiled_lrl
        if compiled is not None and len(group) == 1 and compiled.fits(group[0]):
            return self.model.low_res(group, compiled.canvas, compiled, zones)
        return self.model.low_res(group, zones=zones)

    def _render(
        self, job: _RegionJob, strength: float, whitening: float, target: _Target
    ) -> tuple[float, float]:
        """Carry one region's low-res blend offset up to full size and apply it into `target`,
        halving the tile whenever the device runs out of memory. Returns the seconds spent in
        the pyramid and in blending."""
        tile = self.tile_size
        while True:
            try:
                return self._render_tiled(job, strength, whitening, target, tile)
            except torch.OutOfMemoryError:
                if tile // 2 < MIN_TILE:
                    raise
                tile //= 2
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()

    def _render_tiled(
        self, job: _RegionJob, strength: float, whitening: float, target: _Target, tile: int
    ) -> tuple[float, float]:
        t0 = time.perf_counter()
        blend_s = 0.0
        sizes = job.sizes
        top = len(sizes) - 1
        # Levels small enough to run whole do so once; the rest run per tile of the top level.
        base = max(i for i, (h, w) in enumerate(sizes) if i == 0 or h * w <= tile * tile)
        photo = self._to_device(job.crop)
        skin = self._to_device(job.region.skin[..., None])
        device_levels = [self._to_device(level) for level in job.levels] + [photo]

        def image_at(i: int, region: Region) -> torch.Tensor:
            crop = device_levels[i][:, :, region.y0 : region.y1, region.x0 : region.x1]
            return crop.float() / 255.0

        pyramid = self.model.pyramid
        # What the LRL saw, for the colour detail above it; read once, not per tile.
        working = image_at(0, Region.whole(sizes[0])) if self.cfg.chroma_detail and top else None
        offset = mask = None
        if job.offset is not None:
            with self._autocast():
                offset, mask = pyramid(job.offset, job.low_mask, sizes[: base + 1], image_at)
        for region in tiles(sizes[top], tile) if base < top else [Region.whole(sizes[top])]:
            ys, xs = slice(region.y0, region.y1), slice(region.x0, region.x1)
            if not job.region.skin[ys, xs].any():
                continue
            rendered = None
            if offset is not None:
                with self._autocast():
                    rendered = pyramid.render_region(offset, mask, base, sizes, region, image_at)
            if rendered is None and whitening == 0.0:
                continue
            t1 = time.perf_counter()
            # Without whitening only the box the mask reaches can change; whitening changes
            # all of the tile's skin, so the box's blend layer is laid into the tile's zeros.
            area = region
            if rendered is not None:
                box, tile_offset, tile_mask = rendered
                if whitening == 0.0:
                    area = box
                else:
                    tile_offset, tile_mask = (_lay(t, box, region) for t in rendered[1:])
            ys, xs = slice(area.y0, area.y1), slice(area.x0, area.x1)
            tile_skin = job.region.skin[ys, xs]
            result = image_at(top, area)
            gate = skin[:, :, ys, xs].float() / 255.0
            if rendered is not None:
                if strength > 0.0:
                    result = self.model.blend.abm(result, tile_offset * (gate * strength))
                    if working is not None:
                        detail = colour_detail(image_at(top, area), working, sizes, area)
                        share = tile_mask.float() * gate * (self.cfg.chroma_detail * strength)
                        result = result - share * detail
                if target.mask is not None:
                    m = target.mask[ys, xs]
                    np.maximum(m, _to_u8(tile_mask.float() * gate)[0, 0].cpu().numpy(), out=m)
            if whitening > 0.0:
                result = whiten(result.clamp(0.0, 1.0), gate * whitening)
            if strength > 0.0 or whitening > 0.0:
                # Straight into the output photo, and only on this face's skin: regions of
                # nearby faces overlap, and each changes only its own face.
                pixels = _to_u8(result)[0].permute(1, 2, 0).cpu().numpy()
                np.copyto(target.image[ys, xs], pixels, where=tile_skin[..., None] > 0)
            blend_s += time.perf_counter() - t1
        return time.perf_counter() - t0 - blend_s, blend_s


def colour_detail(
    image: torch.Tensor, working: torch.Tensor, sizes: list[Size], area: Region
) -> torch.Tensor:
    """The colour of `image`'s detail finer than the working size: `image` (the top level over
    `area`) minus the working-size level `working` (the whole level, float) resized up over
    `area`, less that difference's luma, so adding or taking it out leaves the luma as is."""
    up = resize_region(working, Region.whole(sizes[0]), sizes[0], sizes[-1], area)
    return chroma(image.float() - up)


@dataclass
class _Target:
    """Where one region's result goes: views of the output photo and of its mask."""

    image: np.ndarray
    mask: np.ndarray | None


@dataclass
class _RegionJob:
    """One face region's work: its crop, pyramid levels and, after the LRL, its low-res blend
    offset and mask (None when only whitening is asked for)."""

    photo: int
    region: FaceRegion
    crop: np.ndarray
    sizes: list[Size]
    levels: list[np.ndarray]
    offset: torch.Tensor | None = None
    low_mask: torch.Tensor | None = None


def _plan(photo: int, image: np.ndarray, region: FaceRegion, lrl_size: int) -> _RegionJob:
    """A region's crop and the pyramid levels below it, each from the one above: the same box
    average as from the crop, at a fraction of the cost."""
    b = region.box
    crop = image[b.y0 : b.y1, b.x0 : b.x1]
    full = crop.shape[:2]
    sizes = pyramid_sizes(working_size(full, lrl_size), full)
    levels = [crop]
    for size in reversed(sizes[:-1]):
        levels.append(_resize_u8(levels[-1], size))
    return _RegionJob(photo, region, crop, sizes, levels[:0:-1])


def _lay(x: torch.Tensor, box: Region, region: Region) -> torch.Tensor:
    """`x`, which covers `box`, laid into zeros covering `region` (which holds `box`)."""
    return F.pad(
        x, (box.x0 - region.x0, region.x1 - box.x1, box.y0 - region.y0, region.y1 - box.y1)
    )


def _to_u8(x: torch.Tensor) -> torch.Tensor:
    return (x * 255.0).round_().clamp_(0, 255).to(torch.uint8)
