"""docs/format.md, Colormaps: decode_colormap on every backend with the kernel (exact for
uint8 against the torch reference), its accuracy on images matplotlib paints, and
encode_colormap against matplotlib byte for byte."""

from __future__ import annotations

import functools
import io

import numpy as np
import pytest
import torch

import vbkernels as vb
from tests.conftest import backend_device_pairs, is_interpreted, random_rgb
from tests.helpers import COLORMAP_ATOL
from vbkernels._dispatch import load_backend
from vbkernels.colormaps import BUILTIN_COLORMAPS, colormap_table, polyline

PAIRS = [(b, d) for b, d in backend_device_pairs() if "decode_colormap" in load_backend(b).ops]
PAIR_IDS = [f"{b}-{d}" for b, d in PAIRS]
JPEG_MAPS = ("viridis", "plasma", "inferno", "turbo")


@pytest.fixture(params=PAIRS, ids=PAIR_IDS)
def backend_device(request):
    """Every (backend, device) pair here whose backend has the decode_colormap kernel."""
    return request.param


def _matplotlib():
    return pytest.importorskip("matplotlib", reason="matplotlib (in the test extra) paints "
                               "the reference images and holds the reference tables")


def map_for(name: str, backend: str, device: str):
    """The named map; under the Triton interpreter, which pays for every segment of every
    call, a 16-entry uint8 table sampled from it (with a run of equal entries)."""
    if not is_interpreted(backend, device):
        return name
    painted = colormap_table(name).painted[::16].copy()
    painted[5:8] = painted[6]
    return painted


# ---------------------------------------------------------------- independent float64 truth


def truth_segments(p: np.ndarray, vertices: np.ndarray, positions: np.ndarray):
    """(t, dist2) of (P, 3) points against every segment, (P, S) each, in float64: the
    textbook clamped projection onto each full segment, unlike the backends' three cases."""
    a, d = vertices[:-1], vertices[1:] - vertices[:-1]
    length2 = (d * d).sum(-1)
    s = ((p[:, None] - a) * d).sum(-1) / np.where(length2 > 0, length2, 1.0)
    s = np.clip(s, 0.0, 1.0)
    closest = a + s[..., None] * d
    dist2 = ((p[:, None] - closest) ** 2).sum(-1)
    return positions[:-1] + s * (positions[1:] - positions[:-1]), dist2


def exact_dist2(p: np.ndarray, vertices: np.ndarray):
    """Exact squared distances of integer points to integer segments as fractions
    ``num / den`` of int64 arrays (P, S): the contract's three cases without rounding."""
    p, v = p.astype(np.int64), vertices.astype(np.int64)
    a, d = v[:-1], v[1:] - v[:-1]
    e = p[:, None] - a
    length2 = (d * d).sum(-1)
    dot, ee = (e * d).sum(-1), (e * e).sum(-1)
    before, after = dot <= 0, dot >= length2
    num = np.where(before, ee, np.where(after, ee - 2 * dot + length2, ee * length2 - dot * dot))
    den = np.where(before | after, 1, length2)
    return num, den, dot, length2


def exact_first_nearest(p: np.ndarray, vertices: np.ndarray):
    """The lowest segment at the exact minimum distance, and how many segments share it."""
    num, den, _, _ = exact_dist2(p, vertices)
    rows = np.arange(len(p))
    best = np.zeros(len(p), dtype=np.int64)
    for j in range(1, num.shape[1]):  # int64 cross products: < 2^53 for 0..255 colours
        closer = num[:, j] * den[rows, best] < num[rows, best] * den[:, j]
        best = np.where(closer, j, best)
    ties = (num * den[rows, best][:, None] == num[rows, best][:, None] * den).sum(1)
    return best, ties


def units(rgb) -> np.ndarray:
    rgb = np.asarray(rgb)
    if rgb.dtype == np.uint8:
        return rgb.astype(np.float64)
    return np.clip(rgb.astype(np.float64), 0.0, 1.0) * 255.0


def decode_t(rgb, colormap, backend, **kwargs):
    """Normalised positions (vmin=0, vmax=1) and distances as float64 NumPy arrays."""
    t, dist = vb.decode_colormap(rgb, colormap, return_distance=True, backend=backend, **kwargs)
    return (torch.as_tensor(t).cpu().double().numpy(),
            torch.as_tensor(dist).cpu().double().numpy())


def assert_same(got, want) -> None:
    """Bit-identical tensors (NaN where NaN)."""
    got, want = torch.as_tensor(got).cpu(), torch.as_tensor(want).cpu()
    assert got.dtype == want.dtype and got.shape == want.shape
    assert torch.equal(torch.isnan(got), torch.isnan(want))
    assert torch.equal(got.nan_to_num(-7.0), want.nan_to_num(-7.0))


