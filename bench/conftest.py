"""pytest-benchmark suite options: which device and workload to time.

Run with ``pytest bench/ --benchmark-only`` (not part of ``pytest`` on ``tests/``). The
report (``python -m bench``) covers every workload at once; this suite times one workload
per session so pytest-benchmark can compare runs (``--benchmark-autosave``,
``--benchmark-compare``).
"""

from __future__ import annotations

import pytest
import torch

from vbkernels.benchmark.workloads import ALL_WORKLOADS, CPU_TARGET, GPU_TARGET


def pytest_addoption(parser):
    group = parser.getgroup("vbkernels bench")
    group.addoption("--bench-device", default="auto", choices=("auto", "cpu", "cuda"),
                    help="device of the torch/triton/cuda providers (auto: cuda if present)")
    group.addoption("--bench-workload", default=None, choices=sorted(ALL_WORKLOADS),
                    help=f"workload to time (default: {GPU_TARGET} on cuda, {CPU_TARGET} on cpu)")
    group.addoption("--bench-rounds", type=int, default=None,
                    help="timed rounds per benchmark (default: cuda 20, cpu 3)")


@pytest.fixture(scope="session")
def bench_device(request) -> torch.device:
    name = request.config.getoption("--bench-device")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        pytest.skip("--bench-device cuda: torch sees no CUDA device")
    return torch.device(name)


@pytest.fixture(scope="session")
def bench_workload(request, bench_device):
    name = request.config.getoption("--bench-workload")
    if name is None:
        name = GPU_TARGET if bench_device.type == "cuda" else CPU_TARGET
    return ALL_WORKLOADS[name]


@pytest.fixture(scope="session")
def bench_rounds(request, bench_device) -> int:
    rounds = request.config.getoption("--bench-rounds")
    return rounds or (20 if bench_device.type == "cuda" else 3)


@pytest.fixture(scope="session")
def bench_images():
    """Images per (workload, device), made once per session and shared by every benchmark."""
    from vbkernels.benchmark.workloads import make_images

    made = {}

    def images(workload, device):
        key = (workload.name, device.type)
        if key not in made:
            made[key] = make_images(workload, device)
        return made[key]

    return images
