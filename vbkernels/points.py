"""Decoded depth as 3-D points: back-projection, normals implied by depth, PLY files.

docs/format.md, Points. Everything here is plain torch (any device) with NumPy in, NumPy
out; points and normals are computed in float32, or float64 for float64 depth.
"""

from __future__ import annotations

import math
import os
from typing import Any, NamedTuple

import numpy as np
import torch

from . import _checks as chk
from ._dispatch import select
from .files import write_atomic
from .reference import points as ref_points

Array = torch.Tensor | np.ndarray
Intrinsics = tuple | list | torch.Tensor | np.ndarray
DEPTH_KINDS = ("z", "ray")
DEGENERATE_SINE = ref_points.DEGENERATE_SINE


def _depth(depth: Any) -> tuple[torch.Tensor, bool]:
    tensor, numpy_io = chk.real_tensor(depth, "depth")
    if tensor.ndim < 2:
        raise ValueError(f"depth must have shape (..., H, W), got {tuple(tensor.shape)}")
    return tensor, numpy_io


def _work_dtype(depth: torch.Tensor) -> torch.dtype:
    return torch.float64 if depth.dtype == torch.float64 else torch.float32


def _check_focal(fx: torch.Tensor, fy: torch.Tensor) -> None:
    for value, name in ((fx, "fx"), (fy, "fy")):
        if not bool((torch.isfinite(value) & (value > 0)).all()):
            raise ValueError(f"intrinsics: focal length {name} must be finite and > 0")


def _intrinsics(intrinsics: Any, dtype: torch.dtype,
                device: torch.device) -> tuple[torch.Tensor, ...]:
    """``(fx, fy, cx, cy, skew)`` as tensors of shape (*batch, 1, 1) (batch may be empty)."""
    if isinstance(intrinsics, (tuple, list)):
        if len(intrinsics) != 4:
            raise ValueError(
                f"intrinsics must be (fx, fy, cx, cy) or (..., 3, 3) matrices, got a "
                f"{type(intrinsics).__name__} of length {len(intrinsics)}")
        values = [chk.finite_float(v, f"intrinsics[{i}]") for i, v in enumerate(intrinsics)]
        fx, fy, cx, cy = (torch.tensor(v, dtype=dtype, device=device).view(1, 1)
                          for v in values)
        skew = torch.zeros_like(fx)
    else:
        matrix, _ = chk.real_tensor(intrinsics, "intrinsics")
        if matrix.ndim < 2 or tuple(matrix.shape[-2:]) != (3, 3):
            raise ValueError(
                f"intrinsics must be (fx, fy, cx, cy) or (..., 3, 3) matrices, got shape "
                f"{tuple(matrix.shape)}")
        matrix = matrix.to(device=device, dtype=dtype)
        if not bool(torch.isfinite(matrix).all()):
            raise ValueError("intrinsics must be finite")
        bottom = matrix.new_tensor([0.0, 0.0, 1.0])
        pinhole_form = (matrix[..., 2, :] == bottom).all() & (matrix[..., 1, 0] == 0).all()
        if not bool(pinhole_form):
            raise ValueError("intrinsics matrices must be [[fx, s, cx], [0, fy, cy], [0, 0, 1]]")
        fx, skew, cx = (matrix[..., 0, i, None, None] for i in range(3))
        fy, cy = matrix[..., 1, 1, None, None], matrix[..., 1, 2, None, None]
    _check_focal(fx, fy)
    return fx, fy, cx, cy, skew


def _batch_shape(depth: torch.Tensor, fx: torch.Tensor) -> tuple[int, ...]:
    try:
        return tuple(torch.broadcast_shapes(depth.shape[:-2], fx.shape[:-2]))
    except RuntimeError:
        raise ValueError(
            f"intrinsics batch shape {tuple(fx.shape[:-2])} does not broadcast against depth's "
            f"leading dims {tuple(depth.shape[:-2])}") from None


class _Problem(NamedTuple):
    """A validated call: (N, H, W) depth and (N, 5) cameras for the kernel ops."""

    depth: torch.Tensor  # (N, H, W), the working dtype
    camera: torch.Tensor  # (N, 5) contiguous: fx, fy, cx, cy, skew
    shape: tuple[int, ...]  # the result's shape, (*batch, H, W, 3)
    ray: bool
    flip_yz: bool
    numpy_io: bool


