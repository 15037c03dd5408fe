"""Preview PNGs a person can read: decoded depth, labels, instances and colormap values as
pictures.

Every preview keeps the decoded image at its own resolution, pixel for pixel, in the top-left
corner; depth, colormap and semantic previews add a strip beside it (a colour bar in metres
or values, a legend of the classes present). Where the strip needs more height than a small
image has, the canvas below the image is white. Normals need no preview function: their
colours are the encoding itself (``encode_normals``).

matplotlib draws the colour maps, the colour bar and the text; the image itself is
composed with NumPy, so it is never resampled.
"""

from __future__ import annotations

import numpy as np

from .io import png_bytes

# Kelly's colours of maximum contrast (Kelly 1965), without white, black, the grey that
# would look like "near no colour", and the greenish and orange yellows that sit too close
# to yellow and orange: a fixed cycle for instance ids 1, 2, 3, ...
INSTANCE_COLOURS = np.array([
    (243, 195, 0), (135, 86, 146), (243, 132, 0), (161, 202, 241), (190, 0, 50),
    (194, 178, 128), (0, 136, 86), (230, 143, 172), (0, 103, 165), (249, 147, 121),
    (96, 78, 151), (179, 68, 108), (136, 45, 23),
    (141, 182, 0), (101, 69, 34), (226, 88, 34), (43, 61, 38),
], dtype=np.uint8)
INSTANCE_BOUNDARY = (255, 255, 255)
INSTANCE_UNMATCHED = (128, 128, 128)  # label -1: near none of the image's colours
DEPTH_INVALID = (0, 0, 0)  # NaN depth

_DPI = 100
_WHITE = 255


def depth_preview_png(depth, *, vmin=None, vmax=None, cmap: str = "turbo") -> bytes:
    """(H, W) metres -> PNG: the depth through ``cmap`` at (H, W), a colour bar beside it.

    ``vmin``/``vmax`` fix the scale (give both so every frame of a video shares one);
    a missing bound is the 1st/99th percentile of the frame's finite depths, so one far
    pixel (or +inf white) does not wash the image out. A range over a decade wide (with
    ``vmin > 0``) is drawn on a log scale so near structure stays visible beside a far
    background. Depths outside the range take the end colours; NaN is black.
    """
    from matplotlib import colormaps

    depth = np.asarray(depth, dtype=np.float64)
    if depth.ndim != 2:
        raise ValueError(f"depth must be (H, W), got shape {depth.shape}")
    low, high = _depth_range(depth, vmin, vmax)
    norm = _depth_norm(low, high)
    colour_map = colormaps[cmap]
    with np.errstate(invalid="ignore", divide="ignore"):
        scaled = np.ma.filled(norm(np.ma.masked_invalid(np.clip(depth, low, high))), 0.0)
    rgb = (colour_map(scaled)[..., :3] * 255 + 0.5).astype(np.uint8)
    rgb[np.isnan(depth)] = DEPTH_INVALID
    strip = _colour_bar_strip(depth.shape[0], colour_map, norm, "depth (m)")
    return png_bytes(_beside(rgb, strip))


def colormap_preview_png(values, colormap, *, vmin: float, vmax: float,
                         scale: str = "linear", label: str = "value") -> bytes:
    """(H, W) values decoded from a colormapped image -> PNG: the values painted back with
    the same ``colormap``, range and ``scale`` (``vbkernels.encode_colormap``, so a pixel
    decoded exactly looks as it did in the input; NaN black), a colour bar beside it.

    ``colormap`` is anything ``decode_colormap`` takes, or a ``ColormapTable``.
    """
    from matplotlib.colors import ListedColormap

    from vbkernels.colormap import encode_colormap
    from vbkernels.colormaps import ColormapTable, colormap_table

    values = np.asarray(values)
    if values.ndim != 2:
        raise ValueError(f"values must be (H, W), got shape {values.shape}")
    table = colormap if isinstance(colormap, ColormapTable) else colormap_table(colormap)
    rgb = encode_colormap(values, table.painted, vmin=vmin, vmax=vmax, scale=scale)
    colour_map = ListedColormap(table.painted / 255.0)
    if scale == "inverse":  # painted linearly in 1/value, vmin at the top of the map
        colour_map = colour_map.reversed()
    strip = _colour_bar_strip(values.shape[0], colour_map, _value_norm(vmin, vmax, scale),
                              label)
    return png_bytes(_beside(rgb, strip))


