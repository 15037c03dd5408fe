"""decode_colormap on the compiled ``cpu`` backend against the torch reference.

The op (``vbkernels/cpu/colormap.py`` over ``csrc/cpu/colormap.cpp``) must give uint8 images
bit-identical ``t`` and distance to ``vbkernels/reference/colormap.py`` through both of its
paths: the direct search over every segment and the cached colour table (cold, warm, after
switching colormaps). Float images go through the direct search, within docs/format.md,
Precision.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

import vbkernels
from vbkernels.colormaps import BUILTIN_COLORMAPS, colormap_table, polyline
from vbkernels.cpu import colormap as cpu_op
from vbkernels.reference import colormap as ref_op

MAPS = ("turbo", "viridis", "jet", "gray", "Spectral_r")
FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _polyline(colormap) -> tuple[torch.Tensor, torch.Tensor]:
    vertices, positions = polyline(colormap_table(colormap))
    return torch.from_numpy(vertices), torch.from_numpy(positions)


def _outputs(rgb: torch.Tensor, with_distance: bool = True):
    dtype = torch.float64 if rgb.dtype == torch.float64 else torch.float32
    t = torch.full(rgb.shape[:3], -7.0, dtype=dtype)
    distance = torch.full(rgb.shape[:3], -7.0) if with_distance else None
    return t, distance


def _run(op, rgb, line, max_distance=None, with_distance=True):
    t, distance = _outputs(rgb, with_distance)
    op(rgb, *line, t, distance, max_distance)
    return t, distance


def _bits(x: torch.Tensor) -> torch.Tensor:
    """Raw bits, so NaN == NaN and -0.0 != 0.0."""
    return x.view(torch.int64 if x.dtype == torch.float64 else torch.int32)


def _assert_identical(got, want, where: str = ""):
    for name, a, b in zip(("t", "distance"), got, want):
        if b is None:
            assert a is None
            continue
        assert torch.equal(_bits(a), _bits(b)), f"{where} {name} differs at {(a != b).sum()} px"


@pytest.fixture
def path(monkeypatch):
    """Force one path of the uint8 op, with an empty table cache before and after."""

    def force(name: str) -> None:
        cpu_op.COLOUR_TABLES.clear()
        minimum = {"direct": 1 << 62, "table": 0}[name]
        monkeypatch.setattr(cpu_op, "TABLE_MIN_PIXELS", minimum)

    yield force
    cpu_op.COLOUR_TABLES.clear()


def _random_u8(shape, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, shape, dtype=torch.uint8, generator=g)


def _entry(line):
    return cpu_op.COLOUR_TABLES.get(cpu_op.COLOUR_TABLES.key(*line), create=False)


# --------------------------------------------------------------------------------------
# uint8: exact on both paths
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("colormap", MAPS)
@pytest.mark.parametrize("max_distance", [None, 12.5])
def test_random_colours_exact_on_both_paths(path, colormap, max_distance):
    line = _polyline(colormap)
    rgb = _random_u8((2, 24, 40, 3), seed=len(colormap))
    want = _run(ref_op.decode_colormap, rgb, line, max_distance)
    if max_distance is not None:
        assert want[0].isnan().any() and not want[0].isnan().all()
    for name in ("direct", "table"):
        path(name)
        _assert_identical(_run(cpu_op.decode_colormap, rgb, line, max_distance), want)
        # Warm (table) or again (direct), without the distance output.
        got = _run(cpu_op.decode_colormap, rgb, line, max_distance, with_distance=False)
        _assert_identical(got, (want[0], None))


@pytest.mark.parametrize("colormap", BUILTIN_COLORMAPS)
def test_every_painted_colour_exact(path, colormap):
    """Each painted entry (and its neighbours' midpoints, off the vertices) of every map."""
    line = _polyline(colormap)
    painted = torch.from_numpy(colormap_table(colormap).painted)
    halfway = ((painted[1:].int() + painted[:-1].int()) // 2).to(torch.uint8)
    rgb = torch.cat([painted, halfway])[None, None]
    want = _run(ref_op.decode_colormap, rgb, line)
    assert torch.all(want[1][0, 0, :painted.shape[0]] == 0)  # painted colours lie on the line
    for name in ("direct", "table"):
        path(name)
        _assert_identical(_run(cpu_op.decode_colormap, rgb, line), want)


def test_constructed_ties_go_to_the_lowest_segment(path):
    """A square polyline: the grid has pixels equidistant from two, three or four segments
    (exact integer distances) and from a vertex shared by two segments."""
    square = torch.tensor([[0, 0, 0], [200, 0, 0], [200, 200, 0], [0, 200, 0], [0, 0, 0.0]])
    line = (square.double(), torch.tensor([0.0, 0.2, 0.5, 0.7, 1.0], dtype=torch.float64))
    axis = torch.arange(0, 256, 10)
    r, g, b = torch.meshgrid(axis, axis, torch.tensor([0, 7, 100]), indexing="ij")
    rgb = torch.stack([r, g, b], -1).reshape(1, 26, -1, 3).to(torch.uint8)
    want = _run(ref_op.decode_colormap, rgb, line)
    centre = (rgb[0, ..., 0] == 100) & (rgb[0, ..., 1] == 100)
    assert torch.all(want[0][0][centre] == 0.1)  # four-way tie: segment 0 at s = 0.5
    for name in ("direct", "table"):
        path(name)
        _assert_identical(_run(cpu_op.decode_colormap, rgb, line), want)


def test_custom_random_polyline_64k_colours_through_the_table(path):
    """65536 random colours against a 200-vertex random polyline (near-ties of unrelated
    segments included), cold then warm; and the direct path on a sample."""
    g = torch.Generator().manual_seed(3)
    vertices = torch.randint(0, 256, (200, 3), generator=g).double()
    line = (vertices, torch.linspace(0, 1, 200, dtype=torch.float64))
    rgb = _random_u8((1, 256, 256, 3), seed=4)
    want = _run(ref_op.decode_colormap, rgb, line, 30.0)
    path("table")
    _assert_identical(_run(cpu_op.decode_colormap, rgb, line, 30.0), want)
    computed = _entry(line).computed
    assert computed == torch.unique(rgb.reshape(-1, 3), dim=0).shape[0]
    _assert_identical(_run(cpu_op.decode_colormap, rgb, line, 30.0), want)
    assert _entry(line).computed == computed  # warm: nothing new computed
    path("direct")
    sample = rgb[:, :32]
    got = _run(cpu_op.decode_colormap, sample, line, 30.0)
    _assert_identical(got, (want[0][:, :32], want[1][:, :32]))


def test_runs_of_one_colour_through_the_table(path):
    """Painted frames run one colour over many pixels (looked up once per run); runs of new
    and known colours, broken by noisy pixels, in every order, cold and warm."""
    line = _polyline("turbo")
    depth = torch.linspace(0.0, 1.0, 40).repeat_interleave(7)[None, None].expand(2, 30, -1)
    rgb = vbkernels.encode_colormap(depth.contiguous(), "turbo").clone()
    noise = _random_u8(rgb.shape, seed=13)
    rgb[:, ::4, ::5] = noise[:, ::4, ::5]
    path("table")
    for max_distance in (None, 4.0):
        want = _run(ref_op.decode_colormap, rgb, line, max_distance)
        for half in (rgb[:1], rgb):  # the second call finds half of its colours filled
            got = _run(cpu_op.decode_colormap, half, line, max_distance)
            _assert_identical(got, (want[0][:half.shape[0]], want[1][:half.shape[0]]))


# --------------------------------------------------------------------------------------
# The table cache
# --------------------------------------------------------------------------------------

def test_table_cache_cold_warm_and_switching(path):
    path("table")
    turbo, viridis, jet = (_polyline(m) for m in ("turbo", "viridis", "jet"))
    first = _random_u8((1, 48, 64, 3), seed=5)
    second = torch.cat([first[:, :24], _random_u8((1, 24, 64, 3), seed=6)], dim=1)
    for line in (turbo, viridis):
        want1 = _run(ref_op.decode_colormap, first, line)
        want2 = _run(ref_op.decode_colormap, second, line)
        _assert_identical(_run(cpu_op.decode_colormap, first, line), want1)
        cold = _entry(line).computed
        assert cold == torch.unique(first.reshape(-1, 3), dim=0).shape[0]
        # Half of the second image's colours are new: only those are computed.
        _assert_identical(_run(cpu_op.decode_colormap, second, line), want2)
        both = torch.unique(torch.cat([first, second]).reshape(-1, 3), dim=0).shape[0]
        assert _entry(line).computed == both
    # turbo is still cached after viridis (two are kept) and answers warm.
    _assert_identical(_run(cpu_op.decode_colormap, first, turbo),
                      _run(ref_op.decode_colormap, first, turbo))
    assert _entry(turbo).computed == both
    # A third colormap evicts the least recently used (viridis); back to viridis is cold.
    _run(cpu_op.decode_colormap, first, jet)
    assert _entry(viridis) is None and _entry(turbo) is not None
    _assert_identical(_run(cpu_op.decode_colormap, second, viridis),
                      _run(ref_op.decode_colormap, second, viridis))


def test_small_images_use_a_table_only_once_one_exists(monkeypatch):
    cpu_op.COLOUR_TABLES.clear()
    line = _polyline("plasma")
    small = _random_u8((1, 8, 8, 3), seed=7)
    want = _run(ref_op.decode_colormap, small, line)
    assert small[0].numel() // 3 < cpu_op.TABLE_MIN_PIXELS
    _assert_identical(_run(cpu_op.decode_colormap, small, line), want)
    assert _entry(line) is None
    big = _random_u8((1, 64, cpu_op.TABLE_MIN_PIXELS // 64, 3), seed=8)
    _run(cpu_op.decode_colormap, big, line)
    before = _entry(line).computed
    _assert_identical(_run(cpu_op.decode_colormap, small, line), want)
    assert _entry(line).computed > before  # the small image's colours went into the table
    cpu_op.COLOUR_TABLES.clear()


def test_concurrent_calls_on_one_table(path):
    path("table")
    line = _polyline("inferno")
    images = [_random_u8((1, 64, 64, 3), seed=s) for s in range(4)]
    wants = [_run(ref_op.decode_colormap, rgb, line) for rgb in images]
    results = [None] * len(images)

    def work(i):
        results[i] = _run(cpu_op.decode_colormap, images[i], line)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(images))]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for got, want in zip(results, wants):
        _assert_identical(got, want)


# --------------------------------------------------------------------------------------
# Strides and layouts
# --------------------------------------------------------------------------------------

def _strided_views(rgb: torch.Tensor):
    """(name, view) pairs of the same pixels: channels-first storage, sliced, padded."""
    chw = rgb.permute(0, 3, 1, 2).contiguous().permute(0, 2, 3, 1)
    padded = torch.zeros(rgb.shape[0], rgb.shape[1] * 2, rgb.shape[2] + 3, 5,
                         dtype=rgb.dtype)[:, ::2, 1:-2, 1:4]
    padded.copy_(rgb)
    flipped = rgb.flip(2).contiguous().flip(2)  # negative width stride
    return [("chw", chw), ("padded", padded), ("flipped", flipped)]


@pytest.mark.parametrize("name", ["direct", "table"])
def test_strided_inputs_and_outputs(path, name):
    line = _polyline("turbo")
    rgb = _random_u8((2, 20, 30, 3), seed=9)
    want = _run(ref_op.decode_colormap, rgb, line, 20.0)
    path(name)
    for label, view in _strided_views(rgb):
        assert torch.equal(view, rgb)
        _assert_identical(_run(cpu_op.decode_colormap, view, line, 20.0), want, label)
    # Strided outputs: every other column of wider buffers.
    t = torch.full((2, 20, 60), -7.0)[..., ::2]
    distance = torch.full((2, 20, 60), -7.0)[..., 1::2]
    cpu_op.decode_colormap(rgb, *line, t, distance, 20.0)
    _assert_identical((t, distance), want)


# --------------------------------------------------------------------------------------
# Float images: the direct search in the reference's work dtype
# --------------------------------------------------------------------------------------

def _float_image(dtype: torch.dtype, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand((2, 16, 24, 3), generator=g, dtype=torch.float64) * 1.2 - 0.1).to(dtype)
    x[0, 3, 5, 1] = float("nan")
    x[1, 0, :4, 0] = float("nan")
    return x


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("colormap", ["turbo", "cividis"])
def test_float_images_within_tolerance(path, dtype, colormap):
    line = _polyline(colormap)
    rgb = _float_image(dtype, seed=10)
    path("table")  # float images never use the table
    for max_distance in (None, 15.0):
        got = _run(cpu_op.decode_colormap, rgb, line, max_distance)
        want = _run(ref_op.decode_colormap, rgb, line, max_distance)
        assert torch.equal(got[0].isnan(), want[0].isnan())
        assert torch.equal(got[1].isnan(), want[1].isnan())
        assert got[0].isnan().sum() >= 5 and got[1].isnan().sum() == 5
        tolerance = 1e-12 if dtype == torch.float64 else 1e-6
        torch.testing.assert_close(got[0], want[0], rtol=0, atol=tolerance, equal_nan=True)
        torch.testing.assert_close(got[1], want[1], rtol=1e-6, atol=1e-4, equal_nan=True)
    assert _entry(line) is None


def test_float64_images_exact():
    """float64 work is exact integer arithmetic up to the two divisions, as for uint8."""
    line = _polyline("magma")
    rgb = _random_u8((1, 16, 24, 3), seed=11).double() / 255.0
    _assert_identical(_run(cpu_op.decode_colormap, rgb, line),
                      _run(ref_op.decode_colormap, rgb, line))


# --------------------------------------------------------------------------------------
# Through the public front end
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("scale", ["linear", "log", "inverse"])
def test_public_decode_matches_the_reference(scale):
    depth = torch.linspace(1.0, 50.0, 64 * 80).reshape(1, 64, 80)
    rgb = vbkernels.encode_colormap(depth, "turbo", vmin=1.0, vmax=50.0, scale=scale,
                                    layout="chw")
    kwargs = dict(vmin=1.0, vmax=50.0, scale=scale, max_distance=3.0, return_distance=True)
    got = vbkernels.decode_colormap(rgb, "turbo", backend="cpu", **kwargs)
    want = vbkernels.decode_colormap(rgb, "turbo", backend="torch", **kwargs)
    _assert_identical(got, want)
    numpy_in = vbkernels.decode_colormap(rgb.numpy(), "turbo", backend="cpu", **kwargs)
    assert isinstance(numpy_in[0], np.ndarray)
    np.testing.assert_array_equal(numpy_in[0], want[0].numpy())


def test_wrong_dtypes_are_type_errors():
    line = _polyline("viridis")
    rgb = _random_u8((1, 2, 3, 3), seed=14)
    with pytest.raises(TypeError, match="t as torch.float32"):
        cpu_op.decode_colormap(rgb, *line, torch.empty(1, 2, 3, dtype=torch.float64), None, None)
    with pytest.raises(TypeError, match="int32"):
        cpu_op.decode_colormap(rgb.int(), *line, torch.empty(1, 2, 3), None, None)


def test_empty_batch():
    rgb = torch.zeros(0, 5, 7, 3, dtype=torch.uint8)
    values = vbkernels.decode_colormap(rgb, "viridis", backend="cpu")
    assert values.shape == (0, 5, 7) and values.dtype == torch.float32


def test_registered_torch_op():
    """torch.library.opcheck: schema, fake kernel, autograd registration, AOT dispatch."""
    from vbkernels._dispatch import load_backend

    op = load_backend("cpu").ops["decode_colormap"]
    rgb = _random_u8((1, 4, 5, 3), seed=12)
    torch.library.opcheck(op, (rgb, *_polyline("viridis"), torch.empty(1, 4, 5),
                               torch.empty(1, 4, 5), 10.0))
