"""Draw the README's colormap and point-cloud figures into docs/images/.

    python docs/make_images.py          # needs matplotlib; a few seconds on one core

Both start from a procedural street scene (``vbkernels.scenes``), so they are reproducible:

- ``colormap.png``: the scene's depth painted by matplotlib (``plt.imsave``, turbo, 0-80 m),
  the depth ``decode_colormap`` reads back from a JPEG q90 copy of that PNG, and each pixel's
  distance to the colormap there, which is where the decoded depth deserves less trust.
- ``points.png``: the depth and normals encoded the Vision Banana way, decoded, back-projected
  with ``depth_to_points`` and drawn as a 3-D scatter from two viewpoints, each point in its
  decoded normal's colour.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

import vbkernels as vb  # noqa: E402
from vbkernels.scenes import SKY_DEPTH, _draw_layout, make_scenes  # noqa: E402

IMAGES = Path(__file__).resolve().parent / "images"
HEIGHT, WIDTH = 192, 256
SEED, SCENES, SHOWN = 0, 6, 0  # scene SHOWN of make_scenes(SCENES, ..., seed=SEED)
VMAX = 50.0  # metres at the top of the colormap; farther (the sky) is painted as 50 m


def _scene() -> dict:
    return {k: v[SHOWN] for k, v in make_scenes(SCENES, HEIGHT, WIDTH, seed=SEED).items()}


def _jpeg(rgb: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=quality)  # 4:2:0, Pillow's default
    return np.asarray(Image.open(buffer).convert("RGB"))


def colormap_figure(path: Path) -> None:
    depth = _scene()["depth"].numpy()
    buffer = io.BytesIO()
    plt.imsave(buffer, depth, cmap="turbo", vmin=0, vmax=VMAX, format="png")
    painted = np.asarray(Image.open(buffer).convert("RGB"))
    jpeg = _jpeg(painted, 90)
    decoded, distance = vb.decode_colormap(jpeg, "turbo", vmin=0, vmax=VMAX,
                                           return_distance=True)
    error = np.abs(decoded - np.minimum(depth, VMAX))
    png_error = np.abs(vb.decode_colormap(painted, "turbo", vmin=0, vmax=VMAX)
                       - np.minimum(depth, VMAX))

    figure, axes = plt.subplots(1, 3, figsize=(12.6, 3.5), dpi=100, layout="constrained")
    panels = [
        (painted, None, "plt.imsave(cmap='turbo', vmin=0, vmax=50)", None),
        (decoded, dict(cmap="magma", vmin=0, vmax=VMAX),
         f"decode_colormap of its JPEG q90 copy\nmedian error {np.median(error):.2f} m "
         f"(PNG: max {png_error.max():.2f} m)", "metres"),
        (distance, dict(cmap="viridis", vmin=0, vmax=12),
         f"distance to the colormap (JPEG q90)\nmedian {np.median(distance):.1f}, "
         f"99th percentile {np.percentile(distance, 99):.1f}", "0..255 units"),
    ]
    for ax, (image, style, title, unit) in zip(axes, panels):
        shown = ax.imshow(image, **(style or {}))
        ax.set_title(title, fontsize=10)
        ax.set_axis_off()
        if unit:
            figure.colorbar(shown, ax=ax, shrink=0.85, label=unit)
    figure.savefig(path)
    plt.close(figure)


def points_figure(path: Path) -> None:
    truth = _scene()
    normals = vb.decode_normals(vb.encode_normals(truth["normals"]))  # OpenGL axes
    depth = vb.decode_depth(vb.encode_depth(truth["depth"]))
    # The scene's own camera: a pinhole with its (random) horizontal field of view.
    fov = float(_draw_layout(SCENES, SEED)["fov"][SHOWN])
    f = WIDTH / (2 * math.tan(fov / 2))
    points = vb.depth_to_points(depth, (f, f, (WIDTH - 1) / 2, (HEIGHT - 1) / 2)).numpy()
    colours = ((normals.numpy() + 1) / 2).clip(0, 1)  # the usual normal-map colours
    # The street's first 30 m up to 8 m high (the sky is a plane 250 m away).
    keep = (depth.numpy() < 0.9 * SKY_DEPTH) & (points[..., 2] < 30) & (points[..., 1] > -8)
    keep[::2, 1::2] = keep[1::2, ::2] = False  # every other pixel, on a checkerboard
    x, y, z = points[keep].T
    colour = colours[keep]

    figure = plt.figure(figsize=(12, 4.6), dpi=100)
    views = [(22, -112, "from behind the camera, above it"), (48, -28, "from the side")]
    for i, (elevation, azimuth, title) in enumerate(views):
        ax = figure.add_subplot(1, 2, i + 1, projection="3d")
        # OpenCV camera axes (x right, y down, z forward) drawn with z forward and -y up.
        ax.scatter(x, z, -y, c=colour, s=0.8, linewidths=0, depthshade=False)
        ax.view_init(elev=elevation, azim=azimuth)
        ax.set_xlabel("x (m)")
        ax.set_ylabel("z, forward (m)")
        ax.set_zlabel("up (m)")
        ax.set_proj_type("persp", focal_length=0.6)
        ax.set_box_aspect((np.ptp(x), np.ptp(z), np.ptp(y)))
        ax.set_title(title, fontsize=10)
    figure.suptitle(f"depth_to_points of decoded depth ({keep.sum()} points: the first 30 m, "
                    "8 m high), coloured by the decoded normals", fontsize=11, y=0.98)
    figure.subplots_adjust(left=0.01, right=0.97, bottom=0.02, top=0.86, wspace=0.08)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    # 256 colours are plenty for flat-shaded points and keep the file small.
    Image.open(buffer).convert("RGB").quantize(256).save(path, optimize=True)
    plt.close(figure)


def main() -> None:
    IMAGES.mkdir(exist_ok=True)
    for name, draw in (("colormap.png", colormap_figure), ("points.png", points_figure)):
        draw(IMAGES / name)
        print(f"wrote {IMAGES / name} ({(IMAGES / name).stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
