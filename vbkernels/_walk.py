"""Geometry of the cube walk (docs/format.md, Depth), derived once from the vertex order.

Every backend reads its segment table from here (or, for compiled code, from the same
numbers written out in csrc/), so the walk is defined in exactly one place.
"""

from __future__ import annotations

from typing import NamedTuple

# The 8 RGB-cube vertices in walk order: black, red, yellow, green, cyan, blue, magenta, white.
VERTICES = (
    (0, 0, 0),
    (1, 0, 0),
    (1, 1, 0),
    (0, 1, 0),
    (0, 1, 1),
    (0, 0, 1),
    (1, 0, 1),
    (1, 1, 1),
)
N_SEGMENTS = len(VERTICES) - 1


class Segment(NamedTuple):
    """Segment k -> k+1: channel ``varying`` moves; ``fixed`` channels sit at 0 or 255."""

    varying: int
    rising: bool
    fixed_a: int
    value_a: int  # 0 or 255
    fixed_b: int
    value_b: int  # 0 or 255


def _segment(k: int) -> Segment:
    start, end = VERTICES[k], VERTICES[k + 1]
    (varying,) = [ch for ch in range(3) if start[ch] != end[ch]]
    fixed_a, fixed_b = [ch for ch in range(3) if ch != varying]
    return Segment(
        varying, end[varying] > start[varying],
        fixed_a, 255 * start[fixed_a], fixed_b, 255 * start[fixed_b],
    )


SEGMENTS = tuple(_segment(k) for k in range(N_SEGMENTS))