def _corner_maps():
    """Small maps with many exact ties: a right angle (interior points equidistant from both
    arms), a U (points midway between its two long arms) and a zigzag."""
    return [
        np.array([[0, 0, 0], [200, 0, 0], [200, 200, 0]], dtype=np.uint8),
        np.array([[0, 0, 0], [255, 0, 0], [255, 0, 60], [0, 0, 60]], dtype=np.uint8),
        np.array([[0, 0, 0], [250, 10, 0], [5, 20, 0], [255, 30, 240]], dtype=np.uint8),
    ]


def tie_colours(vertices: np.ndarray, step: int = 5) -> np.ndarray:
    """Grid colours at an exact tie between two or more segments (vertices shared by two
    segments included), from a scan with exact integer arithmetic."""
    g = np.arange(0, 256, step)
    grid = np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3)
    _, ties = exact_first_nearest(grid, vertices)
    return grid[ties >= 2].astype(np.uint8)


# ------------------------------------------------------------------------------ contract


def _identity_colours(name: str, n: int) -> np.ndarray:
    """Random colours, every painted colour of the map (each a vertex shared by two
    segments) and grid colours at exact ties."""
    table = colormap_table(name)
    vertices, _ = polyline(table)
    return np.concatenate([random_rgb((n, 3), torch.uint8, seed=3).numpy(), table.painted,
                           tie_colours(vertices, step=51)])


@functools.cache
def _torch_identity(name: str, n: int):
    rgb = torch.from_numpy(_identity_colours(name, n))[None]
    return vb.decode_colormap(rgb, name, max_distance=40.0, return_distance=True,
                              backend="torch")


# Every pair with four maps; under the Triton interpreter only jet (runs of equal entries).
IDENTITY_CASES = [(b, d, name) for b, d in PAIRS for name in ("jet", "viridis", "Greys_r", "turbo")
                  if name == "jet" or not is_interpreted(b, d)]


@pytest.mark.parametrize("backend, device, name", IDENTITY_CASES,
                         ids=[f"{b}-{d}-{name}" for b, d, name in IDENTITY_CASES])
def test_uint8_bit_identical_to_torch_and_true(backend, device, name):
    """The same values, distances and max_distance decisions as the torch reference
    (random, painted and tied colours), and the float64 truth's position and distance."""
    n = 64 if is_interpreted(backend, device) else 1500
    colours = _identity_colours(name, n)
    rgb = torch.from_numpy(colours)[None].to(device)
    got = vb.decode_colormap(rgb, name, max_distance=40.0, return_distance=True,
                             backend=backend)
    if backend != "torch":
        want = _torch_identity(name, n)
        assert_same(got[0], want[0])
        assert_same(got[1], want[1])
    t, dist = (x.cpu().double().numpy()[0] for x in got)
    vertices, positions = polyline(colormap_table(name))
    t_all, d2_all = truth_segments(units(colours), vertices, positions)
    best = d2_all.min(1)
    np.testing.assert_allclose(dist, np.sqrt(best), rtol=1e-6, atol=1e-6)
    assert np.array_equal(np.isnan(t), dist > 40.0) and np.isnan(t).any()
    # Within 1e-6 of the position of some segment at the minimum distance.
    tied = d2_all <= best[:, None] + 1e-9
    err = np.where(tied, np.abs(t[:, None] - t_all), np.inf).min(1)
    assert np.nanmax(err) < 1e-6


def test_painted_colours_decode_to_bin_centres(backend_device):
    """A painted colour is a vertex: distance 0, position the centre of its run of bins."""
    backend, device = backend_device
    names = ["jet"] if is_interpreted(backend, device) else BUILTIN_COLORMAPS
    for name in names:
        colormap = map_for(name, backend, device)
        vertices, positions = polyline(colormap_table(colormap))
        rgb = torch.from_numpy(vertices.astype(np.uint8))[None].to(device)
        t, dist = decode_t(rgb, colormap, backend)
        assert (dist == 0).all(), name
        np.testing.assert_allclose(t[0], positions, atol=1e-7, rtol=0, err_msg=name)


@pytest.mark.parametrize("which", range(3))
def test_exact_ties_go_to_the_lowest_segment(backend_device, which):
    backend, device = backend_device
    painted = _corner_maps()[which]
    vertices, positions = polyline(colormap_table(painted))
    colours = tie_colours(vertices, step=15 if is_interpreted(backend, device) else 5)
    assert len(colours) > 20
    rgb = torch.from_numpy(colours)[None].to(device)
    t, _ = decode_t(rgb, painted, backend)
    assert_same(vb.decode_colormap(rgb, painted, backend=backend),
                vb.decode_colormap(rgb.cpu(), painted, backend="torch"))
    best, ties = exact_first_nearest(colours, vertices)
    assert (ties >= 2).all()
    _, _, dot, length2 = exact_dist2(colours, vertices)
    rows = np.arange(len(colours))
    s = np.clip(dot[rows, best] / length2[best], 0.0, 1.0)
    want = positions[best] + s * (positions[best + 1] - positions[best])
    np.testing.assert_allclose(t[0], want, atol=1e-7, rtol=0)


