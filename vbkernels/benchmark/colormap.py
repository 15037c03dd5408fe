"""The CPU report's colormap section: the ``cpu`` backend's ``decode_colormap`` against a
SciPy ``cKDTree`` query over the colormap's colours.

The baseline is what the ``unmap`` package does per image: build a KD-tree of the map's
colours, query every pixel for its nearest colour, look its value up. The frame is one
1080p depth image painted by ``encode_colormap`` with turbo (lossless: a few hundred
distinct colours) and the same frame after JPEG q90 4:2:0 (tens of thousands). The cpu
backend is timed through the public ``decode_colormap`` with a fresh colour-table cache
(cold: the first frame of a colormap) and with the cache the previous call left (warm: the
frames of a video after the first). The torch reference searches every segment for every
pixel; it runs on a band of rows and its time is scaled to the frame.
"""

from __future__ import annotations

import io

import numpy as np
import torch

from .. import colormap as front_end
from ..colormaps import colormap_table
from .sections import section_entry
from .timing import Timer

COLORMAP = "turbo"
VMAX = 50.0
JPEG_QUALITY = 90
FRAME = (1080, 1920)
# The torch reference decodes this share of the frame's rows (~1-3 s on a 2-core CPU).
REFERENCE_SHARE = 1 / 64
TARGET_RATIO = 100.0


def depth_frame(height: int, width: int) -> torch.Tensor:
    """A smooth synthetic depth image in [0, VMAX] m: a ground plane receding to the horizon
    with a few bumps, and far sky, so the painted frame uses most of the map."""
    y = torch.linspace(0.0, 1.0, height, dtype=torch.float64)[:, None]
    x = torch.linspace(0.0, 1.0, width, dtype=torch.float64)[None, :]
    ground = 1.5 / (y - 0.35).clamp_min(0.02)
    bumps = 3.0 * torch.sin(9.0 * x) * torch.cos(7.0 * y) + 2.0 * torch.exp(
        -((x - 0.6) ** 2 + (y - 0.7) ** 2) / 0.01)
    return (ground + bumps).clamp(0.0, VMAX).to(torch.float32)


def frames(height: int, width: int) -> dict[str, torch.Tensor]:
    """``{"painted": ..., "jpeg q90": ...}``: (H, W, 3) uint8 frames of the same depth."""
    from PIL import Image

    painted = front_end.encode_colormap(depth_frame(height, width), COLORMAP, vmax=VMAX)
    buffer = io.BytesIO()
    Image.fromarray(painted.numpy()).save(buffer, "JPEG", quality=JPEG_QUALITY, subsampling=2)
    jpeg = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
    return {"painted": painted, f"jpeg q{JPEG_QUALITY}": torch.from_numpy(jpeg.copy())}


def _kdtree_decode():
    """The unmap-style decoder: KD-tree of the map's colours, built and queried per image."""
    from scipy.spatial import cKDTree

    table = colormap_table(COLORMAP)
    colours = table.painted.astype(np.float64)
    values = (np.arange(table.n) + 0.5) / table.n * VMAX

    def decode(rgb: np.ndarray) -> np.ndarray:
        _, index = cKDTree(colours).query(rgb.reshape(-1, 3).astype(np.float64))
        return values[index].reshape(rgb.shape[:-1])

    return decode


def _distinct(rgb: torch.Tensor) -> int:
    return int(torch.unique(rgb.reshape(-1, 3), dim=0).shape[0])


def _row(timer: Timer, name: str, rgb: torch.Tensor, repeats: int, kdtree) -> dict:
    """One frame's timings: cpu cold and warm, the reference on a band, the cKDTree."""
    from ..cpu import colormap as cpu_op

    def decode(backend: str, image: torch.Tensor = rgb):
        return front_end.decode_colormap(image, COLORMAP, vmax=VMAX, backend=backend)

    def cold():
        cpu_op.COLOUR_TABLES.clear()
        decode("cpu")

    band = rgb[: max(1, round(rgb.shape[0] * REFERENCE_SHARE))]
    cold_s = timer.samples(cold, repeats)
    timer.once(lambda: decode("cpu"))  # the table now holds the frame's colours
    pixels = rgb.numpy()
    return {
        "frame": name,
        "distinct_colours": _distinct(rgb),
        "cpu_cold": cold_s.middle(),
        # Warm calls take milliseconds: more samples for a steadier median.
        "cpu_warm": timer.samples(lambda: decode("cpu"), max(repeats, 20)).middle(),
        "reference_rows": band.shape[0],
        "reference": timer.samples(lambda: decode("torch", band), 1).middle(
            rgb.shape[0] / band.shape[0]),
        "ckdtree": None if kdtree is None
        else timer.samples(lambda: kdtree(pixels), min(repeats, 3)).middle(),
    }


