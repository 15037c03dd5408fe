"""depth_to_points, normals_from_depth, normal_consistency and write_ply against an
independent float64 NumPy oracle (docs/format.md, Points)."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest
import torch

import vbkernels
from tests.conftest import backend_device_pairs
from vbkernels import depth_to_points, normal_consistency, normals_from_depth, points, write_ply
from vbkernels._dispatch import load_backend

RTOL = 1e-5
# Every (backend, device) pair whose backend offers the point ops: the torch reference on
# every device, the fused Triton kernels (interpreted on CPU in CI), the CUDA kernels.
PAIRS = [(b, d) for b, d in backend_device_pairs()
         if {"depth_to_points", "normals_from_depth"} <= set(load_backend(b).ops)]
PAIR_IDS = [f"{b}-{d}" for b, d in PAIRS]
CAMERA = (50.0, 40.0, 7.3, 5.1)  # fx, fy, cx, cy for the 12 x 16 test images


# --------------------------------------------------------------------------- oracle


def oracle_points(depth, k, kind, convention):
    """float64 back-projection, pixel (u, v) at integer coordinates; k is a (..., 3, 3)."""
    depth = np.asarray(depth, np.float64)
    k = np.asarray(k, np.float64)
    h, w = depth.shape[-2:]
    v, u = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64),
                       indexing="ij")
    fx, s, cx = (k[..., 0, i][..., None, None] for i in range(3))
    fy, cy = k[..., 1, 1][..., None, None], k[..., 1, 2][..., None, None]
    ray = np.stack(np.broadcast_arrays((u - cx - s * (v - cy) / fy) / fx, (v - cy) / fy,
                                       np.ones_like(u)), -1)
    if kind == "ray":
        ray = ray / np.linalg.norm(ray, axis=-1, keepdims=True)
    pts = ray * depth[..., None]
    pts[~np.isfinite(np.broadcast_to(depth, pts.shape[:-1]))] = np.nan
    if convention == "opengl":
        pts = pts * np.array([1.0, -1.0, -1.0])
    return pts


def oracle_normals(pts_cv):
    """Normals from opencv-axis points: central / one-sided differences, toward camera."""
    def diff(p, axis):
        n = p.shape[axis]
        fwd = np.take(p, np.minimum(np.arange(n) + 1, n - 1), axis=axis)
        back = np.take(p, np.maximum(np.arange(n) - 1, 0), axis=axis)
        return fwd - back
    du, dv = diff(pts_cv, -2), diff(pts_cv, -3)
    n = np.cross(du, dv)
    n = np.where(np.sum(n * pts_cv, -1, keepdims=True) > 0, -n, n)
    n = n / np.linalg.norm(n, axis=-1, keepdims=True)
    n[np.isnan(pts_cv).any(-1)] = np.nan  # no point, no normal
    return n


def matrix(fx, fy, cx, cy, s=0.0):
    return np.array([[fx, s, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def smooth_depth(shape, seed=0):
    rng = np.random.default_rng(seed)
    h, w = shape[-2:]
    v, u = np.meshgrid(np.linspace(0, 1, h), np.linspace(0, 1, w), indexing="ij")
    a = rng.uniform(0.5, 1.5, shape[:-2] + (1, 1))
    return 2.0 + a * np.sin(2.0 * u + 1.0) + 0.5 * np.cos(3.0 * v) * a


def assert_close(actual, expected, rtol=RTOL):
    actual = np.asarray(actual, np.float64)
    assert actual.shape == expected.shape
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected))
    scale = np.nanmax(np.abs(expected))
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale, equal_nan=True)


# --------------------------------------------------------------------------- depth_to_points


@pytest.mark.parametrize("kind", ["z", "ray"])
@pytest.mark.parametrize("convention", ["opencv", "opengl"])
@pytest.mark.parametrize("per_image", [False, True], ids=["tuple", "matrices"])
@pytest.mark.parametrize("backend,device", PAIRS, ids=PAIR_IDS)
def test_points_match_oracle(kind, convention, per_image, backend, device):
    depth = smooth_depth((2, 12, 16))
    depth[0, 3, 4], depth[1, 0, 0], depth[1, 11, 15] = np.nan, np.inf, -np.inf
    if per_image:
        intr = np.stack([matrix(*CAMERA, s=0.7), matrix(61.0, 33.0, 8.0, 4.0)])
        k = intr
    else:
        intr, k = CAMERA, matrix(*CAMERA)
    expected = oracle_points(depth, k, kind, convention)
    got = depth_to_points(torch.from_numpy(depth).float().to(device),
                          torch.from_numpy(intr) if per_image else intr,
                          depth_kind=kind, convention=convention, backend=backend)
    assert got.dtype == torch.float32 and got.shape == (2, 12, 16, 3)
    assert got.device.type == device
    got = got.cpu()
    assert_close(got.numpy(), expected)
    assert np.isnan(got[0, 3, 4].numpy()).all() and np.isnan(got[1, 0, 0].numpy()).all()


def test_points_float64_numpy_and_dtypes():
    depth = smooth_depth((12, 16))
    expected = oracle_points(depth, matrix(*CAMERA), "z", "opencv")
    got = depth_to_points(depth, CAMERA)
    assert isinstance(got, np.ndarray) and got.dtype == np.float64
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    half = depth_to_points(torch.from_numpy(depth).half(), CAMERA)
    assert half.dtype == torch.float32
    assert_close(half.numpy(), oracle_points(torch.from_numpy(depth).half().double().numpy(),
                                             matrix(*CAMERA), "z", "opencv"))
    integer = depth_to_points(np.full((2, 3), 1000, np.uint16), (1.0, 1.0, 0.0, 0.0))
    assert integer.dtype == np.float32 and integer[1, 2].tolist() == [2000.0, 1000.0, 1000.0]


def test_points_broadcast_intrinsics_batch():
    depth = smooth_depth((12, 16))  # one image, three cameras
    k = np.stack([matrix(*CAMERA), matrix(20.0, 25.0, 1.0, 2.0), matrix(9.0, 9.0, 0.0, 0.0)])
    got = depth_to_points(torch.from_numpy(depth), torch.from_numpy(k), depth_kind="ray")
    assert got.shape == (3, 12, 16, 3)
    assert_close(got.numpy(), oracle_points(depth, k, "ray", "opencv"))


def test_ray_depth_is_distance():
    depth = torch.full((5, 7), 3.0)
    pts = depth_to_points(depth, (4.0, 5.0, 1.0, 2.0), depth_kind="ray")
    torch.testing.assert_close(torch.linalg.vector_norm(pts, dim=-1), depth)


def test_points_out():
    depth = torch.from_numpy(smooth_depth((12, 16))).float()
    out = torch.empty(12, 16, 3)
    assert depth_to_points(depth, CAMERA, out=out) is out
    torch.testing.assert_close(out, depth_to_points(depth, CAMERA))
    out_np = np.empty((12, 16, 3), np.float64)
    assert depth_to_points(depth.double().numpy(), CAMERA, out=out_np) is out_np
    with pytest.raises(ValueError, match="out must have shape"):
        depth_to_points(depth, CAMERA, out=torch.empty(12, 16, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="out must be a torch.Tensor"):
        depth_to_points(depth, CAMERA, out=out.numpy())


def test_empty_depth():
    assert depth_to_points(torch.empty(0, 4, 5), CAMERA).shape == (0, 4, 5, 3)
    assert normals_from_depth(torch.empty(0, 4, 5), CAMERA).shape == (0, 4, 5, 3)


@pytest.mark.parametrize("intrinsics, error, message", [
    ((1.0, 1.0, 0.0), ValueError, "intrinsics must be"),
    ((0.0, 1.0, 0.0, 0.0), ValueError, "focal length fx"),
    ((1.0, -2.0, 0.0, 0.0), ValueError, "focal length fy"),
    ((1.0, math.inf, 0.0, 0.0), ValueError, r"intrinsics\[1\] must be finite"),
    ((1.0, 1.0, "a", 0.0), TypeError, r"intrinsics\[2\] must be a real number"),
    (np.eye(4), ValueError, "got shape"),
    (np.array([[1.0, 0, 0], [0, 1, 0], [0, 1, 1]]), ValueError, r"\[0, 0, 1\]"),
    (np.array([[1.0, 0, 0], [0, np.nan, 0], [0, 0, 1]]), ValueError, "finite"),
    (np.stack([matrix(*CAMERA)] * 3), ValueError, "does not broadcast"),
    ("camera", TypeError, "intrinsics must be a torch.Tensor"),
])
def test_intrinsics_errors(intrinsics, error, message):
    with pytest.raises(error, match=message):
        depth_to_points(np.ones((2, 12, 16)), intrinsics)


def test_argument_errors():
    with pytest.raises(ValueError, match=r"depth must have shape \(\.\.\., H, W\)"):
        depth_to_points(np.ones(5), CAMERA)
    with pytest.raises(TypeError, match="depth must be real-valued"):
        depth_to_points(torch.ones(3, 3, dtype=torch.bool), CAMERA)
    with pytest.raises(TypeError, match="depth must be a torch.Tensor"):
        depth_to_points([[1.0]], CAMERA)
    with pytest.raises(ValueError, match="depth_kind"):
        depth_to_points(np.ones((3, 3)), CAMERA, depth_kind="disparity")
    with pytest.raises(ValueError, match="convention"):
        normals_from_depth(np.ones((3, 3)), CAMERA, convention="blender")


# --------------------------------------------------------------------------- normals


@pytest.mark.parametrize("kind", ["z", "ray"])
@pytest.mark.parametrize("convention", ["opencv", "opengl"])
@pytest.mark.parametrize("per_image", [False, True], ids=["tuple", "matrices"])
@pytest.mark.parametrize("backend,device", PAIRS, ids=PAIR_IDS)
def test_normals_match_oracle(kind, convention, per_image, backend, device):
    depth = smooth_depth((2, 12, 16), seed=1)
    depth[0, 5, 6] = np.nan
    k = np.stack([matrix(*CAMERA), matrix(30.0, 45.0, 9.0, 3.0, s=0.2)])
    intr = torch.from_numpy(k) if per_image else CAMERA
    expected = oracle_normals(oracle_points(depth, k if per_image else matrix(*CAMERA), kind,
                                            "opencv"))
    if convention == "opengl":
        expected = expected * np.array([1.0, -1.0, -1.0])
    got = normals_from_depth(torch.from_numpy(depth).float().to(device), intr,
                             depth_kind=kind, convention=convention, backend=backend).cpu()
    assert got.dtype == torch.float32
    assert_close(got.numpy(), expected)
    # The NaN pixel poisons exactly itself and its four neighbours.
    nan = np.isnan(got[0].numpy()).any(-1)
    assert sorted(zip(*np.nonzero(nan))) == [(4, 6), (5, 5), (5, 6), (5, 7), (6, 6)]
    assert not np.isnan(got[1].numpy()).any()


@pytest.mark.parametrize("kind", ["z", "ray"])
def test_plane_normal(kind):
    # The plane n . X = d with a known unit normal n (OpenCV axes, facing the camera).
    n = np.array([0.3, -0.2, -1.0])
    n /= np.linalg.norm(n)
    k = matrix(20.0, 25.0, 10.0, 8.0)
    h, w = 16, 20
    v, u = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64),
                       indexing="ij")
    ray = np.stack([(u - 10.0) / 20.0, (v - 8.0) / 25.0, np.ones_like(u)], -1)
    t = -4.0 / (ray @ n)  # n . (t ray) = -4: the plane is 4 units in front of the camera
    depth = t if kind == "z" else t * np.linalg.norm(ray, axis=-1)
    for convention, sign in (("opencv", [1, 1, 1]), ("opengl", [1, -1, -1])):
        got = normals_from_depth(torch.from_numpy(depth), torch.from_numpy(k),
                                 depth_kind=kind, convention=convention)
        assert got.dtype == torch.float64
        np.testing.assert_allclose(got.numpy(), np.broadcast_to(n * sign, got.shape),
                                   atol=1e-9)
        angles = normal_consistency(got, torch.tensor(n * sign))
        assert float(angles.max()) < 1e-5


def test_normals_degenerate():
    # One-pixel-wide images have no horizontal neighbour.
    assert torch.isnan(normals_from_depth(torch.ones(4, 1), CAMERA)).all()
    # Zero depth collapses every point onto the camera centre: the cross product vanishes.
    assert torch.isnan(normals_from_depth(torch.zeros(3, 3), CAMERA)).all()
    # One row of inf depth: that row and its neighbours rows are NaN, the rest is not.
    depth = torch.ones(6, 4)
    depth[2] = math.inf
    nan_rows = torch.isnan(normals_from_depth(depth, CAMERA)).all(-1).all(-1)
    assert nan_rows.tolist() == [False, True, True, True, False, False]


# --------------------------------------------------------------------------- consistency


def test_normal_consistency():
    a = torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 0.0, 2.0], [math.nan, 0, 1],
                      [0.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    b = torch.tensor([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 1.0],
                      [0.0, 0.0, 1.0], [0.0, 1.0, 1e-4]])
    got = normal_consistency(a, b)
    assert got.dtype == torch.float32
    expected = [0.0, 180.0, 90.0, math.nan, math.nan, math.degrees(1e-4)]
    torch.testing.assert_close(got, torch.tensor(expected), equal_nan=True, rtol=1e-4, atol=1e-6)
    both = normal_consistency(a.double().numpy(), b.numpy())
    assert isinstance(both, np.ndarray) and both.dtype == np.float64
    with pytest.raises(ValueError, match=r"normals_a must have shape \(\.\.\., 3\)"):
        normal_consistency(torch.ones(4, 2), torch.ones(4, 3))
    with pytest.raises(ValueError, match="do not broadcast"):
        normal_consistency(torch.ones(4, 3), torch.ones(5, 3))
    with pytest.raises(TypeError, match="both"):
        normal_consistency(torch.ones(4, 3), np.ones((4, 3)))


# --------------------------------------------------------------------------- PLY


def read_ply(path):
    """Parse a binary little-endian PLY vertex element with NumPy: header, then records."""
    data = path.read_bytes()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    lines = data[:end].decode("ascii").splitlines()
    assert lines[:2] == ["ply", "format binary_little_endian 1.0"]
    types = {"float": "<f4", "uchar": "u1", "int": "<i4"}
    count = next(int(line.split()[2]) for line in lines if line.startswith("element vertex"))
    fields = [(line.split()[2], types[line.split()[1]]) for line in lines
              if line.startswith("property")]
    dtype = np.dtype(fields)
    assert len(data) - end == count * dtype.itemsize
    return np.frombuffer(data, dtype=dtype, offset=end, count=count)


def test_ply_round_trip(tmp_path):
    depth = torch.from_numpy(smooth_depth((4, 5))).float()
    depth[1, 2] = math.nan
    depth[3, 4] = math.inf
    pts = depth_to_points(depth, (5.0, 5.0, 2.0, 1.5))
    colors = torch.arange(60, dtype=torch.uint8).reshape(4, 5, 3)
    normals = normals_from_depth(depth, (5.0, 5.0, 2.0, 1.5))
    labels = torch.arange(20, dtype=torch.int64).reshape(4, 5) - 3
    path = tmp_path / "cloud.ply"
    assert write_ply(path, pts, colors=colors, normals=normals, labels=labels) == 18
    vertices = read_ply(path)
    assert vertices.dtype.names == ("x", "y", "z", "red", "green", "blue", "nx", "ny", "nz",
                                    "label")
    keep = torch.isfinite(depth).flatten().numpy()
    flat = pts.reshape(-1, 3).numpy()[keep]
    np.testing.assert_array_equal(np.stack([vertices[c] for c in "xyz"], -1), flat)
    np.testing.assert_array_equal(np.stack([vertices[c] for c in ("red", "green", "blue")], -1),
                                  colors.reshape(-1, 3).numpy()[keep])
    np.testing.assert_array_equal(np.stack([vertices[c] for c in ("nx", "ny", "nz")], -1),
                                  normals.reshape(-1, 3).numpy()[keep])
    np.testing.assert_array_equal(vertices["label"], labels.flatten().numpy()[keep])
    # Overwrites; float colours in [0, 1] are rounded to 0..255; points only.
    assert write_ply(path, pts.numpy(), colors=np.full((4, 5, 3), 0.5)) == 18
    vertices = read_ply(path)
    assert vertices.dtype.names == ("x", "y", "z", "red", "green", "blue")
    assert (vertices["red"] == 128).all()
    assert write_ply(path, pts[:0]) == 0 and len(read_ply(path)) == 0
    assert [p.name for p in tmp_path.iterdir()] == ["cloud.ply"]  # no temporary left


def test_ply_errors(tmp_path):
    path = tmp_path / "bad.ply"
    pts = torch.zeros(4, 5, 3)
    with pytest.raises(ValueError, match=r"points must have shape \(\.\.\., 3\)"):
        write_ply(path, torch.zeros(4, 5))
    with pytest.raises(ValueError, match="colors must have shape"):
        write_ply(path, pts, colors=torch.zeros(4, 4, 3, dtype=torch.uint8))
    with pytest.raises(ValueError, match="normals must have shape"):
        write_ply(path, pts, normals=torch.zeros(20, 3))
    with pytest.raises(ValueError, match="labels must have shape"):
        write_ply(path, pts, labels=torch.zeros(4, 5, 1, dtype=torch.int32))
    with pytest.raises(TypeError, match="labels must be integers"):
        write_ply(path, pts, labels=torch.zeros(4, 5))
    with pytest.raises(ValueError, match="labels must fit int32"):
        write_ply(path, pts, labels=torch.full((4, 5), 2**40))
    with pytest.raises(TypeError, match="colors must be uint8"):
        write_ply(path, pts, colors=torch.zeros(4, 5, 3, dtype=torch.int32))
    assert not path.exists()


def test_docstring_examples():
    result = doctest.testmod(points, extraglobs={"torch": torch, "math": math},
                             optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 4 and result.failed == 0


# --------------------------------------------------------------------------- scenes and CLI


def _scene_fov_degrees(n, seed):
    from vbkernels.scenes import _draw_layout

    return [math.degrees(float(f)) for f in _draw_layout(n, seed)["fov"]]


def _fov_camera(fov_degrees, h, w):
    """The ray-cast scenes' pinhole: pixel centres at u + 0.5 - W/2, i.e. OpenCV's
    principal point (W - 1)/2 with pixel (u, v) at integer coordinates."""
    f = w / (2 * math.tan(math.radians(fov_degrees) / 2))
    return f, f, (w - 1) / 2, (h - 1) / 2


def test_normals_from_scene_depth_agree_with_scene_normals():
    from vbkernels.scenes import make_scenes

    n, h, w = 2, 48, 64
    scenes = make_scenes(n, h, w, seed=3)
    k = torch.tensor(np.stack([matrix(*_fov_camera(f, h, w)) for f in _scene_fov_degrees(n, 3)]))
    implied = normals_from_depth(scenes["depth"], k, convention="opengl")
    angles = normal_consistency(implied, scenes["normals"])
    valid = angles[torch.isfinite(angles)]
    assert valid.numel() > 0.8 * n * h * w  # sky (inf depth) and its border are NaN
    # Flat surfaces agree closely; only pixels across a depth edge mix two surfaces.
    assert float(valid.median()) < 0.1
    assert float((valid < 1.0).float().mean()) > 0.85


def test_cli_writes_ply(tmp_path):
    from click.testing import CliRunner
    from PIL import Image

    import vbkernels
    from vbkernels import cli
    from vbkernels.scenes import make_scenes

    h, w = 20, 28
    scene = make_scenes(1, h, w, seed=5)
    rgb = vbkernels.encode_depth(scene["depth"])[0].numpy()
    rgb[0, :3] = 255  # white: +inf depth, which the point cloud leaves out
    (tmp_path / "in").mkdir()
    Image.fromarray(rgb).save(tmp_path / "in" / "street.png")
    fov = _scene_fov_degrees(1, 5)[0]
    result = CliRunner().invoke(cli.main, ["decode", "depth", str(tmp_path / "in"), "-o",
                                           str(tmp_path / "out"), "--quiet", "--ply", "--fov",
                                           str(fov), "--workers", "0"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "out").glob("street*")) == [
        "street.depth.npy", "street.depth.png", "street.ply"]
    depth = np.load(tmp_path / "out" / "street.depth.npy")
    expected = depth_to_points(depth, _fov_camera(fov, h, w))
    keep = np.isfinite(expected).all(-1)
    assert keep.sum() == h * w - 3 and not keep[0, :3].any()
    vertices = read_ply(tmp_path / "out" / "street.ply")
    np.testing.assert_array_equal(np.stack([vertices[c] for c in "xyz"], -1), expected[keep])
    np.testing.assert_array_equal(
        np.stack([vertices[c] for c in ("red", "green", "blue")], -1), rgb[keep])
    # The points lie where the scene's own depth puts them (decoded depth is within 8-bit
    # precision of it).
    truth = depth_to_points(scene["depth"][0].numpy(), _fov_camera(fov, h, w))
    np.testing.assert_allclose(expected[keep], truth[keep], rtol=0.02, atol=0.02)

    intrinsics = CliRunner().invoke(cli.main, [
        "decode", "depth", str(tmp_path / "in"), "-o", str(tmp_path / "out2"), "--quiet",
        "--outputs", "ply", "--intrinsics", "30,30,13.5,9.5", "--workers", "0"])
    assert intrinsics.exit_code == 0, intrinsics.output
    assert [p.name for p in (tmp_path / "out2").glob("street*")] == ["street.ply"]
    got = read_ply(tmp_path / "out2" / "street.ply")
    assert_close(np.stack([got[c] for c in "xyz"], -1).astype(np.float64),
                 oracle_points(depth, matrix(30, 30, 13.5, 9.5), "z", "opencv")[keep])


@pytest.mark.parametrize("args, message", [
    (["--ply"], "--ply needs --intrinsics"),
    (["--fov", "60"], "add --ply"),
    (["--ply", "--fov", "180"], "fov must be in"),
    (["--ply", "--fov", "60", "--intrinsics", "1,1,0,0"], "not both"),
    (["--ply", "--intrinsics", "1,1,0"], "expected 4 comma-separated numbers"),
    (["--ply", "--intrinsics", "0,1,0,0"], "focal lengths"),
])
def test_cli_ply_option_errors(tmp_path, args, message):
    from click.testing import CliRunner

    from vbkernels import cli

    (tmp_path / "in").mkdir()
    result = CliRunner().invoke(cli.main, ["decode", "depth", str(tmp_path / "in"), "-o",
                                           str(tmp_path / "out"), *args])
    assert result.exit_code == 2 and message in result.output, result.output


def test_batched_decode_path_writes_the_same_ply(tmp_path):
    """The device path (a batch decoded at once, each frame written by write_frame) keeps
    each frame's colours with its depth and writes its points."""
    import vbkernels
    from vbkernels.pipeline import BatchDecoder, build_task
    from vbkernels.pipeline.local import write_frame

    depth = torch.rand(2, 6, 9, generator=torch.Generator().manual_seed(0)) * 20 + 1
    frames = vbkernels.encode_depth(depth).numpy()
    task = build_task("depth", intrinsics=(9.0, 9.0, 4.0, 2.5))
    arrays = BatchDecoder(task, torch.device("cpu")).submit(list(frames)).result()
    for i, frame in enumerate(frames):
        one = {name: value[i] for name, value in arrays.items()}
        (path,) = write_frame(task, one, tmp_path / f"f{i}", ("ply",))
        assert path.name == f"f{i}.ply"
        vertices = read_ply(path)
        expected = depth_to_points(vbkernels.decode_depth(frame), (9.0, 9.0, 4.0, 2.5))
        np.testing.assert_array_equal(np.stack([vertices[c] for c in "xyz"], -1),
                                      expected.reshape(-1, 3))
        np.testing.assert_array_equal(vertices["red"], frame[..., 0].ravel())