def seg_preview_png(labels, palette) -> bytes:
    """(H, W) labels -> PNG: palette colours at (H, W), a legend of the classes present.

    ``palette`` is a :class:`vbkernels.palettes.Palette` (class names in the legend) or a
    ``(K, 3)`` array of colours (classes named by index). Labels outside ``[0, K)`` are drawn
    in the palette's ignore colour (black for a plain array) and listed as "ignore".
    """
    from vbkernels.palettes import palette_arguments

    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be (H, W), got shape {labels.shape}")
    colours, ignore_index, ignore_color = palette_arguments(palette, default_color=(0, 0, 0))
    colours = np.asarray(colours, dtype=np.float64).reshape(-1, 3).round().astype(np.uint8)
    names = getattr(palette, "names", None) or [f"class {i}" for i in range(len(colours))]
    k = len(colours)
    valid = (labels >= 0) & (labels < k)
    rgb = colours[np.where(valid, labels, 0)]
    rgb[~valid] = ignore_color
    present, counts = np.unique(labels[valid], return_counts=True)
    order = np.argsort(-counts, kind="stable")  # largest class first
    entries = [(f"{int(i)} {names[int(i)]}", colours[int(i)]) for i in present[order]]
    if not valid.all():
        entries.append((f"{ignore_index} ignore", np.asarray(ignore_color, dtype=np.uint8)))
    return png_bytes(_beside(rgb, _legend_strip(labels.shape[0], entries)))


def instance_preview_png(labels) -> bytes:
    """(H, W) instance ids -> PNG at (H, W): background (0) black, instance ``i`` the
    ``(i - 1) % 17``-th of a fixed cycle of well-separated colours (the same id gets the
    same colour in every frame), -1 ("near no colour") mid grey, and a one-pixel white
    line wherever the label changes, so touching instances stay apart."""
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be (H, W), got shape {labels.shape}")
    rgb = INSTANCE_COLOURS[(np.maximum(labels, 1) - 1) % len(INSTANCE_COLOURS)]
    rgb[labels == 0] = 0
    rgb[labels < 0] = INSTANCE_UNMATCHED
    rgb[_boundaries(labels)] = INSTANCE_BOUNDARY
    return png_bytes(rgb)


# ------------------------------------------------------------------------- helpers


def _depth_range(depth: np.ndarray, vmin, vmax) -> tuple[float, float]:
    finite = depth[np.isfinite(depth)]
    auto = np.percentile(finite, [1, 99]) if finite.size else (0.0, 1.0)
    low = float(auto[0]) if vmin is None else float(vmin)
    high = float(auto[1]) if vmax is None else float(vmax)
    if not (np.isfinite(low) and np.isfinite(high)):
        raise ValueError(f"vmin and vmax must be finite, got {vmin!r}, {vmax!r}")
    if vmin is not None and vmax is not None and not high > low:
        raise ValueError(f"vmax must be greater than vmin, got vmin={vmin}, vmax={vmax}")
    if high <= low:
        high = low + 1e-3
    return low, high


def _depth_norm(low: float, high: float):
    from matplotlib.colors import LogNorm, Normalize

    if low > 0 and high / low > 10:
        return LogNorm(vmin=low, vmax=high)
    return Normalize(vmin=low, vmax=high)


def _value_norm(vmin: float, vmax: float, scale: str):
    """matplotlib's norm for ``decode_colormap``'s scales (inverse: with the map reversed,
    ``-1/value`` runs linearly from vmin at 0 to vmax at 1)."""
    from matplotlib.colors import FuncNorm, LogNorm, Normalize

    if scale == "log":
        return LogNorm(vmin=vmin, vmax=vmax)
    if scale == "inverse":
        return FuncNorm((lambda v: -1.0 / v, lambda y: -1.0 / y), vmin=vmin, vmax=vmax)
    return Normalize(vmin=vmin, vmax=vmax)


def _boundaries(labels: np.ndarray) -> np.ndarray:
    """Pixels whose right or lower neighbour has another label (not between two
    background pixels)."""
    edge = np.zeros(labels.shape, dtype=bool)
    right = labels[:, 1:] != labels[:, :-1]
    down = labels[1:, :] != labels[:-1, :]
    edge[:, :-1] |= right
    edge[:-1, :] |= down
    return edge