def _problem(depth: Any, intrinsics: Any, depth_kind: Any, convention: Any) -> _Problem:
    tensor, numpy_io = _depth(depth)
    if depth_kind not in DEPTH_KINDS:
        raise ValueError(f"depth_kind must be one of {DEPTH_KINDS}, got {depth_kind!r}")
    chk.flip_yz(convention)  # validates the name; points are computed in OpenCV axes
    flip_yz = convention == "opengl"
    dtype = _work_dtype(tensor)
    fx, fy, cx, cy, skew = _intrinsics(intrinsics, dtype, tensor.device)
    batch = _batch_shape(tensor, fx)
    h, w = tensor.shape[-2:]
    camera = torch.cat(torch.broadcast_tensors(fx, fy, cx, cy, skew), dim=-1)[..., 0, :]
    camera = camera.expand(batch + (5,)).reshape(-1, 5).contiguous()
    grid = tensor.to(dtype).expand(batch + (h, w)).reshape(-1, h, w)
    return _Problem(grid, camera, batch + (h, w, 3), depth_kind == "ray", flip_yz, numpy_io)


def _run(op_name: str, problem: _Problem, backend: str, out: Any = None) -> Array:
    """Run kernel op ``op_name`` for ``problem``, or its torch functions when depth needs a
    gradient (the kernel ops write into a buffer, which autograd cannot see through)."""
    depth = problem.depth
    if depth.requires_grad and torch.is_grad_enabled():
        if out is not None:
            raise RuntimeError("out= does not support autograd: depth requires grad")
        points = ref_points.camera_points(depth, problem.camera, problem.ray)
        if op_name == "normals_from_depth":
            points = ref_points.depth_normals(points)
        result = ref_points.to_convention(points, problem.flip_yz).reshape(problem.shape)
        return result.detach().numpy() if problem.numpy_io else result
    _, op = select(op_name, backend, depth.device, depth.dtype)
    target = chk.check_out(out, problem.shape, depth.dtype, depth.device, problem.numpy_io)
    result = torch.empty(problem.shape, dtype=depth.dtype, device=depth.device)
    if result.numel():
        op(depth, problem.camera, result.view(depth.shape + (3,)), problem.ray, problem.flip_yz)
    if target is not None:
        target.copy_(result)
        return out
    return result.numpy() if problem.numpy_io else result


def depth_to_points(depth: Array, intrinsics: Intrinsics, *, depth_kind: str = "z",
                    convention: str = "opencv", backend: str = "auto",
                    out: Array | None = None) -> Array:
    """Back-project depth into camera-frame 3-D points with a pinhole camera
    (docs/format.md, Points).

    Pixel ``(u, v)`` (column, row) sits at integer image coordinates ``(u, v)``, OpenCV's
    convention, with ``cx, cy`` in the same frame (so the centre of a W-wide image is at
    ``(W - 1) / 2``). In OpenCV axes ``X = (u - cx - s·y) / fx · Z``, ``Y = (v - cy) / fy · Z``
    with ``y = (v - cy) / fy`` and skew ``s`` (0 for four numbers).

    Args:
        depth: ``(..., H, W)`` depth, a torch tensor (any device) or NumPy array; float16,
            bfloat16, float32, float64 or integers (read as float32). NaN and inf give NaN
            points.
        intrinsics: ``(fx, fy, cx, cy)`` (numbers, one camera for every image) or
            ``(..., 3, 3)`` matrices ``[[fx, s, cx], [0, fy, cy], [0, 0, 1]]`` whose batch
            dims broadcast against depth's leading dims. Focal lengths must be finite, > 0.
        depth_kind: ``"z"`` (distance along the optical axis) or ``"ray"`` (Euclidean
            distance from the camera centre along the pixel's ray).
        convention: ``"opencv"`` (+x right, +y down, +z forward) or ``"opengl"`` (+x right,
            +y up, +z toward the camera: y and z negated), as in ``decode_normals``.
        backend: ``"auto"`` (one fused kernel on CUDA tensors, torch on CPU) or a name from
            :func:`available_backends` that offers it (``torch``, ``triton``, ``cuda``).
            A depth that requires grad is back-projected with differentiable torch ops.
        out: optional preallocated output of the result's shape, dtype and device (a NumPy
            array for NumPy input); written and returned.

    Returns:
        points ``(*batch, H, W, 3)``, ``batch`` the broadcast of depth's leading dims and the
        intrinsics' batch dims; float32 (float64 for float64 depth), on depth's device.

    Example::

        >>> depth_to_points(torch.full((1, 2), 2.0), (1.0, 1.0, 0.0, 0.0))
        tensor([[[0., 0., 2.],
                 [2., 0., 2.]]])
    """
    problem = _problem(depth, intrinsics, depth_kind, convention)
    return _run("depth_to_points", problem, backend, out)


