"""Preview PNGs (vbkernels/cli/previews.py) and the ``vbkernels precision`` plot."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("matplotlib")

from vbkernels.cli.previews import (  # noqa: E402
    INSTANCE_COLOURS,
    depth_preview_png,
    instance_preview_png,
    seg_preview_png,
)
from vbkernels.palettes import load_palette  # noqa: E402


def _rgb(png: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(png))
    assert image.mode == "RGB"
    return np.asarray(image)


def _ramp(height=192, width=256, low=1.0, high=9.0):
    return np.tile(np.linspace(low, high, width), (height, 1))


def test_depth_preview_is_the_image_at_its_size_with_a_narrow_bar_beside_it():
    from matplotlib import colormaps

    depth = _ramp()
    depth[0, 0] = np.nan
    out = _rgb(depth_preview_png(depth, vmin=1.0, vmax=9.0))
    assert out.shape[0] == 192 and 256 < out.shape[1] <= 256 + 100  # no wide margin
    turbo = (colormaps["turbo"](np.linspace(0, 1, 256))[:, :3] * 255 + 0.5).astype(np.uint8)
    assert np.array_equal(out[1:, :256], np.broadcast_to(turbo, (191, 256, 3)))
    assert out[0, 0].tolist() == [0, 0, 0]  # NaN
    strip = out[:, 256:]
    assert (strip == 255).all(axis=-1).mean() > 0.5  # white behind the bar and its labels
    assert (strip != 255).any(axis=-1).any()


def test_depth_preview_fixed_scale_is_shared_and_auto_scale_is_per_frame():
    near, far = _ramp(48, 64, 1.0, 5.0), _ramp(48, 64, 1.0, 40.0)
    fixed = [_rgb(depth_preview_png(d, vmin=0.0, vmax=50.0)) for d in (near, far)]
    assert np.array_equal(fixed[0][:, 0], fixed[1][:, 0])  # 1 m is one colour in both
    auto = [_rgb(depth_preview_png(d)) for d in (near, far)]
    assert not np.array_equal(auto[0][:, 48], auto[1][:, 48])
    with pytest.raises(ValueError, match="vmax must be greater"):
        depth_preview_png(near, vmin=5.0, vmax=1.0)


def test_small_depth_image_keeps_its_pixels_with_a_readable_bar():
    out = _rgb(depth_preview_png(_ramp(6, 8), vmin=1, vmax=9))
    assert out.shape[0] >= 100  # the bar needs room: white below the 6-row image
    assert (out[6:, :8] == 255).all()


def test_seg_preview_shows_palette_colours_and_a_legend_of_present_classes():
    city = load_palette("cityscapes")
    labels = np.zeros((120, 160), np.int64)
    labels[60:, :] = 13          # car
    labels[:10, :10] = 255       # ignore
    out = _rgb(seg_preview_png(labels, city))
    assert out.shape[0] == 120 and out.shape[1] > 160
    image, legend = out[:, :160], out[:, 160:]
    assert np.array_equal(image[labels == 13][0], city.colors[13].numpy())
    assert (image[labels == 255] == 0).all()  # Cityscapes paints ignore black
    colours = {tuple(c) for c in legend.reshape(-1, 3).tolist()}
    assert tuple(city.colors[0].tolist()) in colours and tuple(city.colors[13].tolist()) in colours
    assert tuple(city.colors[11].tolist()) not in colours  # person is absent
    assert (0, 0, 0) in colours  # the ignore swatch (and text)


def test_seg_preview_takes_a_plain_palette_and_many_classes_fit():
    ade = load_palette("ade20k")
    labels = np.arange(150).repeat(64).reshape(96, 100)
    out = _rgb(seg_preview_png(labels, ade.colors))
    assert out.shape[0] == 96  # the legend wraps into columns rather than growing down
    legend = {tuple(c) for c in out[:, 100:].reshape(-1, 3).tolist()}
    wanted = {tuple(c) for c in ade.colors.tolist()}
    assert wanted <= legend


def test_instance_preview_fixed_colours_boundaries_background():
    labels = np.zeros((20, 30), np.int64)
    labels[2:10, 2:12] = 1
    labels[2:10, 12:20] = 2      # touches instance 1
    labels[12:18, 3:9] = 25      # past the cycle: wraps around
    labels[15:17, 22:25] = -1
    out = _rgb(instance_preview_png(labels))
    assert out.shape == (20, 30, 3)
    assert out[5, 5].tolist() == INSTANCE_COLOURS[0].tolist()
    assert out[5, 15].tolist() == INSTANCE_COLOURS[1].tolist()
    assert out[14, 5].tolist() == INSTANCE_COLOURS[24 % len(INSTANCE_COLOURS)].tolist()
    assert out[5, 11].tolist() == [255, 255, 255]  # the boundary between 1 and 2
    assert out[0, 0].tolist() == [0, 0, 0] and out[19, 29].tolist() == [0, 0, 0]
    assert out[16, 23].tolist() == [128, 128, 128] or out[15, 22].tolist() == [128, 128, 128]


def test_instance_colours_are_well_separated():
    colours = INSTANCE_COLOURS.astype(float)
    gaps = np.linalg.norm(colours[:, None] - colours[None], axis=-1)
    assert gaps[~np.eye(len(colours), dtype=bool)].min() > 35
    assert np.diag(gaps, 1).min() > 80  # consecutive ids clearly differ
    for reserved in ((0, 0, 0), (255, 255, 255), (128, 128, 128)):
        assert np.linalg.norm(colours - reserved, axis=-1).min() > 40


def test_precision_plot_axes_and_labels_inside_the_picture():
    from vbkernels.cli.precision import plot_figure, segment_boundaries, walk_depths

    walk = walk_depths(-3.0, 10 / 3)
    figure = plot_figure(walk[np.isfinite(walk)], segment_boundaries(-3.0, 10 / 3), -3.0, 10 / 3)
    step_axes, relative_axes = figure.axes[:2]
    assert step_axes.get_ylabel() == "depth step"
    assert relative_axes.get_ylabel() == "relative step (%)"
    assert len(step_axes.get_lines()) and len(relative_axes.get_lines())
    figure.canvas.draw()
    names = {t.get_text() for t in step_axes.child_axes[0].get_xticklabels()}  # top axis
    assert {"red", "yellow", "green", "cyan", "blue", "magenta"} <= names
    drawn = figure.get_tightbbox(figure.canvas.get_renderer())  # everything drawn, inches
    page = figure.bbox_inches
    assert page.x0 <= drawn.x0 and drawn.x1 <= page.x1 and page.y0 <= drawn.y0 \
        and drawn.y1 <= page.y1, (drawn, page)
