"""``vbkernels precision``: how finely an 8-bit cube-walk encoding resolves depth.

The walk holds 7 * 255 + 1 = 1786 distinct uint8 colours, at ``t = i / 1785``. Decoding
maps them to depths ``d_i = inverse_power_transform(t_i)``; the depth step at depth ``d``
is the gap ``d_{i+1} - d_i`` of the two colours around it. The last colour (white, t = 1)
is +inf, so the largest finite depth is ``d_1784``.
"""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np
import torch

WALK_COLOURS = 7 * 255 + 1
_VERTEX_NAMES = ("black", "red", "yellow", "green", "cyan", "blue", "magenta", "white")
_TABLE_DEPTHS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 40, 80, 100, 200, 400, 1000)


def walk_depths(lam: float, c: float) -> np.ndarray:
    """Depth (float64 metres) of each of the 1786 walk colours, in walk order."""
    import vbkernels

    t = torch.arange(WALK_COLOURS, dtype=torch.float64) / (WALK_COLOURS - 1)
    return vbkernels.inverse_power_transform(t, lam=lam, c=c).numpy()


def precision_table(lam: float, c: float, depths=_TABLE_DEPTHS) -> list[dict]:
    """Step and relative step at each depth below the largest finite one."""
    walk = walk_depths(lam, c)
    finite = walk[np.isfinite(walk)]
    rows = []
    for depth in depths:
        i = int(np.searchsorted(finite, depth, side="right")) - 1
        if i < 0 or i + 1 >= len(finite):
            continue
        step = finite[i + 1] - finite[i]
        rows.append({"depth": float(depth), "step": float(step),
                     "relative_step": float(step / depth), "colour_index": i})
    return rows


def segment_boundaries(lam: float, c: float) -> list[tuple[str, float]]:
    walk = walk_depths(lam, c)
    return [(_VERTEX_NAMES[k], float(walk[k * 255])) for k in range(8)]


@click.command("precision")
@click.option("--lam", default=-3.0, show_default=True, type=float,
              help="Power-transform lambda (< -1).")
@click.option("--c", "c", default=10 / 3, show_default="10/3", type=float,
              help="Power-transform scale c (> 0).")
@click.option("--plot", "plot_path", default="vbkernels_precision.png", show_default=True,
              type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the plot (PNG).")
@click.option("--no-plot", is_flag=True, help="Print the table only.")
def precision(lam, c, plot_path, no_plot):
    """Depth step of an 8-bit cube-walk depth encoding vs depth.

    Prints the step between neighbouring walk colours and the relative step at a range of
    depths, the depth of each walk vertex (segment boundary) and the largest finite depth,
    and plots step and relative step against depth, so you can pick lam and c for a scene.
    """
    try:
        walk = walk_depths(lam, c)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    finite = walk[np.isfinite(walk)]
    click.echo(f"8-bit cube-walk depth encoding, lam={lam:g}, c={c:g}: "
               f"{WALK_COLOURS} colours, largest finite depth {finite[-1]:.2f} m\n")
    click.echo(f"{'depth (m)':>10} {'step':>12} {'relative step':>14}")
    for row in precision_table(lam, c):
        click.echo(f"{row['depth']:>10g} {_metres(row['step']):>12} "
                   f"{100 * row['relative_step']:>13.3f}%")
    click.echo("\nsegment boundaries (walk vertices):")
    for name, depth in segment_boundaries(lam, c):
        click.echo(f"  {name:<8} {depth:>10.4g} m")
    if not no_plot:
        from .io import write_atomic

        write_atomic(plot_path, _plot_png(finite, segment_boundaries(lam, c), lam, c),
                     overwrite=True)
        click.echo(f"\nplot written to {plot_path}")


def _metres(value: float) -> str:
    if value < 0.01:
        return f"{value * 1000:.3g} mm"
    if value < 1:
        return f"{value * 100:.3g} cm"
    return f"{value:.3g} m"


def _plot_png(finite: np.ndarray, boundaries, lam: float, c: float) -> bytes:
    import io

    figure = plot_figure(finite, boundaries, lam, c)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def plot_figure(finite: np.ndarray, boundaries, lam: float, c: float):
    """Two panels over depth (log): the step in metres, and the step relative to the depth
    in percent; the walk vertices are marked and named along the top."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import FuncFormatter, NullLocator
    except ImportError:
        raise click.ClickException("the plot needs matplotlib: pip install matplotlib "
                                   "(or pass --no-plot)") from None
    mids = finite[1:-1]
    steps = np.diff(finite)[1:]
    figure = Figure(figsize=(8, 6), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    step_axes, relative_axes = figure.subplots(2, 1, sharex=True)
    step_axes.loglog(mids, steps, color="C0")
    step_axes.set_ylabel("depth step")
    step_axes.yaxis.set_major_formatter(FuncFormatter(lambda v, _: _metres(v)))
    relative_axes.loglog(mids, 100 * steps / mids, color="C1")
    relative_axes.set_ylabel("relative step (%)")
    relative_axes.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    relative_axes.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    relative_axes.set_xlabel("depth (m)")
    vertices = boundaries[1:-1]
    for axes in (step_axes, relative_axes):
        axes.grid(True, which="both", alpha=0.2)
        for _, depth in vertices:
            axes.axvline(depth, color="0.75", linewidth=0.8, zorder=0)
        axes.axvline(finite[-1], color="0.4", linewidth=0.8, linestyle="--", zorder=0)
    top = step_axes.secondary_xaxis("top")
    top.set_xticks([d for _, d in vertices], labels=[name for name, _ in vertices])
    top.tick_params(labelsize=8, labelrotation=45)
    step_axes.set_ylim(bottom=1e-3)
    relative_axes.set_ylim(bottom=0.1)
    step_axes.text(finite[-1], 2e-3, f"largest finite\ndepth {finite[-1]:.4g} m ",
                   ha="right", va="bottom", fontsize=8, color="0.3")
    top.xaxis.set_minor_locator(NullLocator())
    step_axes.set_title(f"8-bit cube-walk depth: one colour step vs depth "
                        f"(lam={lam:.4g}, c={c:.4g})", fontsize=10)
    return figure
