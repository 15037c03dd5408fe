"""One small, oddly strided call of every CUDA kernel op, for compute-sanitizer.

    compute-sanitizer --tool memcheck --error-exitcode 1 python csrc/memcheck_smoke.py

(``python csrc/memcheck_smoke.py cpu`` runs the same calls on the cpu backend.)

Each op runs on views whose last element sits at the end of its allocation (so an
out-of-bounds access is reported, not absorbed by padding), with a palette larger than one
256-colour tile. Exits non-zero if an output differs from the torch reference.
"""

from __future__ import annotations

import sys

import torch

from vbkernels._dispatch import load_backend


def main(backend: str) -> int:
    device = "cuda" if backend == "cuda" else "cpu"
    ours_ops, ref = load_backend(backend).ops, load_backend("torch").ops
    gen = torch.Generator().manual_seed(0)
    rgb = torch.randint(0, 256, (2, 3, 13, 17), generator=gen, dtype=torch.uint8).movedim(1, -1)
    palette = torch.randint(0, 256, (300, 3), generator=gen).float()
    t = torch.rand(2, 13, 17, generator=gen)
    normals = torch.nn.functional.normalize(torch.randn(2, 13, 17, 3, generator=gen), dim=-1)
    labels = torch.randint(-2, 302, (2, 13, 17), generator=gen)
    ignore = torch.tensor([1, 2, 3], dtype=torch.uint8)
    cases = {
        "hilbert_project": lambda d: (rgb.to(d), torch.empty(2, 13, 17, device=d)),
        "decode_depth": lambda d: (rgb.to(d), torch.empty(2, 13, 17, device=d),
                                   torch.empty(2, 13, 17, device=d), -3.0, 10 / 3, 20.0),
        "decode_normals": lambda d: (rgb.to(d), torch.empty(2, 13, 17, 3, device=d),
                                     torch.empty(2, 13, 17, device=d), True, 1e-6),
        "decode_segmentation": lambda d: (rgb.to(d), palette.to(d),
                                          torch.empty(2, 13, 17, dtype=torch.int16, device=d),
                                          torch.empty(2, 13, 17, device=d), 400.0, 999),
        "hilbert_walk": lambda d: (t.to(d), torch.empty(2, 13, 17, 3, dtype=torch.uint8, device=d)),
        "encode_depth": lambda d: (t.to(d) * 50, torch.empty(2, 13, 17, 3, device=d), -3.0, 10 / 3),
        "encode_normals": lambda d: (normals.to(d), torch.empty(2, 13, 17, 3, dtype=torch.uint8,
                                                                device=d), False),
        "encode_segmentation": lambda d: (labels.to(d), palette.to(torch.uint8).to(d),
                                          torch.empty(2, 13, 17, 3, dtype=torch.uint8, device=d),
                                          ignore.to(d)),
    }
    failed = []
    for op, make in cases.items():
        ours, theirs = make(device), make("cpu")
        ours_ops[op](*ours)
        ref[op](*theirs)
        if device == "cuda":
            torch.cuda.synchronize()
        for got, want in zip(ours, theirs):
            if isinstance(got, torch.Tensor) and got.data_ptr() != 0 and want.dtype == got.dtype:
                if not torch.allclose(got.cpu().double(), want.double(), rtol=1e-5, atol=1e-5,
                                      equal_nan=True):
                    failed.append(op)
    print(f"memcheck smoke ({backend}):", "FAILED " + ", ".join(sorted(set(failed))) if failed else "ok")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "cuda"))
