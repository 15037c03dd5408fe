"""Benchmark report: every vbkernels backend beside the NumPy baseline, hilbertmap, torch
eager, ``torch.compile`` of the reference and the memcpy ceiling of the same device.

``main(argv)`` is the command line (``python -m bench``, ``vbkernels bench``); ``run_report``
is the same run for code that builds its own ``Settings``. Results go to JSON (every
sample, device, versions, commit, settings), a Markdown table and a PNG bar chart.

``vbkernels.benchmark.e2e`` is the end-to-end file benchmark (a folder of noisy 1080p depth
PNGs through ``vbkernels decode``'s pipeline, its ceilings and a plain process pool):
``python -m vbkernels.benchmark.e2e``.
"""

from .command import main, run_report
from .runner import Settings

__all__ = ["main", "run_report", "Settings"]
