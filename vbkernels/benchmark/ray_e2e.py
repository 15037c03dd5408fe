"""The Ray engine on the end-to-end benchmark folder, beside the local pipeline.

``python -m vbkernels.benchmark.ray_e2e [--frames N] [--size 1920x1080] [--folder DIR]``

The same folder as ``vbkernels.benchmark.e2e`` (noisy 1080p depth PNGs, outputs
``.depth.npy`` + 16-bit ``.depth.png``) through

- the local pipeline with defaults (``vbkernels.pipeline.decode_files``), and
- the Ray engine (``vbkernels.distributed.decode_files``) on a local Ray started for the
  run, with its parts timed apart: ``ray.init`` (the cluster's processes), the first run
  (actor start-up: a Python process per actor importing torch and vbkernels, plus the
  work) and a second run on the same cluster into a fresh folder (actors start again:
  Ray Data starts a pool per dataset).

and, as a user meets it, the command ``vbkernels decode depth DIR -o OUT --engine ray``
in a fresh process: seconds to its first output file and to its exit.

The target: the Ray run, start-up included (``ray.init`` + first run + ``ray.shutdown``),
at most 1.5x the local pipeline's wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .e2e import make_folder

TARGET_RATIO = 1.5


def _timed_run(engine, folder: Path, **options) -> tuple[float, int]:
    """Seconds and frames of one run of ``engine.decode_files`` into a fresh folder."""
    out = Path(tempfile.mkdtemp(prefix="vbk-ray-e2e-"))
    try:
        start = time.perf_counter()
        summary = engine.decode_files([folder], "depth", out, device="cpu", manifest=False,
                                      **options)
        seconds = time.perf_counter() - start
        if summary.failed:
            raise RuntimeError(f"run failed: {summary.failed}")
        return seconds, summary.frames
    finally:
        shutil.rmtree(out, ignore_errors=True)


def time_ray(folder: Path) -> dict:
    """The Ray engine's wall time from nothing to a shut-down cluster, in parts."""
    import ray

    from vbkernels import distributed

    start = time.perf_counter()
    distributed.start_local_ray(include_dashboard=False, log_to_driver=False)
    init = time.perf_counter() - start
    try:
        first, frames = _timed_run(distributed, folder)
        second, _ = _timed_run(distributed, folder)
    finally:
        stop = time.perf_counter()
        ray.shutdown()
        shutdown = time.perf_counter() - stop
    return {"init_s": init, "first_run_s": first, "second_run_s": second,
            "shutdown_s": shutdown, "total_s": init + first + shutdown, "frames": frames}


def time_command(folder: Path) -> dict:
    """``vbkernels decode depth FOLDER --engine ray`` in a new process (its own local Ray):
    seconds from the start to the first output file on disk, and to the exit."""
    out = Path(tempfile.mkdtemp(prefix="vbk-ray-cli-"))
    try:
        start = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "-m", "vbkernels", "decode", "depth", str(folder), "-o",
             str(out), "--engine", "ray", "--quiet"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        first = None
        while process.poll() is None:
            if first is None and any(out.glob("*.depth.npy")):
                first = time.perf_counter() - start
            time.sleep(0.02)
        total = time.perf_counter() - start
        if process.returncode != 0:
            raise RuntimeError(f"the command failed: {process.stderr.read()[-2000:]}")
        return {"first_output_s": first if first is not None else total, "total_s": total}
    finally:
        shutil.rmtree(out, ignore_errors=True)


def run(frames: int = 32, height: int = 1080, width: int = 1920, folder: Path | None = None,
        log=print) -> dict:
    from vbkernels import pipeline

    temp = None
    if folder is None:
        temp = folder = Path(tempfile.mkdtemp(prefix="vbk-ray-e2e-in-"))
    try:
        folder = Path(folder)
        if len(list(folder.glob("*.png"))) < frames:
            log(f"making {frames} noisy {width}x{height} depth PNGs in {folder} ...")
            make_folder(folder, frames, height, width)
        import vbkernels

        vbkernels.decode_depth(__import__("numpy").zeros((1, 8, 8, 3), "uint8"))  # load backends
        load_before = os.getloadavg()
        local_s, local_frames = _timed_run(pipeline, folder)
        log(f"local pipeline: {local_s:.1f} s ({local_frames / local_s:.2f} frames/s)")
        result = {"frames": local_frames, "size": f"{width}x{height}", "cpus": os.cpu_count(),
                  "local_s": local_s, "ray": time_ray(folder),
                  "command": time_command(folder), "loadavg_before": load_before}
        result["loadavg_after"] = os.getloadavg()
        result["ratio"] = result["ray"]["total_s"] / local_s
        log(markdown(result))
        return result
    finally:
        if temp is not None:
            shutil.rmtree(temp, ignore_errors=True)


def markdown(result: dict) -> str:
    ray_ = result["ray"]
    n = result["frames"]
    verdict = "meets" if result["ratio"] <= TARGET_RATIO else "misses"
    rows = [
        ("local pipeline, defaults", result["local_s"], True),
        ("Ray: `ray.init` (local cluster)", ray_["init_s"], False),
        ("Ray: first run (actor start-up + work)", ray_["first_run_s"], True),
        ("Ray: second run, same cluster", ray_["second_run_s"], True),
        ("Ray: `ray.shutdown`", ray_["shutdown_s"], False),
        ("Ray, start-up included (init + first run + shutdown)", ray_["total_s"], True),
        ("`vbkernels decode ... --engine ray`: first output file",
         result["command"]["first_output_s"], False),
        ("`vbkernels decode ... --engine ray`: whole command", result["command"]["total_s"],
         True),
    ]
    load = (f"{result['loadavg_before'][0]:.1f} before / "
            f"{result['loadavg_after'][0]:.1f} after")
    title = f"{n} noisy {result['size']} depth PNGs, {result['cpus']} CPU(s), load average {load}"
    lines = [title, "", "| run | seconds | frames/s |", "|---|---:|---:|"]
    lines += [f"| {name} | {seconds:.1f} | {f'{n / seconds:.2f}' if rate else ''} |"
              for name, seconds, rate in rows]
    lines += ["", f"Ray / local wall time: {result['ratio']:.2f}x ({verdict} the "
                  f"{TARGET_RATIO}x target)."]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vbkernels.benchmark.ray_e2e",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--size", default="1920x1080", help="WIDTHxHEIGHT")
    parser.add_argument("--folder", type=Path, help="use (or fill) this folder of PNGs")
    parser.add_argument("--out", type=Path, help="write ray_e2e.json and ray_e2e.md here")
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))
    result = run(args.frames, height, width, args.folder, log=print)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "ray_e2e.json").write_text(json.dumps(result, indent=2))
        (args.out / "ray_e2e.md").write_text(markdown(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
