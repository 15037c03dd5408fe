"""``python -m bench`` / ``vbkernels bench``: run the report and write JSON, Markdown, PNG."""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import platform
import re
import shlex
import subprocess
import sys
from pathlib import Path

import torch

from . import colormap, first_call, label_table, output, providers, targets, workloads
from .ops import OPS, OPS_BY_NAME
from .runner import Cell, Runner, Settings, derive

VERSIONED = ("numpy", "torch", "triton", "cupy", "hilbertmap", "matplotlib", "vbkernels")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vbkernels bench",
        description="Time every vbkernels backend against the NumPy baseline, hilbertmap, "
                    "torch eager, torch.compile and the memcpy ceiling; write JSON, Markdown "
                    "and a PNG chart.")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                   help="device of the torch/triton/cuda providers (auto: cuda if present)")
    p.add_argument("--quick", action="store_true",
                   help="fewer workloads, repeats and seconds per cell")
    p.add_argument("--full", action="store_true",
                   help="on CPU, run the GPU workloads (batches of 16 x 1080p, 8 x 4K) too")
    p.add_argument("--ops", help=f"comma-separated subset of {','.join(OPS_BY_NAME)} "
                                 "(default: all; on CPU without --full: "
                                 f"{','.join(op.name for op in OPS if op.cpu_default)})")
    p.add_argument("--providers",
                   help=f"comma-separated subset of {','.join(providers.PROVIDERS_BY_NAME)}")
    p.add_argument("--workloads",
                   help=f"comma-separated subset of {','.join(workloads.ALL_WORKLOADS)}")
    p.add_argument("--repeats", type=int, help="timed calls per cell at most (default: cuda "
                                               "20, cpu 5; with --quick 10 and 3)")
    p.add_argument("--cell-seconds", type=float,
                   help="time one cell may take before its workload is cropped "
                        "(default: cuda 2, cpu 3; --quick halves them)")
    p.add_argument("--max-seconds", type=float,
                   help="stop measuring after this many seconds; later cells are 'not run'")
    p.add_argument("--out", default="bench/results", help="output folder (default: %(default)s)")
    p.add_argument("--name", help="file name stem (default: from the device name)")
    p.add_argument("--threads", type=int,
                   help="torch intra-op threads (torch.set_num_threads); default: torch's")
    p.add_argument("--label-table", action="store_true",
                   help="also time the Triton segmentation strategies, distance scan vs the "
                        "2^24-entry label table, for K = "
                        f"{', '.join(map(str, label_table.PALETTE_SIZES))} (CUDA only)")
    p.add_argument("--no-colormap", action="store_true",
                   help="on CPU, leave out the section timing the cpu backend's "
                        "decode_colormap against a SciPy cKDTree query (one 1080p frame)")
    p.add_argument("--quiet", action="store_true", help="no per-cell progress on stderr")
    p.add_argument("--from-json", metavar="JSON",
                   help="measure nothing: rewrite the Markdown and PNG of a saved report "
                        "(e.g. a GPU run made where matplotlib was missing) into --out")
    p.add_argument("--merge", metavar="JSON[,JSON...]",
                   help="with --from-json: add the cells of these reports (e.g. torch.compile "
                        "measured op by op in separate processes) that the first one lacks, "
                        "then judge the targets again")
    return p


def _pick(text: str | None, known: dict, what: str, parser, default: list | None = None) -> list:
    if text is None:
        return list(known.values()) if default is None else list(default)
    chosen = []
    for name in (part.strip() for part in text.split(",") if part.strip()):
        if name not in known:
            parser.error(f"--{what}: unknown {name!r}; choose from {', '.join(known)}")
        chosen.append(known[name])
    if not chosen:
        parser.error(f"--{what} names nothing")
    return chosen


def _device(name: str, parser) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device here")
    return torch.device(name)


def _host_cpu() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU {_host_cpu()} ({os.cpu_count()} cores)"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60] or "device"


def _versions() -> dict:
    found = {"python": platform.python_version()}
    for name in VERSIONED:
        try:
            found[name] = importlib.import_module(name).__version__
        except Exception:  # absent or broken: the report just leaves it out
            found[name] = None
    found["cuda"] = torch.version.cuda
    return found


