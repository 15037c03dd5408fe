"""Surface normals from linearly mapped RGB, and back, in plain torch (docs/format.md, Normals)."""

from __future__ import annotations

import torch

from ._common import chunk_pixels, iter_chunks, to_units


def _flip(n: torch.Tensor, flip_yz: bool) -> torch.Tensor:
    """OpenGL (+y up, +z toward the camera) <-> OpenCV (+y down, +z forward)."""
    if not flip_yz:
        return n
    sign = torch.tensor([1.0, -1.0, -1.0], dtype=n.dtype, device=n.device)
    return n * sign


def scaled_vectors(rgb: torch.Tensor) -> tuple[torch.Tensor, float]:
    """``(m, scale)`` with ``n = m / scale`` the vector ``2p/255 - 1`` of each pixel.

    uint8 gives the exact integer vector ``m = 2p - 255`` and ``scale = 255``: ``n/|n|``
    does not depend on the scale, so the unit vector takes one rounding per component
    instead of the cancellation of ``2p/255 - 1`` near grey (1.2e-5 in float32 at
    (127, 128, 128)). Floats give ``m = 2p/255 - 1`` in 0..255 units and ``scale = 1``.
    """
    units = to_units(rgb)
    if rgb.dtype == torch.uint8:
        return units * 2.0 - 255.0, 255.0
    return units * (2.0 / 255.0) - 1.0, 1.0


def decode_normals(rgb, normals_out, norm_out, flip_yz, eps) -> None:
    for imgs, rows in iter_chunks(rgb.shape, chunk_pixels(rgb.device)):
        m, scale = scaled_vectors(rgb[imgs, rows])
        # A fixed summation order (not vector_norm, whose reduction order follows the
        # strides) makes every layout of the same pixels give bit-identical normals.
        length = torch.sqrt((m[..., 0] * m[..., 0] + m[..., 1] * m[..., 1]) + m[..., 2] * m[..., 2])
        norm = length / scale if scale != 1.0 else length
        # `norm < eps` is False for NaN, so a NaN pixel stays NaN instead of becoming zero.
        unit = torch.where((norm < eps).unsqueeze(-1), 0.0, m / length.unsqueeze(-1))
        normals_out[imgs, rows] = _flip(unit, flip_yz)
        if norm_out is not None:
            norm_out[imgs, rows] = norm


def encode_normals(normals, rgb_out, flip_yz) -> None:
    for imgs, rows in iter_chunks(normals.shape, chunk_pixels(normals.device)):
        n = _flip(normals[imgs, rows].to(torch.float64), flip_yz)
        # docs/format.md, Normals: p = round(255*(n+1)/2)
        units = (255.0 * (n + 1.0) / 2.0).clamp(0.0, 255.0)
        if rgb_out.dtype == torch.uint8:
            rgb_out[imgs, rows] = torch.round(units).to(torch.uint8)
        else:
            rgb_out[imgs, rows] = (units / 255.0).to(rgb_out.dtype)
