"""Timers, the memcpy ceiling and peak-memory probes, for CPU and CUDA alike.

GPU calls are timed with CUDA events around each call, after a write to a buffer larger
than the L2 cache so no call reads its input from cache (as ``triton.testing.do_bench``
does). CPU calls are timed with ``perf_counter``. Warm-up calls (JIT compilation,
autotuning, ``torch.compile``) are never part of the samples.
"""

from __future__ import annotations

import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

# Larger than any current GPU's L2 (H100: 50 MB, H200: 60 MB, B200: 126 MB).
_L2_FLUSH_BYTES = 256 << 20


@dataclass
class Samples:
    """Per-call times in seconds (warm-up excluded) and their summary."""

    times: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def quartiles(self) -> tuple[float, float]:
        if len(self.times) < 2:
            return self.times[0], self.times[0]
        q = statistics.quantiles(self.times, n=4, method="inclusive")
        return q[0], q[2]

    def middle(self, scale: float = 1.0) -> dict:
        """Median and quartiles in seconds, times ``scale`` (a band's time scaled up)."""
        q1, q3 = self.quartiles
        return {"median_s": self.median * scale, "q1_s": q1 * scale, "q3_s": q3 * scale}

    def summary(self) -> dict:
        q1, q3 = self.quartiles
        return {
            "times_s": self.times,
            "median_s": self.median,
            "q1_s": q1,
            "q3_s": q3,
            "min_s": min(self.times),
            "max_s": max(self.times),
        }


class Timer:
    """Times a zero-argument callable on one device type."""

    def __init__(self, device: torch.device):
        self.device = device
        self._flush = None
        if device.type == "cuda":
            self._flush = torch.empty(_L2_FLUSH_BYTES, dtype=torch.uint8, device=device)

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def once(self, fn: Callable[[], object]) -> float:
        """Wall time of one call, synchronised (for warm-up and size probes)."""
        self.sync()
        start = time.perf_counter()
        fn()
        self.sync()
        return time.perf_counter() - start

    def samples(self, fn: Callable[[], object], repeats: int) -> Samples:
        if self.device.type == "cuda":
            return self._cuda_samples(fn, repeats)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return Samples(times)

    def _cuda_samples(self, fn, repeats: int) -> Samples:
        events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
                  for _ in range(repeats)]
        self.sync()
        for start, end in events:
            self._flush.zero_()
            start.record()
            fn()
            end.record()
        self.sync()
        return Samples([start.elapsed_time(end) / 1e3 for start, end in events])


class MemcpyCeiling:
    """Time of ``torch`` ``copy_`` moving a given number of bytes (half read, half written).

    An op that reads R and writes W bytes is compared with a copy of (R + W) / 2 bytes, so
    both move the same traffic; the ratio of their times is the op's % of memcpy.
    """

    def __init__(self, timer: Timer, repeats: int):
        self.timer = timer
        self.repeats = repeats
        self._cache: dict[int, Samples] = {}

    def samples(self, traffic_bytes: int) -> Samples:
        half = max(1, traffic_bytes // 2)
        if half not in self._cache:
            src = torch.ones(half, dtype=torch.uint8, device=self.timer.device)
            dst = torch.empty_like(src)
            copy = lambda: dst.copy_(src)  # noqa: E731
            self.timer.once(copy)
            self._cache[half] = self.timer.samples(copy, self.repeats)
            del src, dst
        return self._cache[half]

    def records(self) -> list[dict]:
        return [{"bytes_moved": 2 * half, **s.summary()} for half, s in sorted(self._cache.items())]


def _proc_status_kib(key: str) -> int | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_rss_peak() -> bool:
    """Reset the kernel's peak-RSS mark (Linux >= 4.0) so a peak is per measurement."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
        return True
    except OSError:
        return False


class PeakMemory:
    """Extra memory a measurement needed beyond what was allocated when it started.

    CUDA: ``torch.cuda.max_memory_allocated`` minus the allocation at the start. CPU: the
    peak resident set (VmHWM, reset per measurement) minus the resident set at the start;
    where the peak cannot be reset, the process-wide ``ru_maxrss`` (then ``exact`` is False).
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.method = ""
        self._start = 0

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self._start = torch.cuda.memory_allocated(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.method = "torch.cuda.max_memory_allocated - allocated at start"
        elif _reset_rss_peak() and _proc_status_kib("VmRSS") is not None:
            self._start = _proc_status_kib("VmRSS") * 1024
            self.method = "VmHWM (reset per measurement) - VmRSS at start"
        else:
            self._start = 0
            self.method = "ru_maxrss (process-wide peak so far)"
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device)
        elif self.method.startswith("VmHWM"):
            peak = (_proc_status_kib("VmHWM") or 0) * 1024
        else:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        self.extra_bytes = max(0, peak - self._start)
