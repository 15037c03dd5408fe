"""Depth painted in ordinary colormaps: decode (colormap inversion) and encode
(docs/format.md, Colormaps).

``decode_colormap`` finds each pixel's nearest point on the colormap's polyline through RGB
space (a kernel op on every backend) and turns its position into a value here, with torch
ops shared by every backend. ``encode_colormap`` paints values exactly as matplotlib does
(``cmap(norm(x), bytes=True)``), in torch on any device.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any

import numpy as np
import torch

from . import _checks as chk
from ._api import Array, DType, _encoded_output, _needs_grad, _refuse_transforms, _scalar_output
from ._dispatch import select
from .colormaps import ColormapTable, colormap_table, polyline

SCALES = ("linear", "log", "inverse")
# Device copies of recently used polylines, keyed by (painted bytes, device).
_POLYLINES: OrderedDict = OrderedDict()
_POLYLINES_KEPT = 8


def _scale_params(vmin: Any, vmax: Any, scale: str) -> tuple[float, float]:
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    vmin, vmax = chk.finite_float(vmin, "vmin"), chk.finite_float(vmax, "vmax")
    if not vmin < vmax:
        raise ValueError(f"vmin must be < vmax, got vmin={vmin}, vmax={vmax} (for a map "
                         f"painted high-to-low use the reversed map, e.g. 'viridis_r')")
    if scale != "linear" and not vmin > 0:
        raise ValueError(f"scale={scale!r} needs 0 < vmin < vmax, got vmin={vmin}")
    return vmin, vmax


def _max_distance(value: Any) -> float | None:
    """``max_distance`` rounded to float32, the precision the kernels compare it in."""
    if value is None:
        return None
    value = chk.finite_float(value, "max_distance")
    if value < 0:
        raise ValueError(f"max_distance must be >= 0, got {value}")
    return float(np.float32(value))


def _device_polyline(table: ColormapTable, device: torch.device):
    key = (table.painted.tobytes(), str(device))
    if key in _POLYLINES:
        _POLYLINES.move_to_end(key)
        return _POLYLINES[key]
    vertices, positions = polyline(table)
    pair = (torch.from_numpy(vertices).to(device), torch.from_numpy(positions).to(device))
    _POLYLINES[key] = pair
    if len(_POLYLINES) > _POLYLINES_KEPT:
        _POLYLINES.popitem(last=False)
    return pair


def _positions_to_values(t: torch.Tensor, vmin: float, vmax: float, scale: str) -> None:
    """Map normalised positions to values in place (the inverse of the painter's norm)."""
    if scale == "linear":
        if (vmin, vmax) != (0.0, 1.0):
            t.mul_(vmax - vmin).add_(vmin)
    elif scale == "log":
        low, high = math.log(vmin), math.log(vmax)
        t.mul_(high - low).add_(low).exp_()
    else:  # inverse: the map is painted in 1/value (disparity), near = high end
        t.mul_(1.0 / vmin - 1.0 / vmax).add_(1.0 / vmax).reciprocal_()


def decode_colormap(rgb: Array, colormap: Any, *, vmin: float = 0.0, vmax: float = 1.0,
                    scale: str = "linear", max_distance: float | None = None,
                    return_distance: bool = False, layout: str = "auto",
                    backend: str = "auto", out: Array | None = None) -> Any:
    """Values of a colormapped image: the inverse of ``plt.imsave(..., cmap=colormap)``
    (docs/format.md, Colormaps).

    Each pixel goes to the nearest point of the polyline through the colormap's colours
    (squared distance in 0..255 units, ties to the lowest segment). The colours are the
    bytes a painter writes (``floor(255 * colour)``), and entry ``i`` of an N-entry map
    stands for the centre ``(i + 0.5) / N`` of the values it paints (a run of equal
    neighbouring entries for the centre of the run), so a painted pixel decodes to the
    best estimate of its value, within half a bin. uint8 images are decoded exactly: every
    backend returns the same values.

    Args:
        rgb: image of shape ``(*, H, W, 3)`` or ``(*, 3, H, W)``: uint8 (0..255) or
            float16/bfloat16/float32/float64 in [0, 1] (clamped); a torch tensor on any
            device with any strides, or a NumPy array.
        colormap: a built-in name (``vbkernels.colormaps.BUILTIN_COLORMAPS``: viridis,
            plasma, inferno, magma, cividis, turbo, gray, Greys, jet, rainbow, Spectral,
            each also ``_r``), an ``(N, 3)`` array or tensor of colours (uint8, or float in
            [0, 1] read as matplotlib's ``ListedColormap`` reads it), or a matplotlib
            ``Colormap``.
        vmin, vmax: the value range the colormap spans, ``vmin < vmax``.
        scale: ``"linear"`` (value ``vmin + x (vmax - vmin)`` at normalised position
            ``x``), ``"log"`` (log-spaced: ``vmin (vmax/vmin)^x``, ``vmin > 0``) or
            ``"inverse"`` (painted in inverse value, as disparity maps are:
            ``1/value = 1/vmax + x (1/vmin - 1/vmax)``, so ``vmin`` is at the top of the
            map; ``vmin > 0``).
        max_distance: pixels farther than this (0..255 units, compared in float32) from
            the polyline get NaN; ``None`` keeps every pixel.
        return_distance: also return each pixel's distance to the polyline (float32,
            0..255 units): near 0 for a painted pixel, a confidence for noisy ones.
        layout: ``"hwc"``, ``"chw"`` or ``"auto"``.
        backend: ``"auto"`` or a name from :func:`available_backends`.
        out: optional preallocated output for the values (shape, dtype, device of the
            result).

    Returns:
        values of shape ``(*, H, W)``: float64 for float64 input, else float32 (NumPy in,
        NumPy out); NaN for NaN pixels. With ``return_distance``, ``(values, distance)``.

    Example::

        >>> rgb = encode_colormap(torch.tensor([[2.0, 25.0, 49.0]]), "turbo", vmax=50.0)
        >>> decode_colormap(rgb, "turbo", vmax=50.0)
        tensor([[ 2.0508, 25.0977, 48.9258]])
    """
    _refuse_transforms("decode_colormap")
    img = chk.image(rgb, layout)
    table = colormap_table(colormap)
    vmin, vmax = _scale_params(vmin, vmax, scale)
    max_distance = _max_distance(max_distance)
    _, op = select("decode_colormap", backend, img.tensor.device, img.tensor.dtype,
                   _needs_grad(img.tensor))
    out_dtype = torch.float64 if img.tensor.dtype == torch.float64 else torch.float32
    values = _scalar_output(img, out_dtype, out)
    distance = _scalar_output(img, torch.float32) if return_distance else None
    if not img.empty:
        colours, positions = _device_polyline(table, img.tensor.device)
        op(img.view, colours, positions, values.kernel,
           distance.kernel if distance is not None else None, max_distance)
        _positions_to_values(values.kernel, vmin, vmax, scale)
    result = values.finish(img.numpy_io, out)
    if distance is None:
        return result
    return result, distance.finish(img.numpy_io)


def _norm_dtype(values: torch.Tensor) -> torch.dtype:
    """The dtype matplotlib's ``Normalize`` computes in: float64 for float64 and 32/64-bit
    integers, float32 otherwise (matplotlib keeps float16, computed here in float32)."""
    if values.dtype in (torch.float64, torch.int32, torch.int64):
        return torch.float64
    return torch.float32


def _normalise(values: torch.Tensor, vmin: float, vmax: float, scale: str) -> torch.Tensor:
    """matplotlib's ``norm(values)``: each step computed in float64 and rounded to the
    working dtype, as NumPy does for an in-place op with a float64 scalar."""
    wdt = _norm_dtype(values)
    x = values.to(torch.float64)
    if scale == "linear":
        low, span = vmin, vmax - vmin
    elif scale == "log":
        # LogNorm: log10, non-positive values masked (painted as "bad").
        x = torch.log10(torch.where(x > 0, x, torch.full_like(x, float("nan"))))
        low, span = math.log10(vmin), math.log10(vmax) - math.log10(vmin)
    else:
        x = torch.where(x > 0, 1.0 / x, torch.full_like(x, float("nan")))
        low, span = 1.0 / vmax, 1.0 / vmin - 1.0 / vmax
    x = (x.to(wdt).to(torch.float64) - low).to(wdt)
    return (x.to(torch.float64) / span).to(wdt)


def _lut_indices(x: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """matplotlib's ``Colormap.__call__``: entry ``trunc(x * N)``, ``x == 1`` the last one,
    below 0 the first, above 1 the last; and the mask of NaN ("bad") values."""
    xa = x * n
    xa = torch.where(xa == n, torch.full_like(xa, n - 1), xa)
    bad = torch.isnan(xa)
    index = xa.nan_to_num(0.0).clamp(-1.0, float(n)).to(torch.int64)
    index = torch.where(xa < 0, 0, torch.where(xa >= n, n - 1, index))
    return index, bad


def encode_colormap(values: Array, colormap: Any, *, vmin: float = 0.0, vmax: float = 1.0,
                    scale: str = "linear", dtype: DType = torch.uint8,
                    layout: str = "hwc") -> Array:
    """Paint values with a colormap exactly as matplotlib does (docs/format.md, Colormaps).

    ``cmap(norm(values), bytes=True)``: the same bytes ``plt.imsave(path, values,
    vmin=vmin, vmax=vmax, cmap=colormap)`` writes, for training targets and tests.

    Args:
        values: ``(*, H, W)`` (fewer dims count as one row): a real torch tensor on any
            device or a NumPy array. Normalised in float64 for float64 and 32/64-bit
            integer values, in float32 otherwise, as matplotlib does (float16 values are
            normalised in float32 here, in float16 by matplotlib).
        colormap: as for :func:`decode_colormap`.
        vmin, vmax, scale: as for :func:`decode_colormap`; ``"log"`` is matplotlib's
            ``LogNorm`` and ``"inverse"`` normalises ``1/value`` linearly from ``1/vmax``
            to ``1/vmin``.
        dtype: uint8 (the bytes matplotlib writes) or a float dtype (its float colours).
        layout: ``"hwc"`` for ``(*, H, W, 3)`` or ``"chw"`` for ``(*, 3, H, W)``.

    Returns:
        RGB of ``dtype`` in ``layout``, on the input's device (NumPy in, NumPy out). Values
        below ``vmin`` get the first colour, above ``vmax`` the last; NaN (and, for the log
        and inverse scales, non-positive values) are painted black, matplotlib's
        transparent "bad" colour without its alpha.

    Example::

        >>> encode_colormap(torch.tensor([0.0, 0.5, 1.0]), "viridis")
        tensor([[ 68,   1,  84],
                [ 32, 144, 140],
                [253, 231,  36]], dtype=torch.uint8)
    """
    table = colormap_table(colormap)
    vmin, vmax = _scale_params(vmin, vmax, scale)
    dtype = chk.rgb_dtype(dtype)
    _refuse_transforms("encode_colormap")
    tensor, numpy_io = chk.as_tensor(values, "values")
    if tensor.dtype == torch.bool or tensor.is_complex():
        raise TypeError(f"values must be real numbers, got {tensor.dtype}")
    rgb = _encoded_output(tensor, dtype, layout, numpy_io)
    if tensor.numel():
        index, bad = _lut_indices(_normalise(tensor.detach(), vmin, vmax, scale), table.n)
        colours = table.painted if dtype == torch.uint8 else table.lut
        painted = torch.from_numpy(colours).to(device=tensor.device, dtype=dtype)[index]
        painted[bad] = 0
        rgb.kernel.copy_(painted.reshape(rgb.kernel.shape))
    return rgb.finish(numpy_io)


__all__ = ["SCALES", "decode_colormap", "encode_colormap"]