def normals_from_depth(depth: Array, intrinsics: Intrinsics, *, depth_kind: str = "z",
                       convention: str = "opencv", backend: str = "auto") -> Array:
    """Unit surface normals implied by depth, from neighbouring back-projected points
    (docs/format.md, Points).

    Method: back-project with :func:`depth_to_points`; the tangents are central
    differences ``P[v, u+1] - P[v, u-1]`` and ``P[v+1, u] - P[v-1, u]`` inside the image and
    one-sided differences at its border; the normal is their cross product, normalised and
    flipped, if needed, to face the camera (``n · P <= 0``). A pixel is NaN when its own
    point or a neighbour it needs is NaN (non-finite depth), when the image is one pixel
    wide or tall, or when the cross product vanishes (its length below 1e-6 of the product
    of the tangents' lengths).
    Compare with decoded normals using :func:`normal_consistency`.

    Args:
        depth: ``(..., H, W)`` depth as in :func:`depth_to_points`.
        intrinsics: ``(fx, fy, cx, cy)`` or ``(..., 3, 3)`` matrices, as in
            :func:`depth_to_points`.
        depth_kind: ``"z"`` or ``"ray"``, as in :func:`depth_to_points`.
        convention: ``"opencv"`` or ``"opengl"`` axes of the returned normals.
        backend: as in :func:`depth_to_points` (one fused kernel per pixel on the GPU
            backends: five back-projections, two tangents, a cross product).

    Returns:
        normals ``(*batch, H, W, 3)``, float32 (float64 for float64 depth), unit length or
        NaN, on depth's device (NumPy in, NumPy out).

    Example::

        >>> normals_from_depth(torch.full((3, 3), 2.0), (1.0, 1.0, 1.0, 1.0))[1, 1]
        tensor([ 0.,  0., -1.])
    """
    problem = _problem(depth, intrinsics, depth_kind, convention)
    return _run("normals_from_depth", problem, backend)


def normal_consistency(normals_a: Array, normals_b: Array) -> Array:
    """Per-pixel angle in degrees between two normal maps: the consistency score between
    decoded normals and the normals implied by decoded depth (docs/format.md, Points).

    Computed as ``atan2(|a × b|, a · b)``, accurate at small and large angles; the inputs
    need not be unit length. Both maps must use the same axes convention.

    Args:
        normals_a: ``(..., 3)`` vectors, a torch tensor or NumPy array (channels last, e.g.
            ``decode_normals(rgb, layout="hwc")`` or :func:`normals_from_depth`).
        normals_b: ``(..., 3)`` vectors of a shape that broadcasts against ``normals_a``,
            the same kind (tensor or array) and, for tensors, device.

    Returns:
        angles ``(...)`` in [0, 180], float32 (float64 if either input is float64); NaN where
        either vector has a non-finite component or is zero.

    Example::

        >>> normal_consistency(torch.tensor([[0.0, 0.0, 1.0]]), torch.tensor([[0.0, 1.0, 1.0]]))
        tensor([45.])
    """
    a, numpy_a = chk.real_tensor(normals_a, "normals_a")
    b, numpy_b = chk.real_tensor(normals_b, "normals_b")
    if numpy_a != numpy_b:
        raise TypeError("normals_a and normals_b must both be torch tensors or both NumPy arrays")
    if a.device != b.device:
        raise ValueError(f"normals_a is on {a.device} but normals_b is on {b.device}")
    for tensor, name in ((a, "normals_a"), (b, "normals_b")):
        if tensor.ndim < 1 or tensor.shape[-1] != 3:
            raise ValueError(f"{name} must have shape (..., 3), got {tuple(tensor.shape)}")
    try:
        torch.broadcast_shapes(a.shape, b.shape)
    except RuntimeError:
        raise ValueError(f"normals_a {tuple(a.shape)} and normals_b {tuple(b.shape)} do not "
                         "broadcast") from None
    dtype = torch.float64 if torch.float64 in (a.dtype, b.dtype) else torch.float32
    a, b = torch.broadcast_tensors(a.to(dtype), b.to(dtype))
    sine = torch.linalg.vector_norm(torch.linalg.cross(a, b, dim=-1), dim=-1)
    cosine = (a * b).sum(-1)
    angle = torch.rad2deg(torch.atan2(sine, cosine))
    valid = _usable(a) & _usable(b)
    angle = torch.where(valid, angle, angle.new_tensor(math.nan))
    return angle.numpy() if numpy_a else angle


