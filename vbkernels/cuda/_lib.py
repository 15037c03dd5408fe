"""Compiling ``csrc/*.cu`` with NVRTC through CuPy, and launching on torch's stream.

Sources are found inside the package (``vbkernels/_csrc``, where wheels carry them) or in
the source checkout (``csrc/``). Each ``.cu`` is flattened (its quoted includes inlined)
before compilation so CuPy's on-disk kernel cache, keyed by the source text, notices a
changed header. Modules are compiled once per (file, device) for that device's
architecture and cached on disk by CuPy (``~/.cupy/kernel_cache``, or
``$CUPY_CACHE_DIR``). Compile and launch errors propagate with the NVRTC log; nothing is
swallowed or retried.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path

import numpy as np
import torch

from .._dispatch import BackendUnavailable
from ..cpu._lib import DTYPE_SUFFIXES

PACKAGE_DIR = Path(__file__).resolve().parent.parent
SOURCE_DIRS = (PACKAGE_DIR / "_csrc", PACKAGE_DIR.parent / "csrc")
HEADER = "vbk_math.cuh"
# --fmad=false: no contraction into FMA, so the kernels round like the torch reference,
# operation for operation.
NVRTC_OPTIONS = ("--std=c++17", "--fmad=false")
THREADS = 256
# Grid-stride kernels need no more blocks than keep every SM busy.
MAX_BLOCKS = 65535
_INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"\s*$', re.M)
_PRAGMA_ONCE = re.compile(r"^\s*#\s*pragma\s+once\s*$", re.M)

_modules: dict = {}
_lock = threading.Lock()


def source_dir() -> Path:
    for directory in SOURCE_DIRS:
        if (directory / HEADER).is_file():
            return directory
    raise BackendUnavailable(
        f"the cuda backend's sources ({HEADER}, *.cu) are in none of "
        f"{[str(d) for d in SOURCE_DIRS]}; reinstall vbkernels"
    )


def flattened_source(name: str, directory: Path | None = None) -> str:
    """``name`` with its quoted includes inlined (each once, without its ``#pragma once``,
    which would be a warning in a main file), as NVRTC will compile it."""
    directory = directory or source_dir()
    seen: set[str] = set()

    def expand(file: str) -> str:
        if file in seen:
            return ""
        seen.add(file)
        text = _PRAGMA_ONCE.sub("", (directory / file).read_text())
        return _INCLUDE.sub(lambda m: expand(m.group(1)), text)

    return expand(name)


def require_cupy():
    try:
        import cupy
    except ImportError as exc:
        raise BackendUnavailable(
            f"the cuda backend needs CuPy, which does not import here ({exc}); "
            "pip install cupy-cuda12x (CUDA 12) or cupy-cuda13x (CUDA 13)"
        ) from None
    return cupy


def module(family: str, device_index: int):
    """The compiled RawModule of ``csrc/<family>.cu`` for one device."""
    key = (family, device_index)
    with _lock:
        if key in _modules:
            return _modules[key]
        cupy = require_cupy()
        with cupy.cuda.Device(device_index):
            raw = cupy.RawModule(code=flattened_source(f"{family}.cu"), options=NVRTC_OPTIONS,
                                 backend="nvrtc")
            try:
                raw.compile()
            except cupy.cuda.compiler.CompileException as exc:
                raise RuntimeError(
                    f"NVRTC could not compile csrc/{family}.cu for device {device_index}:\n"
                    f"{exc.get_message()}"
                ) from exc
        _modules[key] = raw
        return raw


def suffix(t: torch.Tensor) -> str:
    return DTYPE_SUFFIXES.get(t.dtype, str(t.dtype))


def ptr(t: torch.Tensor | None) -> np.uint64:
    return np.uint64(0 if t is None else t.data_ptr())


def strides(t: torch.Tensor | None, dims: int) -> list[np.int64]:
    """Element strides as kernel arguments; zeros for an absent optional output."""
    return [np.int64(s) for s in (t.stride() if t is not None else (0,) * dims)]


def shape3(t: torch.Tensor) -> list[np.int64]:
    return [np.int64(s) for s in t.shape[:3]]


LABEL_DTYPES = (torch.uint8, torch.int16, torch.int32, torch.int64)


def packed_u8_path(rgb: torch.Tensor, *outputs: torch.Tensor | None,
                   dtypes: tuple = (torch.float32,)) -> bool:
    """Whether a uint8 kernel call takes the 4-pixels-per-thread fast path.

    It reads an (N, H, W, 3) uint8 view as 32-bit words and writes 4 values of each output as
    one vector store, so the view must be contiguous NHWC starting at a 4-byte boundary, and
    every output present contiguous, of one of ``dtypes``, and aligned to its 4-value vector
    (16 bytes for float32, int32 and int64, 8 for int16, 4 for uint8). Anything else
    (strided, channels-first, offset views) takes the per-pixel kernels.
    """
    if rgb.dtype != torch.uint8 or not rgb.is_contiguous() or rgb.data_ptr() % 4:
        return False
    return all(out is None or (out.dtype in dtypes and out.is_contiguous()
                               and out.data_ptr() % min(16, 4 * out.element_size()) == 0)
               for out in outputs)


def launch(family: str, name: str, device: torch.device, pixels: int, args: list,
           one_pixel_per_thread: bool = False) -> None:
    """Run kernel ``name`` of ``family`` over ``pixels`` on the tensor's device and stream."""
    if pixels == 0:
        return
    cupy = require_cupy()
    index = device.index if device.index is not None else torch.cuda.current_device()
    raw = module(family, index)
    with cupy.cuda.Device(index):
        try:
            kernel = raw.get_function(name)
        except cupy.cuda.driver.CUDADriverError as exc:
            raise TypeError(f"the cuda backend has no kernel {name} (unsupported dtypes)") from exc
        blocks = -(-pixels // THREADS)
        if not one_pixel_per_thread:
            blocks = min(blocks, MAX_BLOCKS)
        stream = cupy.cuda.ExternalStream(torch.cuda.current_stream(index).cuda_stream, index)
        with stream:
            kernel((blocks,), (THREADS,), tuple(args))
