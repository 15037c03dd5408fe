"""Backend registry and selection.

Every backend is a module (``vbkernels.numpy_baseline``, ``vbkernels.reference``,
``vbkernels.triton``, ``vbkernels.cuda``, ``vbkernels.cpu``) that exposes ``load()``:
it returns a :class:`Backend` or raises ``BackendUnavailable`` with a sentence saying why
and what to install. The public functions in ``vbkernels._api`` and
``vbkernels.instances`` validate arguments, allocate outputs and then call one *kernel op*
of the chosen backend. Adding a backend means adding a module and a line to
``_BACKEND_MODULES``; callers do not change. This module is the one source of the backend
names (``BACKEND_NAMES``) and the op names (``OP_NAMES``, ``INSTANCE_OP_NAMES``).

Kernel ops (destination passing; the front end has already validated everything)
------------------------------------------------------------------------------
All tensors are torch tensors on one device. ``rgb`` is a view of shape ``(N, H, W, 3)``
with *arbitrary strides* (a channels-first input arrives as ``x.movedim(-3, -1)``); dtype
uint8, float16, bfloat16, float32 or float64. Outputs are preallocated views of shape
``(N, H, W)`` or ``(N, H, W, 3)``, also with arbitrary strides; ops write every element.
Values are in "0..255 units" (docs/format.md, Images): uint8 ``v`` is ``v``, float ``x`` is
``255 * clamp(x, 0, 1)``; a NaN channel makes the pixel's output NaN / ``ignore_index``.

Precision rules every backend follows (the torch reference shows them): segment choice by
``dist2`` of the two fixed channels, strict ``<`` over ascending k (ties to the lowest);
edge fractions ``up = p/255`` and ``down = (255-p)/255`` for uint8, ``up = x`` and
``down = 1 - x`` for floats (x clamped), so ``s`` and ``r = 1 - s`` are both direct;
``t = (k + s)/7``, ``u = 1 - t = (6 - k + r)/7``; depth ``-lam*c*expm1(log_u/(lam+1))``
with ``log_u = log1p(-t)`` if ``t < 0.5`` else ``log(u)``.

``hilbert_project(rgb, t)``
    t: (N, H, W) float64 for float64 rgb, else float32.
``decode_depth(rgb, depth, distance, lam, c, max_depth)``
    depth: (N, H, W) float64 for float64 rgb, else float32; distance: (N, H, W) float32 or
    None;
    lam, c: Python floats (validated); max_depth: float or None (clamp from above).
``decode_normals(rgb, normals, norm, flip_yz, eps)``
    normals: (N, H, W, 3) float16/bfloat16/float32/float64 view; norm: (N, H, W) float32
    or None; flip_yz: True for the OpenCV convention (negate y and z).
``decode_segmentation(rgb, palette, labels, distance, max_dist2, ignore_index)``
    palette: (K, 3) contiguous float32 (float64 for float64 rgb) in 0..255 units;
    labels: (N, H, W) uint8/int16/int32/int64; distance: (N, H, W) float32 or None;
    max_dist2: float threshold (pixel ignored when ``dist2 > max_dist2``) or None.
    For uint8 rgb and an integer palette the front end passes ``floor(r*r)`` so integer
    distances compare exactly in any float width.
``hilbert_walk(t, rgb)``
    t: (N, H, W) float tensor, clamped to [0, 1] by the op; rgb: (N, H, W, 3) view,
    uint8 (0..255, rounded half to even) or float (0..1).
``encode_depth(depth, rgb, lam, c)``
    depth: (N, H, W) float, finite non-negative or +inf (checked by the front end);
    rgb as for hilbert_walk. Equals ``hilbert_walk(power_transform(depth))``.
``encode_normals(normals, rgb, flip_yz)``
    normals: (N, H, W, 3) float view; rgb: (N, H, W, 3) view uint8 or float.
``encode_segmentation(labels, palette, rgb, ignore_color)``
    labels: (N, H, W) integer; palette: (K, 3) uint8 contiguous; ignore_color: (3,) uint8
    tensor; labels outside [0, K) get ignore_color; rgb: (N, H, W, 3) uint8 view.

``decode_colormap(rgb, colours, positions, t, distance, max_distance)``
    the nearest point on a colormap's polyline (contract in
    ``vbkernels/reference/colormap.py``); t: (N, H, W) float64 for float64 rgb, else float32.

``depth_to_points(depth, camera, points, ray, flip_yz)`` and
``normals_from_depth(depth, camera, normals, ray, flip_yz)``
    back-projection and depth-implied normals (contract in ``vbkernels/reference/points.py``);
    depth: (N, H, W) float32/float64; camera: (N, 5) rows (fx, fy, cx, cy, skew).

``colour_histogram(rgb, flat_tolerance_q, count_all, count_flat, sum_flat)`` and
``assign_pixels(rgb, centres_q, num_centres, max_dist2_q, first_label, labels, counts)``
    the two per-pixel steps of ``decode_instances`` (contract in
    ``vbkernels/reference/instances.py``). A backend offers them from an ``instances``
    submodule of its package, picked up by ``load_backend``.

Gradients (docs/format.md, Gradients): ``hilbert_project``, ``decode_depth`` and
``decode_normals`` (``DIFFERENTIABLE_OPS``) are differentiable on every backend that runs
them: when an input needs a gradient the front end calls the functional custom ops of
``vbkernels._autograd``, which run the chosen backend's forward kernel and share one backward
in torch. Asking for a gradient through any other op with a float output raises
``RuntimeError`` in ``select`` (``needs_grad=True``), on every backend, rather than
returning an output silently cut off from the graph.

A backend may leave an op out of ``ops``: the front end then runs the torch reference for
it when ``backend="auto"`` and raises ``RuntimeError`` when the op was asked of that
backend by name.

Fast backends register their ops as torch custom ops (``vbkernels._register``), which
``torch.compile`` needs; ``select`` hands out the op under compilation and its plain
launcher otherwise, since the first eager call of a custom op costs about a second.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

OP_NAMES = (
    "hilbert_project",
    "decode_depth",
    "decode_normals",
    "decode_segmentation",
    "hilbert_walk",
    "encode_depth",
    "encode_normals",
    "encode_segmentation",
    "decode_colormap",
    "depth_to_points",
    "normals_from_depth",
)
# The per-pixel kernels of decode_instances, offered from a backend's ``instances`` module.
INSTANCE_OP_NAMES = ("colour_histogram", "assign_pixels")
KERNEL_OP_NAMES = OP_NAMES + INSTANCE_OP_NAMES
# The ops with a backward (vbkernels._autograd), on every backend.
DIFFERENTIABLE_OPS = ("hilbert_project", "decode_depth", "decode_normals")
# The public function each kernel op serves, for error messages.
_PUBLIC_NAME = {name: "decode_instances" for name in INSTANCE_OP_NAMES}

# Import path of each backend, in the order "auto" prefers them per device.
_BACKEND_MODULES = {
    "triton": "vbkernels.triton",
    "cuda": "vbkernels.cuda",
    "cpu": "vbkernels.cpu",
    "torch": "vbkernels.reference",
    "numpy": "vbkernels.numpy_baseline",
}
_AUTO_ORDER = {
    "cuda": ("triton", "cuda", "torch"),
    "cpu": ("cpu", "torch"),
}
BACKEND_NAMES = tuple(_BACKEND_MODULES)
ENV_VAR = "VBKERNELS_BACKEND"


class BackendUnavailable(RuntimeError):
    """Raised by a backend's ``load()``; the message says why and what to install."""


