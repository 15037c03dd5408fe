"""Writing an evaluation: ``metrics.json``, ``metrics.md``, ``per_image.csv``, ``plots/``.

One unit rule for all of it (``vbkernels.metrics.units``): every ratio is a fraction
(``delta1 = 0.948``, ``abs_rel``, IoU, accuracies, ``within_T``), angles are degrees, rmse
metres, irmse 1/m; ``metrics.json`` and ``per_image.csv`` keep the numbers unrounded and
``metrics.json`` says so under ``"units"``. ``metrics.md`` is the table row as the
protocol's reference prints it (``vbkernels.metrics.format_row``: its columns, percent or
fraction, its decimals). Every file is written atomically.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import numpy as np

from vbkernels.files import write_atomic


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("vbkernels")
    except Exception:  # noqa: BLE001 - an uninstalled checkout
        return "unknown"


def metrics_json(result) -> dict:
    return {
        "metrics": _finite_or_none(result.metrics),
        "units": "every ratio a fraction (delta_i, abs_rel, iou, accuracies, within_T); "
                 "rmse metres (depth) or degrees (normals); irmse 1/m; angles degrees",
        "settings": {**result.settings.to_dict(), **result.inputs},
        "count": result.count,
        "missing": result.missing,
        "unused": result.unused,  # predictions that paired with no sample
        "errors": [list(e) for e in result.errors],
        "version": _version(),
        "split_sha256": result.split_sha256,
    }


def _finite_or_none(value):
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_none(v) for v in value]
    return value


def table_row(metrics: dict, protocol: str, label: str) -> tuple[list, list]:
    """(headers, cells) of ``metrics`` as ``protocol``'s reference prints them."""
    from vbkernels.metrics.units import TABLE_FORMATS

    headers, cells = [], []
    for name, header, factor, decimals in TABLE_FORMATS[protocol]:
        value = metrics.get(name)
        ok = isinstance(value, (int, float)) and math.isfinite(value)
        headers.append(header)
        cells.append(f"{value * factor:.{decimals}f}" if ok else "-")
    return headers, cells


def metrics_markdown(result) -> str:
    """The reference's table row, then a line on units and settings."""
    from vbkernels.metrics import format_row

    s = result.settings
    count = result.count
    lines = [
        format_row(result.metrics, s.protocol, label=s.dataset),
        "",
        f"Protocol {s.protocol} ({s.source}), printed as its reference prints it; "
        f"align {s.align}, crop {s.crop}, reduction {s.reduction}; "
        f"{count['found']} of {count['expected']} samples found, {count['missing']} missing, "
        f"{count['failed']} failed. metrics.json holds the unrounded values (ratios as "
        "fractions).",
    ]
    return "\n".join(lines) + "\n"


def per_image_csv(result) -> str:
    rows = result.per_image
    keys = ["name"]
    for row in rows:
        keys += [k for k in row if k not in keys]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=keys, restval="", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(row)
    return buffer.getvalue()


def write_outputs(result, out, *, plots: bool = True) -> list[Path]:
    """Write the files of the module docstring under ``out``; their paths."""
    out = Path(out)
    written = []
    for name, text in (("metrics.json", json.dumps(metrics_json(result), indent=2) + "\n"),
                       ("metrics.md", metrics_markdown(result)),
                       ("per_image.csv", per_image_csv(result))):
        write_atomic(out / name, text.encode(), overwrite=True)
        written.append(out / name)
    if plots:
        written += write_plots(result, out / "plots")
    return written


# ------------------------------------------------------------------------------- plots


