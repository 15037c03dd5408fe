"""Back-projection and depth-implied normals (docs/format.md, Points), one fused pass.

``depth_to_points`` reads one depth and writes one point per pixel. ``normals_from_depth``
reads the pixel's depth and its four neighbours', back-projects all five in registers and
writes the unit normal: no (N, H, W, 3) points buffer and no tangent buffers ever reach
memory, where the torch reference makes about ten such passes. Contract and formulas:
``vbkernels/reference/points.py``.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from . import _common as cm

# A row of pixels per program, in blocks of this many (memory bound: loads are contiguous
# along a row for the usual layouts).
BLOCK_W = 256


@triton.jit
def _camera(p_cam, n):
    base = p_cam + n.to(tl.int64) * 5
    return tl.load(base), tl.load(base + 1), tl.load(base + 2), tl.load(base + 3), \
        tl.load(base + 4)


@triton.jit
def _back_project(d, u, v, fx, fy, cx, cy, skew, RAY: tl.constexpr):
    """OpenCV-axis point of depth ``d`` at pixel (u, v); NaN where d is not finite."""
    y_n = (v - cy) / fy
    x_n = (u - cx - skew * y_n) / fx
    if RAY:
        z = d / tl.sqrt(x_n * x_n + y_n * y_n + 1.0)
    else:
        z = d
    finite = tl.abs(d) < float("inf")  # False for NaN and for +-inf
    return (tl.where(finite, x_n * z, float("nan")), tl.where(finite, y_n * z, float("nan")),
            tl.where(finite, z, float("nan")))


@triton.jit
def _row_pixels(H, W, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    n = row // H
    h = row - n * H
    w = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    return n, h, w, w < W


@triton.jit
def _store3(p_out, offsets, so_c, x, y, z, mask, FLIP_YZ: tl.constexpr):
    if FLIP_YZ:
        y = -y
        z = -z
    tl.store(p_out + offsets, x.to(p_out.dtype.element_ty), mask=mask)
    tl.store(p_out + offsets + so_c, y.to(p_out.dtype.element_ty), mask=mask)
    tl.store(p_out + offsets + 2 * so_c, z.to(p_out.dtype.element_ty), mask=mask)


@triton.jit
def _points_kernel(
    p_depth, p_cam, p_out, H, W,
    sd_n, sd_h, sd_w, so_n, so_h, so_w, so_c,
    RAY: tl.constexpr, FLIP_YZ: tl.constexpr, BLOCK: tl.constexpr,
):
    n, h, w, mask = _row_pixels(H, W, BLOCK)
    n64, h64, w64 = n.to(tl.int64), h.to(tl.int64), w.to(tl.int64)
    d = tl.load(p_depth + n64 * sd_n + h64 * sd_h + w64 * sd_w, mask=mask, other=0.0)
    fx, fy, cx, cy, skew = _camera(p_cam, n)
    x, y, z = _back_project(d, w.to(d.dtype), h.to(d.dtype), fx, fy, cx, cy, skew, RAY)
    _store3(p_out, n64 * so_n + h64 * so_h + w64 * so_w, so_c, x, y, z, mask, FLIP_YZ)


@triton.jit
def _neighbour(p_depth, n64, hh, ww, sd_n, sd_h, sd_w, mask, fx, fy, cx, cy, skew,
               RAY: tl.constexpr):
    d = tl.load(p_depth + n64 * sd_n + hh.to(tl.int64) * sd_h + ww.to(tl.int64) * sd_w,
                mask=mask, other=0.0)
    return _back_project(d, ww.to(d.dtype), hh.to(d.dtype), fx, fy, cx, cy, skew, RAY)


@triton.jit
def _normals_kernel(
    p_depth, p_cam, p_out, H, W,
    sd_n, sd_h, sd_w, so_n, so_h, so_w, so_c,
    RAY: tl.constexpr, FLIP_YZ: tl.constexpr, BLOCK: tl.constexpr,
):
    n, h, w, mask = _row_pixels(H, W, BLOCK)
    n64 = n.to(tl.int64)
    fx, fy, cx, cy, skew = _camera(p_cam, n)
    # The neighbours each tangent uses: one-sided at the border (the pixel itself).
    w_next, w_prev = tl.minimum(w + 1, W - 1), tl.maximum(w - 1, 0)
    h_next, h_prev = tl.minimum(h + 1, H - 1), tl.maximum(h - 1, 0)
    h_row = w * 0 + h  # the row index as a block, like w
    px, py, pz = _neighbour(p_depth, n64, h_row, w, sd_n, sd_h, sd_w, mask,
                            fx, fy, cx, cy, skew, RAY)
    ax, ay, az = _neighbour(p_depth, n64, h_row, w_next, sd_n, sd_h, sd_w, mask,
                            fx, fy, cx, cy, skew, RAY)
    bx, by, bz = _neighbour(p_depth, n64, h_row, w_prev, sd_n, sd_h, sd_w, mask,
                            fx, fy, cx, cy, skew, RAY)
    ux, uy, uz = ax - bx, ay - by, az - bz
    ax, ay, az = _neighbour(p_depth, n64, h_row * 0 + h_next, w, sd_n, sd_h, sd_w, mask,
                            fx, fy, cx, cy, skew, RAY)
    bx, by, bz = _neighbour(p_depth, n64, h_row * 0 + h_prev, w, sd_n, sd_h, sd_w, mask,
                            fx, fy, cx, cy, skew, RAY)
    vx, vy, vz = ax - bx, ay - by, az - bz
    # An axis of one pixel has no tangent.
    no_du = W < 2
    no_dv = H < 2
    ux = tl.where(no_du, float("nan"), ux)
    vx = tl.where(no_dv, float("nan"), vx)
    # cross(dv, du), turned to face the camera (n . P <= 0).
    nx = vy * uz - vz * uy
    ny = vz * ux - vx * uz
    nz = vx * uy - vy * ux
    away = (nx * px + ny * py) + nz * pz > 0
    nx = tl.where(away, -nx, nx)
    ny = tl.where(away, -ny, ny)
    nz = tl.where(away, -nz, nz)
    length = tl.sqrt((nx * nx + ny * ny) + nz * nz)
    scale = tl.sqrt((ux * ux + uy * uy) + uz * uz) * tl.sqrt((vx * vx + vy * vy) + vz * vz)
    # False for NaN too; a pixel without a point of its own has no normal either.
    valid = (length > 1e-6 * scale) & (pz == pz)
    safe = tl.where(valid, length, 1.0)
    nx = tl.where(valid, nx / safe, float("nan"))
    ny = tl.where(valid, ny / safe, float("nan"))
    nz = tl.where(valid, nz / safe, float("nan"))
    _store3(p_out, n64 * so_n + h.to(tl.int64) * so_h + w.to(tl.int64) * so_w, so_c,
            nx, ny, nz, mask, FLIP_YZ)


def _launch(kernel, depth, camera, out, ray, flip_yz) -> None:
    n, h, w = depth.shape
    if n * h * w == 0:
        return
    block = cm.INTERPRETER_BLOCK_W if cm.interpreting() else BLOCK_W
    block = min(block, triton.next_power_of_2(w))
    kernel[(n * h, triton.cdiv(w, block))](
        depth, camera, out, h, w, *depth.stride(), *out.stride(),
        RAY=bool(ray), FLIP_YZ=bool(flip_yz), BLOCK=block,
    )


def depth_to_points(depth: torch.Tensor, camera: torch.Tensor, points: torch.Tensor,
                    ray: bool, flip_yz: bool) -> None:
    _launch(_points_kernel, depth, camera, points, ray, flip_yz)


def normals_from_depth(depth: torch.Tensor, camera: torch.Tensor, normals: torch.Tensor,
                       ray: bool, flip_yz: bool) -> None:
    _launch(_normals_kernel, depth, camera, normals, ray, flip_yz)
