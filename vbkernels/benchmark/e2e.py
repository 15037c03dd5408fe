"""End-to-end file benchmark: a folder of generated-looking depth PNGs through
``vbkernels decode depth``'s pipeline, beside the ceilings and a plain process pool.

``python -m vbkernels.benchmark.e2e [--frames N] [--size 1920x1080] [--out DIR]``

Rows (frames/s over the same folder, outputs ``.depth.npy`` + 16-bit ``.depth.png``):

- pipeline, defaults (one worker process per core) and ``--workers 1``;
- read-only ceiling: the same worker processes only reading (Pillow) the files;
- read with threads instead of processes (why the pipeline uses processes);
- kernel alone: ``decode_depth`` on frames already in memory, batches of 16;
- plain pool: ``multiprocessing.Pool`` (one process per core), each file read -> decode ->
  write, the simplest thing a user would write;
- per-output encode costs (ms per frame): ``.npy`` bytes, 16-bit PNG, preview;
- eval (``--eval-frames``, default 654 on the command line: the NYUv2 test split; 0 in
  ``run()``): a fixture in the NYUv2 layout (640x480 16-bit ground truth) and as many
  noisy walk-painted predictions, scored by ``vbkernels eval depth`` (read, decode, Eigen
  crop, metrics, outputs), beside the decode pipeline alone on the same predictions; run
  once, not per round.

The folder holds scenes from ``vbkernels.scenes`` encoded with ``encode_depth`` plus
per-pixel noise, so the PNGs weigh what generated frames weigh (2-4 MB at 1080p; smooth
synthetic frames compress to ~70 KB and would flatter every reader).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np


def make_folder(folder: Path, frames: int, height: int, width: int, *, seed: int = 0,
                noise: int = 6) -> list[Path]:
    """``frames`` noisy encoded-depth PNGs (a few distinct scenes, fresh noise each)."""
    from PIL import Image

    import vbkernels
    from vbkernels.scenes import make_scenes

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    scenes = vbkernels.encode_depth(make_scenes(min(frames, 4), height, width, seed=seed)["depth"])
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(frames):
        base = scenes[i % len(scenes)].numpy().astype(np.int16)
        noisy = np.clip(base + rng.integers(-noise, noise + 1, base.shape), 0, 255)
        path = folder / f"frame{i:04d}.png"
        Image.fromarray(noisy.astype(np.uint8)).save(path)
        paths.append(path)
    return paths


def _rate(frames: int, seconds: float) -> float:
    return frames / seconds if seconds > 0 else float("nan")


def time_pipeline(folder: Path, workers: int | None) -> float:
    from vbkernels.pipeline import decode_files

    out = Path(tempfile.mkdtemp(prefix="vbk-e2e-"))
    try:
        start = time.perf_counter()
        summary = decode_files([folder], "depth", out, workers=workers, device="cpu",
                               manifest=False)
        seconds = time.perf_counter() - start
        if summary.failed:
            raise RuntimeError(f"pipeline failed: {summary.failed}")
        return _rate(summary.frames, seconds)
    finally:
        shutil.rmtree(out, ignore_errors=True)


def _read_only(path) -> tuple:
    from vbkernels.pipeline import read_image

    return read_image(path).shape


def time_read(paths, workers: int, threads: bool = False) -> float:
    """Frames/s of reading every file in ``workers`` processes (or threads)."""
    start = time.perf_counter()
    if threads:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(_read_only, paths))
    else:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            pool.map(_read_only, paths, chunksize=1)
    return _rate(len(paths), time.perf_counter() - start)


def time_kernel(paths, batch_size: int = 16) -> float:
    import torch

    import vbkernels
    from vbkernels.pipeline import read_image

    frames = [read_image(p) for p in paths[:batch_size]]
    batch = torch.from_numpy(np.stack(frames))
    vbkernels.decode_depth(batch)  # warm up (library load, thread pool)
    start = time.perf_counter()
    repeats = max(1, len(paths) // len(frames))
    for _ in range(repeats):
        vbkernels.decode_depth(batch)
    return _rate(repeats * len(frames), time.perf_counter() - start)


def _plain_one(args) -> None:
    path, out = args
    from PIL import Image

    import vbkernels
    from vbkernels.files import npy_bytes, png_bytes, write_atomic
    from vbkernels.pipeline import depth_to_png16

    depth = vbkernels.decode_depth(np.asarray(Image.open(path).convert("RGB")))
    stem = Path(out) / Path(path).stem
    write_atomic(stem.with_name(stem.name + ".depth.npy"), npy_bytes(depth), overwrite=True)
    write_atomic(stem.with_name(stem.name + ".depth.png"),
                 png_bytes(depth_to_png16(depth, 1000.0), compress_level=1), overwrite=True)


def time_plain_pool(paths, workers: int) -> float:
    from vbkernels.pipeline.local import single_threaded

    out = Path(tempfile.mkdtemp(prefix="vbk-e2e-plain-"))
    try:
        start = time.perf_counter()
        # Forked after this process ran the kernels: one thread each (see single_threaded).
        with multiprocessing.get_context("fork").Pool(workers, single_threaded) as pool:
            pool.map(_plain_one, [(p, out) for p in paths], chunksize=1)
        return _rate(len(paths), time.perf_counter() - start)
    finally:
        shutil.rmtree(out, ignore_errors=True)


def output_costs(paths, repeats: int = 3) -> dict[str, float]:
    """Milliseconds per frame to encode each output kind of a depth frame."""
    import torch

    from vbkernels.pipeline import build_task, read_image

    task = build_task("depth")
    depth = task.decode(torch.from_numpy(np.stack([read_image(paths[0])])))["depth"][0]
    arrays = {"depth": depth.numpy()}
    costs = {}
    for kind in ("npy", "png", "preview"):
        try:
            task.encode(arrays, [kind])
        except ImportError:  # preview without matplotlib
            continue
        start = time.perf_counter()
        for _ in range(repeats):
            task.encode(arrays, [kind])
        costs[kind] = 1000 * (time.perf_counter() - start) / repeats
    return costs


def make_eval_fixture(root: Path, frames: int, *, seed: int = 0, noise: int = 6) -> Path:
    """A NYUv2-layout fixture under ``root/NYU`` and noisy walk-painted predictions of its
    depth x1.05 under ``root/gen`` (the pairing's layout); returns ``root``."""
    from PIL import Image

    import vbkernels
    from vbkernels.eval import write_fixture

    fixture = write_fixture("nyuv2", root / "NYU", n=frames, seed=seed)
    rng = np.random.default_rng(seed)
    for sample, depth in zip(fixture.samples, fixture.values):
        base = vbkernels.encode_depth(depth * np.float32(1.05)).astype(np.int16)
        noisy = np.clip(base + rng.integers(-noise, noise + 1, base.shape), 0, 255)
        path = root / "gen" / sample.name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(noisy.astype(np.uint8)).save(path)
    return root


def time_eval(frames: int, log=print, device: str = "cpu") -> dict:
    """frames/s of ``evaluate`` + ``write_outputs`` and of the decode pipeline alone over
    the same ``frames`` NYU-sized predictions."""
    from vbkernels.eval import evaluate, write_outputs
    from vbkernels.pipeline import decode_files

    root = Path(tempfile.mkdtemp(prefix="vbk-e2e-eval-"))
    try:
        log(f"making a {frames}-frame NYUv2 fixture and predictions in {root} ...")
        make_eval_fixture(root, frames)
        start = time.perf_counter()
        result = evaluate("depth", [root / "gen"], dataset="nyuv2", gt_root=root / "NYU",
                          device=device)
        write_outputs(result, root / "out")
        eval_seconds = time.perf_counter() - start
        if result.count["found"] != frames or result.count["failed"]:
            raise RuntimeError(f"eval scored {result.count}")
        start = time.perf_counter()
        summary = decode_files([root / "gen"], "depth", root / "dec", device=device,
                               manifest=False)
        decode_seconds = time.perf_counter() - start
        return {f"eval depth nyuv2 ({frames} 640x480 frames)": _rate(frames, eval_seconds),
                f"decode pipeline, same {frames} frames": _rate(summary.frames,
                                                                decode_seconds)}
    finally:
        shutil.rmtree(root, ignore_errors=True)


def run(frames: int = 16, height: int = 1080, width: int = 1920, folder: Path | None = None,
        log=print, rounds: int = 2, eval_frames: int = 0) -> dict:
    from vbkernels.pipeline import default_workers

    workers = default_workers()
    temp = None
    if folder is None:
        temp = folder = Path(tempfile.mkdtemp(prefix="vbk-e2e-in-"))
    try:
        paths = sorted(Path(folder).glob("*.png"))[:frames]
        if not paths:
            log(f"making {frames} noisy {width}x{height} depth PNGs in {folder} ...")
            paths = make_folder(Path(folder), frames, height, width)
        sizes = [p.stat().st_size for p in paths]
        # The first decode call finds and loads the backends (seconds); pay it once here,
        # before any row (forked workers inherit the loaded state).
        import vbkernels

        vbkernels.decode_depth(np.zeros((1, 8, 8, 3), np.uint8))
        result = {
            "frames": len(paths), "size": f"{width}x{height}", "workers": workers,
            "mean_file_mb": float(np.mean(sizes)) / 1e6, "loadavg_before": os.getloadavg(),
            "rounds": rounds,
            "cpu": platform.processor() or platform.machine(), "rows": {}}
        rows = result["rows"]
        steps = [
            ("pipeline, defaults", lambda: time_pipeline(folder, None)),
            ("pipeline, --workers 1", lambda: time_pipeline(folder, 1)),
            ("read only, processes", lambda: time_read(paths, workers)),
            ("read only, threads", lambda: time_read(paths, workers, threads=True)),
            ("read only, 1 process", lambda: time_read(paths, 1)),
            ("kernel alone (batches of 16)", lambda: time_kernel(paths)),
            ("plain multiprocessing pool", lambda: time_plain_pool(paths, workers)),
        ]
        for round_ in range(rounds):  # best of the rounds: other load only slows a row down
            for name, step in steps:
                fps = step()
                rows[name] = max(rows.get(name, 0.0), fps)
                log(f"round {round_ + 1}: {name:32s} {fps:8.2f} frames/s")
        result["output_ms"] = output_costs(paths)
        result["eval_rows"] = time_eval(eval_frames, log) if eval_frames else {}
        for name, fps in result["eval_rows"].items():
            log(f"{name:32s} {fps:8.2f} frames/s")
        result["loadavg_after"] = os.getloadavg()
        return result
    finally:
        if temp is not None:
            shutil.rmtree(temp, ignore_errors=True)


def markdown(result: dict) -> str:
    rows = result["rows"]
    plain = rows["plain multiprocessing pool"]
    lines = [f"{result['frames']} noisy {result['size']} depth PNGs "
             f"({result['mean_file_mb']:.1f} MB each), {result['workers']} worker(s), best of "
             f"{result['rounds']} round(s), "
             f"load average {result['loadavg_before'][0]:.1f} before / "
             f"{result['loadavg_after'][0]:.1f} after",
             "", "| run | frames/s | vs plain pool |", "|---|---:|---:|"]
    lines += [f"| {name} | {fps:.2f} | {fps / plain:.2f}x |" for name, fps in rows.items()]
    costs = ", ".join(f"{kind} {ms:.0f} ms" for kind, ms in result["output_ms"].items())
    lines += ["", f"Encode cost per frame (one core): {costs}."]
    evals = result.get("eval_rows") or {}
    if evals:
        lines += ["", "| eval (run once) | frames/s |", "|---|---:|"]
        lines += [f"| {name} | {fps:.2f} |" for name, fps in evals.items()]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vbkernels.benchmark.e2e",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", default="1920x1080", help="WIDTHxHEIGHT")
    parser.add_argument("--folder", type=Path, help="use (or fill) this folder of PNGs")
    parser.add_argument("--rounds", type=int, default=2, help="best of this many runs per row")
    parser.add_argument("--eval-frames", type=int, default=654,
                        help="frames of the eval row (0 skips it)")
    parser.add_argument("--out", type=Path, help="write e2e.json and e2e.md here")
    parser.add_argument("--s3-frames", type=int, default=0, metavar="N",
                        help="also write N small frames to a local S3 server as files, "
                             "WebDataset and Parquet (vbkernels.benchmark.storage_e2e)")
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))
    result = run(args.frames, height, width, args.folder, rounds=args.rounds,
                 eval_frames=args.eval_frames)
    text = markdown(result)
    if args.s3_frames:
        from . import storage_e2e

        result["storage"] = storage_e2e.run(args.s3_frames)
        text += "\n\n" + storage_e2e.markdown(result["storage"])
    print(text)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "e2e.json").write_text(json.dumps(result, indent=2))
        (args.out / "e2e.md").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
