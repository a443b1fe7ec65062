"""The kinds of skin defect the evaluation painter draws, and their random parameters.

Each kind turns a random draw into a `Blemish`: how far it reaches, and a function that gives
its Lab shift over a pixel box. Shifts are relative to the pixels underneath (a lightness gain,
small additive Lab offsets, a partial desaturation), never a pasted colour, so pores and fine
wrinkles stay visible through every defect.

`intensity` t in [0, 1] moves each kind from barely visible (a few grey levels) to strong
(about 60 grey levels at the peak on typical skin).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from evaluation.evalpaint.shapes import Outline, blotches, dome, draw_outline, plateau, relief

Light = tuple[float, float]


@dataclass(frozen=True)
class Shift:
    """Lab changes of one defect over its box, before the skin mask weighs them.

    L' = L (1 + gain) + lift;  a' = a (1 - grey) + red;  b' = b (1 - grey) + yellow,
    where the painter scales `red` down on darker skin.
    """

    gain: np.ndarray
    lift: np.ndarray
    red: np.ndarray
    yellow: np.ndarray
    grey: np.ndarray

    def __add__(self, other: Shift) -> Shift:
        """Both defects' changes together (for defects drawn as one, like a cluster)."""
        return Shift(
            self.gain + other.gain,
            self.lift + other.lift,
            self.red + other.red,
            self.yellow + other.yellow,
            self.grey + other.grey,
        )


# Renders a defect: (x offsets, y offsets, mean Lab of the skin under it) -> its shift.
Render = Callable[[np.ndarray, np.ndarray, np.ndarray], Shift]


@dataclass(frozen=True)
class Blemish:
    """One drawn defect, ready to be placed anywhere."""

    kind: str
    extent: float  # px from the centre beyond which it changes nothing
    render: Render


def _lerp(low: float, high: float, t: float) -> float:
    return low + (high - low) * t


def _shift(shape: tuple[int, ...], **fields: np.ndarray | float) -> Shift:
    """A Shift with the named fields, zero elsewhere, all of the box's shape."""
    names = ("gain", "lift", "red", "yellow", "grey")
    arrays = (np.broadcast_to(np.float32(0) + fields.get(name, 0.0), shape) for name in names)
    return Shift(*(a.astype(np.float32) for a in arrays))


def _tinted(profile: np.ndarray, darken: float, red: float, yellow: float, grey: float) -> Shift:
    """A flat colour change of one hue, darkened, scaled everywhere by `profile`."""
    return _shift(
        profile.shape,
        gain=-darken * profile,
        red=red * profile,
        yellow=yellow * profile,
        grey=grey * profile,
    )


def _highlight(
    x: np.ndarray, y: np.ndarray, outline: Outline, light: Light, body: np.ndarray
) -> np.ndarray:
    """A small soft specular spot on the lit side of a bump, 1 at its peak."""
    hx, hy = (0.4 * outline.radius * light[0], 0.4 * outline.radius * light[1])
    sigma = 0.18 * outline.radius
    return np.exp(-((x - hx) ** 2 + (y - hy) ** 2) / (2 * sigma * sigma)) * body


def papule(rng: np.random.Generator, radius: float, t: float, light: Light) -> Blemish:
    """Inflamed papule: raised red bump, reddest in the centre, slightly darker, maybe a glint."""
    outline = draw_outline(rng, radius, 1.35, (0.03, 0.10), (0.25, 0.7))
    red = _lerp(5.0, 24.0, t) * rng.uniform(0.85, 1.15)
    yellow = red * rng.uniform(0.05, 0.45)  # crimson to orange-red
    # Erythema darkens as it reddens; redness at constant lightness reads as pink paint.
    darken = _lerp(0.02, 0.13, t)
    peak = rng.uniform(0.8, 2.2)
    shade = _lerp(0.5, 3.0, t)
    glint = rng.uniform(6.0, 14.0) * _lerp(0.4, 1.0, t) if rng.random() < 0.35 else 0.0

    def render(x: np.ndarray, y: np.ndarray, mean: np.ndarray) -> Shift:
        d = outline.distance(x, y)
        body = plateau(d, outline.edge)
        core = body * np.exp(-peak * d * d)
        spot = _highlight(x, y, outline, light, body)
        lift = shade * relief(dome(d, outline.edge) ** 1.5, outline.radius, light) + glint * spot
        # A glint is light reflected off the surface: it washes out the bump's darker red and
        # part of the skin's own colour (fully neutral, it reads as a blue-grey dot).
        washed = 0.6 * spot if glint else np.zeros_like(spot)
        tint = core * (1.0 - washed)
        return _shift(
            d.shape,
            gain=-darken * tint,
            lift=lift,
            red=red * tint,
            yellow=yellow * tint,
            grey=0.7 * washed,
        )

    return Blemish("papule", outline.extent, render)


