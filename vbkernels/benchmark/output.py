"""Write a run as JSON (everything), a Markdown table (for people) and a PNG bar chart.

Each file is written to a temporary name and renamed, so an interrupted run never leaves a
half-written report behind.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from . import colormap, first_call, label_table
from .targets import Verdict

MIB = 1 << 20


def _atomic_write(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def write_json(path: Path, report: dict) -> None:
    text = json.dumps(report, indent=1, allow_nan=False, default=str)
    _atomic_write(path, lambda tmp: tmp.write_text(text + "\n"))


# ----------------------------------------------------------------------------- Markdown


def _ms(seconds: float) -> str:
    ms = seconds * 1e3
    return f"{ms:.3g}" if ms < 100 else f"{ms:.0f}"


def _num(value, digits=3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if value >= 10 ** digits:
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"


def _pct(value: float) -> str:
    return f"{value:.0f}%" if value >= 10 else f"{value:.2g}%"


def _shape(cell: dict) -> str:
    text = cell["measured"]
    return f"**{text}** (cropped)" if cell["cropped"] else text


def _provider(cell: dict) -> str:
    breaks = cell.get("graph_breaks")
    return f"{cell['provider']} ({breaks} graph breaks)" if breaks else cell["provider"]


def _target_text(cell: dict, verdicts: list[Verdict]) -> str:
    mine = [v for v in verdicts if (v.op, v.workload, v.provider)
            == (cell["op"], cell["workload"], cell["provider"])]
    return "; ".join(f"{v.target}: {v.verdict}" for v in mine)


def _header(report: dict) -> list[str]:
    v = report["versions"]
    versions = ", ".join(f"{k} {val}" for k, val in v.items() if val)
    s = report["settings"]
    return [
        f"# vbkernels benchmark: {report['device_name']}",
        "",
        f"- device: **{report['device_name']}** ({s['device']}); host CPU: {report['host_cpu']}, "
        f"{report['host_cpus']} cores, torch threads: {s['torch_threads']}, load average "
        f"at start {report['load_average']}",
        f"- versions: {versions}",
        f"- commit: `{report['git_commit']}`; date: {report['created']}",
        f"- command: `{report['command']}`",
        f"- {s['repeats']} timed calls per cell at most ({s['min_repeats']} at least), after "
        f"{s['warmup_calls']} warm-up call(s) plus the first call (compilation); "
        + ("CUDA events, L2 flushed before each call" if s["device"].startswith("cuda")
           else "perf_counter") + ".",
        "- time: median (interquartile range) per call. GB/s = (bytes read + bytes written) / "
        "time; % memcpy = time of a torch `copy_` moving the same bytes on the same device, "
        "in this run, over the op's time. Mpx/s and frames/s count pixels of the measured "
        "shape (frames of the workload's frame size). × numpy = Mpx/s over the numpy "
        "baseline's on the same workload. Peak MiB = memory the timed calls needed beyond "
        "their inputs and preallocated outputs.",
        "- outputs are preallocated and passed as `out=` where the function takes it (as a "
        "video loop would); `torch_compile`, `hilbertmap` and `encode_depth` allocate theirs. "
        "numpy, hilbertmap and cpu always run on the host CPU.",
        "- **cropped**: the provider would have needed more than "
        f"{s['cell_seconds']:g} s for the full workload, so it was timed on the largest crop "
        "(one frame, then half height and width) that fits; rates are per pixel."
        + (" `torch_compile` is compiled for a quarter of a frame's height and width in this "
           "run (dynamo unrolls the reference's chunk loop, so compiling a whole frame takes "
           "minutes on a small CPU); `--full` compiles full size." if s.get("compile_probe_only")
           else ""),
        "",
    ]


def _target_table(verdicts: list[Verdict]) -> list[str]:
    if not verdicts:
        return []
    lines = ["## Targets (reported, not asserted)", "",
             "| target | op | workload | provider | measured | verdict |",
             "|---|---|---|---|---|---|"]
    for v in verdicts:
        verdict = f"**{v.verdict}**" if v.verdict in ("met", "missed") else v.verdict
        lines.append(f"| {v.target} | {v.op} | {v.workload} | {v.provider} | {v.measured} "
                     f"| {verdict} |")
    return lines + [""]


def _result_tables(report: dict, verdicts: list[Verdict]) -> list[str]:
    cells = report["results"]
    lines = []
    for op in report["settings"]["ops"]:
        rows = [c for c in cells if c["op"] == op and c["status"] == "ok"]
        if not rows:
            continue
        lines += [f"## {op}", "",
                  "| workload | provider | measured | ms (IQR) | Mpx/s | frames/s | GB/s "
                  "| % memcpy | × numpy | peak MiB | target |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for c in rows:
            spread = f"{_ms(c['median_s'])} ({_ms(c['q1_s'])}–{_ms(c['q3_s'])})"
            speedup = c.get("speedup_vs_numpy")
            lines.append(
                f"| {c['workload']} | {_provider(c)} | {_shape(c)} | {spread} "
                f"| {_num(c['mpx_s'])} | {_num(c['frames_s'])} | {_num(c['gb_s'])} "
                f"| {_pct(c['pct_memcpy'])} | {_num(speedup) if speedup else '–'} "
                f"| {c['peak_extra_bytes'] / MIB:.1f} | {_target_text(c, verdicts)} |")
        lines.append("")
    return lines


def _not_run_table(report: dict) -> list[str]:
    """Cells without numbers; a provider left out everywhere for one reason is one row."""
    cells = [c for c in report["results"] if c["status"] != "ok"]
    if not cells:
        return []
    grouped: dict[tuple, list[dict]] = {}
    for c in cells:
        grouped.setdefault((c["provider"], c["status"], c["reason"]), []).append(c)
    lines = ["## Not run", "", "| provider | where | status | reason |", "|---|---|---|---|"]
    for (provider, status, reason), group in grouped.items():
        where = _where(group, report["settings"])
        lines.append(f"| {provider} | {where} | {status} | {reason.replace('|', '/')} |")
    return lines + [""]


def _where(group: list[dict], settings: dict) -> str:
    """'<ops> @ <workloads>' when a reason covers the same ops on each workload, else cells."""
    ops = {}
    for c in group:
        ops.setdefault(c["workload"], []).append(c["op"])
    op_lists = {tuple(found) for found in ops.values()}
    if len(op_lists) > 1:
        return ", ".join(f"{c['op']} @ {c['workload']}" for c in group)
    (op_list,) = op_lists
    ops_text = "all ops" if set(op_list) == set(settings["ops"]) else ", ".join(op_list)
    all_workloads = len(ops) == len(settings["workloads"])
    return f"{ops_text} @ " + ("all workloads" if all_workloads else ", ".join(ops))


def markdown(report: dict, verdicts: list[Verdict]) -> str:
    lines = _header(report) + _target_table(verdicts) + _result_tables(report, verdicts)
    lines += label_table.markdown(report.get("label_table"))
    lines += colormap.markdown(report.get("colormap"))
    lines += _not_run_table(report)
    lines += first_call.markdown(report.get("first_call"))
    lines += [f"Files: `{report['stem']}.json` (every sample), `{report['stem']}.png` (chart).", ""]
    return "\n".join(lines)


def write_markdown(path: Path, report: dict, verdicts: list[Verdict]) -> None:
    text = markdown(report, verdicts)
    _atomic_write(path, lambda tmp: tmp.write_text(text))


# ----------------------------------------------------------------------------- chart


def chart_workload(report: dict) -> str | None:
    """The workload the chart shows: the first one in the run with any measurement."""
    for name in report["settings"]["workloads"]:
        if any(c["workload"] == name and c["status"] == "ok" for c in report["results"]):
            return name
    return None


def write_png(path: Path, report: dict) -> str | None:
    """Bar chart of Mpx/s per op and provider; returns why it was not written, or None."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install matplotlib)"
    workload = chart_workload(report)
    if workload is None:
        return "no cell was measured"
    ok = [c for c in report["results"] if c["workload"] == workload and c["status"] == "ok"]
    ops = [op for op in report["settings"]["ops"] if any(c["op"] == op for c in ok)]
    providers = [p for p in report["settings"]["providers"] if any(c["provider"] == p for c in ok)]
    width = 0.8 / max(len(providers), 1)
    fig, ax = plt.subplots(figsize=(max(8, 1.6 * len(ops)), 4.8))
    for i, provider in enumerate(providers):
        xs, ys = [], []
        for j, op in enumerate(ops):
            cell = next((c for c in ok if c["op"] == op and c["provider"] == provider), None)
            if cell is not None:
                xs.append(j + (i - (len(providers) - 1) / 2) * width)
                ys.append(cell["mpx_s"])
        ax.bar(xs, ys, width=width, label=provider)
    _memcpy_marks(ax, ok, ops, report["settings"]["device"])
    ax.set_yscale("log")
    ax.set_xticks(range(len(ops)), [op.replace("decode_segmentation", "seg") for op in ops])
    ax.set_ylabel("Mpx/s (log scale, higher is better)")
    ax.set_title(f"{report['device_name']}: {workload}")
    ax.legend(fontsize="small", ncol=min(len(providers) + 1, 4), loc="upper center",
              bbox_to_anchor=(0.5, -0.1))
    fig.tight_layout()
    _atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
    return None


def _memcpy_marks(ax, ok, ops, run_device) -> None:
    """A black tick per op at the Mpx/s a memcpy of the same bytes would reach."""
    label = "memcpy of the same bytes"
    for j, op in enumerate(ops):
        same_device = [c for c in ok if c["op"] == op
                       and c["device"].split(":")[0] == run_device.split(":")[0]]
        if not same_device:
            continue
        # The largest measurement's copy: small copies run from cache and overstate the ceiling.
        cell = max(same_device, key=lambda c: c["pixels"])
        rate = cell["pixels"] / cell["memcpy_median_s"] / 1e6
        ax.plot([j - 0.45, j + 0.45], [rate, rate], color="black", linewidth=2, label=label)
        label = None