# --------------------------------------------------------------------------- backends


@pytest.mark.parametrize("backend,device", PAIRS, ids=PAIR_IDS)
@pytest.mark.parametrize("kind", ["z", "ray"])
def test_backends_float64_strided_and_thin_images(backend, device, kind):
    """float64 depth, a transposed (non-contiguous) view and 1-pixel-wide/tall images give
    the oracle's answer on every backend."""
    k = matrix(31.0, 29.0, 3.5, 6.0, s=0.1)
    depth = smooth_depth((2, 9, 13), seed=4)
    view = torch.from_numpy(depth.transpose(0, 2, 1).copy()).to(device).transpose(1, 2)
    assert not view.is_contiguous()
    expected = oracle_points(depth, k, kind, "opencv")
    got = depth_to_points(view, torch.from_numpy(k), depth_kind=kind, backend=backend)
    assert got.dtype == torch.float64
    assert_close(got.cpu().numpy(), expected, rtol=1e-12)
    assert_close(normals_from_depth(view, torch.from_numpy(k), depth_kind=kind,
                                    backend=backend).cpu().numpy(),
                 oracle_normals(expected), rtol=1e-10)
    for thin in ((1, 6), (6, 1)):
        normals = normals_from_depth(torch.ones(thin, device=device), CAMERA,
                                     backend=backend)
        assert normals.shape == thin + (3,) and bool(torch.isnan(normals).all())


