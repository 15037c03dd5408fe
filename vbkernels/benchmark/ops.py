"""The ops the report times, and the inputs/outputs ("cases") each op is timed on.

Bytes read and written are those of the public call (image in, decoded output out) and do
not depend on the provider: a provider that converts the image to float64 first (as
``hilbertmap`` needs) pays for that inside its time, not in the traffic it is credited with.

The ``_k40`` ops time the instance speed target (``decode_instances`` at most 3x the time of
``decode_segmentation`` with a known 40-colour palette) on the same images: 64 x 64 tiles
painted with the 40 colours of ``palette40`` (see ``tiled_images``), since on random noise
``decode_instances`` finds no flat colour regions and skips most of its work.
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
    tiles: bool = False  # True: decodes palette_size-colour tiles instead of random colours
    # In the default op list of a CPU run (a GPU run, --full and --ops take any op).
    cpu_default: bool = True
    label_dtype: torch.dtype = torch.int64  # segmentation only: the out_dtype of the labels
    colormap: str | None = None  # decode_colormap only: the built-in map the images are read in
    # decode_colormap only: False times the triton backend's direct segment scan even where
    # it would gather from its 2^24-entry colour table (other backends have no table).
    colour_table: bool = True
    # depth_to_points / normals_from_depth: read float32 depth (N, H, W), write (N, H, W, 3)
    # float32 with a fixed pinhole camera.
    points: bool = False


OPS = (
    OpSpec("decode_depth", "decode_depth"),
    OpSpec("hilbert_project", "hilbert_project"),
    OpSpec("decode_normals", "decode_normals"),
    OpSpec("decode_segmentation_k19", "decode_segmentation", palette_size=19),
    OpSpec("decode_segmentation_k150", "decode_segmentation", palette_size=150),
    OpSpec("encode_depth", "encode_depth", encoder=True),
    # The roofline targets count uint8 labels (1 B/px written instead of 8); GPU runs only.
    OpSpec("decode_segmentation_k19_u8", "decode_segmentation", palette_size=19,
           cpu_default=False, label_dtype=torch.uint8),
    OpSpec("decode_segmentation_k150_u8", "decode_segmentation", palette_size=150,
           cpu_default=False, label_dtype=torch.uint8),
    # The other label widths (2 and 4 B/px), beside uint8 and int64; GPU runs only.
    OpSpec("decode_segmentation_k19_i16", "decode_segmentation", palette_size=19,
           cpu_default=False, label_dtype=torch.int16),
    OpSpec("decode_segmentation_k19_i32", "decode_segmentation", palette_size=19,
           cpu_default=False, label_dtype=torch.int32),
    OpSpec("decode_segmentation_k150_i16", "decode_segmentation", palette_size=150,
           cpu_default=False, label_dtype=torch.int16),
    OpSpec("decode_segmentation_k150_i32", "decode_segmentation", palette_size=150,
           cpu_default=False, label_dtype=torch.int32),
    # The target decode_instances <= 3x decode_segmentation with 40 known colours. Not in
    # the CPU defaults: the torch reference of decode_instances takes ~10 s per 1080p frame
    # on a 2-core CPU, and torch.compile of k40 another compile.
    OpSpec("decode_segmentation_k40", "decode_segmentation", palette_size=40, tiles=True,
           cpu_default=False),
    OpSpec("decode_instances_k40", "decode_instances", palette_size=40, tiles=True,
           cpu_default=False),
    # Colormap inversion of random colours against turbo's 255 segments (random colours
    # cost the same as painted ones: the scan has no early exit). Triton takes its colour
    # table for large uint8 batches; the _direct row times its segment scan on the same
    # batch. Not in the CPU defaults: the torch reference scans every segment per pixel.
    OpSpec("decode_colormap_turbo", "decode_colormap", colormap="turbo", cpu_default=False),
    OpSpec("decode_colormap_turbo_direct", "decode_colormap", colormap="turbo",
           colour_table=False, cpu_default=False),
    # Back-projection and depth-implied normals: one fused pass on the GPU backends against
    # the torch reference's many passes. GPU runs (device check) only.
    OpSpec("depth_to_points", "depth_to_points", points=True, cpu_default=False),
    OpSpec("normals_from_depth", "normals_from_depth", points=True, cpu_default=False),
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
    extra_written: int = 0  # bytes of further outputs (decode_instances: palette, counts)

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
        return numel * torch.empty((), dtype=self.out_dtype).element_size() + self.extra_written


def palette(k: int, device: torch.device) -> torch.Tensor:
    """``k`` distinct seeded random uint8 colours, shape (k, 3)."""
    codes = torch.tensor(random.Random(_SEED + k).sample(range(1 << 24), k))
    rgb = torch.stack([(codes >> 16) & 255, (codes >> 8) & 255, codes & 255], dim=1)
    return rgb.to(torch.uint8).to(device)


def palette40(device: torch.device) -> torch.Tensor:
    """40 well-separated uint8 colours (40, 3): a seeded sample of the 4^3 grid {0, 85, 170,
    255}^3 without black, so any two colours, and any colour and the black background, are
    >= 85 apart (decode_instances merges colours closer than 20 and labels within 40)."""
    levels = (0, 85, 170, 255)
    grid = [(r, g, b) for r in levels for g in levels for b in levels][1:]
    chosen = random.Random(_SEED + 40).sample(grid, 40)
    return torch.tensor(chosen, dtype=torch.uint8, device=device)


def tiled_images(w: Workload, device: torch.device) -> torch.Tensor:
    """Images of workload ``w`` (contiguous, its dtype and layout) painted as 64 x 64 tiles of
    the ``palette40`` colours: tile (i, j) of image n has colour ``(7 i + 3 j + n) % 40``.

    The same pixels as ``encode_segmentation(index, palette40)`` (floats: colour / 255), by
    plain indexing. A crop of a batch equals the tiles painted at the crop's size, so every
    provider and crop decodes the same pixels; a 1080p frame holds all 40 colours.
    """
    n = torch.arange(w.batch, device=device).view(-1, 1, 1)
    i = (torch.arange(w.height, device=device) // 64).view(1, -1, 1)
    j = (torch.arange(w.width, device=device) // 64).view(1, 1, -1)
    rgb = palette40(device)[(7 * i + 3 * j + n) % 40]  # (N, H, W, 3) uint8
    if w.dtype != "uint8":
        rgb = (rgb.to(torch.float32) / 255).to(DTYPES[w.dtype])
    if w.layout == "chw":
        rgb = rgb.permute(0, 3, 1, 2)
    return rgb.contiguous()


def tile_colours(w: Workload, min_pixels: int = 64) -> int:
    """Distinct colours of the tiles holding at least ``min_pixels`` pixels in each image of
    ``tiled_images(w)``: the instances (palette rows) ``decode_instances`` reports there
    with its default ``min_pixels`` (40 in a 1080p frame; fewer in a small crop)."""
    rows, cols = -(-w.height // 64), -(-w.width // 64)
    return len({(7 * i + 3 * j) % 40 for i in range(rows) for j in range(cols)
                if min(64, w.height - 64 * i) * min(64, w.width - 64 * j) >= min_pixels})


def depth_for(images: torch.Tensor, w: Workload) -> torch.Tensor:
    """Finite metric depth (N, H, W) float32 spread over the whole walk, for encode_depth
    and the point ops.

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
    if op.tiles:
        images = tiled_images(w, images.device)
    if op.api == "decode_instances":
        # labels (N, H, W) int32, palette (N, N_max, 3) float32, counts (N,) int64; no out=.
        return Case(op, w, (images,), out=None, out_shape=grid, out_dtype=torch.int32,
                    extra_written=w.batch * (tile_colours(w) * 3 * 4 + 8))
    if op.points:
        camera = (0.8 * w.width, 0.8 * w.width, (w.width - 1) / 2, (w.height - 1) / 2)
        points = torch.empty(grid + (3,), dtype=torch.float32, device=images.device)
        return Case(op, w, (depth_for(images, w), camera), out=points, out_shape=grid + (3,))
    if op.encoder:
        return Case(op, w, (depth_for(images, w),),
                    {"dtype": DTYPES[w.dtype], "layout": w.layout},
                    out=None, out_shape=w.shape, out_dtype=DTYPES[w.dtype])
    if op.palette_size is not None:
        labels = torch.empty(grid, dtype=op.label_dtype, device=images.device)
        colours = palette40(images.device) if op.tiles else palette(op.palette_size,
                                                                      images.device)
        kwargs = {} if op.label_dtype == torch.int64 else {"out_dtype": op.label_dtype}
        return Case(op, w, (images, colours), kwargs, out=labels, out_shape=grid,
                    out_dtype=op.label_dtype)
    if op.colormap is not None:
        out_dtype = torch.float64 if images.dtype == torch.float64 else torch.float32
        values = torch.empty(grid, dtype=out_dtype, device=images.device)
        return Case(op, w, (images, op.colormap), {"layout": w.layout}, out=values,
                    out_shape=grid, out_dtype=out_dtype)
    if op.name == "decode_normals":
        normals = torch.empty(images.shape, dtype=torch.float32, device=images.device)
        return Case(op, w, (images,), out=normals, out_shape=tuple(images.shape))
    scalar = torch.empty(grid, dtype=torch.float32, device=images.device)
    return Case(op, w, (images,), out=scalar, out_shape=grid)
