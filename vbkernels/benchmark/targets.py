"""The speed targets of the project, judged against a run's cells (reported, never asserted).

GPU, 8 x 3840x2160 uint8 NHWC, % of memcpy (Triton / CUDA): decode_depth, hilbert_project
and decode_normals >= 90 / 85; decode_segmentation with uint8 labels >= 80 / 75 (K = 19) and
>= 60 / 50 (K = 150); encode_depth (float32 in, uint8 out) >= 80 / 75; triton and cuda each >= 1.5x
torch.compile of the reference and >= 20x torch eager. CPU, one 1920x1080 uint8 frame: the
best CPU path decodes depth >= 100x faster than hilbertmap and at >= 30 frames/s; on
4 x 1920x1080 uint8 NHWC the cpu backend's ``decode_instances_k40`` takes at most 5x the time
of its ``decode_segmentation_k40``.

Instances, GPU, 16 x 1920x1080 uint8 NHWC: ``decode_instances`` takes at most 3x the time of
``decode_segmentation`` with a known 40-colour palette, both on the same 40-colour tiles
(ops ``decode_instances_k40`` and ``decode_segmentation_k40``) and with the same provider.
The target is Triton's; the torch reference's ratio is reported for information. Time is
compared per pixel, so a provider timed on a crop is still compared like for like.
"""

from __future__ import annotations

from dataclasses import dataclass

from .runner import Cell
from .workloads import CPU_INSTANCE_TARGET, CPU_TARGET, GPU_TARGET, INSTANCE_TARGET

GPU_PROVIDERS = ("triton", "cuda")
# Compiled or vectorised paths a CPU user can pick (hilbertmap is what they are compared with).
CPU_PATHS = ("cpu", "numpy", "torch", "torch_compile")
# Floors in % of a same-run memcpy of the same bytes, per GPU provider (the memory-roofline
# table: uint8 labels for segmentation, float32 in / uint8 out for encode_depth).
PCT_MEMCPY = {
    "decode_depth": {"triton": 90.0, "cuda": 85.0},
    "hilbert_project": {"triton": 90.0, "cuda": 85.0},
    "decode_normals": {"triton": 90.0, "cuda": 85.0},
    "decode_segmentation_k19_u8": {"triton": 80.0, "cuda": 75.0},
    "decode_segmentation_k150_u8": {"triton": 60.0, "cuda": 50.0},
    "encode_depth": {"triton": 80.0, "cuda": 75.0},
}
GPU_RATIO_OPS = ("decode_depth", "hilbert_project", "decode_normals", "decode_segmentation_k19",
                 "decode_segmentation_k150", "decode_segmentation_k19_u8",
                 "decode_segmentation_k150_u8", "encode_depth")

INSTANCE_OP, INSTANCE_BASE, INSTANCE_FACTOR = (
    "decode_instances_k40", "decode_segmentation_k40", 3.0)
# The provider the decode_instances target is about, then those reported for information.
INSTANCE_PROVIDERS = ("triton", "torch")
# CPU, 4 x 1920x1080 uint8 NHWC: the compiled cpu backend's decode_instances_k40 takes at
# most 5x the time of its decode_segmentation_k40.
CPU_INSTANCE_PROVIDER, CPU_INSTANCE_FACTOR = "cpu", 5.0


@dataclass
class Verdict:
    target: str
    op: str
    workload: str
    provider: str  # the provider the target is about ("" when it picks the best one)
    measured: str
    verdict: str  # "met", "missed" or "not measured: <why>"

    def as_dict(self) -> dict:
        return dict(vars(self))


def _index(cells: list[Cell]) -> dict:
    return {(c.op, c.workload, c.provider): c for c in cells}


def _missing(cell: Cell | None) -> str:
    if cell is None:
        return "not measured: not part of this run"
    return f"not measured: {cell.status}" + (f" ({cell.reason})" if cell.reason else "")


def _judge(ok: bool) -> str:
    return "met" if ok else "missed"


