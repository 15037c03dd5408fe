"""PNG read benchmark: frames/s per core of each way to turn a PNG file into RGB pixels.

Routes (each one process, one thread: per-core figures):

- ``pillow``: ``np.array(Image.open(f).convert("RGB"))``, what the command line did;
- ``read_png``: :func:`vbkernels.pipeline.png.read_png`, the route the pipeline uses
  (chunk walk + CRC, then ISA-L inflate + the compiled unfilter, or libspng where the
  ``cpu`` library was not built);
- ``pyspng``: libspng alone (``pyspng.load``), no chunk walk;
- ``<inflater>+numpy``: :func:`~vbkernels.pipeline.png.inflate_png` with zlib or ISA-L,
  then the NumPy :func:`~vbkernels.pipeline.png.unfilter`;
- ``<inflater> only``: the inflate alone, what CPU workers would do if a GPU unfiltered.

The corpus is what generated depth looks like on disk: cube-walk encoded street scenes
(:mod:`vbkernels.scenes`), blurred and JPEG-degraded, plus Gaussian noise so a 1080p frame
weighs 2-4 MB, saved by Pillow (``writer="pillow"``: adaptive filters, here mostly Sub/Up
with a few Paeth rows) or by :func:`encode_png` with every row Paeth (``writer="paeth"``:
the slowest filter to undo, for Pillow and libspng alike). Frames are RGB.

``python -m vbkernels.benchmark.png_read`` prints the Markdown table.
"""

from __future__ import annotations

import io
import os
import statistics
import time
import zlib

import numpy as np
import torch

from vbkernels.files import png_chunk
from vbkernels.pipeline import png

__all__ = ["encode_png", "make_corpus", "png_read_benchmark", "markdown"]

_COLOUR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}  # channels -> PNG colour type


def encode_png(pixels: np.ndarray, filters=4, *, level: int = 6) -> bytes:
    """A minimal 8-bit PNG encoder with the filter of every row chosen by the caller:
    ``pixels`` (H, W) or (H, W, C) uint8 with C in 1..4, ``filters`` one type (0 None,
    1 Sub, 2 Up, 3 Average, 4 Paeth) or one per row. Pillow picks filters itself, so this is
    how tests and benchmarks get files with a known filter mix."""
    pixels = pixels[..., None] if pixels.ndim == 2 else pixels
    height, width, channels = pixels.shape
    kinds = np.broadcast_to(np.asarray(filters, np.uint8), (height,))
    x = pixels.reshape(height, width * channels).astype(np.int16)
    a = np.zeros_like(x)
    a[:, channels:] = x[:, :-channels]
    b = np.zeros_like(x)
    b[1:] = x[:-1]
    c = np.zeros_like(x)
    c[:, channels:] = b[:, :-channels]
    pa, pb, pc = np.abs(b - c), np.abs(a - c), np.abs(a + b - 2 * c)
    paeth = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))
    preds = np.stack([np.zeros_like(x), a, b, (a + b) >> 1, paeth])
    filtered = (x - preds[kinds, np.arange(height)]) & 0xFF
    raw = np.concatenate([kinds[:, None], filtered.astype(np.uint8)], axis=1)
    ihdr = np.array([width, height], ">u4").tobytes() + bytes(
        [8, _COLOUR_TYPES[channels], 0, 0, 0])
    return png.PNG_SIGNATURE + png_chunk(b"IHDR", ihdr) + png_chunk(
        b"IDAT", zlib.compress(raw.tobytes(), level)) + png_chunk(b"IEND", b"")


def make_corpus(n: int = 4, height: int = 1080, width: int = 1920, *, writer: str = "pillow",
                noise: float = 2.0, seed: int = 0) -> list[bytes]:
    """``n`` PNG files (bytes) of noisy degraded cube-walk depth frames: two ray-cast scenes,
    each with ``n / 2`` independent noise draws (ray-casting 1080p costs seconds a scene)."""
    from PIL import Image

    import vbkernels
    from vbkernels.scenes import degrade, make_scenes

    if writer not in ("pillow", "paeth"):
        raise ValueError(f"writer must be 'pillow' or 'paeth', got {writer!r}")
    scenes = make_scenes(min(n, 2), height, width, seed=seed)
    frames = degrade(vbkernels.encode_depth(scenes["depth"]), jpeg_quality=90).numpy()
    rng = np.random.default_rng(seed)
    files = []
    for i in range(n):
        grain = rng.normal(0.0, noise, frames[i % len(frames)].shape).round()
        noisy = np.clip(frames[i % len(frames)] + grain, 0, 255).astype(np.uint8)
        if writer == "pillow":
            buf = io.BytesIO()
            Image.fromarray(noisy).save(buf, "PNG")
            files.append(buf.getvalue())
        else:
            files.append(encode_png(noisy, 4))
    return files


