"""Outlines and profiles of single defects, evaluated on a defect's own small pixel box.

Everything here is in the defect's coordinates: `x`, `y` are pixel offsets from its centre
(`x` a row vector, `y` a column vector, so results broadcast to the box).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# Below this many pixels an edge aliases into a jagged staircase; widen such edges to it.
_MIN_EDGE_PX = 0.6


@dataclass(frozen=True)
class Outline:
    """An irregular, slightly elongated closed outline with a soft edge.

    The outline is an ellipse (`aspect` = major / minor semi-axis, major axis along `angle`)
    whose radius wobbles with a few low angular harmonics, so no two defects are the same disc.
    """

    radius: float  # px: geometric mean of the two semi-axes
    aspect: float
    angle: float  # radians
    wobble: tuple[tuple[float, float], ...]  # (amplitude, phase) of angular orders 2, 3, ...
    edge: float  # half-width of the soft edge, as a fraction of the radius

    @property
    def extent(self) -> float:
        """Distance (px) from the centre beyond which every profile of this outline is 0."""
        widest = 1.0 + sum(abs(amplitude) for amplitude, _ in self.wobble)
        return self.radius * math.sqrt(self.aspect) * widest * (1.0 + self.edge)

    def distance(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Normalised distance from the centre: 0 at the centre, 1 on the outline."""
        cos, sin = math.cos(self.angle), math.sin(self.angle)
        semi = math.sqrt(self.aspect)
        u = (x * cos + y * sin) / (self.radius * semi)
        v = (y * cos - x * sin) * (semi / self.radius)
        phi = np.arctan2(v, u)
        radius = np.ones_like(phi)
        for order, (amplitude, phase) in enumerate(self.wobble, start=2):
            radius += amplitude * np.cos(order * phi + phase)
        return np.hypot(u, v) / radius


def draw_outline(
    rng: np.random.Generator,
    radius: float,
    max_aspect: float,
    irregularity: tuple[float, float],
    edge: tuple[float, float],
) -> Outline:
    """A random outline of the given mean radius (px); ranges are (low, high) of uniform draws."""
    strength = rng.uniform(*irregularity)
    # Higher orders get smaller amplitudes: real outlines are lumpy, not star-shaped.
    wobble = tuple(
        (strength * rng.uniform(-1.0, 1.0) / (order - 1), rng.uniform(0.0, 2 * math.pi))
        for order in range(2, 6)
    )
    aspect = rng.uniform(1.0, max_aspect)
    minor = radius / math.sqrt(aspect)
    soft = max(rng.uniform(*edge), min(_MIN_EDGE_PX / minor, 0.9))
    return Outline(radius, aspect, rng.uniform(0.0, math.pi), wobble, soft)


def smoothstep(low: float, high: float, x: np.ndarray) -> np.ndarray:
    """0 below `low`, 1 above `high`, a smooth cubic in between."""
    t = np.clip((x - low) / (high - low), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def plateau(d: np.ndarray, edge: float) -> np.ndarray:
    """1 inside the outline, falling smoothly to exactly 0 at d = 1 + edge."""
    return 1.0 - smoothstep(1.0 - edge, 1.0 + edge, d)


def dome(d: np.ndarray, edge: float) -> np.ndarray:
    """Height of a rounded bump: 1 at the centre, exactly 0 from d = 1 + edge on."""
    return np.clip(1.0 - (d / (1.0 + edge)) ** 2, 0.0, 1.0)


def relief(height: np.ndarray, radius: float, light: tuple[float, float]) -> np.ndarray:
    """Lambert-like shading of a bump's `height` map: > 0 on the side facing `light`.

    `light` is the unit (x, y) direction towards the light in the image plane; the slope is
    measured per radius so the shading does not depend on the image's resolution.
    """
    if min(height.shape) < 2:
        return np.zeros_like(height)
    slope_y, slope_x = np.gradient(height)
    return -(slope_x * light[0] + slope_y * light[1]) * radius


def blotches(grid: np.ndarray, x: np.ndarray, y: np.ndarray, extent: float) -> np.ndarray:
    """Smooth noise, about in [-1, 1], from a coarse random `grid` stretched over the defect.

    The grid spans the defect's extent, not the pixel box, so the same draw gives the same
    pattern at any resolution.
    """
    cells = grid.shape[0] - 1
    gx = np.clip((x / extent + 1.0) * 0.5, 0.0, 1.0) * cells
    gy = np.clip((y / extent + 1.0) * 0.5, 0.0, 1.0) * cells
    ix = np.minimum(gx.astype(np.int64), cells - 1)
    iy = np.minimum(gy.astype(np.int64), cells - 1)
    fx = smoothstep(0.0, 1.0, gx - ix)
    fy = smoothstep(0.0, 1.0, gy - iy)
    top = grid[iy, ix] * (1 - fx) + grid[iy, ix + 1] * fx
    bottom = grid[iy + 1, ix] * (1 - fx) + grid[iy + 1, ix + 1] * fx
    return (top * (1 - fy) + bottom * fy).astype(np.float32)
