"""First-call cost per backend: the time of the first decode in a fresh process.

A user's first frame pays for everything loaded lazily (kernel compilation, library
loading, caches); later calls do not. Each backend is measured in its own fresh Python
process, since whatever one backend loads would hide the cost of the next.
"""

from __future__ import annotations

import json
import subprocess
import sys

import torch

from .._dispatch import available_backends, load_backend

# Run in a fresh interpreter: import, then two decodes of one small uint8 frame.
_SCRIPT = """
import json, sys, time
start = time.perf_counter()
import torch, vbkernels
imported = time.perf_counter()
backend, device = sys.argv[1], sys.argv[2]
rgb = torch.zeros(1, 64, 64, 3, dtype=torch.uint8, device=device)
def call():
    vbkernels.decode_depth(rgb, backend=backend)
    if device == "cuda":
        torch.cuda.synchronize()
t0 = time.perf_counter(); call(); t1 = time.perf_counter(); call(); t2 = time.perf_counter()
print(json.dumps({"import_s": imported - start, "first_s": t1 - t0, "second_s": t2 - t1,
                  "compiler_imported": "torch._dynamo" in sys.modules}))
"""


def backends_on(device: torch.device) -> list[str]:
    """Backends that run on ``device`` here, interpreters left out."""
    names = []
    for name in available_backends():
        backend = load_backend(name)
        if device.type in backend.devices and not (device.type == "cpu"
                                                   and backend.interpreted_on_cpu):
            names.append(name)
    return names


def measure(device: torch.device, names: list[str] | None = None,
            timeout_s: float = 300.0) -> dict[str, dict]:
    """``{backend: {"import_s", "first_s", "second_s", "compiler_imported"}}`` for
    ``names`` (default: every backend that runs on ``device``), or
    ``{backend: {"error": text}}`` for a process that failed."""
    records = {}
    for name in backends_on(device) if names is None else names:
        try:
            done = subprocess.run([sys.executable, "-c", _SCRIPT, name, device.type],
                                  capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            records[name] = {"error": f"no answer within {timeout_s:.0f} s"}
            continue
        if done.returncode != 0:
            last_lines = done.stderr.strip().splitlines()[-1:]
            records[name] = {"error": last_lines[0] if last_lines else "failed"}
            continue
        records[name] = json.loads(done.stdout.strip().splitlines()[-1])
    return records


def markdown(records: dict[str, dict] | None) -> list[str]:
    """A small table of the first-call figures (nothing when they were not measured)."""
    if not records:
        return []
    lines = ["## First call (fresh process, one 64x64 uint8 decode_depth)", "",
             "| backend | import vbkernels | first call | second call |",
             "|---|---|---|---|"]
    for name, r in records.items():
        if "error" in r:
            lines.append(f"| {name} | failed: {r['error']} | | |")
            continue
        lines.append(f"| {name} | {r['import_s'] * 1e3:.0f} ms | {r['first_s'] * 1e3:.1f} ms "
                     f"| {r['second_s'] * 1e3:.2f} ms |")
    return lines + [""]
