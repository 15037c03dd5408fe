"""The ``cpu`` backend: the per-pixel math of ``csrc/vbk_math.cuh`` compiled for the host.

``setup.py`` builds ``csrc/cpu/*.cpp`` with g++ -O3 -fopenmp into ``vbkernels/_vbk_cpu*.so``
(hot loops multiversioned for AVX2 and baseline x86-64); the launchers call it through
ctypes on tensor data pointers with element strides, on all OpenMP threads, with the GIL
released. Without the library (no compiler at install time) ``load()`` raises
``BackendUnavailable`` and ``backend="auto"`` falls back to the torch reference.
"""

from __future__ import annotations

from .._dispatch import Backend

_ops: dict | None = None


def load() -> Backend:
    global _ops
    from . import _lib

    _lib.library()  # raises BackendUnavailable with what to do when it was not built
    if _ops is None:
        from .._register import register
        from . import colormap, depth, normals, segmentation

        _ops = register("vbkernels_cpu", colormap, depth, normals, segmentation)
    return Backend(name="cpu", devices=frozenset({"cpu"}), ops=dict(_ops))
