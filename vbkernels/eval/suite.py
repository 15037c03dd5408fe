"""``vbkernels eval suite FILE.toml``: several evaluations and the N-dataset average rows.

The file (paths relative to it)::

    [defaults]              # optional: keys every run shares
    task = "depth"
    protocol = "zoedepth"

    [[run]]
    name = "NYUv2"          # the row's name and OUT/NAME/ folder
    dataset = "nyuv2"
    gt_root = "data/nyu"
    predictions = ["gen/nyu"]
    split = "data/nyu/filename_list_test.txt"   # optional
    align = "median"        # any setting override (see vbkernels.eval.protocols)

    [[average]]             # optional; default: one average per task over all its runs
    name = "2-dataset average"
    runs = ["NYUv2", "KITTI"]

Each run writes its own ``OUT/NAME/`` files; ``OUT/suite.json`` and ``OUT/suite.md`` hold
one row per run and one per average. An average row is the plain mean of the runs' values
(how papers print "N-dataset average"), only over metrics every averaged run reports.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, fields
from pathlib import Path

try:
    import tomllib
except ImportError:  # Python 3.10: the same parser as a package (the eval extra)
    import tomli as tomllib


from vbkernels.files import write_atomic

from .outputs import table_row
from .protocols import Settings
from .run import evaluate

_EVALUATE_KEYS = {"split", "match", "protocol", "backend", "batch_size", "workers",
                  "pred_format", "decoder", "palette", "max_distance", "vmin", "vmax",
                  "png_scale", "pred_frame", "worst_k"}
_SETTING_KEYS = {f.name for f in fields(Settings)} - {"task", "dataset", "protocol", "source"}
_PATH_KEYS = {"split"}


class SuiteError(ValueError):
    """A suite file that cannot be run as written (the message names the file and run)."""


@dataclass
class SuiteSummary:
    rows: list
    markdown: str
    failed: bool


def run_suite(config, out, *, device="auto") -> SuiteSummary:
    from .outputs import write_outputs

    config = Path(config)
    try:
        spec = tomllib.loads(config.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SuiteError(f"{config}: cannot read the suite file ({exc})") from None
    runs = spec.get("run")
    if not runs:
        raise SuiteError(f"{config}: no [[run]] tables")
    defaults = spec.get("defaults", {})
    base = config.parent
    out = Path(out)
    rows, failed = [], False
    for number, run in enumerate(runs, 1):
        merged = {**defaults, **run}
        name = merged.get("name") or f"run{number}"
        result = _run_one(merged, name, base, device, config)
        write_outputs(result, out / name)
        failed |= bool(result.count["failed"] or result.count["missing"])
        rows.append({"name": name, "task": result.settings.task,
                     "dataset": result.settings.dataset, "settings": result.settings,
                     "metrics": result.metrics})
    averages = _averages(spec.get("average"), rows, config)
    markdown = _markdown(rows, averages)
    report = {"runs": [{k: (v.to_dict() if k == "settings" else v) for k, v in r.items()}
                       for r in rows],
              "averages": [{k: v for k, v in a.items() if k != "settings"} for a in averages]}
    write_atomic(out / "suite.json", (json.dumps(report, indent=2, default=str) + "\n").encode(),
                 overwrite=True)
    write_atomic(out / "suite.md", markdown.encode(), overwrite=True)
    return SuiteSummary(rows + averages, markdown, failed)


def _run_one(run: dict, name: str, base: Path, device, config):
    required = ("task", "dataset", "gt_root", "predictions")
    lacking = [k for k in required if k not in run]
    if lacking:
        raise SuiteError(f"{config}: run {name} lacks {', '.join(lacking)}")
    unknown = set(run) - set(required) - _EVALUATE_KEYS - _SETTING_KEYS - {"name"}
    if unknown:
        raise SuiteError(f"{config}: run {name} has unknown keys {', '.join(sorted(unknown))}")
    predictions = run["predictions"]
    predictions = [predictions] if isinstance(predictions, str) else predictions
    kwargs = {k: (base / v if k in _PATH_KEYS else v) for k, v in run.items()
              if k in _EVALUATE_KEYS}
    overrides = {k: v for k, v in run.items() if k in _SETTING_KEYS}
    return evaluate(run["task"], [base / p for p in predictions], dataset=run["dataset"],
                    gt_root=base / run["gt_root"], overrides=overrides, device=device, **kwargs)


def _averages(spec, rows, config) -> list:
    if spec is None:  # one average per task over all its runs (when there are several)
        by_task: dict = {}
        for row in rows:
            by_task.setdefault(row["task"], []).append(row["name"])
        spec = [{"name": f"{len(names)}-dataset average", "runs": names}
                for names in by_task.values() if len(names) > 1]
    named = {row["name"]: row for row in rows}
    averages = []
    for item in spec:
        chosen = item.get("runs", [])
        lacking = [n for n in chosen if n not in named]
        if lacking or not chosen:
            raise SuiteError(f"{config}: average {item.get('name')!r} names unknown runs "
                             f"{lacking or '(none)'}")
        members = [named[n] for n in chosen]
        if len({m["task"] for m in members}) != 1:
            raise SuiteError(f"{config}: average {item.get('name')!r} mixes tasks")
        keys = set.intersection(*(set(m["metrics"]) for m in members))
        values = {k: sum(m["metrics"][k] for m in members) / len(members) for k in keys
                  if all(isinstance(m["metrics"][k], (int, float)) and
                         math.isfinite(m["metrics"][k]) for m in members)}
        averages.append({"name": item.get("name", f"{len(members)}-dataset average"),
                         "task": members[0]["task"], "dataset": "+".join(chosen),
                         "runs": chosen, "metrics": values,
                         "settings": members[0]["settings"]})
    return averages


def _markdown(rows, averages) -> str:
    """One table per protocol: every run's row, then the averages over them."""
    lines = []
    for protocol in dict.fromkeys(r["settings"].protocol for r in rows):
        these = [r for r in rows + averages if r["settings"].protocol == protocol]
        headers, _ = table_row({}, protocol, "")
        lines += [f"| {protocol} | {' | '.join(headers)} |", f"|---|{'---|' * len(headers)}"]
        for row in these:
            _, cells = table_row(row["metrics"], protocol, row["name"])
            lines.append(f"| {row['name']} | {' | '.join(cells)} |")
        lines.append("")
    return "\n".join(lines)