def test_corner_ties_by_hand(backend_device):
    """The right angle (0,0,0) -> (200,0,0) -> (200,200,0): (150,50,0) is 50 from both arms
    and takes the first; (230,0,0) is 30 from the shared vertex through both arms."""
    backend, device = backend_device
    corner = _corner_maps()[0]  # positions 1/6, 1/2, 5/6
    rgb = torch.tensor([[[150, 50, 0], [151, 50, 0], [230, 0, 0], [200, 0, 0]]],
                       dtype=torch.uint8, device=device)
    t, dist = decode_t(rgb, corner, backend)
    np.testing.assert_allclose(t[0], [1 / 6 + 0.75 / 3, 0.5 + 0.25 / 3, 0.5, 0.5], atol=1e-7)
    np.testing.assert_allclose(dist[0], [50, 49, 30, 0], rtol=1e-7)


def _float_inputs(name, dtype, n, seed):
    """Random float pixels (a few outside [0, 1]) and pixels near the painted colours."""
    painted = colormap_table(name).painted
    rng = np.random.default_rng(seed)
    near = np.clip(painted / 255.0 + rng.normal(0.0, 0.003, painted.shape), 0.0, 1.0)
    x = np.concatenate([random_rgb((n, 3), torch.float64, seed=seed).numpy(), near[::3]])
    return torch.from_numpy(x).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_float_inputs_against_float64(backend_device, dtype):
    """Float images within docs/format.md, Precision: the position of a segment at the
    minimum distance (within the float rounding of the distances), and the distance."""
    backend, device = backend_device
    n = 64 if is_interpreted(backend, device) else 1000
    work = torch.float64 if dtype == torch.float64 else torch.float32
    maps = ("viridis", "jet") if not is_interpreted(backend, device) else ()
    for name in maps + (map_for("jet", backend, device), _corner_maps()[2]):
        x = _float_inputs(name, dtype, n, seed=5)
        values, dist = vb.decode_colormap(x[None].to(device), name, return_distance=True,
                                          backend=backend)
        assert values.dtype == work and dist.dtype == torch.float32
        t, dist = values.cpu().double().numpy(), dist.cpu().double().numpy()
        vertices, positions = polyline(colormap_table(name))
        t_all, d2_all = truth_segments(units(x.double().numpy()), vertices, positions)
        best = d2_all.min(1)
        tol = COLORMAP_ATOL[work]
        near_best = d2_all <= best[:, None] + tol["dist2"]
        err = np.where(near_best, np.abs(t[0][:, None] - t_all), np.inf).min(1)
        assert err.max() <= tol["t"]
        np.testing.assert_allclose(dist[0], np.sqrt(best), atol=tol["distance"], rtol=1e-6)


def test_float_pixel_at_the_end_vertex_has_distance_zero(backend_device):
    """float16 (10, 250, 5)/255 sits on the last vertex; in float32 ee - 2 dot + L rounds
    below 0 there, which the contract clamps (its square root would be NaN)."""
    backend, device = backend_device
    colours = np.array([[0, 0, 0], [255, 0, 0], [255, 255, 0], [0, 0, 255], [10, 250, 5]],
                       dtype=np.uint8)
    rgb = torch.from_numpy(colours / 255.0).to(torch.float16)[None].to(device)
    t, dist = decode_t(rgb, colours, backend)
    assert not np.isnan(dist).any() and dist.max() < 1e-3
    np.testing.assert_allclose(t[0], polyline(colormap_table(colours))[1], atol=1e-6)


def test_layouts_strides_and_odd_widths(backend_device):
    backend, device = backend_device
    small = is_interpreted(backend, device)
    turbo, plasma = map_for("turbo", backend, device), map_for("plasma", backend, device)
    for width in (1, 7) if small else (1, 7, 13, 129):
        hwc = random_rgb((2, 3, width, 3), torch.uint8, seed=width, device=device)
        want = vb.decode_colormap(hwc.cpu(), turbo, backend="torch")
        chw = hwc.permute(0, 3, 1, 2).contiguous()
        assert_same(vb.decode_colormap(chw, turbo, layout="chw", backend=backend), want)
        if not small:
            assert_same(vb.decode_colormap(chw, turbo, backend=backend), want)
    big = random_rgb((2, 7, 22, 4), torch.uint8, seed=8, device=device)
    strided = big[:, 1::2, 1::3, :3]  # rows and columns skipped, channel stride 1 of 4
    assert not strided.is_contiguous()
    want = vb.decode_colormap(strided.cpu().contiguous(), plasma, return_distance=True,
                              backend="torch")
    got = vb.decode_colormap(strided, plasma, return_distance=True, backend=backend)
    assert_same(got[0], want[0])
    assert_same(got[1], want[1])
    transposed = big[..., :3].transpose(1, 2)  # (2, 22, 7, 3), rows strided as columns
    assert_same(vb.decode_colormap(transposed, plasma, backend=backend),
                vb.decode_colormap(transposed.cpu().contiguous(), plasma, backend="torch"))
    floats = random_rgb((1, 3, 9, 3), torch.float32, seed=9, device=device)
    np.testing.assert_allclose(
        vb.decode_colormap(floats.permute(0, 3, 1, 2)[..., ::2], plasma,
                           backend=backend).cpu(),
        vb.decode_colormap(floats[:, :, ::2].contiguous(), plasma, backend=backend).cpu())