@dataclass
class Backend:
    name: str
    # Device types whose tensors the backend runs on ("cpu", "cuda").
    devices: frozenset
    ops: dict[str, Callable] = field(default_factory=dict)
    # Input dtypes the kernels read; None means every image dtype (docs/format.md, Images).
    dtypes: frozenset | None = None
    # True when the backend runs on the CPU only through an interpreter (Triton's):
    # usable when asked for by name, never picked by "auto".
    interpreted_on_cpu: bool = False
    # decode_instances' host-side steps between its two kernels (candidates, merge,
    # refinement, order) in one native call, where a backend has one (``cpu``: the torch
    # versions of those small steps cost more than both pixel passes on a CPU). Not a
    # kernel op: it returns new tensors and is never traced.
    search_colours: Callable | None = None
    # decode_instances' steps after the histogram (colours, labels, order) as device kernels
    # with at most 2 host syncs per batch, where a backend has them (``triton``).
    label_instances: Callable | None = None

    def runs(self, device: torch.device, dtype: torch.dtype | None = None) -> bool:
        if device.type not in self.devices:
            return False
        return dtype is None or self.dtypes is None or dtype in self.dtypes


def ops_from_modules(*modules) -> dict[str, Callable]:
    """The kernel ops that a backend's op-family modules define, by their
    ``KERNEL_OP_NAMES`` name."""
    return {name: getattr(m, name) for m in modules for name in KERNEL_OP_NAMES
            if hasattr(m, name)}


