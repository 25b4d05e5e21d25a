"""Rasterizes a :class:`Scene` into uint8 RGB frames with numpy: a static background, then the shape's
inside-test evaluated on a supersampled grid inside its bounding box (anti-aliased edges), blended with
the state's colour and opacity."""
from __future__ import annotations

import math

import numpy as np

from retrieval.synth.scene import SIZE_RADIUS, SIZE_STEP, Scene, State

SOLID_BACKGROUNDS = {"black": (15, 15, 15), "white": (235, 235, 235), "gray": (128, 128, 128),
                     "brown": (110, 72, 40), "navy": (25, 35, 85)}
SUPERSAMPLE = 3


def background(name: str, size: int, phase: int = 0) -> np.ndarray:
    """(size, size, 3) float32; stripes and checks have a period of a quarter of the frame, low contrast so
    the shape stays the most visible thing."""
    if name in SOLID_BACKGROUNDS:
        return np.broadcast_to(np.array(SOLID_BACKGROUNDS[name], np.float32), (size, size, 3)).copy()
    period = max(2, size // 4)
    idx = np.arange(size) + phase * period // 8
    if name == "striped":
        band = ((idx // (period // 2 or 1)) % 2)[:, None] * np.ones((1, size))
        lo, hi = 95.0, 150.0
    elif name == "checkered":
        cell = period // 2 or 1
        band = ((idx[:, None] // cell) + (idx[None, :] // cell)) % 2
        lo, hi = 70.0, 125.0
    elif name == "dotted":
        cell = period // 2 or 1
        yy, xx = np.meshgrid(idx % cell - cell / 2 + 0.5, np.arange(size) % cell - cell / 2 + 0.5, indexing="ij")
        band = (yy * yy + xx * xx <= (cell / 4) ** 2 + 0.5).astype(np.float32)
        lo, hi = 105.0, 170.0
    else:
        raise ValueError(f"unknown background {name!r}")
    return np.repeat((lo + (hi - lo) * band).astype(np.float32)[..., None], 3, axis=2)


def _regular_polygon(x, y, sides: int, radius: float, phase: float):
    inside = np.ones_like(x, dtype=bool)
    apothem = radius * math.cos(math.pi / sides)
    for k in range(sides):
        a = phase + (2 * k + 1) * math.pi / sides
        inside &= x * math.cos(a) + y * math.sin(a) <= apothem
    return inside


def shape_mask(shape: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Inside test in the shape's own frame: unit radius, y pointing down, unrotated."""
    if shape == "circle":
        return x * x + y * y <= 1.0
    if shape == "ring":
        r2 = x * x + y * y
        return (r2 <= 1.0) & (r2 >= 0.5 ** 2)
    if shape == "square":
        return (np.abs(x) <= 0.82) & (np.abs(y) <= 0.82)
    if shape == "triangle":
        return _regular_polygon(x, y - 0.2, 3, 1.25, -math.pi / 2 - math.pi / 3)
    if shape == "hexagon":
        return _regular_polygon(x, y, 6, 1.0, 0.0)
    if shape == "cross":
        return ((np.abs(x) <= 0.33) & (np.abs(y) <= 0.95)) | ((np.abs(y) <= 0.33) & (np.abs(x) <= 0.95))
    if shape == "star":
        theta = np.arctan2(y, x) + math.pi / 2  # a point straight up
        frac = np.mod(theta, 2 * math.pi / 5) / (2 * math.pi / 5)
        t = 1.0 - np.abs(2.0 * frac - 1.0)  # 0 at a point, 1 between points
        return np.sqrt(x * x + y * y) <= 1.2 * (1 - t) + 0.42 * t
    if shape == "heart":
        hx, hy = x * 1.15, -(y * 1.15) + 0.15  # the implicit heart has y up
        return (hx * hx + hy * hy - 1) ** 3 - hx * hx * hy ** 3 <= 0
    raise ValueError(f"unknown shape {shape!r}")


def draw(canvas: np.ndarray, shape: str, state: State, size_jitter: float = 1.0) -> np.ndarray:
    """Blend one shape into a float (H, W, 3) canvas in place."""
    if state.alpha <= 0:
        return canvas
    h, w = canvas.shape[:2]
    radius = SIZE_RADIUS * SIZE_STEP ** state.level * size_jitter * w
    cx, cy = state.x * w, state.y * h
    reach = radius * 1.3 + 1
    x0, x1 = max(0, int(cx - reach)), min(w, int(math.ceil(cx + reach)))
    y0, y1 = max(0, int(cy - reach)), min(h, int(math.ceil(cy + reach)))
    if x0 >= x1 or y0 >= y1:
        return canvas
    sub = (np.arange(SUPERSAMPLE) + 0.5) / SUPERSAMPLE
    px = (np.arange(x0, x1)[:, None] + sub[None]).reshape(-1)
    py = (np.arange(y0, y1)[:, None] + sub[None]).reshape(-1)
    gx, gy = np.meshgrid((px - cx) / radius, (py - cy) / radius)
    a = math.radians(state.angle)  # rotate the grid back by the shape's clockwise angle
    lx, ly = gx * math.cos(a) + gy * math.sin(a), -gx * math.sin(a) + gy * math.cos(a)
    inside = shape_mask(shape, lx, ly).astype(np.float32)
    cover = inside.reshape(y1 - y0, SUPERSAMPLE, x1 - x0, SUPERSAMPLE).mean(axis=(1, 3))
    alpha = (cover * state.alpha)[..., None]
    region = canvas[y0:y1, x0:x1]
    region += (np.asarray(state.color, np.float32) - region) * alpha
    return canvas


def render_frames(scene: Scene, num_frames: int, size: int) -> np.ndarray:
    """(num_frames, size, size, 3) uint8; frame t shows the state at u = t / (num_frames - 1)."""
    if num_frames < 2:
        raise ValueError(f"a clip needs at least 2 frames, got {num_frames}")
    bg = background(scene.background, size, scene.bg_phase)
    out = np.empty((num_frames, size, size, 3), np.uint8)
    for t in range(num_frames):
        canvas = draw(bg.copy(), scene.shape, scene.state(t / (num_frames - 1)), scene.size_jitter)
        out[t] = np.clip(canvas + 0.5, 0, 255).astype(np.uint8)
    return out