def write_plots(result, folder: Path) -> list[Path]:
    """Error histogram, the worst images beside their ground truth, and (segmentation) the
    confusion matrix, as PNGs (matplotlib, Agg)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    written = []
    if result.histogram is not None and sum(result.histogram["counts"]) > 0:
        written.append(_save(_histogram_figure(result), folder / "error_histogram.png"))
    if result.worst:
        written.append(_save(_worst_figure(result), folder / "worst.png"))
    if result.confusion is not None:
        written.append(_save(_confusion_figure(result), folder / "confusion.png"))
    return written


def _save(figure, path: Path) -> Path:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    write_atomic(path, buffer.getvalue(), overwrite=True)
    return path


def _histogram_figure(result):
    import matplotlib.pyplot as plt

    counts = np.asarray(result.histogram["counts"])
    lo, hi = result.histogram["edges"]
    edges = np.linspace(lo, hi, len(counts) + 1)
    figure, axis = plt.subplots(figsize=(6, 3.5))
    axis.stairs(counts / max(counts.sum(), 1), edges, fill=True)
    if result.settings.task == "depth":
        axis.set_xlabel("ln(prediction / ground truth), before alignment")
    else:
        axis.set_xlabel("angular error (degrees)")
    axis.set_yscale("log")  # the tails (edges, outliers) are what a reader looks for
    axis.set_ylabel("share of valid pixels (log)")
    axis.set_title(f"{result.settings.dataset}: per-pixel error")
    figure.tight_layout()
    return figure


def _worst_figure(result):
    import matplotlib.pyplot as plt

    task = result.settings.task
    k = len(result.worst)
    figure, axes = plt.subplots(k, 3, figsize=(9, 2.6 * k), squeeze=False)
    for row, (score, name, pred, gt, valid) in zip(axes, result.worst):
        if task == "depth":
            hi = float(np.nanmax(np.where(valid, gt, np.nan))) if valid.any() else 1.0
            shown = (pred, np.where(valid, gt, np.nan), np.where(valid, np.abs(pred - gt) /
                                                                  np.maximum(gt, 1e-6), np.nan))
            titles = ("prediction (m)", "ground truth (m)", "abs. rel. error (to its p99)")
            top = np.nanpercentile(shown[2], 99) if valid.any() else 1.0
            kw = ({"vmin": 0, "vmax": hi, "cmap": "turbo"},) * 2 + (
                {"cmap": "magma", "vmin": 0, "vmax": max(float(top), 1e-3)},)
        elif task == "normals":
            err = np.degrees(np.arccos(np.clip((pred * gt).sum(-1), -1, 1)))
            shown = ((pred + 1) / 2, np.where(valid[..., None], (gt + 1) / 2, 0),
                     np.where(valid, err, np.nan))
            titles = ("prediction", "ground truth", "angle (deg)")
            kw = ({}, {}, {"cmap": "magma", "vmin": 0, "vmax": 60})
        else:
            shown = (pred, np.where(valid, gt, -1), np.where(valid, pred != gt, np.nan))
            titles = ("prediction", "ground truth", "wrong pixels")
            kw = ({"cmap": "tab20", "interpolation": "nearest"},) * 2 + ({"cmap": "gray_r"},)
        short = name if len(name) <= 60 else "..." + name[-57:]
        titles = (titles[0], f"{short} (score {score:.4g})\n{titles[1]}", titles[2])
        for axis, image, title, options in zip(row, shown, titles, kw):
            if "cmap" in options:  # unscored pixels (NaN) in grey, not the colormap's end
                options = {**options, "cmap": plt.get_cmap(options["cmap"]).with_extremes(
                    bad="0.75")}
            im = axis.imshow(np.clip(image, 0, 1) if image.ndim == 3 else image, **options)
            axis.set_title(title, fontsize=7)
            axis.axis("off")
            if image.ndim == 2:
                figure.colorbar(im, ax=axis, fraction=0.046)
    figure.suptitle(f"{result.settings.dataset}: worst {k} images")
    figure.tight_layout()
    return figure


def _confusion_figure(result):
    import matplotlib.pyplot as plt

    counts = result.confusion.astype(np.float64)
    rows = counts.sum(1, keepdims=True)
    shown = np.where(rows > 0, counts / np.maximum(rows, 1), np.nan)
    n = counts.shape[0]
    size = min(12, 3 + 0.3 * n)
    figure, axis = plt.subplots(figsize=(size, size))
    im = axis.imshow(shown, cmap="viridis", vmin=0, vmax=1)
    if result.class_names and n <= 40:
        axis.set_xticks(range(n), result.class_names, rotation=90, fontsize=7)
        axis.set_yticks(range(n), result.class_names, fontsize=7)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true (row-normalised)")
    figure.colorbar(im, ax=axis, fraction=0.046)
    figure.tight_layout()
    return figure