_loaded: dict[str, Backend] = {}
_failed: dict[str, str] = {}


def load_backend(name: str) -> Backend:
    """Return the backend called ``name``; ``BackendUnavailable`` says why it cannot load."""
    if name in _loaded:
        return _loaded[name]
    if name in _failed:
        raise BackendUnavailable(_failed[name])
    if name not in _BACKEND_MODULES:
        raise ValueError(f"backend must be one of {('auto',) + BACKEND_NAMES}, got {name!r}")
    try:
        module = importlib.import_module(_BACKEND_MODULES[name])
        backend = module.load()
        _add_instance_ops(backend, _BACKEND_MODULES[name])
    except BackendUnavailable as exc:
        _failed[name] = str(exc)
        raise
    except Exception as exc:  # noqa: BLE001 - a broken backend must not break the others
        _failed[name] = f"backend {name!r} failed to load: {type(exc).__name__}: {exc}"
        raise BackendUnavailable(_failed[name]) from exc
    _loaded[name] = backend
    return backend


def _add_instance_ops(backend: Backend, package: str) -> None:
    """Give ``backend`` the instance kernels of ``<package>.instances``, if it has them.

    A backend whose ops are torch custom ops gets these registered the same way, in the
    same ``torch.ops`` namespace (``vbkernels_<name>``).
    """
    missing = [name for name in INSTANCE_OP_NAMES if name not in backend.ops]
    if not missing or importlib.util.find_spec(f"{package}.instances") is None:
        return
    module = importlib.import_module(f"{package}.instances")
    if not all(hasattr(module, name) for name in missing):
        return
    backend.search_colours = getattr(module, "search_colours", None)
    backend.label_instances = getattr(module, "label_instances", None)
    launchers = {name: getattr(module, name) for name in missing}
    if any(hasattr(op, "eager_launcher") for op in backend.ops.values()):
        from ._register import register_launchers

        launchers = register_launchers(f"vbkernels_{backend.name}", launchers)
    backend.ops.update(launchers)


def load_all() -> None:
    """Try every backend once, now, so that dispatch later is plain dictionary lookups.

    ``vbkernels`` calls this at import: ``torch.compile`` cannot trace an import, so a
    backend first loaded inside a compiled function would break the graph.
    """
    for name in BACKEND_NAMES:
        try:
            load_backend(name)
        except BackendUnavailable:
            pass


def _loaded_backend(name: str) -> Backend | None:
    if name not in _loaded and name not in _failed:
        try:
            load_backend(name)
        except BackendUnavailable:
            pass
    return _loaded.get(name)


def available_backends() -> list[str]:
    """Names of the backends that load on this machine.

    Returns:
        backend names in the order of ``BACKEND_NAMES``, always including ``"torch"`` and
        ``"numpy"``. Each may still need a device: ``cuda`` and ``triton`` run on CUDA
        tensors (``triton`` on CPU tensors only under ``TRITON_INTERPRET=1``).

    Example::

        >>> {"torch", "numpy"} <= set(available_backends())
        True
    """
    names = []
    for name in BACKEND_NAMES:
        try:
            load_backend(name)
        except BackendUnavailable:
            continue
        names.append(name)
    return names


