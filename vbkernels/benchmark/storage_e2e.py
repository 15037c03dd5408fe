"""Writing decoded frames to an object store: per-frame files vs WebDataset vs Parquet
shards, against a local S3 server (moto on 127.0.0.1), counting the HTTP requests made.

``python -m vbkernels.benchmark.storage_e2e --frames 200`` (also ``python -m
vbkernels.benchmark.e2e --s3-frames 200``). Each format decodes the same folder of
encoded-depth PNGs with the local engine in one process (``--workers 0``: the request count
is then the run's own), ``--outputs npy``, into its own prefix. Rows: requests by method,
seconds, objects and bytes stored. Request counts do not depend on the machine; seconds do
(a local server costs no network round trip, so a real bucket widens the gap)."""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

FORMATS = ("files", "webdataset", "parquet")


def make_frames(folder: Path, frames: int, height: int, width: int) -> list[Path]:
    """Smooth encoded-depth PNGs (procedural depth ramps, a little noise)."""
    import numpy as np
    from PIL import Image

    import vbkernels as vb

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width]
    paths = []
    for i in range(frames):
        depth = 1.0 + 30.0 * (y / height) + 5.0 * np.sin(x / width * 6.28 + i) ** 2
        rgb = vb.encode_depth(depth.astype(np.float32))
        noisy = np.clip(rgb.astype(np.int16) + rng.integers(-2, 3, rgb.shape), 0, 255)
        paths.append(folder / f"{i:06d}.png")
        Image.fromarray(noisy.astype(np.uint8)).save(paths[-1])
    return paths


def run(frames: int = 200, height: int = 128, width: int = 160, shard_size: str = "512MB",
        log=print) -> dict:
    from vbkernels.pipeline import decode_files
    from vbkernels.storage import open_store
    from vbkernels.storage.local_s3 import make_bucket, requests, s3_server

    with tempfile.TemporaryDirectory(prefix="vbk-s3-bench-") as temp, s3_server() as endpoint:
        paths = make_frames(Path(temp) / "in", frames, height, width)
        make_bucket(endpoint, "bench")
        result = {"frames": frames, "size": f"{width}x{height}",
                  "input_mb": sum(p.stat().st_size for p in paths) / 1e6,
                  "loadavg_before": os.getloadavg(), "rows": {}}
        for fmt in FORMATS:
            requests.clear()
            start = time.perf_counter()
            summary = decode_files([str(Path(temp) / "in")], "depth", f"s3://bench/{fmt}",
                                   workers=0, kinds="npy", format=fmt, shard_size=shard_size)
            seconds = time.perf_counter() - start
            counted = dict(requests.by_method)
            stored = open_store(f"s3://bench/{fmt}").list()
            result["rows"][fmt] = {
                "seconds": seconds, "requests": sum(counted.values()), "by_method": counted,
                "objects": len(stored), "bytes": sum(stored.values()),
                "frames_written": summary.frames}
            log(f"{fmt:10s} {seconds:7.2f} s  {sum(counted.values()):6d} requests "
                f"{counted}  {len(stored)} objects  {sum(stored.values()) / 1e6:.1f} MB")
        result["loadavg_after"] = os.getloadavg()
    return result


def markdown(result: dict) -> str:
    lines = [f"{result['frames']} encoded-depth PNGs of {result['size']} "
             f"({result['input_mb']:.1f} MB in all) -> depth `.npy` in a local S3 server "
             f"(moto, 127.0.0.1), one process; load average "
             f"{result['loadavg_before'][0]:.1f} before / {result['loadavg_after'][0]:.1f} "
             f"after", "",
             "| format | requests | of which PUT | seconds | objects | MB stored |",
             "|---|---:|---:|---:|---:|---:|"]
    for fmt, row in result["rows"].items():
        lines.append(f"| {fmt} | {row['requests']} | {row['by_method'].get('PUT', 0)} | "
                     f"{row['seconds']:.2f} | {row['objects']} | {row['bytes'] / 1e6:.2f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vbkernels.benchmark.storage_e2e",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--size", default="160x128", help="WIDTHxHEIGHT")
    parser.add_argument("--shard-size", default="512MB")
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))
    print(markdown(run(args.frames, height, width, args.shard_size)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
