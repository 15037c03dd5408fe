"""Back-projection and depth-implied normals in plain torch (docs/format.md, Points).

Kernel op contract (every backend that offers them):

``depth_to_points(depth, camera, points, ray, flip_yz)`` and
``normals_from_depth(depth, camera, normals, ray, flip_yz)``
    depth: (N, H, W) float32 or float64 view, any strides; camera: (N, 5) contiguous, depth's
    dtype, each row ``(fx, fy, cx, cy, skew)``; points / normals: (N, H, W, 3) views of
    depth's dtype, any strides; ray: depth is the distance along the pixel's ray (else along
    the optical axis); flip_yz: OpenGL axes (negate y and z of the OpenCV result).

Pixel ``(u, v)`` (column, row): ``y = (v - cy) / fy``, ``x = (u - cx - skew * y) / fx``,
``z = d`` or ``d / sqrt(x*x + y*y + 1)`` for ray depth, point ``(x z, y z, z)``; non-finite
depth gives a NaN point. Normals: tangents ``P[v, u+1] - P[v, u-1]`` and
``P[v+1, u] - P[v-1, u]`` (one-sided at the border, NaN along an axis of one pixel), normal
``cross(dv, du)`` turned to face the camera (``n . P <= 0``), normalised; NaN when the
pixel has no point, a neighbour it uses is NaN, or ``|n| <= 1e-6 |du| |dv|``.

The public functions run these ops for the chosen backend, and these functions themselves
(autograd-friendly torch) when depth requires grad.
"""

from __future__ import annotations

import math

import torch

# A cross product shorter than this fraction of |du| |dv| (the sine of the angle between
# the tangents) has no reliable direction: the neighbours are (nearly) collinear.
DEGENERATE_SINE = 1e-6


def camera_points(depth: torch.Tensor, camera: torch.Tensor, ray: bool) -> torch.Tensor:
    """(N, H, W, 3) OpenCV-axis points of (N, H, W) depth; NaN where depth is not finite."""
    n, h, w = depth.shape
    fx, fy, cx, cy, skew = (camera[:, i].view(n, 1, 1) for i in range(5))
    v = torch.arange(h, dtype=depth.dtype, device=depth.device).view(1, h, 1)
    u = torch.arange(w, dtype=depth.dtype, device=depth.device).view(1, 1, w)
    y_n = (v - cy) / fy
    x_n = (u - cx - skew * y_n) / fx
    z = depth / torch.sqrt(x_n * x_n + y_n * y_n + 1) if ray else depth
    points = torch.stack(torch.broadcast_tensors(x_n * z, y_n * z, z), dim=-1)
    return torch.where(torch.isfinite(depth).unsqueeze(-1), points, math.nan)


def _shift(points: torch.Tensor, dim: int, forward: bool) -> torch.Tensor:
    """Neighbour along ``dim`` (+1 if forward else -1), the pixel itself at the border."""
    n = points.shape[dim]
    index = torch.arange(n, device=points.device)
    index = (index + 1).clamp(max=n - 1) if forward else (index - 1).clamp(min=0)
    return points.index_select(dim, index)


def _tangent(points: torch.Tensor, dim: int) -> torch.Tensor:
    """Central difference along image axis ``dim``, one-sided at the borders; NaN when the
    axis has a single pixel (no neighbour)."""
    if points.shape[dim] < 2:
        return torch.full_like(points, math.nan)
    return _shift(points, dim, True) - _shift(points, dim, False)


def depth_normals(points: torch.Tensor) -> torch.Tensor:
    """(N, H, W, 3) unit normals (OpenCV axes) of OpenCV-axis points, or NaN."""
    du = _tangent(points, -2)
    dv = _tangent(points, -3)
    normals = torch.linalg.cross(dv, du, dim=-1)
    # cross(dv, du) faces the camera for a surface seen head-on; flip where it does not.
    facing_away = (normals * points).sum(-1, keepdim=True) > 0
    normals = torch.where(facing_away, -normals, normals)
    length = torch.linalg.vector_norm(normals, dim=-1, keepdim=True)
    scale = torch.linalg.vector_norm(du, dim=-1, keepdim=True) * torch.linalg.vector_norm(
        dv, dim=-1, keepdim=True)
    # False for NaN too; a pixel without a point of its own has no normal either.
    valid = (length > DEGENERATE_SINE * scale) & torch.isfinite(points).all(-1, keepdim=True)
    return torch.where(valid, normals / length, math.nan)


def to_convention(vectors: torch.Tensor, flip_yz: bool) -> torch.Tensor:
    return vectors * vectors.new_tensor([1.0, -1.0, -1.0]) if flip_yz else vectors


def depth_to_points(depth, camera, points_out, ray, flip_yz) -> None:
    points_out.copy_(to_convention(camera_points(depth, camera, ray), flip_yz))


def normals_from_depth(depth, camera, normals_out, ray, flip_yz) -> None:
    normals = depth_normals(camera_points(depth, camera, ray))
    normals_out.copy_(to_convention(normals, flip_yz))