def measure(repeats: int, frame: tuple[int, int] = FRAME) -> dict:
    """Rows of the section for each frame (cpu cold/warm, reference, cKDTree)."""
    from ..cpu import colormap as cpu_op

    timer = Timer(torch.device("cpu"))
    try:
        kdtree = _kdtree_decode()
        kdtree_reason = ""
    except ImportError:
        kdtree, kdtree_reason = None, "scipy is not installed (pip install 'vbkernels[test]')"
    rows = [_row(timer, name, rgb, repeats, kdtree) for name, rgb in frames(*frame).items()]
    cpu_op.COLOUR_TABLES.clear()
    return {"rows": rows, "ckdtree_reason": kdtree_reason}


def run(repeats: int, out_of_time: bool, frame: tuple[int, int] = FRAME) -> dict:
    """The report's ``colormap`` entry: rows, or the reason there are none."""
    base = {"workload": f"1x{frame[0]}x{frame[1]} uint8 hwc", "colormap": COLORMAP,
            "vmax": VMAX, "target_ratio": TARGET_RATIO}
    reason = None
    try:
        from .._dispatch import load_backend

        load_backend("cpu")
    except Exception as exc:  # noqa: BLE001 - BackendUnavailable, or a library that fails
        reason = f"the cpu backend is unavailable: {exc}"
    return section_entry(base, reason, out_of_time, lambda: measure(repeats, frame))


def _ms(timing: dict | None) -> str:
    if timing is None:
        return "—"
    return (f"{timing['median_s'] * 1e3:.3g} ({timing['q1_s'] * 1e3:.3g}–"
            f"{timing['q3_s'] * 1e3:.3g})")


def _ratio(baseline: dict | None, timing: dict) -> str:
    if baseline is None:
        return "—"
    return f"{baseline['median_s'] / max(timing['median_s'], 1e-12):.0f}x"


def markdown(section: dict | None) -> list[str]:
    """The report's Markdown lines for the section (none when it was not run)."""
    if section is None:
        return []
    lines = [f"## cpu decode_colormap vs a SciPy cKDTree query ({section['workload']})", "",
             f"`decode_colormap(rgb, \"{section['colormap']}\", vmax={section['vmax']:g}, "
             "backend=\"cpu\")` on a depth frame painted by `encode_colormap` and the same "
             f"frame after JPEG q{JPEG_QUALITY} 4:2:0. cold: a fresh colour-table cache (the "
             "first frame of a colormap computes each distinct colour once); warm: the cache "
             "the previous frame left (a video's later frames). cKDTree: what the `unmap` "
             "package does per image (a KD-tree of the map's 256 colours, built and queried "
             "for every pixel, values looked up). The torch reference searches every segment "
             "for every pixel. Times: median (interquartile range) in ms.", ""]
    if section["status"] != "ok":
        return lines + [f"{section['status']}: {section['reason']}", ""]
    lines += ["| frame | distinct colours | cpu cold | cpu warm | torch reference | cKDTree "
              "| cKDTree / cpu warm | cKDTree / cpu cold |", "|---|---|---|---|---|---|---|---|"]
    for row in section["rows"]:
        lines.append(f"| {row['frame']} | {row['distinct_colours']} | {_ms(row['cpu_cold'])} "
                     f"| {_ms(row['cpu_warm'])} | {_ms(row['reference'])} "
                     f"| {_ms(row['ckdtree'])} | {_ratio(row['ckdtree'], row['cpu_warm'])} "
                     f"| {_ratio(row['ckdtree'], row['cpu_cold'])} |")
    rows = section["rows"]
    notes = [f"The torch reference ran on the first {rows[0]['reference_rows']} rows, once; "
             "its time is scaled to the whole frame."]
    if section["ckdtree_reason"]:
        notes.append(f"No cKDTree baseline: {section['ckdtree_reason']}.")
    else:
        met = all(r["ckdtree"]["median_s"] >= section["target_ratio"] * r["cpu_warm"]["median_s"]
                  for r in rows)
        notes.append(f"Target: cpu (warm) >= {section['target_ratio']:.0f}x the cKDTree query "
                     f"on every frame: {'met' if met else 'not met'} in this run.")
    return lines + ["", *notes, ""]