def select(op: str, backend: str, device: torch.device, dtype: torch.dtype,
           needs_grad: bool = False) -> tuple[Backend, Callable]:
    """The backend and kernel op to run for a tensor on ``device`` of input dtype ``dtype``.

    ``needs_grad``: the caller wants a float output differentiated; ``RuntimeError`` unless
    ``op`` is one of ``DIFFERENTIABLE_OPS`` (which every backend differentiates). An
    explicit backend that cannot run the op raises ``RuntimeError`` saying why; "auto"
    takes the first backend in ``_AUTO_ORDER`` that loads and runs the op there, so it never
    hides an error the user asked for and never picks an interpreter. ``VBKERNELS_BACKEND``
    replaces "auto" for the ops its backend implements.
    """
    if not isinstance(backend, str):
        raise TypeError(f"backend must be a string, got {type(backend).__name__}")
    if needs_grad and op not in DIFFERENTIABLE_OPS:
        raise RuntimeError(
            f"{_PUBLIC_NAME.get(op, op)} has no gradient, but its input requires grad; call "
            f"it under torch.no_grad() or on a .detach()ed input (differentiable: "
            f"{', '.join(DIFFERENTIABLE_OPS)}, segmentation_logits)"
        )
    if backend == "auto":
        backend = _from_environment(op)
    if backend == "auto":
        chosen, kernel = _select_auto(op, device, dtype)
    else:
        chosen, kernel = _select_named(op, backend, device, dtype)
    return chosen, _callable(kernel)


def _from_environment(op: str) -> str:
    """The backend ``VBKERNELS_BACKEND`` names, or "auto" when it is unset or when the
    backend it names loads but does not implement ``op`` (numpy has no instance kernels)."""
    name = os.environ.get(ENV_VAR, "auto") or "auto"
    if name in _BACKEND_MODULES:
        chosen = _loaded_backend(name)
        if chosen is not None and op not in chosen.ops:
            return "auto"
    return name


def _callable(kernel: Callable) -> Callable:
    """The registered custom op under ``torch.compile``; its launcher in eager mode."""
    if torch.compiler.is_compiling():
        return kernel
    return getattr(kernel, "eager_launcher", kernel)


def _select_named(op: str, name: str, device: torch.device,
                  dtype: torch.dtype) -> tuple[Backend, Callable]:
    if name not in _BACKEND_MODULES:
        raise ValueError(f"backend must be one of {('auto',) + BACKEND_NAMES}, got {name!r}")
    chosen = _loaded_backend(name)
    if chosen is None:
        raise RuntimeError(_failed[name])
    if device.type not in chosen.devices:
        raise RuntimeError(
            f"backend {name!r} runs on {sorted(chosen.devices)} tensors, but the input is on "
            f"{device}; move the tensor or pick another backend (available: {available_backends()})"
        )
    if chosen.dtypes is not None and dtype not in chosen.dtypes:
        raise RuntimeError(
            f"backend {name!r} does not read {dtype} images; it reads "
            f"{sorted(str(d) for d in chosen.dtypes)}"
        )
    if op not in chosen.ops:
        raise RuntimeError(f"backend {name!r} does not implement {_PUBLIC_NAME.get(op, op)}")
    return chosen, chosen.ops[op]


def _select_auto(op: str, device: torch.device, dtype: torch.dtype) -> tuple[Backend, Callable]:
    for name in _AUTO_ORDER.get(device.type, ("torch",)):
        candidate = _loaded_backend(name)
        if candidate is None:
            continue
        if device.type == "cpu" and candidate.interpreted_on_cpu:
            continue
        if candidate.runs(device, dtype) and op in candidate.ops:
            return candidate, candidate.ops[op]
    reference = _loaded_backend("torch")
    return reference, reference.ops[op]
