"""The working-memory bound: decoding needs < 256 MB beyond its input and output at any
batch size, on the torch reference and the NumPy baseline.

Both work in fixed-size chunks, so the bound does not depend on the batch. CI checks it on
4K batches of 2-4 frames (already 4-10x the bound if a backend materialised per-segment or
per-palette intermediates for the whole batch); the full 16 x 3840 x 2160 batch was
measured with this test (VBKERNELS_MEMORY_BATCH=16) at 42 MB (torch depth), 25 MB (numpy depth) and
158 MB (torch segmentation, K=19) on the 2-core CI machine, in 1.5-6 minutes each.

Each case runs in a fresh interpreter so that its peak resident set size (ru_maxrss)
belongs to that decode alone: the child allocates input and output first, records its
RSS, decodes into the preallocated output, and reports the growth of the peak.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

BOUND_MB = 256

CHILD = r"""
import json, resource, sys
import numpy as np, torch
import vbkernels as vb
torch.set_num_threads(2)
backend, op, batch = sys.argv[1], sys.argv[2], int(sys.argv[3])
rgb = torch.randint(0, 256, (batch, 2160, 3840, 3), dtype=torch.uint8)
palette = torch.randint(0, 256, (19, 3))
if op == "depth":
    out = torch.empty(batch, 2160, 3840)
    run = lambda x, o: vb.decode_depth(x, backend=backend, out=o)
else:
    out = torch.empty(batch, 2160, 3840, dtype=torch.uint8)
    run = lambda x, o: vb.decode_segmentation(x, palette, out_dtype=torch.uint8,
                                              backend=backend, out=o)
if backend == "numpy":
    rgb, out = rgb.numpy(), out.numpy()
out[...] = 0  # touch every page of the output before measuring
run(rgb[:1, :8], out[:1, :8])  # warm up imports and one-off allocations
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
run(rgb, out)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"peak_growth_mb": (after - before) / 1024}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("backend,op,batch", [("torch", "depth", 2), ("numpy", "depth", 4),
                                              ("torch", "segmentation", 2)])
def test_4k_batch_within_memory_bound(backend, op, batch):
    batch = int(os.environ.get("VBKERNELS_MEMORY_BATCH", batch))
    result = subprocess.run([sys.executable, "-c", CHILD, backend, op, str(batch)],
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    growth = json.loads(result.stdout.strip().splitlines()[-1])["peak_growth_mb"]
    print(f"{backend} {op}: peak working memory {growth:.0f} MB")
    assert growth < BOUND_MB
