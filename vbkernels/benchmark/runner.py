"""Measure every (workload, op, provider) cell of a run and derive the report figures.

A cell is sized before it is timed: one call on a small crop (a quarter of the height and
width of one frame; for torch.compile, one compiled call at full size) estimates the
per-pixel cost, and a provider whose full-size calls would overrun ``cell_seconds`` is
measured on the largest crop that fits (one frame first, then halved height and width).
Eager providers also time a tiny crop (16 to 31 pixels a side): the per-call cost that
does not grow with the pixels (launches, syncs, a per-image histogram), so an op with a large
fixed cost, such as decode_instances on a GPU, is not cropped by extrapolating that cost to
a whole batch.
Rates are per pixel, so they stay comparable; the report marks every cropped cell.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

import torch

from . import providers as prov
from .ops import OpSpec, build_case, crop
from .timing import MemcpyCeiling, PeakMemory, Timer
from .workloads import DTYPES, Workload, make_images, smaller


@dataclass
class Settings:
    device: torch.device
    workloads: list[Workload]
    ops: list[OpSpec]
    providers: list[prov.Provider]
    repeats: int
    min_repeats: int = 3
    cell_seconds: float = 6.0
    max_seconds: float | None = None
    warmup: int = 1
    # Workloads torch.compile is measured on (None: all). Each compile costs tens of seconds
    # on a small CPU, so the default CPU run compiles for its target workload only.
    compile_workloads: frozenset | None = None
    # True: compile for the probe crop only. Dynamo unrolls the reference's chunk loop, so
    # compiling a whole 1080p frame takes minutes on a small CPU; the probe is one chunk.
    compile_probe_only: bool = False
    # True: also time the Triton segmentation strategies (see label_table.py).
    label_table: bool = False
    # (height, width) of the frame of the cpu decode_colormap section (see colormap.py);
    # None leaves the section out.
    colormap_frame: tuple[int, int] | None = None
    log: object = sys.stderr

    def as_dict(self) -> dict:
        return {
            "device": str(self.device),
            "workloads": [w.name for w in self.workloads],
            "ops": [op.name for op in self.ops],
            "providers": [p.name for p in self.providers],
            "repeats": self.repeats,
            "min_repeats": self.min_repeats,
            "cell_seconds": self.cell_seconds,
            "max_seconds": self.max_seconds,
            "warmup_calls": self.warmup,
            "compile_probe_only": self.compile_probe_only,
            "label_table": self.label_table,
            "colormap_frame": self.colormap_frame,
            "compile_workloads": None if self.compile_workloads is None
            else sorted(self.compile_workloads),
            "torch_threads": torch.get_num_threads(),
        }


@dataclass
class Cell:
    """One measurement (or the reason there is none), as it goes into the JSON."""

    op: str
    workload: str
    provider: str
    status: str  # "ok", "not run" or "failed"
    reason: str = ""
    data: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"op": self.op, "workload": self.workload, "provider": self.provider,
                "status": self.status, "reason": self.reason, **self.data}


class Runner:
    def __init__(self, settings: Settings):
        self.s = settings
        self.started = time.perf_counter()
        self._timers: dict[str, Timer] = {}
        self._ceilings: dict[str, MemcpyCeiling] = {}
        self._images: dict[tuple[str, str], torch.Tensor] = {}

    # ----------------------------------------------------------------- helpers

    def _timer(self, device: torch.device) -> Timer:
        if device.type not in self._timers:
            self._timers[device.type] = Timer(device)
            self._ceilings[device.type] = MemcpyCeiling(self._timers[device.type],
                                                        max(self.s.repeats, 5))
        return self._timers[device.type]

    def _full_images(self, w: Workload, device: torch.device) -> torch.Tensor:
        """The workload's images on ``device``; host copies are copies of the run device's
        images, so every provider decodes the same pixels."""
        key = (w.name, device.type)
        if key not in self._images:
            if device.type == self.s.device.type:
                self._images[key] = make_images(w, device)
            else:
                self._images[key] = self._full_images(w, self.s.device).to(device)
        return self._images[key]

    def over_time(self) -> bool:
        if self.s.max_seconds is None:
            return False
        return time.perf_counter() - self.started > self.s.max_seconds

    def _say(self, text: str) -> None:
        if self.s.log is not None:
            print(text, file=self.s.log, flush=True)

    # ----------------------------------------------------------------- sizing

    def _probe_workload(self, w: Workload) -> Workload:
        return w.scaled(1, max(1, w.height // 4), max(1, w.width // 4))

    def _fit(self, w: Workload, per_pixel: float, fixed: float = 0.0) -> tuple[Workload, float]:
        """The largest crop of ``w`` whose timed calls fit the cell budget, and its estimate
        (``fixed + per_pixel * pixels`` seconds a call)."""
        probe = self._probe_workload(w)
        calls = self.s.warmup + self.s.min_repeats
        candidate = w
        # Never below the probe: smaller crops would time call overhead, not pixels.
        while candidate is not None and candidate.pixels > probe.pixels:
            estimate = fixed + per_pixel * candidate.pixels
            if estimate * calls <= self.s.cell_seconds:
                return candidate, estimate
            candidate = smaller(candidate)
        return probe, fixed + per_pixel * probe.pixels

    def _fixed_cost(self, provider, op, w, images, timer, probe_s: float) -> float:
        """Seconds of a call that do not grow with the pixels: a call on a tiny crop (16 to 31
        pixels a side, congruent to the probe's sizes mod 16, so Triton, which specialises
        on divisibility by 16, reuses the probe's kernels), capped at 90% of the probe's
        time (so timing noise cannot hide the per-pixel cost)."""
        probe = self._probe_workload(w)
        tiny = w.scaled(1, 16 + probe.height % 16, 16 + probe.width % 16)
        if 4 * tiny.pixels > probe.pixels:
            tiny_s = probe_s  # the probe is itself tiny: all of it is per-call cost
        else:
            tiny_call = prov.bind(provider, build_case(op, tiny, crop(images, tiny)))
            tiny_call()  # a new shape may compile (Triton specialises on sizes)
            tiny_s = timer.once(tiny_call)
        return min(tiny_s, 0.9 * probe_s)

    def _prepare(self, provider, op, w, images, timer):
        """Size the cell, bind the call and make its first call (compilation, autotuning).

        Returns ``(case, call, first_call_s, estimated_call_s)``. Eager providers are sized
        from one call on a small probe crop and one on a tiny crop (the fixed cost).
        Compiled ones are compiled at full size and timed once (eager time says little
        about compiled time); only if that is too slow are they recompiled for a crop.
        """
        if not provider.compiles:
            probe = self._probe_workload(w)
            probe_call = prov.bind(provider, build_case(op, probe, crop(images, probe)))
            probe_call()  # imports, JIT compilation, autotuning
            probe_s = timer.once(probe_call)
            fixed = self._fixed_cost(provider, op, w, images, timer, probe_s)
            measured, estimate = self._fit(w, (probe_s - fixed) / probe.pixels, fixed)
            case = build_case(op, measured, crop(images, measured))
            call = prov.bind(provider, case)
            return case, call, timer.once(call), estimate
        if self.s.compile_probe_only:
            w = self._probe_workload(w)
            images = crop(images, w)
        case = build_case(op, w, images)
        call = prov.bind(provider, case)
        first_call_s = timer.once(call)
        estimate = timer.once(call)
        measured, estimate = self._fit(w, estimate / w.pixels)
        if measured != w:
            case = build_case(op, measured, crop(images, measured))
            call = prov.bind(provider, case)
            first_call_s += timer.once(call)
        return case, call, first_call_s, estimate

    # ----------------------------------------------------------------- cells

    def run(self, checkpoint=None) -> list[Cell]:
        """Measure every cell; ``checkpoint(cells_so_far)`` runs after each provider's pass
        over a workload, so a run killed by an outer time limit still leaves what it finished."""
        cells = []
        # Provider by provider over every workload, in the order given (priority first), so
        # a slow one (a long compile) cannot hold up the others' measurements on any
        # workload when --max-seconds cuts the run short; tables regroup by op.
        for provider in self.s.providers:
            for w in self.s.workloads:
                for op in self.s.ops:
                    cells.append(self._cell(w, op, provider))
                self._release()
                if checkpoint is not None:
                    checkpoint(list(cells))
        return cells

    def _release(self) -> None:
        if self.s.device.type == "cuda":
            torch.cuda.empty_cache()

    def _cell(self, w: Workload, op: OpSpec, provider: prov.Provider) -> Cell:
        def note(status, reason="", **data):
            cell = Cell(op.name, w.name, provider.name, status, reason, data)
            shown = reason or f"{data.get('median_s', 0) * 1e3:.3f} ms"
            elapsed = time.perf_counter() - self.started
            self._say(f"[bench {elapsed:6.0f}s] {w.name:>20} {op.name:>24} "
                      f"{provider.name:>13}: {status} {shown}")
            return cell

        reason = prov.unavailable(provider, self.s.device)
        if reason is None:
            reason = prov.skip_reason(provider, op, DTYPES[w.dtype])
        if reason is None and provider.compiles and self.s.compile_workloads is not None \
                and w.name not in self.s.compile_workloads:
            reason = (f"compiled for {', '.join(sorted(self.s.compile_workloads))} only in this "
                      "run (each compile takes tens of seconds here); pass --full for all")
        if reason is not None:
            return note("not run", reason)
        if self.over_time():
            return note("not run", f"time budget used up (--max-seconds {self.s.max_seconds:g})")
        try:
            return note("ok", **self._measure(w, op, provider))
        except Exception as exc:  # a failing provider must not stop the report
            if isinstance(exc, torch.cuda.OutOfMemoryError):
                torch.cuda.empty_cache()
            first_line = (str(exc).strip().splitlines() or [""])[0][:300]
            return note("failed", f"{type(exc).__name__}: {first_line}")

    def _measure(self, w: Workload, op: OpSpec, provider: prov.Provider) -> dict:
        device = provider.device(self.s.device)
        timer = self._timer(device)
        images = self._full_images(w, device)
        case, call, first_call_s, estimate = self._prepare(provider, op, w, images, timer)
        measured = case.workload
        for _ in range(self.s.warmup):
            timer.once(call)
        budget_repeats = int(self.s.cell_seconds / max(estimate, 1e-9))
        repeats = max(self.s.min_repeats, min(self.s.repeats, budget_repeats))
        with PeakMemory(device) as memory:
            samples = timer.samples(call, repeats)
        extra = {"graph_breaks": prov.graph_breaks()} if provider.compiles else {}
        traffic = case.bytes_read + case.bytes_written
        ceiling = self._ceilings[device.type].samples(traffic)
        return {
            "measured_shape": list(measured.shape),
            "measured": f"{measured.batch}x{measured.width}x{measured.height}",
            "cropped": measured != w,
            "device": str(device),
            "repeats": repeats,
            "first_call_s": first_call_s,
            **samples.summary(),
            "pixels": measured.pixels,
            "frame_pixels": w.frame_pixels,
            "bytes_read": case.bytes_read,
            "bytes_written": case.bytes_written,
            "memcpy_median_s": ceiling.median,
            "peak_extra_bytes": memory.extra_bytes,
            "peak_method": memory.method,
            **extra,
        }

    def memcpy_records(self) -> dict:
        return {kind: c.records() for kind, c in self._ceilings.items()}


def derive(cells: list[Cell]) -> None:
    """Add rates, % of memcpy and the speed-up over numpy to every measured cell."""
    numpy_rate = {(c.op, c.workload): c.data["mpx_s"] for c in _with_rates(cells)
                  if c.provider == "numpy"}
    for cell in cells:
        if cell.status != "ok":
            continue
        base = numpy_rate.get((cell.op, cell.workload))
        cell.data["speedup_vs_numpy"] = cell.data["mpx_s"] / base if base else None


def _with_rates(cells: list[Cell]) -> list[Cell]:
    done = [c for c in cells if c.status == "ok"]
    for cell in done:
        d = cell.data
        if "mpx_s" in d:
            continue
        # A CUDA event pair resolves ~0.5 us; never divide by a zero median.
        d["median_s"] = max(d["median_s"], 1e-9)
        per_second = d["pixels"] / d["median_s"]
        traffic = d["bytes_read"] + d["bytes_written"]
        d["mpx_s"] = per_second / 1e6
        d["frames_s"] = per_second / d["frame_pixels"]
        d["gb_s"] = traffic / d["median_s"] / 1e9
        d["memcpy_gb_s"] = traffic / d["memcpy_median_s"] / 1e9
        d["pct_memcpy"] = 100.0 * d["memcpy_median_s"] / d["median_s"]
    return done