def _routes(writer: str) -> dict:
    from PIL import Image

    routes = {"pillow": lambda d: np.array(Image.open(io.BytesIO(d)).convert("RGB")),
              "read_png": png.read_png}
    if png._pyspng is not None:
        routes["pyspng"] = lambda d: png._pyspng.load(d, format="RGB")
    for name in png.inflaters():
        if writer == "pillow":  # a Paeth row costs ~10 ms in the NumPy unfilter: 11 s a frame
            routes[f"{name}+numpy"] = lambda d, name=name: _inflate_unfilter(d, name)
        routes[f"{name} only"] = lambda d, name=name: png.inflate_png(d, inflater=name)
    return routes


def _inflate_unfilter(data: bytes, inflater: str) -> np.ndarray:
    header, filtered = png.inflate_png(data, inflater=inflater)
    return png.unfilter(filtered, header.channels)


def png_read_benchmark(files: list[bytes] | None = None, *, repeats: int = 5,
                       writer: str = "pillow") -> list[dict]:
    """Median CPU ms per frame (``ms``; ``wall_ms`` beside it) and frames/s per core of
    every installed route over ``files`` (default: :func:`make_corpus` with ``writer``),
    each route timed ``repeats`` times over the whole corpus. CPU time of this process,
    not wall time, because every route is single-threaded and the machines these run on
    are shared: the per-core cost is what a worker pool multiplies. Full decodes are
    checked pixel-identical to Pillow first."""
    files = make_corpus(writer=writer) if files is None else files
    routes = _routes(writer)
    expected = [routes["pillow"](d) for d in files]
    for name, route in routes.items():
        if "only" not in name:
            for d, want in zip(files, expected):
                got = route(d)
                if not np.array_equal(got, want):
                    raise AssertionError(f"route {name} differs from Pillow")
    cpu = {name: [] for name in routes}
    wall = {name: [] for name in routes}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one core, as in a pipeline worker; idle OpenMP threads spin
    try:
        for _ in range(repeats):  # routes interleaved, so a burst of load hits all alike
            for name, route in routes.items():
                start_cpu, start_wall = time.process_time(), time.perf_counter()
                for d in files:
                    route(d)
                cpu[name].append((time.process_time() - start_cpu) / len(files))
                wall[name].append((time.perf_counter() - start_wall) / len(files))
    finally:
        torch.set_num_threads(threads)
    rows = [{"route": name, "ms": 1e3 * statistics.median(cpu[name]),
             "wall_ms": 1e3 * statistics.median(wall[name]),
             "samples_ms": [1e3 * s for s in cpu[name]]} for name in routes]
    pillow_ms = rows[0]["ms"]
    for row in rows:
        row["frames_per_s"] = 1e3 / row["ms"]
        row["vs_pillow"] = pillow_ms / row["ms"]
    return rows


def markdown(rows: list[dict], files: list[bytes] | None = None) -> str:
    """The rows as a Markdown table: CPU and wall ms per frame, frames/s per core (from CPU
    time) and the speed-up over Pillow."""
    lines = []
    if files:
        lines.append(f"{len(files)} files, {np.mean([len(f) for f in files]) / 1e6:.2f} MB "
                     f"mean; load average {os.getloadavg()[0]:.2f}")
        lines.append("")
    lines += ["| route | CPU ms / frame | wall ms / frame | frames/s per core | x Pillow |",
              "|---|---:|---:|---:|---:|"]
    lines += [f"| {r['route']} | {r['ms']:.1f} | {r['wall_ms']:.1f} | {r['frames_per_s']:.1f} "
              f"| {r['vs_pillow']:.2f} |" for r in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    for kind in ("pillow", "paeth"):
        corpus = make_corpus(writer=kind)
        print(f"\nwriter={kind}\n")
        print(markdown(png_read_benchmark(corpus, writer=kind), corpus))
