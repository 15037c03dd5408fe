"""The ops the report times, and the inputs/outputs ("cases") each op is timed on.

Bytes read and written are those of the public call (image in, decoded output out) and do
not depend on the provider: a provider that converts the image to float64 first (as
``hilbertmap`` needs) pays for that inside its time, not in the traffic it is credited with.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import torch

import vbkernels

from .workloads import DTYPES, Workload

_SEED = 1234
_DEPTHS: dict[tuple, torch.Tensor] = {}


@dataclass(frozen=True)
class OpSpec:
    name: str  # the name in the report
    api: str  # the public vbkernels function it calls
    palette_size: int | None = None  # segmentation only
    encoder: bool = False  # True: reads depth, writes an image of the workload's dtype


OPS = (
    OpSpec("decode_depth", "decode_depth"),
    OpSpec("hilbert_project", "hilbert_project"),
    OpSpec("decode_normals", "decode_normals"),
    OpSpec("decode_segmentation_k19", "decode_segmentation", palette_size=19),
    OpSpec("decode_segmentation_k150", "decode_segmentation", palette_size=150),
    OpSpec("encode_depth", "encode_depth", encoder=True),
)
OPS_BY_NAME = {op.name: op for op in OPS}


@dataclass
class Case:
    """Everything one timed call needs: positional args, keyword args, output buffer."""

    op: OpSpec
    workload: Workload
    args: tuple
    kwargs: dict = field(default_factory=dict)
    out: torch.Tensor | None = None  # preallocated output, passed as out= where accepted
    out_shape: tuple = ()
    out_dtype: torch.dtype = torch.float32

    @property
    def device(self) -> torch.device:
        return self.args[0].device

    @property
    def bytes_read(self) -> int:
        return sum(a.numel() * a.element_size() for a in self.args if isinstance(a, torch.Tensor))

    @property
    def bytes_written(self) -> int:
        numel = 1
        for size in self.out_shape:
            numel *= size
        return numel * torch.empty((), dtype=self.out_dtype).element_size()


def palette(k: int, device: torch.device) -> torch.Tensor:
    """``k`` distinct seeded random uint8 colours, shape (k, 3)."""
    codes = torch.tensor(random.Random(_SEED + k).sample(range(1 << 24), k))
    rgb = torch.stack([(codes >> 16) & 255, (codes >> 8) & 255, codes & 255], dim=1)
    return rgb.to(torch.uint8).to(device)


def depth_for(images: torch.Tensor, w: Workload) -> torch.Tensor:
    """Finite metric depth (N, H, W) float32 spread over the whole walk, for encode_depth.

    Drawn on the CPU (once per shape), so host and GPU providers encode the same depths.
    """
    grid = (w.batch, w.height, w.width)
    if grid not in _DEPTHS:
        gen = torch.Generator().manual_seed(_SEED)
        t = torch.rand(grid, generator=gen) * 0.999
        _DEPTHS[grid] = vbkernels.inverse_power_transform(t).to(torch.float32)
    return _DEPTHS[grid].to(images.device)


def crop(images: torch.Tensor, w: Workload) -> torch.Tensor:
    """The contiguous top-left ``w.batch x w.height x w.width`` part of a larger batch."""
    if w.layout == "hwc":
        part = images[: w.batch, : w.height, : w.width, :]
    else:
        part = images[: w.batch, :, : w.height, : w.width]
    return part.contiguous()


def build_case(op: OpSpec, w: Workload, images: torch.Tensor) -> Case:
    """The call of ``op`` on ``images`` (already of workload ``w``'s shape and device)."""
    grid = (w.batch, w.height, w.width)
    if op.encoder:
        return Case(op, w, (depth_for(images, w),),
                    {"dtype": DTYPES[w.dtype], "layout": w.layout},
                    out=None, out_shape=w.shape, out_dtype=DTYPES[w.dtype])
    if op.palette_size is not None:
        labels = torch.empty(grid, dtype=torch.int64, device=images.device)
        return Case(op, w, (images, palette(op.palette_size, images.device)),
                    out=labels, out_shape=grid, out_dtype=torch.int64)
    if op.name == "decode_normals":
        normals = torch.empty(images.shape, dtype=torch.float32, device=images.device)
        return Case(op, w, (images,), out=normals, out_shape=tuple(images.shape))
    scalar = torch.empty(grid, dtype=torch.float32, device=images.device)
    return Case(op, w, (images,), out=scalar, out_shape=grid)
