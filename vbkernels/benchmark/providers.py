"""Providers: the implementations the report puts side by side, and when each can run.

``numpy``, ``torch``, ``triton``, ``cuda`` and ``cpu`` are vbkernels backends called
through the public API with ``backend=<name>`` (and ``out=`` where the function takes it,
as a video loop would). ``torch_compile`` is ``torch.compile`` of a function calling the
public API with ``backend="torch"`` (the reference). ``hilbertmap`` is the public package
users pick today; it decodes depth only, from float images in [0, 1].

A provider that runs on the host (numpy, hilbertmap, cpu) is timed on CPU tensors even in a
CUDA run, so the speed-up over the NumPy baseline is always against the same baseline.
"""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

import vbkernels
from vbkernels import _dispatch

from .ops import Case, OpSpec

_INTERPRETER_REASON = (
    "Triton runs on CPU tensors only in its interpreter (TRITON_INTERPRET=1), a correctness "
    "tool orders of magnitude slower than any fast path"
)


@dataclass(frozen=True)
class Provider:
    name: str
    host: bool  # True: always runs on CPU tensors
    backend: str | None = None  # the vbkernels backend it calls, if any
    compiles: bool = False

    def device(self, run_device: torch.device) -> torch.device:
        return torch.device("cpu") if self.host else run_device


PROVIDERS = (
    Provider("numpy", host=True, backend="numpy"),
    Provider("hilbertmap", host=True),
    Provider("torch", host=False, backend="torch"),
    Provider("torch_compile", host=False, backend="torch", compiles=True),
    Provider("triton", host=False, backend="triton"),
    Provider("cuda", host=False, backend="cuda"),
    Provider("cpu", host=True, backend="cpu"),
)
PROVIDERS_BY_NAME = {p.name: p for p in PROVIDERS}
HILBERTMAP_OPS = ("decode_depth", "hilbert_project")
# decode_instances has a torch reference, Triton kernels and compiled CPU kernels
# (vbkernels/instances.py).
INSTANCE_PROVIDERS = ("torch", "triton", "cpu")


def unavailable(provider: Provider, run_device: torch.device) -> str | None:
    """Why ``provider`` cannot run at all in a run on ``run_device`` (None if it can)."""
    if provider.name == "hilbertmap":
        try:
            import hilbertmap  # noqa: F401
        except ImportError:
            return "the hilbertmap package is not installed (pip install hilbertmap)"
        return None
    if provider.compiles and not hasattr(torch, "compile"):
        return f"torch {torch.__version__} has no torch.compile"
    if provider.name in ("triton", "cuda") and run_device.type != "cuda":
        if provider.name == "triton":
            return _INTERPRETER_REASON
        return "needs a CUDA device (run with --device cuda on a GPU machine)"
    if provider.name == "triton" and os.environ.get("TRITON_INTERPRET") == "1":
        return "TRITON_INTERPRET=1 is set, which would time the interpreter; unset it"
    try:
        backend = _dispatch.load_backend(provider.backend)
    except _dispatch.BackendUnavailable as exc:
        return f"backend {provider.backend!r} does not load here: {exc}"
    device_type = provider.device(run_device).type
    if device_type not in backend.devices:
        return f"backend {provider.backend!r} runs on {sorted(backend.devices)} tensors only"
    return None


def skip_reason(provider: Provider, op: OpSpec, dtype: torch.dtype) -> str | None:
    """Why ``provider`` does not run ``op`` on images of ``dtype`` (None if it does)."""
    if op.api == "decode_instances":
        if provider.name in INSTANCE_PROVIDERS:
            return None  # uint8 and float images alike
        return ("decode_instances runs on the torch, triton and cpu providers only (its "
                "backends are the torch reference, Triton kernels and the compiled CPU kernels)"
                + ("; its data-dependent colour search is not compiled" if provider.compiles
                   else ""))
    if provider.name == "hilbertmap":
        if op.name not in HILBERTMAP_OPS:
            return "hilbertmap decodes depth only"
        return None
    backend = _dispatch.load_backend(provider.backend)
    if op.api not in backend.ops:
        return f"backend {provider.backend!r} does not implement {op.api}"
    read_dtype = torch.float32 if op.encoder or op.points else dtype
    if backend.dtypes is not None and read_dtype not in backend.dtypes:
        return f"backend {provider.backend!r} does not read {read_dtype}"
    return None


def _takes(fn: Callable, name: str) -> bool:
    return name in inspect.signature(fn).parameters


def _api_call(case: Case, backend: str, use_out: bool) -> Callable[[], object]:
    fn = getattr(vbkernels, case.op.api)
    kwargs = dict(case.kwargs, backend=backend)
    if use_out and case.out is not None and _takes(fn, "out"):
        kwargs["out"] = case.out
    args = case.args
    if not case.op.colour_table and backend == "triton":
        return _on_direct_path(lambda: fn(*args, **kwargs))
    return lambda: fn(*args, **kwargs)


def _on_direct_path(call: Callable[[], object]) -> Callable[[], object]:
    """``call`` with the triton backend's colormap table turned off (its direct scan)."""
    from vbkernels.triton.colormap import direct_path

    def run():
        with direct_path():
            return call()

    return run


def _compiled_call(case: Case) -> Callable[[], object]:
    fn = getattr(vbkernels, case.op.api)
    kwargs = dict(case.kwargs, backend="torch")
    # A fresh compile per measurement: shapes are static, as in a fixed-size video loop,
    # and no cache from another workload can leak in. Graph breaks are counted into the
    # report (see graph_breaks) instead of being logged at length.
    torch.compiler.reset()
    torch._dynamo.utils.counters.clear()
    logging.getLogger("torch._dynamo").setLevel(logging.ERROR)
    compiled = torch.compile(lambda *args: fn(*args, **kwargs), dynamic=False)
    args = case.args
    return lambda: compiled(*args)


def _as_float01(images: torch.Tensor, layout: str) -> np.ndarray:
    """What a hilbertmap user does first: float64 channels-last values in [0, 1]."""
    array = images.numpy()
    if layout == "chw":
        array = np.moveaxis(array, -3, -1)
    if array.dtype == np.uint8:
        return array / 255.0
    return array.astype(np.float64)


def _hilbertmap_call(case: Case) -> Callable[[], object]:
    import hilbertmap

    fn = hilbertmap.rgb_to_depth if case.op.api == "decode_depth" else hilbertmap.project
    images, layout = case.args[0], case.workload.layout

    def call():
        # White decodes to inf through a division by zero, which numpy would warn about.
        with np.errstate(divide="ignore"):
            return fn(_as_float01(images, layout))

    return call


def bind(provider: Provider, case: Case) -> Callable[[], object]:
    """A zero-argument callable doing ``case`` with ``provider``."""
    if provider.name == "hilbertmap":
        return _hilbertmap_call(case)
    if provider.compiles:
        return _compiled_call(case)
    return _api_call(case, provider.backend, use_out=True)


def graph_breaks() -> int:
    """Graph breaks torch.compile hit since the last ``bind`` of a compiling provider."""
    return sum(torch._dynamo.utils.counters["graph_break"].values())