def _font_px(height: int) -> float:
    """Text size for a strip beside an image ``height`` pixels tall: readable on a
    thumbnail, not absurd on 4K."""
    return float(np.clip(height / 28, 10, 22))


def _canvas(width: int, height: int):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width / _DPI, height / _DPI), dpi=_DPI, facecolor="white")
    FigureCanvasAgg(figure)
    return figure


def _pixels(figure) -> np.ndarray:
    figure.canvas.draw()
    return np.asarray(figure.canvas.buffer_rgba())[..., :3].copy()


def _colour_bar_strip(image_height: int, colour_map, norm, label: str) -> np.ndarray:
    """A white strip with a vertical colour bar, its ticks and ``label``."""
    from matplotlib.colorbar import ColorbarBase

    font = _font_px(image_height)
    height = max(image_height, int(12 * font))
    width = int(6.5 * font)
    pad = int(0.8 * font)  # room above and below the bar for the end tick labels
    figure = _canvas(width, height)
    bar_x, bar_w = 0.4 * font, 1.1 * font
    axes = figure.add_axes((bar_x / width, pad / height, bar_w / width,
                            (height - 2 * pad) / height))
    bar = ColorbarBase(axes, cmap=colour_map, norm=norm)
    bar.set_ticks(_ticks(norm), labels=[f"{t:g}" for t in _ticks(norm)])
    bar.ax.minorticks_off()
    points = font * 72 / _DPI
    bar.ax.tick_params(labelsize=points * 0.9)
    bar.set_label(label, fontsize=points)
    return _pixels(figure)


def _ticks(norm) -> list[float]:
    """Round tick values inside the norm's range: 1-2-5 steps on a log or inverse scale,
    about six evenly spaced ones on a linear scale."""
    from matplotlib.colors import FuncNorm, LogNorm
    from matplotlib.ticker import MaxNLocator

    low, high = norm.vmin, norm.vmax
    if isinstance(norm, (LogNorm, FuncNorm)):
        decades = range(int(np.floor(np.log10(low))), int(np.ceil(np.log10(high))) + 1)
        ticks = [m * 10.0 ** e for e in decades for m in (1, 2, 5)]
    else:
        ticks = MaxNLocator(nbins=6).tick_values(low, high)
    eps = 1e-9 * (high - low)
    return [float(f"{t:.6g}") for t in ticks if low - eps <= t <= high + eps]


def _legend_strip(image_height: int, entries) -> np.ndarray:
    """A white strip with one row per ``(text, colour)``: a swatch, then the text; as
    many columns as the height needs."""
    from matplotlib.patches import Rectangle

    font = _font_px(image_height)
    row = 1.5 * font
    rows_fit = max(1, int((max(image_height, row * 4) - font) // row))
    rows = min(len(entries), rows_fit) or 1
    columns = -(-len(entries) // rows) if entries else 1
    longest = max((len(text) for text, _ in entries), default=0)
    column_w = 2.2 * font + 0.62 * font * longest
    width = int(column_w * columns + font)
    height = max(image_height, int(rows * row + font))
    figure = _canvas(width, height)
    points = font * 72 / _DPI
    for i, (text, colour) in enumerate(entries):
        x = font * 0.6 + (i // rows) * column_w
        y = height - font * 0.5 - (i % rows + 1) * row  # pixels from the bottom
        figure.patches.append(Rectangle(
            (x / width, (y + 0.2 * font) / height), font / width, font / height,
            transform=figure.transFigure, facecolor=np.asarray(colour) / 255,
            edgecolor="0.3", linewidth=0.5))
        figure.text((x + 1.5 * font) / width, (y + 0.7 * font) / height, text,
                    fontsize=points, va="center", ha="left")
    return _pixels(figure)


def _beside(image: np.ndarray, strip: np.ndarray) -> np.ndarray:
    """``image`` at the top left, ``strip`` to its right, white below a short image."""
    height = max(image.shape[0], strip.shape[0])
    out = np.full((height, image.shape[1] + strip.shape[1], 3), _WHITE, dtype=np.uint8)
    out[:image.shape[0], :image.shape[1]] = image
    out[:strip.shape[0], image.shape[1]:] = strip
    return out
