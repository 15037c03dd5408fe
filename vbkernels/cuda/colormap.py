"""Colormap kernel op of the ``cuda`` backend (contract in ``vbkernels/reference/colormap.py``).

One kernel per image dtype (csrc/colormap.cu) over any strided view: the segment scan in
float64 for uint8 and float64 images, float32 for the other floats, compiled without FMA
contraction so uint8 results are bit-identical to the reference.
"""

from __future__ import annotations

import numpy as np

from ._lib import launch, ptr, shape3, strides, suffix


def decode_colormap(rgb, colours, positions, t, distance, max_distance) -> None:
    colours, positions = colours.contiguous(), positions.contiguous()
    launch("colormap", f"decode_colormap_{suffix(rgb)}", rgb.device, t.numel(),
           [ptr(rgb), *strides(rgb, 4), *shape3(rgb), ptr(colours), ptr(positions),
            np.int32(colours.shape[0]), ptr(t), *strides(t, 3), ptr(distance),
            *strides(distance, 3), np.int32(max_distance is not None),
            np.float32(0.0 if max_distance is None else max_distance)])
