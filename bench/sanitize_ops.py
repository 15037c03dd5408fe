"""One small call of every op on every requested backend, checked against the torch reference.

Made to run under ``compute-sanitizer --tool memcheck`` (see ``device_check.sh``): small odd
shapes, a strided view, a channels-first float16 batch, a view whose last element is the last
byte of its allocation (so an out-of-bounds read is reported, not absorbed by padding) and a
300-colour palette (more than one palette tile on every backend) touch every kernel's edge
masks without making the sanitizer run long. Also useful without it: any mismatch or
exception is printed and the exit status is 1. The tests run it on the CPU backends.

    python3 bench/sanitize_ops.py --device cuda --backends triton,cuda
    compute-sanitizer --tool memcheck --error-exitcode 1 python3 bench/sanitize_ops.py
    python3 bench/sanitize_ops.py --device cpu --backends cpu,numpy   # no GPU
"""

from __future__ import annotations

import argparse
import sys
import traceback

import torch

import vbkernels
from vbkernels import _dispatch


def _inputs(device: torch.device) -> dict:
    gen = torch.Generator(device="cpu").manual_seed(7)
    u8 = torch.randint(0, 256, (2, 37, 53, 3), dtype=torch.uint8, generator=gen)
    f16_chw = torch.rand((1, 29, 31, 3), generator=gen).to(torch.float16).permute(0, 3, 1, 2)
    palette = torch.randint(0, 256, (19, 3), dtype=torch.uint8, generator=gen)
    depth = vbkernels.inverse_power_transform(torch.rand((2, 23, 41), generator=gen) * 0.99)
    normals = torch.nn.functional.normalize(torch.randn((2, 23, 41, 3), generator=gen), dim=-1)
    labels = torch.randint(-1, 21, (2, 23, 41), generator=gen)
    moved = {
        "u8": u8, "f16_chw": f16_chw, "palette": palette, "depth": depth.float(),
        "t": torch.rand((3, 17, 19), generator=gen), "normals": normals, "labels": labels,
    }
    moved = {k: v.to(device) for k, v in moved.items()}
    moved["u8_strided"] = moved["u8"][:, ::2, 1:, :]  # odd strides, offset start
    # Channels-first storage read as channels-last: the view's last element is the last
    # byte of its allocation.
    moved["u8_chw_storage"] = torch.randint(0, 256, (2, 3, 13, 17), dtype=torch.uint8,
                                            generator=gen).to(device).movedim(1, -1)
    moved["palette300"] = torch.randint(0, 256, (300, 3), generator=gen).float().to(device)
    moved["labels300"] = torch.randint(-2, 302, (2, 13, 17), generator=gen).to(device)
    # Instance maps: 8 x 8 blocks of 8 colours, cut to an odd size (partial tiles).
    blocks = torch.randint(0, 8, (2, 5, 7, 3), generator=gen).to(torch.uint8) * 36
    tiles = blocks.repeat_interleave(8, 1).repeat_interleave(8, 2)[:, :37, :53]
    moved["instances"] = tiles.to(device)
    moved["instances_f16_chw"] = (tiles.double() / 255).half().permute(0, 3, 1, 2).to(device)
    return moved


