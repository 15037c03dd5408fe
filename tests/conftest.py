"""Shared fixtures: which (backend, device) pairs to test, and input makers.

Without CUDA, Triton kernels run through its interpreter on CPU tensors. That must be
decided before anything imports triton, hence the environment variable here.
"""

from __future__ import annotations

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from vbkernels._dispatch import BackendUnavailable, load_backend, BACKEND_NAMES  # noqa: E402

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def backend_device_pairs(names=BACKEND_NAMES):
    """Every (backend, device) pair that can run here, e.g. ("triton", "cpu") under the
    interpreter, ("torch", "cuda") on a GPU machine."""
    pairs = []
    for name in names:
        try:
            backend = load_backend(name)
        except BackendUnavailable:
            continue
        pairs.extend((name, dev) for dev in DEVICES if dev in backend.devices)
    return pairs


PAIRS = backend_device_pairs()
PAIR_IDS = [f"{b}-{d}" for b, d in PAIRS]


@pytest.fixture(params=PAIRS, ids=PAIR_IDS)
def backend_device(request):
    return request.param


def is_interpreted(backend: str, device: str) -> bool:
    """Triton on CPU runs in its (slow) interpreter: tests keep those shapes small."""
    return backend == "triton" and device == "cpu"


def random_rgb(shape, dtype, seed=0, device="cpu"):
    """Random image values of ``dtype``: uint8 0..255, floats in [0, 1] (a few outside, to
    exercise clamping)."""
    gen = torch.Generator().manual_seed(seed)
    if dtype == torch.uint8:
        x = torch.randint(0, 256, shape, generator=gen, dtype=torch.uint8)
    else:
        x = torch.rand(shape, generator=gen, dtype=torch.float64) * 1.1 - 0.05
        x = x.to(dtype)
    return x.to(device)


# Colours docs/format.md, Depth, calls out: exact ties between segments and worked examples.
TIE_COLOURS = [
    (141, 114, 46),  # equidistant from segments 0 and 1
    (128, 128, 128),
    (127, 127, 127),
    (255, 254, 255),
    (0, 0, 0),
    (255, 255, 255),
    (255, 0, 0),
    (0, 255, 255),
    (128, 128, 0),
    (0, 128, 128),
    (200, 55, 200),
    (55, 200, 55),
]


def tie_pixels() -> np.ndarray:
    """The tie colours of docs/format.md, Depth, plus a dense sample of exact segment ties (as uint8, (M, 3))."""
    from tests.truth import exact_tie_colours

    return np.concatenate([np.array(TIE_COLOURS, dtype=np.uint8), exact_tie_colours(4000)])
