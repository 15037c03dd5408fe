"""Benchmark workloads: batch shape, layout and dtype of the images every op decodes.

The GPU set is the one the GPU speed targets name (a 1080p frame, 16 x 1080p, 8 x 4K, the same as
channels-first, a float16 batch). On a CPU a batch costs its frame time times the batch
size, so the default CPU set keeps one 1080p frame in each layout/dtype; ``--full`` runs
the GPU set on the CPU too. A provider too slow for a workload is measured on a smaller
crop of it (see ``scaled``), and the report says so.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

DTYPES = {"uint8": torch.uint8, "float16": torch.float16, "float32": torch.float32}


@dataclass(frozen=True)
class Workload:
    name: str
    batch: int
    height: int
    width: int
    layout: str  # "hwc" (NHWC) or "chw" (NCHW)
    dtype: str  # a key of DTYPES

    @property
    def pixels(self) -> int:
        return self.batch * self.height * self.width

    @property
    def frame_pixels(self) -> int:
        return self.height * self.width

    @property
    def shape(self) -> tuple[int, int, int, int]:
        if self.layout == "hwc":
            return (self.batch, self.height, self.width, 3)
        return (self.batch, 3, self.height, self.width)

    @property
    def label(self) -> str:
        layout = "NHWC" if self.layout == "hwc" else "NCHW"
        return f"{self.batch}x{self.width}x{self.height} {self.dtype} {layout}"

    def scaled(self, batch: int, height: int, width: int) -> Workload:
        return replace(self, batch=batch, height=height, width=width)


def _wl(name, batch, height, width, layout="hwc", dtype="uint8") -> Workload:
    return Workload(name, batch, height, width, layout, dtype)


# The workload the GPU memory-roofline and speed-up targets are judged on.
GPU_TARGET = "b8-4k-u8-nhwc"
# The workload the decode_instances <= 3x decode_segmentation target is judged on (GPU).
INSTANCE_TARGET = "b16-1080p-u8-nhwc"
# The workload the CPU targets are judged on.
CPU_TARGET = "b1-1080p-u8-nhwc"
# The workload the CPU decode_instances target is judged on (4 x 1080p; not a default).
CPU_INSTANCE_TARGET = "b4-1080p-u8-nhwc"

GPU_WORKLOADS = (
    _wl(GPU_TARGET, 8, 2160, 3840),
    _wl("b1-1080p-u8-nhwc", 1, 1080, 1920),
    _wl(INSTANCE_TARGET, 16, 1080, 1920),
    _wl("b8-4k-u8-nchw", 8, 2160, 3840, layout="chw"),
    _wl("b16-1080p-u8-nchw", 16, 1080, 1920, layout="chw"),
    _wl("b16-1080p-f16-nhwc", 16, 1080, 1920, dtype="float16"),
)
GPU_QUICK = (GPU_TARGET, INSTANCE_TARGET, "b1-1080p-u8-nhwc", "b16-1080p-f16-nhwc")

CPU_WORKLOADS = (
    _wl(CPU_TARGET, 1, 1080, 1920),
    _wl("b1-1080p-u8-nchw", 1, 1080, 1920, layout="chw"),
    _wl("b1-1080p-f16-nhwc", 1, 1080, 1920, dtype="float16"),
)
CPU_QUICK = (CPU_TARGET,)
# Selectable with --workloads only.
CPU_EXTRA = (_wl(CPU_INSTANCE_TARGET, 4, 1080, 1920),)

ALL_WORKLOADS = {w.name: w for w in GPU_WORKLOADS + CPU_WORKLOADS + CPU_EXTRA}


def default_workloads(device_type: str, quick: bool, full: bool) -> list[Workload]:
    """The workloads a run measures when ``--workloads`` is not given."""
    if device_type == "cuda" or full:
        chosen = GPU_QUICK if quick else tuple(w.name for w in GPU_WORKLOADS)
    else:
        chosen = CPU_QUICK if quick else tuple(w.name for w in CPU_WORKLOADS)
    return [ALL_WORKLOADS[name] for name in chosen]


def smaller(w: Workload) -> Workload | None:
    """The next smaller crop of ``w``: one frame first, then half the height and width.

    None once a frame is down to 64 x 64 pixels, below which timings say little.
    """
    if w.batch > 1:
        return w.scaled(1, w.height, w.width)
    if min(w.height, w.width) < 128:
        return None
    return w.scaled(1, w.height // 2, w.width // 2)


def make_images(w: Workload, device: torch.device, seed: int = 0) -> torch.Tensor:
    """Uniformly random colours of the workload's shape, dtype and layout (contiguous).

    Random colours exercise every walk segment and palette entry; the kernels have no
    data-dependent fast paths that a smooth depth map would favour.
    """
    gen = torch.Generator(device=device).manual_seed(seed)
    if w.dtype == "uint8":
        return torch.randint(0, 256, w.shape, dtype=torch.uint8, device=device, generator=gen)
    rand = torch.rand(w.shape, dtype=torch.float32, device=device, generator=gen)
    return rand.to(DTYPES[w.dtype])
