"""``vbkernels decode depth|colormap --ply``: cut-offs, stride and voxels (issue 24, item 4)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import vbkernels as vb
from vbkernels import cli
from vbkernels.scenes import SKY_DEPTH, make_scenes


@pytest.fixture(scope="module")
def scene():
    truth = make_scenes(1, 30, 40, seed=6)
    intrinsics = truth["intrinsics"][0]
    camera = (float(intrinsics[0, 0]), float(intrinsics[1, 1]), float(intrinsics[0, 2]),
              float(intrinsics[1, 2]))
    return truth, camera


def _invoke(*args):
    return CliRunner().invoke(cli.main, [str(a) for a in args], catch_exceptions=False)


def _vertices(path) -> np.ndarray:
    data = path.read_bytes()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    header = data[:end].decode("ascii").splitlines()
    count = int(next(line.split()[-1] for line in header if line.startswith("element vertex")))
    dtype = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"),
                      ("blue", "u1")])
    vertices = np.frombuffer(data[end:], dtype=dtype)
    assert len(vertices) == count
    return vertices


def _decode_ply(tmp_path, rgb, camera, *options, task="depth"):
    """The PLY that ``decode TASK f.png --ply --intrinsics CAMERA OPTIONS`` writes."""
    Image.fromarray(rgb).save(tmp_path / "f.png")
    result = _invoke("decode", task, tmp_path / "f.png", "-o", tmp_path / "out", "--outputs",
                     "npy", "--ply", "--intrinsics", ",".join(repr(v) for v in camera),
                     "--overwrite", *options)
    assert result.exit_code == 0, result.output
    return _vertices(tmp_path / "out" / "f.ply")


def test_max_depth_drops_the_sky_instead_of_a_wall(tmp_path, scene):
    truth, camera = scene
    rgb = vb.encode_depth(truth["depth"][0]).numpy()
    depth = vb.decode_depth(rgb)
    sky = truth["depth"][0].numpy() >= SKY_DEPTH
    assert 0 < sky.sum() < sky.size
    everything = _decode_ply(tmp_path, rgb, camera)
    assert len(everything) == depth.size  # every pixel, sky included
    near = _decode_ply(tmp_path, rgb, camera, "--ply-max-depth", 100)
    assert len(near) == int((depth <= 100).sum()) == depth.size - int(sky.sum())
    assert near["z"].max() <= 100 + 1e-3
    # --max-depth clamps (the sky becomes a wall at 50 m); --ply-max-depth 49 drops it
    clamped = _decode_ply(tmp_path, rgb, camera, "--max-depth", 50, "--ply-max-depth", 49)
    assert len(clamped) == int((depth <= 49).sum())


def test_stride_and_voxels_thin_the_cloud(tmp_path, scene):
    truth, camera = scene
    rgb = vb.encode_depth(truth["depth"][0]).numpy()
    depth = vb.decode_depth(rgb)
    keep = depth <= 100
    strided = _decode_ply(tmp_path, rgb, camera, "--ply-max-depth", 100, "--ply-stride", 3)
    assert len(strided) == int(keep[::3, ::3].sum())
    full = vb.depth_to_points(depth, camera)
    np.testing.assert_allclose(np.sort(strided["z"]), np.sort(full[::3, ::3][keep[::3, ::3]][:, 2]),
                               rtol=1e-6)
    voxels = _decode_ply(tmp_path, rgb, camera, "--ply-max-depth", 100, "--ply-voxel", 0.5)
    cells = {tuple(c) for c in np.floor(full[keep].astype(np.float64) / 0.5).astype(int)}
    assert len(voxels) == len(cells) < int(keep.sum())


def test_max_distance_drops_colours_off_the_walk(tmp_path, scene):
    truth, camera = scene
    buffer = io.BytesIO()
    Image.fromarray(vb.encode_depth(truth["depth"][0]).numpy()).save(buffer, "JPEG", quality=70)
    rgb = np.asarray(Image.open(buffer).convert("RGB"))
    depth, distance = vb.decode_depth(rgb, return_distance=True)
    assert 0 < (distance > 8).sum()
    cloud = _decode_ply(tmp_path, rgb, camera, "--ply-max-distance", 8)
    assert len(cloud) == int(((distance <= 8) & np.isfinite(depth)).sum())  # white: +inf


def test_colormap_ply_uses_the_values_as_depth(tmp_path, scene):
    truth, camera = scene
    depth = truth["depth"][0].clamp(max=60.0)
    rgb = vb.encode_colormap(depth, "viridis", vmin=0, vmax=60).numpy()
    values = vb.decode_colormap(rgb, "viridis", vmin=0, vmax=60)
    cloud = _decode_ply(tmp_path, rgb, camera, "--colormap", "viridis", "--vmax", 60,
                        "--ply-max-depth", 59, "--ply-stride", 2, task="colormap")
    assert len(cloud) == int((values <= 59)[::2, ::2].sum())
    expected = vb.depth_to_points(values, camera)[::2, ::2][(values <= 59)[::2, ::2]]
    np.testing.assert_allclose(np.stack([cloud["x"], cloud["y"], cloud["z"]], -1), expected,
                               rtol=1e-6, atol=1e-6)
    assert np.array_equal(np.stack([cloud["red"], cloud["green"], cloud["blue"]], -1),
                          rgb[::2, ::2][(values <= 59)[::2, ::2]])


def test_thinning_without_ply_is_a_usage_error(tmp_path, scene):
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "f.png")
    result = _invoke("decode", "depth", tmp_path / "f.png", "-o", tmp_path / "out",
                     "--ply-stride", 2)
    assert result.exit_code == 2 and "add --ply" in result.output
    assert not (tmp_path / "out").exists()