def _usable(vectors: torch.Tensor) -> torch.Tensor:
    return torch.isfinite(vectors).all(-1) & (vectors != 0).any(-1)


# --------------------------------------------------------------------------- PLY


def _rows(x: Any, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """``x`` as a NumPy array on the CPU, checked to have ``shape``."""
    tensor, _ = chk.as_tensor(x, name)
    if tuple(tensor.shape) != shape:
        raise ValueError(f"{name} must have shape {shape} to match points, got "
                         f"{tuple(tensor.shape)}")
    return tensor.detach().cpu().numpy()


def _colors(colors: Any, shape: tuple[int, ...]) -> np.ndarray:
    """uint8 colours as they are; float colours in [0, 1] rounded to 0..255."""
    rgb = _rows(colors, "colors", shape)
    if rgb.dtype == np.uint8:
        return rgb
    if rgb.dtype.kind != "f":
        raise TypeError(f"colors must be uint8 (0..255) or float in [0, 1], got {rgb.dtype}")
    if not np.isfinite(rgb).all():
        raise ValueError("colors must be finite")
    return np.round(np.clip(rgb.astype(np.float64), 0.0, 1.0) * 255.0).astype(np.uint8)


def _labels(labels: Any, shape: tuple[int, ...]) -> np.ndarray:
    values = _rows(labels, "labels", shape)
    if values.dtype.kind not in "iu":
        raise TypeError(f"labels must be integers, got {values.dtype}")
    info = np.iinfo(np.int32)
    if values.size and (values.min() < info.min or values.max() > info.max):
        raise ValueError("labels must fit int32")
    return values


def write_ply(path: str | os.PathLike, points: Array, *, colors: Array | None = None,
              normals: Array | None = None, labels: Array | None = None) -> int:
    """Write a point cloud as a binary little-endian PLY file (docs/format.md, Points).

    One vertex per point: ``x, y, z`` float32, then, when given, ``red, green, blue`` uchar,
    ``nx, ny, nz`` float32 and ``label`` int32. Points with a non-finite coordinate are
    dropped together with their attributes. The file is written through a temporary file
    and renamed, so it is never left half-written; an existing file is replaced.

    Args:
        path: file to write.
        points: ``(..., 3)`` points (a tensor on any device or an array), e.g. from
            :func:`depth_to_points`; leading dims are flattened.
        colors: optional ``(..., 3)`` colours, uint8 or float in [0, 1] (rounded).
        normals: optional ``(..., 3)`` normals (NaN normals are written as NaN).
        labels: optional ``(...)`` integer labels that fit int32.

    Returns:
        the number of vertices written.

    Example::

        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "cloud.ply"
        >>> write_ply(path, torch.tensor([[0.0, 0.0, 1.0], [math.nan, 0.0, 1.0]]))
        1
    """
    vertices = _vertices(points, colors, normals, labels)
    write_atomic(path, _ply_file(vertices), overwrite=True)
    return len(vertices)


def voxel_downsample(points: Array, voxel_size: float, *, colors: Array | None = None,
                     ) -> tuple[np.ndarray, np.ndarray | None]:
    """One point per occupied cube of side ``voxel_size``: the mean of the points in it (and
    of their colours), as Open3D's ``voxel_down_sample`` does. Non-finite points are dropped.

    Voxels are the cells ``floor(p / voxel_size)`` of a grid anchored at the origin (the
    camera), so the result does not depend on which other points are present. Output rows
    are ordered by voxel (x, then y, then z cell index), so it is the same on every run.

    Args:
        points: ``(..., 3)`` points (a tensor on any device or an array); leading dims are
            flattened.
        voxel_size: edge of a voxel, in the points' units, ``> 0``.
        colors: optional ``(..., 3)`` colours, uint8 or float in [0, 1]: averaged per voxel
            and rounded to uint8.

    Returns:
        ``(points, colors)``: ``(M, 3)`` float32 (float64 for float64 points) NumPy arrays,
        ``colors`` uint8 or None.

    Example::

        >>> cloud = np.array([[0.01, 0.0, 1.0], [0.03, 0.0, 1.0], [0.5, 0.0, 1.0]])
        >>> voxel_downsample(cloud, 0.1)[0]
        array([[0.02, 0.  , 1.  ],
               [0.5 , 0.  , 1.  ]])
    """
    size = chk.finite_float(voxel_size, "voxel_size")
    if not size > 0:
        raise ValueError(f"voxel_size must be > 0, got {size}")
    tensor, _ = chk.real_tensor(points, "points")
    if tensor.ndim < 1 or tensor.shape[-1] != 3:
        raise ValueError(f"points must have shape (..., 3), got {tuple(tensor.shape)}")
    xyz = tensor.detach().cpu().numpy().reshape(-1, 3)
    rgb = None if colors is None else _colors(colors, tuple(tensor.shape)).reshape(-1, 3)
    keep = np.isfinite(xyz).all(axis=1)
    xyz = xyz[keep]
    cells = np.floor(xyz.astype(np.float64) / size).astype(np.int64)
    _, voxel, counts = np.unique(cells, axis=0, return_inverse=True, return_counts=True)
    voxel = voxel.reshape(-1)

    def mean(values: np.ndarray) -> np.ndarray:  # per voxel; bincount is ~10x np.add.at
        sums = [np.bincount(voxel, weights=values[:, i], minlength=len(counts))
                for i in range(3)]
        return np.stack(sums, axis=1) / counts[:, None]

    out_points = mean(xyz).astype(xyz.dtype if xyz.dtype == np.float64 else np.float32)
    if rgb is None:
        return out_points, None
    return out_points, np.rint(mean(rgb[keep].astype(np.float64))).astype(np.uint8)


def ply_bytes(points: Array, *, colors: Array | None = None, normals: Array | None = None,
              labels: Array | None = None) -> bytes:
    """The contents :func:`write_ply` writes (the CLI's workers write files themselves)."""
    return _ply_file(_vertices(points, colors, normals, labels))


def _vertices(points: Any, colors: Any, normals: Any, labels: Any) -> np.ndarray:
    """One structured record per point with finite coordinates, fields in PLY order."""
    tensor, _ = chk.real_tensor(points, "points")
    if tensor.ndim < 1 or tensor.shape[-1] != 3:
        raise ValueError(f"points must have shape (..., 3), got {tuple(tensor.shape)}")
    shape = tuple(tensor.shape)
    xyz = tensor.detach().cpu().numpy().reshape(-1, 3)
    keep = np.isfinite(xyz).all(axis=1)
    fields = [(("x", "y", "z"), "<f4", xyz)]
    if colors is not None:
        fields.append((("red", "green", "blue"), "u1", _colors(colors, shape)))
    if normals is not None:
        normal_values, _ = chk.real_tensor(normals, "normals")
        fields.append((("nx", "ny", "nz"), "<f4", _rows(normal_values, "normals", shape)))
    if labels is not None:
        fields.append((("label",), "<i4", _labels(labels, shape[:-1])))
    dtype = np.dtype([(name, kind) for names, kind, _ in fields for name in names])
    vertices = np.empty(int(keep.sum()), dtype=dtype)
    for names, _, values in fields:
        values = values.reshape(-1, len(names))[keep]
        for i, name in enumerate(names):
            vertices[name] = values[:, i]
    return vertices


PLY_TYPES = {"<f4": "float", "|u1": "uchar", "<i4": "int"}


def _ply_file(vertices: np.ndarray) -> bytes:
    lines = ["ply", "format binary_little_endian 1.0", "comment written by vbkernels",
             f"element vertex {len(vertices)}"]
    dtype = vertices.dtype
    lines += [f"property {PLY_TYPES[dtype[name].str]} {name}" for name in dtype.names]
    lines.append("end_header")
    return ("\n".join(lines) + "\n").encode("ascii") + vertices.tobytes()