def pustule(rng: np.random.Generator, radius: float, t: float, light: Light) -> Blemish:
    """Pustule: pale yellow-white head (30-50% of the radius) inside a red inflamed ring."""
    outline = draw_outline(rng, radius, 1.25, (0.03, 0.08), (0.2, 0.5))
    head_size = rng.uniform(0.3, 0.5)
    head_edge = rng.uniform(0.2, 0.45)
    red = _lerp(7.0, 26.0, t) * rng.uniform(0.85, 1.15)
    yellow = red * rng.uniform(0.0, 0.3)
    darken = _lerp(0.02, 0.09, t)
    # The head is pulled towards a pale cream colour, whatever the skin tone around it.
    head_l = rng.uniform(80.0, 92.0)
    head_b = rng.uniform(12.0, 24.0)
    pull = _lerp(0.2, 1.0, t)
    shade = _lerp(0.5, 2.5, t)

    def render(x: np.ndarray, y: np.ndarray, mean: np.ndarray) -> Shift:
        d = outline.distance(x, y)
        body = plateau(d, outline.edge)
        head = plateau(d / head_size, head_edge)
        # Inflammation is strongest right around the head and fades towards the rim.
        ring = body * (1.0 - head) * (1.0 - 0.5 * np.clip((d - head_size) / (1 - head_size), 0, 1))
        # Capped, or heads on dark skin would jump by 150 grey levels.
        lift = float(np.clip(head_l - mean[0], 4.0, 24.0)) * pull * head
        lift = lift + shade * relief(dome(d, outline.edge) ** 1.5, outline.radius, light)
        # Pus halves the skin's own chroma (lowering a* directly turns small heads green)
        # and brings b* to a cream yellow.
        grey = 0.5 * pull
        cream = max(head_b - mean[2] * (1.0 - grey), 2.0) * pull
        return _shift(
            d.shape,
            gain=-darken * ring,
            lift=lift,
            red=red * ring,
            yellow=yellow * ring + cream * head,
            grey=grey * head,
        )

    return Blemish("pustule", outline.extent, render)


def whitehead(rng: np.random.Generator, radius: float, t: float, light: Light) -> Blemish:
    """Whitehead (closed comedone): small pale, slightly raised bump, low contrast."""
    outline = draw_outline(rng, radius, 1.2, (0.02, 0.07), (0.15, 0.4))
    lift = _lerp(5.0, 14.0, t)
    pale = rng.uniform(0.1, 0.35)  # the keratin plug shows through as a whiter, less pink core
    yellow = rng.uniform(0.5, 3.0) * _lerp(0.5, 1.0, t)
    shade = _lerp(1.0, 3.0, t)

    def render(x: np.ndarray, y: np.ndarray, mean: np.ndarray) -> Shift:
        d = outline.distance(x, y)
        body = plateau(d, outline.edge)
        # A pale core in a faint, fairly defined dome: a soft wide lift reads as nothing at all.
        profile = body * (0.3 + 0.7 * np.exp(-3.0 * d * d))
        bump = shade * relief(dome(d, outline.edge) ** 1.5, outline.radius, light)
        return _shift(
            d.shape,
            lift=lift * profile + bump,
            yellow=yellow * profile,
            grey=pale * profile,
        )

    return Blemish("whitehead", outline.extent, render)


def blackhead(rng: np.random.Generator, radius: float, t: float, light: Light) -> Blemish:
    """Blackhead (open comedone): tiny, fairly sharp, dark grey-brown dot."""
    outline = draw_outline(rng, radius, 1.3, (0.03, 0.10), (0.15, 0.4))
    darken = _lerp(0.05, 0.30, t)
    grey = rng.uniform(0.3, 0.7) * _lerp(0.3, 1.0, t)
    yellow = rng.uniform(0.0, 4.0)  # what is left of the colour is brownish
    red = rng.uniform(0.0, 1.5)

    def render(x: np.ndarray, y: np.ndarray, mean: np.ndarray) -> Shift:
        d = outline.distance(x, y)
        profile = plateau(d, outline.edge) * (0.65 + 0.35 * np.exp(-2.0 * d * d))
        return _tinted(profile, darken, red, yellow, grey)

    return Blemish("blackhead", outline.extent, render)


def _flat_mark(
    kind: str,
    outline: Outline,
    mottle: float,
    grid: np.ndarray,
    darken: float,
    red: float,
    yellow: float,
    grey: float = 0.0,
) -> Blemish:
    """A flat (unraised) mark of uniform hue whose strength varies in soft blotches."""

    def render(x: np.ndarray, y: np.ndarray, mean: np.ndarray) -> Shift:
        d = outline.distance(x, y)
        profile = plateau(d, outline.edge)
        profile = profile * np.clip(1.0 + mottle * blotches(grid, x, y, outline.extent), 0.0, 1.5)
        return _tinted(profile, darken, red, yellow, grey)

    return Blemish(kind, outline.extent, render)