def test_nan_pixels(backend_device):
    backend, device = backend_device
    magma = map_for("magma", backend, device)
    for dtype in (torch.float16, torch.float32, torch.float64):
        rgb = random_rgb((1, 3, 4, 3), dtype, seed=10)
        rgb[0, 2, 1, 0] = float("nan")
        rgb[0, 0, 3, 2] = float("nan")
        values, dist = vb.decode_colormap(rgb.to(device), magma, vmin=1.0, vmax=9.0,
                                          return_distance=True, backend=backend)
        nan = torch.zeros((1, 3, 4), dtype=torch.bool)
        nan[0, 2, 1] = nan[0, 0, 3] = True
        assert torch.equal(torch.isnan(values.cpu()), nan)
        assert torch.equal(torch.isnan(dist.cpu()), nan)
        assert ((values.cpu()[~nan] >= 1.0) & (values.cpu()[~nan] <= 9.0)).all()


def test_max_distance_keeps_equal_and_drops_farther(backend_device):
    """Along (0,0,0) -> (255,0,0), (100,3,4) is exactly 5 away and (100,6,8) 10 away."""
    backend, device = backend_device
    line = np.array([[0, 0, 0], [255, 0, 0]], dtype=np.uint8)
    rgb = torch.tensor([[[100, 3, 4], [100, 6, 8], [100, 0, 0], [40, 0, 1]]],
                       dtype=torch.uint8, device=device)
    values, dist = vb.decode_colormap(rgb, line, max_distance=5, return_distance=True,
                                      backend=backend)
    values = values.cpu()
    assert torch.isnan(values).tolist() == [[False, True, False, False]]
    assert dist.cpu().tolist() == [[5.0, 10.0, 0.0, 1.0]]  # distances are always reported
    values = vb.decode_colormap(rgb, line, max_distance=0, backend=backend).cpu()
    assert torch.isnan(values).tolist() == [[True, True, False, True]]
    # 4.9999 rounds to float32 below 5: the distance-5 pixel is dropped.
    values = vb.decode_colormap(rgb, line, max_distance=4.9999, backend=backend).cpu()
    assert torch.isnan(values).tolist() == [[True, True, False, False]]


def test_out_tensor_and_numpy(backend_device):
    backend, device = backend_device
    cividis = map_for("cividis", backend, device)
    rgb = random_rgb((2, 4, 5, 3), torch.uint8, seed=11, device=device)
    want = vb.decode_colormap(rgb.cpu(), cividis, vmax=3.0, backend="torch")
    out = torch.full((2, 4, 5), 7.0, device=device)
    assert vb.decode_colormap(rgb, cividis, vmax=3.0, out=out, backend=backend) is out
    assert_same(out, want)
    rgb64 = random_rgb((4, 5, 3), torch.float64, seed=12, device=device)
    out64 = torch.empty((4, 5), dtype=torch.float64, device=device)
    assert vb.decode_colormap(rgb64, cividis, out=out64, backend=backend) is out64
    assert_same(out64, vb.decode_colormap(rgb64.cpu(), cividis, backend="torch"))
    with pytest.raises(ValueError, match="out must have shape"):
        vb.decode_colormap(rgb, cividis, out=torch.empty((2, 4, 6), device=device),
                           backend=backend)
    with pytest.raises(ValueError, match="dtype torch.float32"):
        vb.decode_colormap(rgb, cividis, out=torch.empty((2, 4, 5), dtype=torch.float64,
                                                             device=device), backend=backend)
    if device != "cpu":
        return
    arr = rgb.numpy()
    out_np = np.zeros((2, 4, 5), dtype=np.float32)
    assert vb.decode_colormap(arr, cividis, vmax=3.0, out=out_np, backend=backend) is out_np
    np.testing.assert_array_equal(out_np, want.numpy())
    with pytest.raises(ValueError, match="numpy.ndarray like the input"):
        vb.decode_colormap(arr, cividis, out=torch.empty((2, 4, 5)), backend=backend)
    with pytest.raises(ValueError, match="out must have shape"):
        vb.decode_colormap(arr, cividis, out=np.zeros((2, 4, 5), np.float64), backend=backend)


