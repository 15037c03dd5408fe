"""docs/format.md, Depth, on every backend: projection, depth, encoder, transforms."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import vbkernels as vb
from tests import truth
from tests.conftest import is_interpreted, random_rgb, tie_pixels
from tests.helpers import assert_depth_close

WORKED = [  # docs/format.md, Depth, worked examples: RGB, t, depth
    ((0, 0, 0), 0.0, 0.0),
    ((255, 0, 0), 0.142857143, 0.801234),
    ((0, 255, 0), 0.428571429, 3.22876),
    ((0, 0, 255), 0.714285714, 8.70829),
    ((255, 255, 255), 1.0, math.inf),
    ((128, 0, 0), 0.071708683, 0.379056),
    ((0, 200, 255), 0.602240896, 5.85586),
    ((141, 114, 46), 0.078991597, 0.420012),
    ((128, 128, 128), 0.928851541, 27.4902),
    ((255, 254, 255), 0.999439776, 412.493),
]


def test_worked_examples(backend_device):
    backend, device = backend_device
    rgb = torch.tensor([w[0] for w in WORKED], dtype=torch.uint8, device=device)[None]
    t = vb.hilbert_project(rgb, backend=backend).cpu().numpy()[0]
    depth = vb.decode_depth(rgb, backend=backend).cpu().numpy()[0]
    np.testing.assert_allclose(t, [w[1] for w in WORKED], atol=1e-6, rtol=0)
    # The table is rounded to 6 significant digits.
    assert_depth_close(depth, [w[2] for w in WORKED], rtol=2e-6)


def test_uint8_segment_choice_matches_reference(backend_device):
    """Exact segment choice on random colours and on exact ties (lowest k wins)."""
    backend, device = backend_device
    n = 512 if is_interpreted(backend, device) else 20000
    colours = np.concatenate([tie_pixels(), random_rgb((n, 3), torch.uint8, 1).numpy()])
    rgb = torch.from_numpy(colours).reshape(1, -1, 3).to(device)
    t = vb.hilbert_project(rgb, backend=backend).cpu().numpy().ravel()
    t_ref = vb.hilbert_project(rgb.cpu(), backend="torch").numpy().ravel()
    t_true, _, _ = truth.project(colours)
    # Segments are 1/7 apart in t; positions within one segment are 1/1785 apart.
    np.testing.assert_allclose(t, t_ref, atol=1e-6, rtol=0)
    np.testing.assert_allclose(t, t_true, atol=1e-6, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_float_input_vs_float64(backend_device, dtype):
    backend, device = backend_device
    shape = (2, 7, 11, 3) if is_interpreted(backend, device) else (3, 31, 29, 3)
    rgb = random_rgb(shape, dtype, seed=3)
    t = vb.hilbert_project(rgb.to(device), backend=backend).cpu()
    depth = vb.decode_depth(rgb.to(device), backend=backend).cpu()
    values = rgb.to(torch.float64).numpy().reshape(-1, 3)
    t_true, _, _ = truth.project(values)
    clear = truth.tie_margin(values) > 1e-2  # near-ties may flip in float32, legitimately
    np.testing.assert_allclose(t.numpy().ravel()[clear], t_true[clear], atol=1e-6, rtol=0)
    d_true = truth.depth_from_t(t_true)
    assert_depth_close(depth.numpy().ravel()[clear], d_true[clear])
    # One dtype rule on every backend: float64 in, float64 out; float32 otherwise.
    assert t.dtype == depth.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)


def test_depth_is_precise_near_both_ends(backend_device):
    """The 1 - t cancellation docs/format.md, Depth, warns about: first and last steps of the
    walk."""
    backend, device = backend_device
    colours = [(v, 0, 0) for v in range(0, 6)] + [(255, v, 255) for v in range(249, 255)]
    rgb = torch.tensor(colours, dtype=torch.uint8, device=device)[None]
    depth = vb.decode_depth(rgb, backend=backend).cpu().numpy()[0]
    t_true, _, _ = truth.project(np.array(colours, np.uint8))
    assert_depth_close(depth, truth.depth_from_t(t_true))


@pytest.mark.parametrize("lam,c", [(-2.0, 1.0), (-5.5, 12.0), (-1.25, 0.5)])
def test_custom_power_parameters(backend_device, lam, c):
    backend, device = backend_device
    rgb = random_rgb((1, 5, 13, 3), torch.uint8, seed=4, device=device)
    depth = vb.decode_depth(rgb, lam=lam, c=c, backend=backend).cpu().numpy().ravel()
    t_true, _, _ = truth.project(rgb.cpu().numpy())
    assert_depth_close(depth, truth.depth_from_t(t_true, lam, c))


def test_max_depth_and_distance(backend_device):
    backend, device = backend_device
    colours = np.array([(255, 255, 255), (0, 0, 255), (128, 128, 128), (10, 20, 30), (90, 200, 7)],
                       np.uint8)
    rgb = torch.from_numpy(colours)[None].to(device)
    depth, dist = vb.decode_depth(rgb, max_depth=20.0, return_distance=True, backend=backend)
    depth, dist = depth.cpu().numpy()[0], dist.cpu().numpy()[0]
    assert dist.dtype == np.float32
    t_true, _, d2 = truth.project(colours)
    assert_depth_close(depth, np.minimum(truth.depth_from_t(t_true), 20.0))
    np.testing.assert_allclose(dist, np.sqrt(d2), rtol=1e-6, atol=1e-4)


def test_nan_pixel_is_nan_and_does_not_poison_neighbours(backend_device):
    backend, device = backend_device
    rgb = random_rgb((1, 3, 5, 3), torch.float32, seed=5)
    rgb[0, 1, 2, 1] = float("nan")
    depth, dist = vb.decode_depth(rgb.to(device), return_distance=True, backend=backend)
    t = vb.hilbert_project(rgb.to(device), backend=backend).cpu()
    depth, dist = depth.cpu(), dist.cpu()
    for out in (depth, dist, t):
        assert torch.isnan(out[0, 1, 2])
        mask = torch.ones_like(out, dtype=torch.bool)
        mask[0, 1, 2] = False
        assert not torch.isnan(out[mask]).any()


def test_out_is_written_everywhere_and_returned(backend_device):
    backend, device = backend_device
    rgb = random_rgb((2, 9, 7, 3), torch.uint8, seed=6, device=device)
    out = torch.full((2, 9, 7), -7.0, device=device)
    result = vb.decode_depth(rgb, out=out, backend=backend)
    assert result is out
    assert (out >= 0).all()
    torch.testing.assert_close(out.cpu(), vb.decode_depth(rgb.cpu(), backend="torch"))
    with pytest.raises(ValueError, match="out must have shape"):
        vb.decode_depth(rgb, out=torch.empty(2, 9, 8, device=device), backend=backend)
    with pytest.raises(ValueError, match="out must have shape"):
        vb.decode_depth(rgb, out=torch.empty(2, 9, 7, dtype=torch.float64, device=device),
                        backend=backend)


def test_out_with_unviewable_strides_is_filled(backend_device):
    backend, device = backend_device
    rgb = random_rgb((3, 4, 5, 3), torch.uint8, seed=7, device=device)
    storage = torch.full((5, 4, 3), -1.0, device=device)
    out = storage.permute(2, 1, 0)  # (3, 4, 5), not viewable as one (N, H, W) block
    vb.hilbert_project(rgb, out=out, backend=backend)
    torch.testing.assert_close(out.cpu(), vb.hilbert_project(rgb.cpu(), backend="torch"))


# --------------------------------------------------------------------- encoder and transforms


def test_power_transforms_invert_each_other():
    depth = torch.tensor([0.0, 1e-6, 0.5, 1.0, 10.0, 80.0, 400.0, math.inf], dtype=torch.float64)
    t = vb.power_transform(depth)
    assert t[0] == 0 and t[-1] == 1
    back = vb.inverse_power_transform(t)
    assert_depth_close(back.numpy(), depth.numpy())
    assert vb.inverse_power_transform(0.5) == pytest.approx(10 * (0.5 ** -0.5 - 1), rel=1e-14)
    assert isinstance(vb.power_transform(3.0), float)
    arr = vb.power_transform(np.array([1.0, 2.0], np.float32))
    assert isinstance(arr, np.ndarray) and arr.dtype == np.float32


def test_power_transform_is_differentiable():
    depth = torch.tensor([0.5, 2.0, 30.0], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda d: vb.power_transform(d, lam=-2.5, c=4.0), (depth,))


def test_encode_depth_round_trip(backend_device):
    backend, device = backend_device
    gen = torch.Generator().manual_seed(8)
    depth = torch.rand((2, 6, 9), generator=gen, dtype=torch.float64) ** 3 * 300
    depth[0, 0, 0], depth[0, 0, 1] = 0.0, math.inf
    rgb = vb.encode_depth(depth.to(device), backend=backend)
    assert rgb.shape == (2, 6, 9, 3) and rgb.dtype == torch.uint8
    assert rgb[0, 0, 0].tolist() == [0, 0, 0] and rgb[0, 0, 1].tolist() == [255, 255, 255]
    t_back = vb.hilbert_project(rgb, backend=backend).cpu().to(torch.float64)
    t_true = vb.power_transform(depth)
    assert (t_back - t_true).abs().max() <= 1 / (2 * 255 * 7) + 1e-7
    chw = vb.encode_depth(depth.to(device), layout="chw", backend=backend)
    assert torch.equal(chw.cpu(), rgb.cpu().permute(0, 3, 1, 2))
    floats = vb.encode_depth(depth.to(device), dtype=torch.float32, backend=backend).cpu()
    t_float = vb.hilbert_project(floats, backend="torch").to(torch.float64)
    assert (t_float - t_true).abs().max() < 1e-6


def test_encode_depth_rejects_negative_and_nan():
    with pytest.raises(ValueError, match="depth must be >= 0"):
        vb.encode_depth(torch.tensor([[1.0, -0.5]]))
    clamped = vb.encode_depth(torch.tensor([[1.0, -0.5]]), negative="clamp")
    assert clamped[0, 1].tolist() == [0, 0, 0]
    with pytest.raises(ValueError, match="NaN"):
        vb.encode_depth(torch.tensor([[float("nan")]]))


def test_hilbert_walk_visits_vertices(backend_device):
    backend, device = backend_device
    t = torch.arange(8, dtype=torch.float32, device=device) / 7
    rgb = vb.hilbert_walk(t, dtype=torch.uint8, backend=backend).cpu()
    assert torch.equal(rgb, torch.tensor(truth.WALK, dtype=torch.uint8))
    mid = vb.hilbert_walk(torch.tensor([0.5 / 7, 2.5 / 7], device=device), backend=backend).cpu()
    torch.testing.assert_close(mid, torch.tensor([[0.5, 0, 0], [0.5, 1, 0]]))
    clamped = vb.hilbert_walk(torch.tensor([-1.0, 2.0], device=device), backend=backend).cpu()
    torch.testing.assert_close(clamped, torch.tensor([[0.0, 0, 0], [1, 1, 1]]))


# --------------------------------------------------------------------- exhaustive and peers


def _all_uint8_colours() -> torch.Tensor:
    v = torch.arange(1 << 24, dtype=torch.int32)
    return torch.stack([(v >> 16) & 255, (v >> 8) & 255, v & 255], -1).to(torch.uint8)


@pytest.mark.slow
def test_all_2_24_colours_numpy_equals_torch_and_compiled():
    """The exact-segment clause over the whole uint8 cube: identical t, bit for bit."""
    rgb = _all_uint8_colours().reshape(256, 65536, 3)
    t_torch = vb.hilbert_project(rgb, backend="torch")
    t_numpy = torch.from_numpy(vb.hilbert_project(rgb.numpy(), backend="numpy"))
    assert torch.equal(t_torch, t_numpy)
    if "cpu" in vb.available_backends():
        t_cpu = vb.hilbert_project(rgb, backend="cpu")
        assert (t_cpu - t_torch).abs().max() <= 1e-6
        # Squared distances are integers, so equal segments give equal rounded squares;
        # the distances themselves may differ by one ulp (torch's float32 CPU sqrt is not
        # always correctly rounded).
        _, d_cpu = vb.decode_depth(rgb, backend="cpu", return_distance=True)
        _, d_ref = vb.decode_depth(rgb, backend="torch", return_distance=True)
        assert torch.equal(torch.round(d_cpu.double() ** 2), torch.round(d_ref.double() ** 2))


def test_matches_hilbertmap_away_from_ties():
    """The public hilbertmap package agrees except at exact ties, which it breaks by float
    rounding of its clamped projections (we always take the lowest segment)."""
    hilbertmap = pytest.importorskip("hilbertmap")
    colours = np.concatenate([tie_pixels(), random_rgb((5000, 3), torch.uint8, 9).numpy()])
    ours = vb.decode_depth(colours[None], backend="numpy")[0].astype(np.float64)
    theirs = hilbertmap.rgb_to_depth(colours.astype(np.float64) / 255.0)
    clear = truth.tie_margin(colours) > 0
    assert_depth_close(ours[clear], theirs[clear], rtol=1e-5)
    # At exact ties both answers are on the walk but may name different segments.
    assert (~clear).sum() > 1000
