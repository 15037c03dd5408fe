"""Finding, loading and calling the compiled CPU library (``vbkernels/_vbk_cpu*.so``).

``setup.py`` compiles ``csrc/cpu/*.cpp`` (which include the same per-pixel header as the
CUDA kernels) into a plain shared library; we call it through ctypes on tensor data
pointers with element strides, so there is no build dependency on torch and ctypes
releases the GIL for the duration of each call.
"""

from __future__ import annotations

import ctypes
import glob
import os
from pathlib import Path

import torch

from .._dispatch import BackendUnavailable

PACKAGE_DIR = Path(__file__).resolve().parent.parent
LIBRARY_GLOB = "_vbk_cpu*.so"

# Element-type codes shared with csrc/vbk_math.cuh (enum vbk::Dtype) and the CUDA kernels'
# name suffixes.
DTYPE_CODES = {
    torch.uint8: 0, torch.float16: 1, torch.bfloat16: 2, torch.float32: 3, torch.float64: 4,
    torch.int8: 5, torch.int16: 6, torch.int32: 7, torch.int64: 8,
}
DTYPE_SUFFIXES = {
    torch.uint8: "u8", torch.float16: "f16", torch.bfloat16: "bf16", torch.float32: "f32",
    torch.float64: "f64", torch.int8: "i8", torch.int16: "i16", torch.int32: "i32",
    torch.int64: "i64",
}

_P, _I, _I64, _D = ctypes.c_void_p, ctypes.c_int, ctypes.c_int64, ctypes.c_double
_SIGNATURES = {
    "vbk_hilbert_project": (_P, _I, _P, _P, _P, _I, _P),
    "vbk_decode_depth": (_P, _I, _P, _P, _P, _I, _P, _P, _P, _D, _D, _I, _D, _P),
    "vbk_hilbert_walk": (_P, _I, _P, _P, _P, _I, _P),
    "vbk_encode_depth": (_P, _I, _P, _P, _P, _I, _P, _D, _D),
    "vbk_decode_normals": (_P, _I, _P, _P, _P, _I, _P, _P, _P, _I, _D),
    "vbk_encode_normals": (_P, _I, _P, _P, _P, _I, _P, _I),
    "vbk_decode_segmentation": (_P, _I, _P, _P, _P, _I, _P, _P, _I, _P, _P, _P, _I, _D, _I64),
    "vbk_build_label_table": (_P, _I, _P),
    "vbk_encode_segmentation": (_P, _I, _P, _P, _P, _I, _P, _P, _P),
    "vbk_colour_histogram": (_P, _I, _P, _P, _I, _P, _P, _P),
    "vbk_assign_pixels": (_P, _I, _P, _P, _P, _I, _P, _I64, _I, _P, _P, _P),
    "vbk_search_colours": (_P, _P, _P, _I64, _P, _I64, _I64, _I64, _I64, _I, _I, _P, _P),
    "vbk_png_unfilter": (_P, _I64, _I64, _I, _P),
    "vbk_decode_colormap": (_P, _I, _P, _P, _P, _P, _I, _P, _P, _P, _P, _I, _D),
    "vbk_colormap_table_decode": (_P, _P, _P, _P, _P, _I, _P, _P, _P, _P, _P, _P, _P, _I, _D,
                                  _P),
}

_library: ctypes.CDLL | None = None


def library_path() -> Path | None:
    """The built library inside the package, or None when it was never built."""
    found = sorted(glob.glob(str(PACKAGE_DIR / LIBRARY_GLOB)))
    return Path(found[0]) if found else None


def library() -> ctypes.CDLL:
    """Load the library once per process; BackendUnavailable says why it cannot."""
    global _library
    if _library is not None:
        return _library
    path = library_path()
    if path is None:
        raise BackendUnavailable(
            f"the cpu backend's compiled library ({LIBRARY_GLOB}) is not in {PACKAGE_DIR}: it "
            "is built at install time when g++ with OpenMP is present; install g++ and "
            "reinstall (pip install . or pip install -e .), or run "
            "`python setup.py build_ext --inplace` in a source checkout"
        )
    try:
        lib = ctypes.CDLL(os.fspath(path))
    except OSError as exc:
        raise BackendUnavailable(f"the cpu backend's library {path} does not load: {exc}") from None
    for name, argtypes in _SIGNATURES.items():
        fn = getattr(lib, name)
        fn.argtypes = argtypes
        fn.restype = ctypes.c_int
    _library = lib
    return lib


def ptr(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def strides(t: torch.Tensor | None):
    """Element strides of a view as an int64 array (None for an absent optional output)."""
    if t is None:
        return None
    return (ctypes.c_int64 * t.dim())(*t.stride())


def shape3(t: torch.Tensor):
    return (ctypes.c_int64 * 3)(*t.shape[:3])


def code(t: torch.Tensor) -> int:
    return DTYPE_CODES.get(t.dtype, -1)


def call(name: str, tensors: dict, *args) -> None:
    """Call one library function; a non-zero status names the tensors' dtypes."""
    status = getattr(library(), name)(*args)
    if status != 0:
        dtypes = ", ".join(f"{k} {v.dtype}" for k, v in tensors.items() if v is not None)
        raise TypeError(f"the cpu backend's {name[4:]} has no kernel for {dtypes}")