def test_point_ops_backend_errors_and_gradients():
    with pytest.raises(RuntimeError, match="does not implement"):
        depth_to_points(torch.ones(2, 2), CAMERA, backend="numpy")
    with pytest.raises(ValueError, match="backend must be one of"):
        normals_from_depth(torch.ones(2, 2), CAMERA, backend="bogus")
    # A depth that requires grad goes through differentiable torch ops.
    depth = torch.from_numpy(smooth_depth((5, 6), seed=2)).requires_grad_()
    pts = depth_to_points(depth, CAMERA, depth_kind="ray")
    pts[..., 2].sum().backward()
    assert depth.grad is not None and bool(torch.isfinite(depth.grad).all())
    with pytest.raises(RuntimeError, match="autograd"):
        depth_to_points(depth, CAMERA, out=torch.empty(5, 6, 3, dtype=torch.float64))


def test_voxel_downsample_means_per_voxel_and_drops_non_finite():
    points = np.array([[0.01, 0.02, 1.01], [0.09, 0.08, 1.09], [-0.01, 0.0, 1.0],
                       [np.nan, 0.0, 1.0], [0.5, 0.5, np.inf], [0.55, 0.5, 1.0]], np.float32)
    colours = np.array([[0, 0, 0], [255, 255, 255], [1, 2, 3], [9, 9, 9], [9, 9, 9],
                        [10, 20, 30]], np.uint8)
    got, got_colours = vbkernels.voxel_downsample(torch.from_numpy(points), 0.1,
                                                  colors=colours)
    # voxels by cell index: (-1, 0, 10), (0, 0, 10), (5, 5, 10)
    np.testing.assert_allclose(got, [[-0.01, 0.0, 1.0], [0.05, 0.05, 1.05], [0.55, 0.5, 1.0]],
                               rtol=1e-6)
    assert got.dtype == np.float32
    assert got_colours.tolist() == [[1, 2, 3], [128, 128, 128], [10, 20, 30]]
    assert vbkernels.voxel_downsample(points[:0], 1.0)[0].shape == (0, 3)
    with pytest.raises(ValueError, match="voxel_size must be > 0"):
        vbkernels.voxel_downsample(points, 0.0)
