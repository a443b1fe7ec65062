"""Evaluation on held-out real photos: two painters, three resolutions, and clean photos.

For every evaluation photo (never opened by training, see ``training.data.real_photos``) resized so
its long side is 2K, 4K or 8K (upscaled where needed), defects are painted on the skin of each
face region by two painters: the training painter (``training.data.blemishes``) and the
independent evaluation painter (``evaluation.evalpaint``, written without reference to the first and
used for nothing but this). Identity, the classic filter and ABPN (through the engine, which
parses the painted photo itself) are scored against the clean photo:

- PSNR inside the defects (pooled over all defect pixels of a painter and resolution);
- PSNR outside the defects over the whole photo, and over the face regions only.

Clean photos (nothing painted) measure what ABPN touches that it should not: the share of
*protected* pixels (face parts and non-skin areas from the parser, dilated a little) changed by
more than 2 grey levels, the number of changed pixels outside the skin mask (the gate makes this
0), and the share of the photo the retouch mask covers.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass

import cv2
import numpy as np

from evaluation.baseline import classic_retouch
from evaluation.evalpaint import paint_face
from evaluation.quality import psnr_from_mse, squared_error
from evaluation.tables import markdown_table
from model.engine import RetouchEngine
from model.faces import FaceParse
from model.photo import resize_long_side
from training.data.blemishes import paint_blemishes, quantise
from training.data.real_photos import load, photos

RESOLUTIONS = {"2K": 2048, "4K": 3840, "8K": 7680}
CHANGED_LEVELS = 2
"""A pixel counts as changed when some channel moved by more than this many grey levels."""
PROTECT_DILATION = 0.002
"""Protected areas are dilated by this share of the photo's long side (4 px at 2K, 15 at 8K)."""

Painter = Callable[[np.ndarray, FaceParse, np.random.Generator], tuple[np.ndarray, np.ndarray]]


def _per_region(
    paint: Callable[[np.ndarray, np.ndarray, float, np.random.Generator], np.ndarray],
) -> Painter:
    """A painter over a whole photo from one over a face region's crop."""

    def painter(
        clean: np.ndarray, parse: FaceParse, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        out = clean.copy()
        for region in parse.regions:
            b = region.box
            crop = clean[b.y0 : b.y1, b.x0 : b.x1]
            width = max(f.width for f in region.faces)
            out[b.y0 : b.y1, b.x0 : b.x1] = paint(crop, region.skin / 255.0, width, rng)
        return out, (out != clean).any(axis=-1)

    return painter


def _training_paint(
    crop: np.ndarray, skin: np.ndarray, width: float, rng: np.random.Generator
) -> np.ndarray:
    painted, _ = paint_blemishes(crop.astype(np.float32) / 255.0, skin, rng, scale=width / 250.0)
    return quantise(painted)


def _independent_paint(
    crop: np.ndarray, skin: np.ndarray, width: float, rng: np.random.Generator
) -> np.ndarray:
    return paint_face(crop, skin, width, rng).image


PAINTERS: dict[str, Painter] = {
    "training painter": _per_region(_training_paint),
    "independent painter": _per_region(_independent_paint),
}


@dataclass
class _Pool:
    se: float = 0.0
    n: int = 0

    def add(self, se: np.ndarray, where: np.ndarray) -> None:
        self.se += float(se[where].sum())
        self.n += int(where.sum())

    @property
    def psnr(self) -> float:
        return psnr_from_mse(self.se / max(self.n, 1))


@dataclass
class PaintedRow:
    """One painter at one resolution: PSNR (dB) per method, pooled over the photos."""

    painter: str
    resolution: str
    photos: int
    defect_pixels: int
    inside: dict[str, float]
    outside: dict[str, float]
    outside_regions: dict[str, float]


@dataclass
class CleanRow:
    """ABPN on one clean photo at one resolution."""

    photo: str
    resolution: str
    faces: int
    protected_changed: float
    """Share of protected pixels changed by more than CHANGED_LEVELS."""
    changed_outside_skin: int
    """Pixels changed by more than CHANGED_LEVELS where the skin mask is 0 (the gate: 0)."""
    masked_share: float
    """Share of the photo's pixels the retouch mask covers (above 0)."""


def _seed(*parts: str) -> int:
    return zlib.crc32("/".join(parts).encode())


def _abpn(engine: RetouchEngine, whole_photo: bool) -> Callable[[np.ndarray], np.ndarray]:
    """ABPN through the engine; `whole_photo`: as before face parsing (the whole photo is one
    all-skin region), to measure what the face regions and the skin gate changed."""

    def run(image: np.ndarray) -> np.ndarray:
        parses = [FaceParse.whole(image.shape[:2])] if whole_photo else None
        return engine.retouch_batch([image], 1.0, True, parses=parses)[0]

    return run


class _Tally:
    """The pooled errors of every method for one painter at one resolution."""

    def __init__(self, methods: tuple[str, ...]) -> None:
        self.inside = {m: _Pool() for m in methods}
        self.outside = {m: _Pool() for m in methods}
        self.in_regions = {m: _Pool() for m in methods}
        self.defects = 0

    def row(self, painter: str, resolution: str, photos: int) -> PaintedRow:
        """The tally as a table row."""
        return PaintedRow(
            painter=painter,
            resolution=resolution,
            photos=photos,
            defect_pixels=self.defects,
            inside={m: p.psnr for m, p in self.inside.items()},
            outside={m: p.psnr for m, p in self.outside.items()},
            outside_regions={m: p.psnr for m, p in self.in_regions.items()},
        )


def evaluate_painted(
    engine: RetouchEngine,
    names: tuple[str, ...],
    resolutions: dict[str, int],
    whole_photo: bool = False,
    draws: int = 1,
) -> list[PaintedRow]:
    """Both painters, every resolution: identity, classic filter and ABPN on painted photos,
    each photo painted `draws` times (one draw's few defects can swing the pooled gain by
    several dB; the first draw is the same whatever `draws` is)."""
    abpn = _abpn(engine, whole_photo)
    methods: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        "identity": lambda image: image,
        "classic filter": classic_retouch,
        "ABPN": lambda image: abpn(image).image,
    }
    tallies = {(p, r): _Tally(tuple(methods)) for p in PAINTERS for r in resolutions}
    for res_name, side in resolutions.items():
        for name in names:
            # Resized and parsed once for both painters (an 8K resize and parse take seconds).
            clean = resize_long_side(load(name), side)
            parse = engine.parse(clean)
            regions = np.zeros(clean.shape[:2], bool)
            for r in parse.regions:
                regions[r.box.y0 : r.box.y1, r.box.x0 : r.box.x1] = True
            for painter_name, painter in PAINTERS.items():
                tally = tallies[painter_name, res_name]
                for draw in range(draws):
                    extra = (str(draw),) if draw else ()
                    rng = np.random.default_rng(_seed(name, res_name, painter_name, *extra))
                    painted, mask = painter(clean, parse, rng)
                    tally.defects += int(mask.sum())
                    for m, run in methods.items():
                        se = squared_error(run(painted), clean)
                        tally.inside[m].add(se, mask)
                        tally.outside[m].add(se, ~mask)
                        tally.in_regions[m].add(se, regions & ~mask)
    return [t.row(p, r, len(names)) for (p, r), t in tallies.items()]


