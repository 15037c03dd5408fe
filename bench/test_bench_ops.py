"""pytest-benchmark: every op x provider on one workload (``--bench-workload``).

Providers that cannot run here are skipped with the reason (this is a benchmark suite, not
a test suite). Each benchmark's ``extra_info`` holds pixels, bytes moved, Mpx/s and GB/s
so saved runs carry the figures the report shows.
"""

from __future__ import annotations

import pytest
import torch

from vbkernels.benchmark import providers as prov
from vbkernels.benchmark.ops import OPS, build_case
from vbkernels.benchmark.workloads import DTYPES


def _synced(call, device: torch.device):
    if device.type != "cuda":
        return call

    def run():
        call()
        torch.cuda.synchronize(device)

    return run


@pytest.mark.parametrize("provider", prov.PROVIDERS, ids=lambda p: p.name)
@pytest.mark.parametrize("op", OPS, ids=lambda op: op.name)
def test_op(benchmark, op, provider, bench_device, bench_workload, bench_rounds, bench_images):
    reason = prov.unavailable(provider, bench_device)
    if reason is None:
        reason = prov.skip_reason(provider, op, DTYPES[bench_workload.dtype])
    if reason is not None:
        pytest.skip(reason)
    device = provider.device(bench_device)
    case = build_case(op, bench_workload, bench_images(bench_workload, device))
    call = _synced(prov.bind(provider, case), device)
    benchmark.group = f"{op.name} @ {bench_workload.name}"
    benchmark.pedantic(call, rounds=bench_rounds, iterations=1, warmup_rounds=2)
    _record(benchmark, case)


def _record(benchmark, case) -> None:
    median = benchmark.stats.stats.median
    traffic = case.bytes_read + case.bytes_written
    benchmark.extra_info.update({
        "pixels": case.workload.pixels,
        "bytes_moved": traffic,
        "mpx_s": case.workload.pixels / median / 1e6,
        "gb_s": traffic / median / 1e9,
    })