def _load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def _git_commit() -> str:
    """``git describe`` of the checkout, or $VBKERNELS_GIT_COMMIT when set (a copy of the
    tree without .git, e.g. on a lent GPU machine, gets its commit from the caller)."""
    given = os.environ.get("VBKERNELS_GIT_COMMIT", "").strip()
    if given:
        return given
    here = Path(__file__).resolve().parent
    try:
        done = subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=12"],
                              cwd=here, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return done.stdout.strip() if done.returncode == 0 and done.stdout.strip() else "unknown"


def default_ops(device_type: str, full: bool) -> list:
    """The ops a run measures when ``--ops`` is not given (``--ops`` may name any op).

    A CPU run without ``--full`` leaves out the ops marked ``cpu_default=False`` (the
    decode_instances pair: ~10 s a 1080p frame for the torch reference on a small CPU).
    """
    if device_type == "cuda" or full:
        return list(OPS)
    return [op for op in OPS if op.cpu_default]


def settings_from(args, parser) -> Settings:
    device = _device(args.device, parser)
    cuda = device.type == "cuda"
    if args.workloads:
        chosen = _pick(args.workloads, workloads.ALL_WORKLOADS, "workloads", parser)
    else:
        chosen = workloads.default_workloads(device.type, args.quick, args.full)
    default_repeats = {(True, False): 20, (True, True): 10, (False, False): 5, (False, True): 3}
    repeats = args.repeats or default_repeats[(cuda, args.quick)]
    cell_seconds = args.cell_seconds or (2.0 if cuda else 3.0) / (2 if args.quick else 1)
    compile_workloads = None
    if not (cuda or args.full or args.workloads):
        compile_workloads = frozenset({workloads.CPU_TARGET})
    if repeats < 1 or cell_seconds <= 0:
        parser.error("--repeats and --cell-seconds must be positive")
    return Settings(
        device=device,
        workloads=chosen,
        ops=_pick(args.ops, OPS_BY_NAME, "ops", parser, default_ops(device.type, args.full)),
        providers=_pick(args.providers, providers.PROVIDERS_BY_NAME, "providers", parser),
        repeats=repeats,
        min_repeats=min(3, repeats),
        cell_seconds=cell_seconds,
        max_seconds=args.max_seconds,
        warmup=2 if cuda else 1,
        compile_workloads=compile_workloads,
        compile_probe_only=not (cuda or args.full),
        label_table=args.label_table,
        colormap_frame=None if cuda or args.no_colormap else colormap.FRAME,
        log=None if args.quiet else sys.stderr,
    )


def run_report(settings: Settings, out_dir: Path, stem: str | None, command: str,
               measure_first_call: bool = False) -> dict:
    """Measure, derive, judge and write the three files; returns the JSON report.

    ``measure_first_call`` adds each backend's first-call time in a fresh process
    (``first_call.py``; a few seconds per backend, so the command does it, tests do not).

    After each provider's pass over a workload the JSON and Markdown are rewritten with what
    is measured so far (marked partial), so a run cut short by an outer timeout still leaves
    its numbers.
    """
    load_average = _load_average()
    first_calls = first_call.measure(settings.device) if measure_first_call else None
    runner = Runner(settings)
    device_name = _device_name(settings.device)
    stem = stem or _slug(device_name)
    out_dir.mkdir(parents=True, exist_ok=True)

    def build(cells, partial, strategies=None, colormap_section=None):
        derive(cells)  # idempotent: cells measured earlier keep their figures
        verdicts = targets.verdicts(cells, settings.device.type)
        report = {
            "schema": 1,
            "partial": partial,
            "device_name": device_name,
            "host_cpu": _host_cpu(),
            "host_cpus": os.cpu_count(),
            "load_average": load_average,
            "versions": _versions(),
            "git_commit": _git_commit(),
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command": command + (" (partial: still running)" if partial else ""),
            "stem": stem,
            "settings": settings.as_dict(),
            "workload_shapes": {w.name: w.label for w in settings.workloads},
            "memcpy": runner.memcpy_records(),
            "first_call": first_calls,
            "results": [c.as_dict() for c in cells],
            "targets": [v.as_dict() for v in verdicts],
            "label_table": strategies,
            "colormap": colormap_section,
        }
        return report, verdicts

    def checkpoint(cells):
        report, verdicts = build(cells, partial=True)
        report["png"], report["png_not_written"] = None, "partial report"
        output.write_json(out_dir / f"{stem}.json", report)
        output.write_markdown(out_dir / f"{stem}.md", report, verdicts)

    cells = runner.run(checkpoint=checkpoint)
    strategies = None
    if settings.label_table:
        strategies = label_table.run(settings.device, settings.repeats, runner.over_time())
    colormap_section = None
    if settings.colormap_frame is not None:
        colormap_section = colormap.run(settings.repeats, runner.over_time(),
                                        settings.colormap_frame)
    report, verdicts = build(cells, partial=False, strategies=strategies,
                             colormap_section=colormap_section)
    png_problem = output.write_png(out_dir / f"{stem}.png", report)
    report["png"] = None if png_problem else f"{stem}.png"
    report["png_not_written"] = png_problem
    output.write_json(out_dir / f"{stem}.json", report)
    output.write_markdown(out_dir / f"{stem}.md", report, verdicts)
    return report


