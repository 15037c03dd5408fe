"""The power transform at both ends of [0, inf): an mpmath oracle, the checks the public
``hilbertmap`` package makes of its own transform (run here against vbkernels), and
encoders that keep finite depth off white where float64 can tell it from infinity."""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
import torch

import vbkernels as vb
from vbkernels.numpy_baseline import depth as np_depth
from vbkernels.reference import depth as ref_depth

mpmath.mp.dps = 60

# Both ends and the switch between the two forms (t = 1/2 at d = 10*(sqrt(2) - 1)).
DEPTHS = [0.0, 1e-300, 1e-30, 1e-12, 1e-6, 1e-3, 0.5, 1.0, 4.142, 4.1422, 10.0, 30.0, 100.0,
          412.49, 1e3, 1e5, 1e8, 1e9, 1e12, 1e20, 1e300, math.inf]
PARAMS = [(-3.0, 10.0 / 3.0), (-1.5, 0.7), (-8.0, 40.0)]
IMPLEMENTATIONS = {
    "torch": lambda d, lam, c: ref_depth.power_transform(torch.from_numpy(d), lam, c).numpy(),
    "numpy": np_depth.power_transform,
}


def oracle_t(depth: float, lam: float, c: float) -> mpmath.mpf:
    """t = 1 - (1 + d/(-lam c))^(lam+1) at 60 digits, of the exact value of ``depth``."""
    if math.isinf(depth):
        return mpmath.mpf(1)
    x = mpmath.mpf(depth) / (-mpmath.mpf(lam) * mpmath.mpf(c))
    return -mpmath.expm1((lam + 1) * mpmath.log1p(x))


@pytest.mark.parametrize("impl", sorted(IMPLEMENTATIONS))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("lam,c", PARAMS)
def test_power_transform_against_mpmath(impl, dtype, lam, c):
    with np.errstate(over="ignore"):  # float32 turns 1e300 into inf and 1e-300 into 0
        depth = np.array(DEPTHS, dtype=dtype)
        got = IMPLEMENTATIONS[impl](depth, lam, c)
    assert got.dtype == dtype
    eps = np.finfo(dtype).eps
    for d, t in zip(depth.tolist(), got.tolist()):
        want = oracle_t(d, lam, c)
        if want == 0:
            assert t == 0, d
            continue
        assert abs((mpmath.mpf(t) - want) / want) <= 2 * eps, (d, t, want)
        # Saturation: t reaches 1 only where the dtype cannot hold the true t below 1.
        assert (t == 1.0) == (float(np.array(float(want), dtype=dtype)) == 1.0), (d, t, want)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_inverse_power_transform_against_mpmath(dtype):
    eps = torch.finfo(dtype).eps
    ts = [0.0, 1e-30, 1e-12, 1e-6, 0.25, 0.5, 0.9, 1 - 1e-6, 1 - eps, 1.0]
    t = torch.tensor(ts, dtype=dtype)
    got = vb.inverse_power_transform(t).tolist()
    for t_in, d in zip(t.tolist(), got):
        if t_in == 1.0:
            assert d == math.inf
            continue
        y = mpmath.log1p(-mpmath.mpf(t_in)) / -2  # log(u) / (lam + 1), lam=-3, c=10/3
        want = 10 * mpmath.expm1(y)
        if want == 0:
            assert d == 0
            continue
        # expm1(y) turns the rounding of y into a relative error of up to |y| * eps
        # (y = 18 at t = 1 - 2^-52, depth 6.7e8), whatever the formula built on log(u).
        assert abs((mpmath.mpf(d) - want) / want) <= (2 + float(y)) * eps, (t_in, d, want)


# --- the transform checks of the hilbertmap package, against vbkernels ------------------

def test_zero_maps_to_zero():
    assert vb.power_transform(np.array([0.0]))[0] == 0.0


def test_infinity_approaches_one():
    t = vb.power_transform(np.array([1e9]))
    assert 0.999 < t[0] < 1.0


def test_output_in_unit_interval_and_strictly_increasing():
    t = vb.power_transform(np.linspace(0.0, 1000.0, 10_000))
    assert np.all(t >= 0.0) and np.all(t < 1.0)
    assert np.all(np.diff(t) > 0)


@pytest.mark.parametrize("lam,c", [(-3.0, 10.0 / 3.0), (-2.0, 1.0)])
def test_round_trip(lam, c):
    d = np.linspace(0.0, 1000.0, 10_000)
    back = vb.inverse_power_transform(vb.power_transform(d, lam=lam, c=c), lam=lam, c=c)
    np.testing.assert_allclose(back, d, rtol=1e-9, atol=1e-9)


def test_known_values():
    # lam = -3, c = 10/3: t = 1 - (1 + d/10)^-2.
    d = np.array([0.0, 10.0, 30.0])
    np.testing.assert_allclose(vb.power_transform(d), 1.0 - (1.0 + d / 10.0) ** -2.0, rtol=1e-12)


def test_keeps_shape_and_float_dtype():
    assert vb.power_transform(np.zeros((4, 5, 6))).shape == (4, 5, 6)
    for dtype in (np.float32, np.float64):
        assert vb.power_transform(np.array([0.0, 1.0, 5.0], dtype=dtype)).dtype == dtype


def test_agrees_with_hilbertmap():
    hilbertmap = pytest.importorskip("hilbertmap")
    d = np.geomspace(1e-2, 1e4, 2000)
    np.testing.assert_allclose(vb.power_transform(d), hilbertmap.depth_to_normalized(d),
                               rtol=1e-12)
    t = np.linspace(0.0, 0.999, 2000)
    np.testing.assert_allclose(vb.inverse_power_transform(t), hilbertmap.normalized_to_depth(t),
                               rtol=1e-10)


# --- encoders ---------------------------------------------------------------------------

def test_float64_encoding_of_finite_depth_is_not_white(backend_device):
    """Far but finite depth must not encode as white (which decodes to +inf) when the
    float64 output can hold its colour: 1e9 m is t = 1 - 1e-16, G = 1 - 9e-16."""
    backend, device = backend_device
    depth = torch.tensor([[1e3, 1e5, 1e9, math.inf]], dtype=torch.float64, device=device)
    rgb = vb.encode_depth(depth, dtype=torch.float64, backend=backend).cpu()
    white = (rgb == 1.0).all(dim=-1)[0].tolist()
    assert white == [False, False, False, True], rgb
    t = vb.hilbert_project(rgb, backend="torch")[0]
    assert (t[:3] < 1).all() and t[3] == 1
