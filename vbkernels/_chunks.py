"""Bounded-memory chunking shared by the torch reference and the NumPy baseline.

Both keep about ten float temporaries per pixel alive; chunking caps that at any batch
size (the bound: < 256 MB of working memory beyond inputs and outputs).
"""

from __future__ import annotations

from typing import Iterator

import torch

# Pixels per chunk. The reference keeps ~10 float32 temporaries per pixel alive, so 2^22
# pixels stay well under the 256 MB working-memory bound; on the CPU a smaller chunk keeps
# the temporaries in cache.
CHUNK_PIXELS = {"cuda": 1 << 22, "cpu": 1 << 18}


def chunk_pixels(device: torch.device | str) -> int:
    device_type = device if isinstance(device, str) else device.type
    return CHUNK_PIXELS.get(device_type, 1 << 20)


def iter_chunks(shape: tuple[int, ...], max_pixels: int) -> Iterator[tuple[slice, slice]]:
    """Cover the (N, H) grid of an (N, H, W, ...) tensor with (images, rows) slices.

    Each chunk holds at most ``max_pixels`` pixels unless a single row is larger, so the
    reference's temporaries are bounded at any batch size.
    """
    n, h, w = shape[0], shape[1], shape[2]
    rows = max(1, max_pixels // max(w, 1))
    if rows >= h:
        images = max(1, rows // max(h, 1))
        for n0 in range(0, n, images):
            yield slice(n0, min(n, n0 + images)), slice(0, h)
    else:
        for n0 in range(n):
            for h0 in range(0, h, rows):
                yield slice(n0, n0 + 1), slice(h0, min(h, h0 + rows))