def test_numpy_in_numpy_out_and_empty_batches(backend_device):
    backend, device = backend_device
    inferno = map_for("inferno", backend, device)
    if device == "cpu":
        arr = random_rgb((3, 5, 3), torch.uint8, seed=13).numpy()
        values, dist = vb.decode_colormap(arr, inferno, return_distance=True,
                                          backend=backend)
        assert isinstance(values, np.ndarray) and isinstance(dist, np.ndarray)
        assert values.dtype == np.float32 and dist.dtype == np.float32
        assert values.shape == (3, 5)
        np.testing.assert_array_equal(
            values, vb.decode_colormap(torch.from_numpy(arr), inferno, backend="torch"))
        empty = vb.decode_colormap(np.zeros((0, 4, 5, 3), np.float64), inferno,
                                   backend=backend)
        assert isinstance(empty, np.ndarray) and empty.shape == (0, 4, 5)
        assert empty.dtype == np.float64
    for shape in ((0, 4, 5, 3), (2, 0, 5, 3), (2, 3, 0, 3), (0, 3, 4, 5)):
        rgb = torch.zeros(shape, dtype=torch.uint8, device=device)
        values, dist = vb.decode_colormap(rgb, inferno, return_distance=True,
                                          backend=backend)
        want = shape[:-1] if shape[-1] == 3 else (0, 4, 5)
        assert values.shape == want and dist.shape == want and values.device == rgb.device


def test_scales(backend_device):
    """linear: vmin + x (vmax - vmin); log: vmin (vmax/vmin)^x; inverse: 1/value linear in
    x from 1/vmax to 1/vmin."""
    backend, device = backend_device
    turbo = map_for("turbo", backend, device)
    rgb = random_rgb((1, 4, 6, 3), torch.uint8, seed=14, device=device)
    x = vb.decode_colormap(rgb, turbo, backend=backend).cpu().double()
    vmin, vmax = 0.5, 80.0
    linear = vb.decode_colormap(rgb, turbo, vmin=vmin, vmax=vmax, backend=backend).cpu()
    log = vb.decode_colormap(rgb, turbo, vmin=vmin, vmax=vmax, scale="log",
                             backend=backend).cpu()
    inverse = vb.decode_colormap(rgb, turbo, vmin=vmin, vmax=vmax, scale="inverse",
                                 backend=backend).cpu()
    torch.testing.assert_close(linear.double(), vmin + x * (vmax - vmin), rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(log.double(), vmin * (vmax / vmin) ** x, rtol=2e-6, atol=0)
    torch.testing.assert_close(inverse.double(), 1 / (1 / vmax + x * (1 / vmin - 1 / vmax)),
                               rtol=2e-6, atol=0)
    assert linear.dtype == log.dtype == inverse.dtype == torch.float32


def test_colormap_forms_agree():
    """A name, its table as uint8 or float (as ListedColormap reads it), a tensor and a
    matplotlib Colormap decode identically; ``_r`` is the reversed table. (The front end
    resolves the form before any kernel runs, so one backend shows it.)"""
    backend, device = "torch", "cpu"
    rgb = random_rgb((2, 3, 5, 3), torch.uint8, seed=15, device=device)
    table = colormap_table("Spectral")
    want = vb.decode_colormap(rgb, "Spectral", return_distance=True, backend=backend)
    forms = [table.painted, table.lut, torch.from_numpy(table.lut),
             torch.from_numpy(table.painted).to(device)]
    mpl = _matplotlib()
    forms += [mpl.colormaps["Spectral"], mpl.colors.ListedColormap(table.lut)]
    for form in forms:
        got = vb.decode_colormap(rgb, form, return_distance=True, backend=backend)
        assert_same(got[0], want[0])
        assert_same(got[1], want[1])
    # A listed map's _r is its table reversed; a segmented map's _r is matplotlib's own
    # (evaluated at 1 - x, so a few entries truncate to other bytes).
    reversed_ = vb.decode_colormap(rgb, "viridis_r", backend=backend)
    painted = colormap_table("viridis").painted[::-1].copy()
    assert_same(vb.decode_colormap(rgb, painted, backend=backend), reversed_)
    assert_same(vb.decode_colormap(rgb, mpl.colormaps["Spectral_r"], backend=backend),
                vb.decode_colormap(rgb, "Spectral_r", backend=backend))
    # A resampled segmented map (16 entries) is read through its own lookup table.
    jet16 = mpl.colormaps["jet"].resampled(16)
    lut16 = jet16(np.arange(16))[:, :3]
    assert_same(vb.decode_colormap(rgb, jet16, backend=backend),
                vb.decode_colormap(rgb, (lut16 * 255).astype(np.uint8), backend=backend))


def test_float_colours_are_read_as_matplotlib_bytes(backend_device):
    """Float colours paint the bytes floor(255 c), so 0.5 is the byte 127."""
    backend, device = backend_device
    colours = np.array([[0.5, 0.0, 0.0], [1.0, 0.5, 0.25]])
    rgb = torch.tensor([[[127, 0, 0], [255, 127, 63]]], dtype=torch.uint8, device=device)
    t, dist = decode_t(rgb, colours, backend)
    np.testing.assert_allclose(t[0], [0.25, 0.75], atol=1e-7)
    assert (dist == 0).all()


def test_single_colour_map(backend_device):
    backend, device = backend_device
    rgb = torch.tensor([[[10, 20, 30], [13, 24, 30], [255, 255, 255]]], dtype=torch.uint8,
                       device=device)
    values, dist = vb.decode_colormap(rgb, np.array([[10, 20, 30]], np.uint8), vmin=2.0,
                                      vmax=4.0, return_distance=True, backend=backend)
    assert values.cpu().tolist() == [[3.0, 3.0, 3.0]]
    np.testing.assert_allclose(dist.cpu()[0], [0.0, 5.0, np.sqrt(245**2 + 235**2 + 225**2)],
                               rtol=1e-7)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"colormap": "nope"}, ValueError, "colormap must be one of"),
    ({"colormap": "Viridis"}, ValueError, "colormap must be one of"),
    ({"colormap": np.zeros((5, 4))}, ValueError, r"\(N, 3\) array"),
    ({"colormap": np.zeros((0, 3))}, ValueError, r"\(N, 3\) array"),
    ({"colormap": np.zeros(3)}, ValueError, r"\(N, 3\) array"),
    ({"colormap": np.array([[0.0, 0.5, 1.5]])}, ValueError, r"in \[0, 1\]"),
    ({"colormap": np.array([[0.0, np.nan, 1.0]])}, ValueError, r"finite"),
    ({"colormap": np.array([["a", "b", "c"]])}, TypeError, "uint8 or float"),
    ({"vmin": 1.0, "vmax": 1.0}, ValueError, "vmin must be < vmax"),
    ({"vmin": 2.0, "vmax": 1.0}, ValueError, "vmin must be < vmax"),
    ({"vmin": float("nan")}, ValueError, "vmin"),
    ({"scale": "log", "vmin": 0.0}, ValueError, r"scale='log' needs 0 < vmin"),
    ({"scale": "inverse", "vmin": -1.0}, ValueError, r"scale='inverse' needs 0 < vmin"),
    ({"scale": "sqrt"}, ValueError, "scale must be one of"),
    ({"max_distance": -1.0}, ValueError, "max_distance must be >= 0"),
    ({"max_distance": float("inf")}, ValueError, "max_distance"),
    ({"layout": "hw"}, ValueError, "layout"),
])
def test_bad_arguments_raise_clear_errors(kwargs, error, match):
    args = {"colormap": "viridis", "vmin": 0.5, "vmax": 1.0, **kwargs}
    rgb = np.zeros((2, 2, 3), np.uint8)
    with pytest.raises(error, match=match):
        vb.decode_colormap(rgb, **args)
    if "max_distance" not in kwargs and "layout" not in kwargs:
        with pytest.raises(error, match=match):
            vb.encode_colormap(np.zeros((2, 2)), **args)


