"""First throughput figures of the Triton kernels on a CUDA device (issue 3, item 7).

    python -m vbkernels.triton._measure [--frames 8] [--json out.json]

Prints decode_depth on a batch of 4K uint8 NHWC frames beside a device copy of the same
bytes (the bandwidth ceiling), and the two segmentation strategies (tiled distance scan vs
the 2^24-entry label table) for a few palette sizes, so the table threshold in
``segmentation.py`` can be checked against numbers. The full benchmark suite lives in
``vbkernels.benchmark``; this is the quick check a GPU session runs first.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics

import torch


def _time_ms(fn, repeats: int = 20) -> tuple[float, float]:
    """Median and spread (max - min) in ms of ``fn`` on the current stream."""
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times), max(times) - min(times)


def _row(name: str, ms: float, spread: float, moved_bytes: int, frames: int) -> dict:
    return {
        "case": name, "median_ms": round(ms, 4), "spread_ms": round(spread, 4),
        "GB_per_s": round(moved_bytes / ms / 1e6, 1), "frames_per_s": round(frames / ms * 1e3, 1),
    }


def measure_depth(frames: int) -> list[dict]:
    from . import depth

    rgb = torch.randint(0, 256, (frames, 2160, 3840, 3), dtype=torch.uint8, device="cuda")
    out = torch.empty(rgb.shape[:3], dtype=torch.float32, device="cuda")
    moved = rgb.numel() + out.numel() * 4
    flat_in = torch.empty(moved // 2, dtype=torch.uint8, device="cuda")
    flat_out = torch.empty_like(flat_in)
    rows = [_row("memcpy (same bytes)", *_time_ms(lambda: flat_out.copy_(flat_in)), moved, frames)]
    rows.append(_row("triton decode_depth", *_time_ms(
        lambda: depth.decode_depth(rgb, out, None, -3.0, 10 / 3, None)), moved, frames))
    rows.append(_row("triton hilbert_project", *_time_ms(
        lambda: depth.hilbert_project(rgb, out)), moved, frames))
    from ..reference import depth as ref_depth

    rows.append(_row("torch reference decode_depth", *_time_ms(
        lambda: ref_depth.decode_depth(rgb, out, None, -3.0, 10 / 3, None), repeats=3),
        moved, frames))
    return rows


def measure_segmentation(frames: int) -> list[dict]:
    from . import segmentation as seg

    rgb = torch.randint(0, 256, (frames, 1080, 1920, 3), dtype=torch.uint8, device="cuda")
    labels = torch.empty(rgb.shape[:3], dtype=torch.int16, device="cuda")
    moved = rgb.numel() + labels.numel() * 2
    rows = []
    for k in (19, 64, 150, 300, 1000):
        palette = torch.randint(0, 256, (k, 3), device="cuda").float()
        rows.append(_row(f"scan K={k}", *_time_ms(
            lambda: seg._decode_by_distance(rgb, palette, labels, None, None, -1), repeats=5),
            moved, frames))
        build_ms, _ = _time_ms(lambda: seg.build_label_table(palette), repeats=3)
        table = seg.build_label_table(palette)
        rows.append(_row(f"table K={k} (lookup; build {build_ms:.2f} ms once)", *_time_ms(
            lambda: seg.lookup_labels(rgb, table, palette, labels, None, None, -1)),
            moved, frames))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--json", default=None, help="also write the rows to this file")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("needs a CUDA device")
    import triton

    rows = measure_depth(args.frames) + measure_segmentation(args.frames)
    report = {"device": torch.cuda.get_device_name(), "torch": torch.__version__,
              "triton": triton.__version__, "rows": rows}
    for row in rows:
        print(f"{row['case']:<48} {row['median_ms']:>9.3f} ms  +-{row['spread_ms']:<7.3f}"
              f" {row['GB_per_s']:>8.1f} GB/s {row['frames_per_s']:>9.1f} frames/s")
    if args.json:
        with open(args.json + ".tmp", "w") as fh:
            json.dump(report, fh, indent=2)
        os.replace(args.json + ".tmp", args.json)


if __name__ == "__main__":
    main()
