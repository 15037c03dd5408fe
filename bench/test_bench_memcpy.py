"""pytest-benchmark: the memcpy ceiling, a torch ``copy_`` moving as many bytes as each op.

Compare an op's time in the same group with this row: their ratio is the op's % of memcpy.
"""

from __future__ import annotations

import pytest
import torch

from vbkernels.benchmark.ops import OPS, build_case


@pytest.mark.parametrize("op", OPS, ids=lambda op: op.name)
def test_memcpy(benchmark, op, bench_device, bench_workload, bench_rounds, bench_images):
    case = build_case(op, bench_workload, bench_images(bench_workload, bench_device))
    half = (case.bytes_read + case.bytes_written) // 2
    src = torch.ones(half, dtype=torch.uint8, device=bench_device)
    dst = torch.empty_like(src)

    def copy():
        dst.copy_(src)
        if bench_device.type == "cuda":
            torch.cuda.synchronize(bench_device)

    benchmark.group = f"{op.name} @ {bench_workload.name}"
    benchmark.pedantic(copy, rounds=bench_rounds, iterations=1, warmup_rounds=2)
    benchmark.extra_info["bytes_moved"] = 2 * half