def _cases(x: dict) -> list[tuple[str, str, callable]]:
    """(name, kernel op it reaches, call taking a backend name)."""
    v = vbkernels
    return [
        ("hilbert_project u8", "hilbert_project", lambda b: v.hilbert_project(x["u8"], backend=b)),
        ("decode_depth u8 +distance", "decode_depth",
         lambda b: v.decode_depth(x["u8"], return_distance=True, backend=b)),
        ("decode_depth u8 strided", "decode_depth",
         lambda b: v.decode_depth(x["u8_strided"], backend=b)),
        ("decode_depth f16 chw max_depth", "decode_depth",
         lambda b: v.decode_depth(x["f16_chw"], max_depth=50.0, backend=b)),
        ("decode_normals u8 +norm", "decode_normals",
         lambda b: v.decode_normals(x["u8"], return_norm=True, backend=b)),
        ("decode_normals f16 chw opencv", "decode_normals",
         lambda b: v.decode_normals(x["f16_chw"], convention="opencv", backend=b)),
        ("decode_segmentation u8 K=19", "decode_segmentation",
         lambda b: v.decode_segmentation(x["u8"], x["palette"], max_distance=60.0,
                                         return_distance=True, backend=b)),
        ("decode_segmentation f16 chw uint8 labels", "decode_segmentation",
         lambda b: v.decode_segmentation(x["f16_chw"], x["palette"], out_dtype=torch.uint8,
                                         backend=b)),
        ("decode_segmentation u8 K=300 tail view", "decode_segmentation",
         lambda b: v.decode_segmentation(x["u8_chw_storage"], x["palette300"], max_distance=20.0,
                                         ignore_index=999, out_dtype=torch.int16,
                                         return_distance=True, backend=b)),
        ("decode_colormap u8 strided turbo", "decode_colormap",
         lambda b: v.decode_colormap(x["u8_strided"], "turbo", max_distance=20.0,
                                     return_distance=True, backend=b)),
        ("decode_colormap u8 tail view", "decode_colormap",
         lambda b: v.decode_colormap(x["u8_chw_storage"], "turbo", backend=b)),
        ("decode_colormap f16 chw viridis", "decode_colormap",
         lambda b: v.decode_colormap(x["f16_chw"], "viridis", vmax=10.0, backend=b)),
        ("hilbert_walk uint8", "hilbert_walk",
         lambda b: v.hilbert_walk(x["t"], dtype=torch.uint8, backend=b)),
        ("encode_depth uint8 chw", "encode_depth",
         lambda b: v.encode_depth(x["depth"], layout="chw", backend=b)),
        ("encode_depth float32", "encode_depth",
         lambda b: v.encode_depth(x["depth"], dtype=torch.float32, backend=b)),
        ("encode_normals uint8", "encode_normals",
         lambda b: v.encode_normals(x["normals"], backend=b)),
        ("encode_segmentation", "encode_segmentation",
         lambda b: v.encode_segmentation(x["labels"], x["palette"], backend=b)),
        ("decode_instances u8", "colour_histogram",
         lambda b: v.decode_instances(x["instances"], min_pixels=16, backend=b)),
        ("decode_instances f16 chw no background", "colour_histogram",
         lambda b: v.decode_instances(x["instances_f16_chw"], background=None, min_pixels=40,
                                      backend=b)),
        ("encode_segmentation K=300 ignore colour", "encode_segmentation",
         lambda b: v.encode_segmentation(x["labels300"], x["palette300"],
                                         ignore_color=(1, 2, 3), backend=b)),
    ]


def _same(got, want) -> bool:
    if isinstance(want, tuple):
        return len(got) == len(want) and all(_same(g, w) for g, w in zip(got, want))
    if got.shape != want.shape or got.dtype != want.dtype:
        return False
    if not want.is_floating_point():
        return torch.equal(got, want)
    return torch.allclose(got.double(), want.double(), rtol=1e-5, atol=1e-5, equal_nan=True)


def check(backend: str, device: torch.device) -> int:
    """Run every case on ``backend``; returns the number of failures."""
    try:
        ops = _dispatch.load_backend(backend).ops
    except _dispatch.BackendUnavailable as exc:
        print(f"{backend}: not loaded ({exc})")
        return 1
    failures = 0
    for name, op, call in _cases(_inputs(device)):
        if op not in ops:
            print(f"{backend:>7} {name:<42} not implemented by this backend")
            continue
        try:
            got = call(backend)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            ok = _same(got, call("torch"))
        except Exception:
            traceback.print_exc()
            ok = False
        failures += not ok
        print(f"{backend:>7} {name:<42} {'ok' if ok else 'MISMATCH OR ERROR'}", flush=True)
    return failures


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", choices=("cpu", "cuda"))
    parser.add_argument("--backends", default="triton,cuda")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device")
        return 1
    device = torch.device(args.device)
    failures = sum(check(b.strip(), device) for b in args.backends.split(",") if b.strip())
    print(f"{failures} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