def gpu_verdicts(cells: list[Cell]) -> list[Verdict]:
    at = _index(cells)
    out = []
    for op, floors in PCT_MEMCPY.items():
        for provider in GPU_PROVIDERS:
            floor = floors[provider]
            cell = at.get((op, GPU_TARGET, provider))
            name = f">= {floor:g}% of memcpy"
            if cell is None or cell.status != "ok":
                out.append(Verdict(name, op, GPU_TARGET, provider, "", _missing(cell)))
                continue
            pct = cell.data["pct_memcpy"]
            out.append(Verdict(name, op, GPU_TARGET, provider, f"{pct:.1f}%", _judge(pct >= floor)))
    for op in GPU_RATIO_OPS:
        for provider in GPU_PROVIDERS:
            for base, factor in (("torch_compile", 1.5), ("torch", 20.0)):
                out.append(_ratio(at, op, provider, base, factor))
    out.extend(_instance_ratio(at, provider, INSTANCE_TARGET, INSTANCE_FACTOR,
                               information=provider != INSTANCE_PROVIDERS[0])
               for provider in INSTANCE_PROVIDERS)
    return out


def _instance_ratio(at, provider, workload, factor, information: bool) -> Verdict:
    """decode_instances_k40 time <= factor x decode_segmentation_k40 time, same provider."""
    name = f"time <= {factor:g}x {INSTANCE_BASE} time"
    if information:
        name += " (information)"
    cell = at.get((INSTANCE_OP, workload, provider))
    ref = at.get((INSTANCE_BASE, workload, provider))
    for c in (cell, ref):
        if c is None or c.status != "ok":
            return Verdict(name, INSTANCE_OP, workload, provider, "", _missing(c))
    ratio = ref.data["mpx_s"] / cell.data["mpx_s"]  # time per pixel, instances / segmentation
    return Verdict(name, INSTANCE_OP, workload, provider, f"{ratio:.2f}x",
                   _judge(ratio <= factor))


def _ratio(at, op, provider, base, factor) -> Verdict:
    name = f">= {factor:g}x {base}"
    cell = at.get((op, GPU_TARGET, provider))
    ref = at.get((op, GPU_TARGET, base))
    for c in (cell, ref):
        if c is None or c.status != "ok":
            return Verdict(name, op, GPU_TARGET, provider, "", _missing(c))
    ratio = cell.data["mpx_s"] / ref.data["mpx_s"]
    return Verdict(name, op, GPU_TARGET, provider, f"{ratio:.1f}x", _judge(ratio >= factor))


def cpu_verdicts(cells: list[Cell]) -> list[Verdict]:
    at = _index(cells)
    return _cpu_depth_verdicts(at) + [
        _instance_ratio(at, CPU_INSTANCE_PROVIDER, CPU_INSTANCE_TARGET, CPU_INSTANCE_FACTOR,
                        information=False)]


def _cpu_depth_verdicts(at) -> list[Verdict]:
    op = "decode_depth"
    paths = [at[(op, CPU_TARGET, p)] for p in CPU_PATHS
             if (op, CPU_TARGET, p) in at and at[(op, CPU_TARGET, p)].status == "ok"]
    if not paths:
        reason = "not measured: no CPU path measured decode_depth on " + CPU_TARGET
        return [Verdict(">= 30 frames/s", op, CPU_TARGET, "best CPU path", "", reason),
                Verdict(">= 100x hilbertmap", op, CPU_TARGET, "best CPU path", "", reason)]
    best = max(paths, key=lambda c: c.data["mpx_s"])
    fps = best.data["frames_s"]
    out = [Verdict(">= 30 frames/s", op, CPU_TARGET, best.provider, f"{fps:.1f} frames/s",
                   _judge(fps >= 30.0))]
    ref = at.get((op, CPU_TARGET, "hilbertmap"))
    if ref is None or ref.status != "ok":
        out.append(Verdict(">= 100x hilbertmap", op, CPU_TARGET, best.provider, "", _missing(ref)))
    else:
        ratio = best.data["mpx_s"] / ref.data["mpx_s"]
        out.append(Verdict(">= 100x hilbertmap", op, CPU_TARGET, best.provider, f"{ratio:.0f}x",
                           _judge(ratio >= 100.0)))
    return out


def verdicts(cells: list[Cell], device_type: str) -> list[Verdict]:
    """The targets that apply to a run on ``device_type``."""
    return gpu_verdicts(cells) if device_type == "cuda" else cpu_verdicts(cells)