def protected_mask(skin: np.ndarray) -> np.ndarray:
    """Face parts and non-skin areas (skin mask 0), dilated a little into the skin."""
    non_skin = (skin == 0).astype(np.uint8)
    r = max(1, round(PROTECT_DILATION * max(skin.shape)))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    return cv2.dilate(non_skin, kernel) > 0


def evaluate_clean(
    engine: RetouchEngine,
    names: tuple[str, ...],
    resolutions: dict[str, int | None],
    whole_photo: bool = False,
) -> list[CleanRow]:
    """ABPN on clean photos (None: the photo's own size): what it changes that it should not."""
    abpn = _abpn(engine, whole_photo)
    rows = []
    for name in names:
        for res_name, side in resolutions.items():
            image = load(name) if side is None else resize_long_side(load(name), side)
            parse = engine.parse(image)
            result = abpn(image)
            diff = np.abs(result.image.astype(np.int16) - image).max(axis=-1)
            changed = diff > CHANGED_LEVELS
            skin = parse.skin_mask(image.shape[:2])
            protected = protected_mask(skin)
            rows.append(
                CleanRow(
                    photo=name,
                    resolution=res_name,
                    faces=len(parse.regions),
                    protected_changed=float((changed & protected).sum() / max(protected.sum(), 1)),
                    changed_outside_skin=int((changed & (skin == 0)).sum()),
                    masked_share=float((result.mask > 0).mean()),
                )
            )
    return rows


def painted_table(rows: list[PaintedRow]) -> str:
    """Markdown table of the painted-photo rows."""
    header = (
        "painter", "res", "defect px", "PSNR inside: identity / classic / ABPN", "ABPN gain",
        "PSNR outside (photo): classic / ABPN", "outside (face regions): classic / ABPN",
    )  # fmt: skip
    return markdown_table(
        header,
        (
            (
                r.painter,
                r.resolution,
                r.defect_pixels,
                " / ".join(f"{r.inside[m]:.2f}" for m in ("identity", "classic filter", "ABPN")),
                f"{r.inside['ABPN'] - r.inside['identity']:+.2f} dB",
                f"{r.outside['classic filter']:.2f} / {r.outside['ABPN']:.2f}",
                f"{r.outside_regions['classic filter']:.2f} / {r.outside_regions['ABPN']:.2f}",
            )
            for r in rows
        ),
    )


def clean_table(rows: list[CleanRow]) -> str:
    """Markdown table of the clean-photo rows."""
    header = (
        "photo", "res", "faces", "protected px changed > 2 levels", "changed outside skin",
        "masked share",
    )  # fmt: skip
    return markdown_table(
        header,
        (
            (
                r.photo,
                r.resolution,
                r.faces,
                f"{100 * r.protected_changed:.3f}%",
                r.changed_outside_skin,
                f"{100 * r.masked_share:.2f}%",
            )
            for r in rows
        ),
    )


def run(
    engine: RetouchEngine, quick: bool = False, whole_photo: bool = False, draws: int = 1
) -> dict:
    """The whole real-photo evaluation; `quick` keeps 2K only (a smoke run); `whole_photo` runs
    ABPN without face regions or skin gate (the engine before them); `draws` paints each photo
    that many times."""
    painted_names = tuple(p.name for p in photos("eval") if p.name != "group12")
    clean_names = tuple(p.name for p in photos("eval")) + tuple(p.name for p in photos("demo"))
    resolutions = {"2K": 2048} if quick else RESOLUTIONS
    painted = evaluate_painted(engine, painted_names, resolutions, whole_photo, draws)
    clean = evaluate_clean(engine, clean_names, {"native": None, "4K": 3840}, whole_photo)
    return {
        "painted": [asdict(r) for r in painted],
        "clean": [asdict(r) for r in clean],
        "tables": {"painted": painted_table(painted), "clean": clean_table(clean)},
    }