def test_bad_images_and_encoder_arguments_raise():
    with pytest.raises(TypeError):
        vb.decode_colormap(np.zeros((2, 2, 3), np.int32), "viridis")
    with pytest.raises(ValueError):
        vb.decode_colormap(np.zeros((2, 2, 4), np.uint8), "viridis")
    with pytest.raises(TypeError, match="dtype must be uint8"):
        vb.encode_colormap(np.zeros(3), "viridis", dtype=torch.int32)
    with pytest.raises(TypeError, match="real numbers"):
        vb.encode_colormap(torch.zeros(3, dtype=torch.bool), "viridis")
    with pytest.raises(ValueError, match="layout must be"):
        vb.encode_colormap(np.zeros(3), "viridis", layout="auto")


# ----------------------------------------------- accuracy on images matplotlib paints


def smooth_field(height: int, width: int, seed: int) -> np.ndarray:
    """A smooth random field rescaled to exactly [0, 1], a stand-in for depth: six plane
    waves of about 2 cycles per 128 pixels (wavelengths mostly above 40 pixels)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / 128.0
    field = np.zeros((height, width))
    for _ in range(6):
        ky, kx = rng.normal(0.0, 2.0, 2)
        field += np.cos(2 * np.pi * (ky * y + kx * x) + rng.uniform(0.0, 2 * np.pi))
    return (field - field.min()) / (field.max() - field.min())


def _png_bytes_read_back(write) -> np.ndarray:
    from PIL import Image

    buf = io.BytesIO()
    write(buf)
    buf.seek(0)
    with Image.open(buf) as img:
        return np.asarray(img.convert("RGB"))


def imsave_png(values, **kwargs) -> np.ndarray:
    """``plt.imsave`` to a PNG in memory, read back as RGB with Pillow."""
    import matplotlib.pyplot as plt

    return _png_bytes_read_back(lambda buf: plt.imsave(buf, values, format="png", **kwargs))


def pillow_png(rgb: np.ndarray) -> np.ndarray:
    from PIL import Image

    return _png_bytes_read_back(lambda buf: Image.fromarray(rgb).save(buf, format="PNG"))


def jpeg_q90_420(rgb: np.ndarray) -> np.ndarray:
    from PIL import Image

    return _png_bytes_read_back(
        lambda buf: Image.fromarray(rgb).save(buf, format="JPEG", quality=90, subsampling=2))


VMIN, VMAX = 2.0, 50.0
SHAPE = (64, 96)


def _error_steps(decoded, truth, n):
    """Errors in steps of 1/(N-1) of the normalised range."""
    return np.abs(np.asarray(decoded, np.float64) - truth) * (n - 1)


@pytest.mark.parametrize("name", BUILTIN_COLORMAPS)
def test_png_accuracy_on_matplotlib_images(name):
    """docs/format.md, Colormaps, targets: every pixel within 2 steps of 1/(N-1) of the
    range, 99 % within 1 step, median within half a step; 99 % of distances below 1."""
    mpl = _matplotlib()
    x = smooth_field(*SHAPE, seed=BUILTIN_COLORMAPS.index(name))
    depth = VMIN + x * (VMAX - VMIN)
    rgb = imsave_png(depth, vmin=VMIN, vmax=VMAX, cmap=name)
    values, dist = vb.decode_colormap(rgb, name, vmin=VMIN, vmax=VMAX, return_distance=True,
                                      backend="torch")
    err = _error_steps((values - VMIN) / (VMAX - VMIN), x, mpl.colormaps[name].N)
    assert err.max() <= 2.0
    assert np.quantile(err, 0.99) <= 1.0
    assert np.median(err) <= 0.5
    assert np.quantile(dist, 0.99) < 1.0


@pytest.mark.parametrize("name", JPEG_MAPS)
def test_jpeg_q90_420_median_within_one_percent(name):
    _matplotlib()
    x = smooth_field(*SHAPE, seed=100 + JPEG_MAPS.index(name))
    rgb = jpeg_q90_420(imsave_png(VMIN + x * (VMAX - VMIN), vmin=VMIN, vmax=VMAX, cmap=name))
    values = vb.decode_colormap(rgb, name, vmin=VMIN, vmax=VMAX, backend="torch")
    assert np.median(np.abs((values - VMIN) / (VMAX - VMIN) - x)) <= 0.01


@pytest.mark.parametrize("name", ["viridis", "turbo"])
@pytest.mark.parametrize("scale", ["log", "inverse"])
def test_log_and_inverse_scale_accuracy(name, scale):
    """Painted with LogNorm, or 1/value painted linearly (disparity); errors in steps of
    the normalised position."""
    mpl = _matplotlib()
    cmap = mpl.colormaps[name]
    vmin, vmax = 0.5, 80.0
    x = smooth_field(*SHAPE, seed=7)
    if scale == "log":
        depth = vmin * (vmax / vmin) ** x
        painted = cmap(mpl.colors.LogNorm(vmin, vmax)(depth), bytes=True)
        position = mpl.colors.LogNorm(vmin, vmax)
    else:
        depth = 1.0 / (1.0 / vmax + x * (1.0 / vmin - 1.0 / vmax))
        painted = cmap(mpl.colors.Normalize(1.0 / vmax, 1.0 / vmin)(1.0 / depth), bytes=True)

        def position(v):
            return (1.0 / v - 1.0 / vmax) / (1.0 / vmin - 1.0 / vmax)
    rgb = pillow_png(np.ascontiguousarray(painted[..., :3]))
    values = vb.decode_colormap(rgb, name, vmin=vmin, vmax=vmax, scale=scale, backend="torch")
    err = _error_steps(position(values.astype(np.float64)), x, cmap.N)
    assert err.max() <= 2.0
    assert np.quantile(err, 0.99) <= 1.0
    assert np.median(err) <= 0.5


# ------------------------------------------------------------- encode_colormap vs matplotlib


def _values(dtype, vmin, vmax, seed):
    """Values across and beyond [vmin, vmax]: the ends, exactly 1.0, the largest float
    below 1.0 (whose x * N rounds up to N in float32), NaN and negatives."""
    rng = np.random.default_rng(seed)
    edges = [vmin, vmax, 1.0, np.nextafter(dtype(1.0), dtype(0.0)), np.nan, -1.0, 0.0,
             vmax * 2, vmin - 1e-3]
    span = vmax - vmin
    values = np.concatenate([edges, rng.uniform(vmin - 0.1 * span, vmax + 0.1 * span, 511)])
    return values.astype(dtype).reshape(2, -1)


@pytest.mark.parametrize("name", BUILTIN_COLORMAPS)
def test_encode_equals_matplotlib_bytes(name):
    mpl = _matplotlib()
    cmap = mpl.colormaps[name]
    for dtype in (np.float32, np.float64):
        values = _values(dtype, 0.0, 1.0, seed=1)
        got = vb.encode_colormap(values, name)
        assert got.dtype == np.uint8 and got.shape == values.shape + (3,)
        np.testing.assert_array_equal(got, cmap(values, bytes=True)[..., :3])
        np.testing.assert_array_equal(got, imsave_png(values, vmin=0.0, vmax=1.0, cmap=name))
        values = _values(dtype, 2.0, 50.0, seed=2)
        got = vb.encode_colormap(torch.from_numpy(values), name, vmin=2.0, vmax=50.0)
        norm = mpl.colors.Normalize(2.0, 50.0)
        np.testing.assert_array_equal(got.numpy(), cmap(norm(values), bytes=True)[..., :3])
        np.testing.assert_array_equal(got.numpy(),
                                      imsave_png(values, vmin=2.0, vmax=50.0, cmap=name))
        log = vb.encode_colormap(values, name, vmin=2.0, vmax=50.0, scale="log")
        log_norm = mpl.colors.LogNorm(2.0, 50.0)
        np.testing.assert_array_equal(log, cmap(log_norm(values), bytes=True)[..., :3])


@pytest.mark.parametrize("name", ["viridis", "jet_r", "Greys"])
def test_encode_float_colours_integers_and_layouts(name):
    mpl = _matplotlib()
    cmap = mpl.colormaps[name]
    values = _values(np.float64, 2.0, 50.0, seed=3)
    colours = cmap(mpl.colors.Normalize(2.0, 50.0)(values))[..., :3]
    colours[np.isnan(values)] = 0.0  # the "bad" colour without its alpha
    got64 = vb.encode_colormap(values, name, vmin=2.0, vmax=50.0, dtype=np.float64)
    np.testing.assert_array_equal(got64, colours)
    got32 = vb.encode_colormap(torch.from_numpy(values), name, vmin=2.0, vmax=50.0,
                               dtype=torch.float32)
    assert torch.equal(got32, torch.from_numpy(colours).float())
    ints = np.arange(-3, 60, dtype=np.int64)[None]
    np.testing.assert_array_equal(
        vb.encode_colormap(ints, name, vmin=2.0, vmax=50.0),
        cmap(mpl.colors.Normalize(2.0, 50.0)(ints), bytes=True)[..., :3])
    chw = vb.encode_colormap(values[None], name, vmin=2.0, vmax=50.0, layout="chw")
    assert chw.shape == (1, 3) + values.shape
    np.testing.assert_array_equal(
        chw, np.moveaxis(vb.encode_colormap(values[None], name, vmin=2.0, vmax=50.0), -1, 1))


@pytest.mark.parametrize("name", BUILTIN_COLORMAPS)
def test_shipped_tables_equal_matplotlib(name):
    mpl = _matplotlib()
    cmap = mpl.colormaps[name]
    table = colormap_table(name)
    assert table.n == cmap.N
    np.testing.assert_array_equal(table.lut, cmap(np.arange(cmap.N))[:, :3])


# ----------------------------------------------------------------------- round trip


def _run_halfwidths(table) -> np.ndarray:
    """Half the width of the run of equal entries each entry belongs to, in bins."""
    painted = table.painted
    starts = np.flatnonzero(np.r_[True, np.any(painted[1:] != painted[:-1], axis=1)])
    lengths = np.diff(np.r_[starts, len(painted)])
    return np.repeat(lengths, lengths) / 2.0


@pytest.mark.parametrize("name", BUILTIN_COLORMAPS)
def test_round_trip_within_half_a_bin(name):
    """encode -> decode lands in the painted entry's bin, within half of it from the value
    (half of a run of equal entries, which paint one colour)."""
    table = colormap_table(name)
    rng = np.random.default_rng(BUILTIN_COLORMAPS.index(name))
    x = rng.uniform(0.0, 1.0, (1, 3000))
    rgb = vb.encode_colormap(x, name)
    t = vb.decode_colormap(rgb, name, backend="torch").astype(np.float64)
    entry = np.minimum((x * table.n).astype(np.int64), table.n - 1)
    assert (np.abs(t - x) * table.n <= _run_halfwidths(table)[entry] + 1e-5).all()


def test_round_trip_on_every_backend(backend_device):
    backend, device = backend_device
    inferno = map_for("inferno", backend, device)
    n = colormap_table(inferno).n
    x = torch.rand((2, 3, 17), generator=torch.Generator().manual_seed(16), dtype=torch.float64)
    values = 5.0 + 20.0 * x
    rgb = vb.encode_colormap(values.to(device), inferno, vmin=5.0, vmax=25.0)
    back = vb.decode_colormap(rgb, inferno, vmin=5.0, vmax=25.0, backend=backend)
    assert torch.equal(back.cpu(), vb.decode_colormap(rgb.cpu(), inferno, vmin=5.0,
                                                      vmax=25.0, backend="torch"))
    # Half a bin; a 16-entry table sampled under the interpreter has a run of 3.
    half_bins = 0.5 if n == 256 else 1.5
    assert ((back.cpu().double() - values).abs() <= half_bins * 20.0 / n + 1e-5).all()