def post_inflammatory(rng: np.random.Generator, radius: float, t: float, light: Light) -> Blemish:
    """Post-inflammatory mark: flat, soft-edged, reddish-brown to purplish, larger, blotchy."""
    outline = draw_outline(rng, radius, 1.6, (0.06, 0.15), (0.45, 0.9))
    red = _lerp(3.0, 13.0, t) * rng.uniform(0.8, 1.2)
    hue = rng.uniform(-0.4, 0.9)  # b*/a*: < 0 purplish, > 0 reddish-brown
    return _flat_mark(
        "post_inflammatory",
        outline,
        mottle=rng.uniform(0.1, 0.35),
        grid=rng.normal(size=(5, 5)),
        darken=_lerp(0.02, 0.16, t),
        red=red,
        yellow=red * hue,
    )


def brown_macule(rng: np.random.Generator, radius: float, t: float, light: Light) -> Blemish:
    """Brown macule, age spot or dark freckle: flat, brown, uniform, soft but defined edge."""
    outline = draw_outline(rng, radius, 1.5, (0.04, 0.12), (0.12, 0.3))
    yellow = _lerp(2.0, 11.0, t) * rng.uniform(0.8, 1.2)
    return _flat_mark(
        "brown_macule",
        outline,
        mottle=rng.uniform(0.0, 0.1),
        grid=rng.normal(size=(5, 5)),
        darken=_lerp(0.03, 0.20, t),
        red=yellow * rng.uniform(0.1, 0.45),
        yellow=yellow,
    )


def grey_mark(rng: np.random.Generator, radius: float, t: float, light: Light) -> Blemish:
    """Grey or bluish mark (healing scab edge, bruise-like tint): flat, desaturated, medium."""
    outline = draw_outline(rng, radius, 1.6, (0.08, 0.18), (0.3, 0.7))
    return _flat_mark(
        "grey_mark",
        outline,
        # Uneven, like a fading scab or a bruise: a uniform grey disc reads as a sticker.
        mottle=rng.uniform(0.15, 0.4),
        grid=rng.normal(size=(5, 5)),
        darken=_lerp(0.02, 0.12, t),
        red=-rng.uniform(0.0, 2.0),
        yellow=-rng.uniform(0.0, 5.0) * _lerp(0.3, 1.0, t),
        grey=rng.uniform(0.2, 0.6) * _lerp(0.3, 1.0, t),
    )


def cluster(rng: np.random.Generator, radius: float, t: float, light: Light) -> Blemish:
    """Two to four small papules close together (`radius` is that of one papule)."""
    count = int(rng.integers(2, 5))
    start = rng.uniform(0.0, 2 * math.pi)
    members = []
    for i in range(count):
        angle = start + 2 * math.pi * i / count + rng.uniform(-0.4, 0.4)
        distance = radius * rng.uniform(1.2, 2.0)
        strength = float(np.clip(t + rng.uniform(-0.15, 0.15), 0.0, 1.0))
        member = papule(rng, radius * rng.uniform(0.8, 1.25), strength, light)
        members.append((distance * math.cos(angle), distance * math.sin(angle), member))

    def render(x: np.ndarray, y: np.ndarray, mean: np.ndarray) -> Shift:
        first, *rest = [member.render(x - mx, y - my, mean) for mx, my, member in members]
        return sum(rest, start=first)

    extent = max(math.hypot(mx, my) + member.extent for mx, my, member in members)
    return Blemish("cluster", extent, render)


Maker = Callable[[np.random.Generator, float, float, Light], Blemish]

# kind -> (maker, share of defects, radius range as a fraction of the face width).
# Radii are log-uniform within the range; for clusters it is the radius of one papule.
KINDS: dict[str, tuple[Maker, float, tuple[float, float]]] = {
    "papule": (papule, 0.18, (0.006, 0.016)),
    "pustule": (pustule, 0.12, (0.006, 0.014)),
    "whitehead": (whitehead, 0.12, (0.004, 0.009)),
    "blackhead": (blackhead, 0.12, (0.002, 0.005)),
    "post_inflammatory": (post_inflammatory, 0.14, (0.009, 0.02)),
    "brown_macule": (brown_macule, 0.12, (0.007, 0.02)),
    "grey_mark": (grey_mark, 0.08, (0.006, 0.014)),
    "cluster": (cluster, 0.12, (0.0035, 0.007)),
}


def draw_blemish(rng: np.random.Generator, face_width: float, light: Light) -> Blemish:
    """A random defect of a random kind, sized for a face `face_width` pixels wide."""
    names = list(KINDS)
    shares = np.array([KINDS[name][1] for name in names])
    name = names[int(rng.choice(len(names), p=shares / shares.sum()))]
    make, _, (low, high) = KINDS[name]
    radius = face_width * math.exp(rng.uniform(math.log(low), math.log(high)))
    return make(rng, radius, float(rng.uniform(0.0, 1.0)), light)
