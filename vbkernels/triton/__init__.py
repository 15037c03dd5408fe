"""The ``triton`` backend: fused one-pass Triton kernels for every op of docs/format.md, Public API.

Runs on CUDA tensors, and on CPU tensors when ``TRITON_INTERPRET=1`` was set before Triton
was imported (how CI tests the kernels). Importing this package does not import Triton;
``load()`` does, so ``import vbkernels`` stays cheap.
"""

from __future__ import annotations

import os

import torch

from .._dispatch import Backend, BackendUnavailable


def load() -> Backend:
    try:
        import triton  # noqa: F401
    except ImportError as exc:
        raise BackendUnavailable(
            f"the triton backend needs Triton >= 3.0, which does not import here ({exc}); "
            "pip install triton"
        ) from None
    interpreted = os.environ.get("TRITON_INTERPRET") == "1"
    if interpreted:
        # The interpreter copies CUDA tensors to the host and back: correct but slow, so an
        # interpreted backend offers CPU tensors only and "auto" never picks it.
        devices = frozenset({"cpu"})
    elif torch.cuda.is_available():
        devices = frozenset({"cuda"})
    else:
        raise BackendUnavailable(
            "the triton backend needs a CUDA device, or TRITON_INTERPRET=1 set before Triton "
            "is imported to run its kernels on CPU tensors through the interpreter"
        )
    from ._ops import OPS

    return Backend(
        name="triton",
        devices=devices,
        ops=dict(OPS),
        interpreted_on_cpu=interpreted,
    )
