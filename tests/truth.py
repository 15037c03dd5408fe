"""Independent float64 ground truth for the tests, written differently from the backends.

The projection here clamps the projection of each point onto each full 3D segment (the
textbook point-to-segment distance), instead of the backends' two-fixed-channels shortcut,
so an error shared by the reference and a kernel still shows up.
"""

from __future__ import annotations

import numpy as np

WALK = np.array(
    [[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 1, 1], [0, 0, 1], [1, 0, 1], [1, 1, 1]],
    dtype=np.float64,
) * 255.0


def units(rgb: np.ndarray) -> np.ndarray:
    rgb = np.asarray(rgb)
    if rgb.dtype == np.uint8:
        return rgb.astype(np.float64)
    return np.clip(rgb.astype(np.float64), 0.0, 1.0) * 255.0


def segment_dist2(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(M, 7) squared distances and local positions of (M, 3) points to the 7 segments."""
    start, end = WALK[:-1], WALK[1:]
    edge = end - start
    rel = p[:, None, :] - start[None]
    s = np.clip((rel * edge).sum(-1) / (edge * edge).sum(-1), 0.0, 1.0)
    closest = start[None] + s[..., None] * edge[None]
    return ((p[:, None, :] - closest) ** 2).sum(-1), s


def project(rgb) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(t, k, dist2) in float64 with ties to the lowest segment (argmin takes the first)."""
    p = units(rgb).reshape(-1, 3)
    d2, s = segment_dist2(p)
    k = np.argmin(d2, axis=1)
    rows = np.arange(len(p))
    return (k + s[rows, k]) / 7.0, k, d2[rows, k]


def tie_margin(rgb) -> np.ndarray:
    """Gap between the best and second-best segment distance (0 for exact ties)."""
    d2, _ = segment_dist2(units(rgb).reshape(-1, 3))
    part = np.partition(d2, 1, axis=1)
    return part[:, 1] - part[:, 0]


def depth_from_t(t, lam=-3.0, c=10.0 / 3.0) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return lam * c * (1.0 - np.power(1.0 - np.asarray(t, np.float64), 1.0 / (lam + 1.0)))


def exact_tie_colours(limit: int) -> np.ndarray:
    """uint8 colours equidistant from two segments, from a deterministic scan."""
    g = np.arange(0, 256, 3)
    grid = np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3).astype(np.float64)
    d2, _ = segment_dist2(grid)
    part = np.partition(d2, 1, axis=1)
    ties = grid[part[:, 1] == part[:, 0]]
    return ties[:limit].astype(np.uint8)


def normals(rgb, flip_yz=False, eps=1e-6) -> tuple[np.ndarray, np.ndarray]:
    n = units(rgb) * 2.0 / 255.0 - 1.0
    norm = np.sqrt((n * n).sum(-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        unit = np.where((norm < eps)[..., None], 0.0, n / norm[..., None])
    if flip_yz:
        unit = unit * np.array([1.0, -1.0, -1.0])
    return unit, norm


def nearest(rgb, palette) -> tuple[np.ndarray, np.ndarray]:
    """(labels, dist2) by brute force in float64; ties to the lowest index."""
    p = units(rgb).reshape(-1, 3)
    pal = np.asarray(palette, dtype=np.float64)
    d2 = ((p[:, None, :] - pal[None]) ** 2).sum(-1)
    lab = np.argmin(d2, axis=1)
    return lab, d2[np.arange(len(p)), lab]
