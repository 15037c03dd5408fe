"""Segmentation kernel ops of the ``cuda`` backend (signatures in ``vbkernels._dispatch``).

Any palette size runs through one kernel that stages the palette through shared memory in
tiles of 256 colours (csrc/segmentation.cu); contiguous aligned uint8 images take its
4-pixels-per-thread variant (``packed_u8_path``).
"""

from __future__ import annotations

import numpy as np
import torch

from ._lib import LABEL_DTYPES, launch, packed_u8_path, ptr, shape3, strides, suffix


def decode_segmentation(rgb, palette, labels, distance, max_dist2, ignore_index: int) -> None:
    palette = palette.contiguous()
    threshold = [np.int32(max_dist2 is not None),
                 np.float64(0.0 if max_dist2 is None else max_dist2), np.int64(ignore_index)]
    if palette.dtype == torch.float32 and packed_u8_path(
            rgb, labels, distance, dtypes=(torch.float32, *LABEL_DTYPES)):
        pixels = labels.numel()
        launch("segmentation", f"decode_segmentation_u8x4_{suffix(labels)}", rgb.device,
               -(-pixels // 4),
               [ptr(rgb), np.int64(pixels), ptr(palette), np.int32(palette.shape[0]),
                ptr(labels), ptr(distance), *threshold], one_pixel_per_thread=True)
        return
    launch("segmentation", f"decode_segmentation_{suffix(rgb)}_{suffix(labels)}", rgb.device,
           labels.numel(),
           [ptr(rgb), *strides(rgb, 4), *shape3(rgb), ptr(palette), np.int32(palette.shape[0]),
            ptr(labels), *strides(labels, 3), ptr(distance), *strides(distance, 3), *threshold],
           one_pixel_per_thread=True)


def encode_segmentation(labels, palette, rgb, ignore_color) -> None:
    palette, ignore_color = palette.contiguous(), ignore_color.contiguous()
    launch("segmentation", f"encode_segmentation_{suffix(labels)}", labels.device,
           labels.numel(),
           [ptr(labels), *strides(labels, 3), *shape3(labels), ptr(palette),
            np.int32(palette.shape[0]), ptr(ignore_color), ptr(rgb), *strides(rgb, 4)])
