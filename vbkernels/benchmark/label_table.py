"""Triton segmentation strategies side by side: the tiled distance scan and the 2^24-entry
colour-to-label table, per palette size (``vbkernels bench --label-table``).

``vbkernels.triton.segmentation`` picks the table for uint8 images on CUDA once the palette
has ``TABLE_MIN_K`` colours or more; these figures are what that threshold is set from. For
each palette size the section times, on the same 8 x 1920x1080 uint8 frames: the scan (every
pixel against every colour), the lookup through a prebuilt table, and building the table
(paid once per palette, then cached). Labels are int64, as in the report's segmentation ops.
"""

from __future__ import annotations

import torch

from . import providers
from .ops import palette
from .sections import section_entry
from .timing import Timer
from .workloads import Workload, make_images

WORKLOAD = Workload("label-table-8x1080p", 8, 1080, 1920, "hwc", "uint8")
PALETTE_SIZES = (19, 64, 150, 300, 1000)
# Table builds of large palettes take ~0.6 s each on an H200; three say enough.
BUILD_REPEATS = 3


def unavailable(device: torch.device) -> str | None:
    """Why the section cannot be measured in a run on ``device`` (None if it can)."""
    reason = providers.unavailable(providers.PROVIDERS_BY_NAME["triton"], device)
    if reason is not None:
        return f"needs the triton provider on a CUDA device: {reason}"
    return None


def _timed(timer: Timer, fn, repeats: int) -> dict:
    timer.once(fn)  # compilation and autotuning stay out of the samples
    return timer.samples(fn, repeats).middle()


def measure(device: torch.device, repeats: int, workload: Workload = WORKLOAD,
            sizes: tuple[int, ...] = PALETTE_SIZES) -> list[dict]:
    """One row per palette size: scan, lookup and build times (median and quartiles)."""
    from vbkernels.triton import segmentation as seg

    timer = Timer(device)
    rgb = make_images(workload, device)
    labels = torch.empty(rgb.shape[:3], dtype=torch.int64, device=device)
    return [_row(seg, timer, rgb, palette(k, device).to(torch.float32), labels, repeats)
            for k in sizes]


def _row(seg, timer: Timer, rgb, colours, labels, repeats: int) -> dict:
    """Scan, build and lookup times for one palette (``seg``: the Triton segmentation module),
    through the kernels decode_segmentation runs for this view (word loads on contiguous
    uint8, the per-row kernels otherwise)."""
    table = seg.build_label_table(colours)
    path = seg.decode_path(rgb, labels, None)
    if path == "quad":
        scan = lambda: seg._decode_quads(rgb, colours, None, labels, None, None, -1)  # noqa: E731
        lookup = lambda: seg._decode_quads(rgb, colours, table, labels, None, None, -1)  # noqa: E731
    else:
        scan = lambda: seg._decode_by_distance(rgb, colours, labels, None, None, -1)  # noqa: E731
        lookup = lambda: seg.lookup_labels(rgb, table, colours, labels, None, None, -1)  # noqa: E731
    return {
        "palette_size": colours.shape[0],
        "path": path,
        "scan": _timed(timer, scan, repeats),
        "lookup": _timed(timer, lookup, repeats),
        "build": _timed(timer, lambda: seg.build_label_table(colours), BUILD_REPEATS),
        "table_used": colours.shape[0] >= seg.TABLE_MIN_K,
    }


def run(device: torch.device, repeats: int, out_of_time: bool) -> dict:
    """The report's ``label_table`` entry: rows, or the reason there are none."""
    base = {"workload": WORKLOAD.label, "pixels": WORKLOAD.pixels}

    def measured() -> dict:
        from vbkernels.triton.segmentation import TABLE_MIN_K

        return {"table_min_k": TABLE_MIN_K, "rows": measure(device, repeats)}

    return section_entry(base, unavailable(device), out_of_time, measured)


def markdown(section: dict | None) -> list[str]:
    """The report's Markdown lines for the section (none when it was not asked for)."""
    if section is None:
        return []
    lines = ["## Triton segmentation: distance scan vs label table", "",
             f"{section['workload']}, int64 labels. The lookup gathers each pixel's label from "
             "a 2^24-entry table built once per palette (and cached); the scan compares every "
             "pixel with every colour. Times: median (interquartile range) in ms.", ""]
    if section["status"] != "ok":
        return lines + [f"{section['status']}: {section['reason']}", ""]
    lines += ["| K | scan ms | lookup ms | scan / lookup | table build ms (once) "
              "| decode_segmentation uses |", "|---|---|---|---|---|---|"]
    for row in section["rows"]:
        scan, lookup, build = row["scan"], row["lookup"], row["build"]
        used = "table" if row["table_used"] else "scan"
        lines.append(f"| {row['palette_size']} | {_ms(scan)} | {_ms(lookup)} "
                     f"| {scan['median_s'] / max(lookup['median_s'], 1e-12):.1f}x "
                     f"| {_ms(build)} | {used} |")
    return lines + ["", f"The table is used from K >= {section['table_min_k']} "
                        "(`TABLE_MIN_K` in `vbkernels/triton/segmentation.py`).", ""]


def _ms(timing: dict) -> str:
    return (f"{timing['median_s'] * 1e3:.3g} ({timing['q1_s'] * 1e3:.3g}–"
            f"{timing['q3_s'] * 1e3:.3g})")