def _cells(report: dict) -> list[Cell]:
    keys = ("op", "workload", "provider", "status", "reason")
    return [Cell(*(r[k] for k in keys), data={k: v for k, v in r.items() if k not in keys})
            for r in report["results"]]


def merge(report: dict, others: list[dict]) -> None:
    """Add the measured cells of ``others`` that ``report`` has not measured, re-judge; ops,
    providers and workloads only they ran join the report's lists (and so its tables)."""
    settings = report["settings"]
    for other in others:
        for key in ("ops", "providers", "workloads"):
            settings[key] += [x for x in other["settings"][key] if x not in settings[key]]
    cells = _cells(report)
    at = {(c.op, c.workload, c.provider): i for i, c in enumerate(cells)}
    for other in others:
        for cell in _cells(other):
            i = at.get((cell.op, cell.workload, cell.provider))
            if i is None:
                at[(cell.op, cell.workload, cell.provider)] = len(cells)
                cells.append(cell)
            elif cells[i].status != "ok" and cell.status == "ok":
                cells[i] = cell
    derive(cells)
    device_type = "cuda" if report["settings"]["device"].startswith("cuda") else "cpu"
    report["results"] = [c.as_dict() for c in cells]
    report["targets"] = [v.as_dict() for v in targets.verdicts(cells, device_type)]
    report["merged_from"] = [o.get("command", "") for o in others]


def rewrite(json_path: Path, out_dir: Path, merge_paths: list[Path] = ()) -> dict:
    """Markdown and PNG again from a saved JSON report (same stem, in ``out_dir``), with the
    cells of ``merge_paths`` added (then the JSON is rewritten there too)."""
    report = json.loads(json_path.read_text())
    if merge_paths:
        merge(report, [json.loads(p.read_text()) for p in merge_paths])
    verdicts = [targets.Verdict(**v) for v in report["targets"]]
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = report["stem"]
    png_problem = output.write_png(out_dir / f"{stem}.png", report)
    report["png"] = None if png_problem else f"{stem}.png"
    report["png_not_written"] = png_problem
    output.write_markdown(out_dir / f"{stem}.md", report, verdicts)
    if merge_paths:
        output.write_json(out_dir / f"{stem}.json", report)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    if args.merge and not args.from_json:
        parser.error("--merge needs --from-json (the report to merge into)")
    if args.from_json:
        merge_paths = [Path(p) for p in (args.merge or "").split(",") if p.strip()]
        missing = [str(p) for p in merge_paths if not p.is_file()]
        merge_paths = [p for p in merge_paths if p.is_file()]
        if missing:
            print(f"--merge: not found, left out: {', '.join(missing)}", file=sys.stderr)
        report = rewrite(Path(args.from_json), Path(args.out), merge_paths)
        print(f"wrote {Path(args.out) / (report['stem'] + '.md')}"
              + (f" and {report['png']}" if report["png"] else f"; PNG not written: "
                 f"{report['png_not_written']}"))
        return 0
    if args.threads is not None:
        if args.threads < 1:
            parser.error("--threads must be >= 1")
        torch.set_num_threads(args.threads)
    settings = settings_from(args, parser)
    out_dir = Path(args.out)
    command = "vbkernels bench " + " ".join(shlex.quote(a) for a in argv)
    report = run_report(settings, out_dir, args.name, command.strip(), measure_first_call=True)
    written = [f"{report['stem']}.{ext}" for ext in ("json", "md")]
    if report["png"]:
        written.append(report["png"])
    print(f"wrote {', '.join(str(out_dir / name) for name in written)}")
    if report["png_not_written"]:
        print(f"PNG not written: {report['png_not_written']}")
    if report["label_table"] is not None:
        print("\n".join(label_table.markdown(report["label_table"])))
    if report["colormap"] is not None:
        print("\n".join(colormap.markdown(report["colormap"])))
    return 0
