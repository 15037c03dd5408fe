"""docs/format.md, Normals, on every backend: decode_normals / encode_normals."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import vbkernels as vb
from tests import truth
from tests.conftest import is_interpreted, random_rgb


def _shape(backend, device):
    return (2, 5, 7, 3) if is_interpreted(backend, device) else (3, 23, 19, 3)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32, torch.float16, torch.bfloat16,
                                   torch.float64])
@pytest.mark.parametrize("convention", ["opengl", "opencv"])
def test_decode_vs_float64(backend_device, dtype, convention):
    backend, device = backend_device
    rgb = random_rgb(_shape(backend, device), dtype, seed=11)
    normals, norm = vb.decode_normals(rgb.to(device), convention=convention, return_norm=True,
                                      backend=backend)
    assert normals.dtype == torch.float32 and norm.dtype == torch.float32
    want, want_norm = truth.normals(rgb.to(torch.float64).numpy() if dtype != torch.uint8
                                    else rgb.numpy(), flip_yz=convention == "opencv")
    np.testing.assert_allclose(normals.cpu().numpy(), want, atol=1e-6, rtol=0)
    np.testing.assert_allclose(norm.cpu().numpy(), want_norm, atol=1e-6, rtol=1e-6)


def test_grey_is_zero_vector_and_norm_flags_it(backend_device):
    backend, device = backend_device
    rgb = torch.tensor([[[0.5, 0.5, 0.5], [1.0, 0.5, 0.5], [0.5, 0.5, 0.0]]], device=device)
    normals, norm = vb.decode_normals(rgb, return_norm=True, backend=backend)
    normals, norm = normals.cpu(), norm.cpu()
    # |n| of mid-grey is 0 up to rounding (a fused multiply-add on the GPU leaves ~1e-7).
    assert torch.equal(normals[0, 0], torch.zeros(3)) and norm[0, 0] < 1e-6
    torch.testing.assert_close(normals[0, 1], torch.tensor([1.0, 0, 0]))
    torch.testing.assert_close(normals[0, 2], torch.tensor([0.0, 0, -1]))
    cv = vb.decode_normals(rgb, convention="opencv", backend=backend).cpu()
    torch.testing.assert_close(cv[0, 2], torch.tensor([0.0, 0, 1]))


def test_eps_controls_the_zero_vector(backend_device):
    backend, device = backend_device
    rgb = torch.tensor([[[127, 127, 127]]], dtype=torch.uint8, device=device)
    kept = vb.decode_normals(rgb, backend=backend).cpu()
    assert torch.allclose(kept.norm(dim=-1), torch.ones(1, 1))
    zeroed = vb.decode_normals(rgb, eps=0.01, backend=backend).cpu()
    assert torch.equal(zeroed, torch.zeros_like(zeroed))


@pytest.mark.parametrize("out_dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_out_dtype(backend_device, out_dtype):
    backend, device = backend_device
    rgb = random_rgb((1, 4, 6, 3), torch.uint8, seed=12, device=device)
    normals = vb.decode_normals(rgb, out_dtype=out_dtype, backend=backend)
    assert normals.dtype == out_dtype
    want = vb.decode_normals(rgb.cpu(), backend="torch").to(out_dtype)
    # One unit in the last place of the output dtype: rounding of the final conversion.
    # Half outputs: one unit in the last place (rounding of the final conversion); float64:
    # the 1e-6 of docs/format.md, Normals, for float32 arithmetic.
    rtol = 1e-6 if out_dtype == torch.float64 else torch.finfo(out_dtype).eps
    torch.testing.assert_close(normals.cpu(), want, atol=0, rtol=rtol)


def test_nan_pixel(backend_device):
    backend, device = backend_device
    rgb = random_rgb((1, 2, 3, 3), torch.float32, seed=13)
    rgb[0, 1, 1, 2] = float("nan")
    normals, norm = vb.decode_normals(rgb.to(device), return_norm=True, backend=backend)
    normals, norm = normals.cpu(), norm.cpu()
    assert torch.isnan(normals[0, 1, 1]).all() and torch.isnan(norm[0, 1, 1])
    assert torch.isnan(normals).sum() == 3 and torch.isnan(norm).sum() == 1


def test_chw_output_keeps_layout(backend_device):
    backend, device = backend_device
    rgb = random_rgb((2, 3, 5, 4), torch.uint8, seed=14, device=device)
    normals = vb.decode_normals(rgb, backend=backend)
    assert normals.shape == (2, 3, 5, 4)
    hwc = vb.decode_normals(rgb.permute(0, 2, 3, 1).contiguous(), backend=backend)
    torch.testing.assert_close(normals.permute(0, 2, 3, 1).cpu(), hwc.cpu(), atol=0, rtol=0)
    out = torch.full((2, 3, 5, 4), 9.0, device=device)
    assert vb.decode_normals(rgb, out=out, backend=backend) is out
    torch.testing.assert_close(out.cpu(), normals.cpu(), atol=0, rtol=0)


def test_encode_decode_round_trip(backend_device):
    backend, device = backend_device
    gen = torch.Generator().manual_seed(15)
    n = torch.randn((2, 6, 5, 3), generator=gen, dtype=torch.float64)
    n = n / n.norm(dim=-1, keepdim=True)
    for convention in ("opengl", "opencv"):
        rgb = vb.encode_normals(n.to(device), convention=convention, backend=backend)
        assert rgb.dtype == torch.uint8 and rgb.shape == n.shape
        want = torch.round(255 * (n * (torch.tensor([1, -1, -1.0]) if convention == "opencv"
                                       else 1) + 1) / 2).to(torch.uint8)
        assert torch.equal(rgb.cpu(), want)
        back = vb.decode_normals(rgb, convention=convention, backend=backend).cpu().double()
        angle = torch.rad2deg(torch.arccos((back * n).sum(-1).clamp(-1, 1)))
        assert angle.max() < 0.5  # 8-bit quantisation: about 0.2 degrees at worst
    chw = vb.encode_normals(n.permute(0, 3, 1, 2).to(device), layout="chw", backend=backend)
    assert torch.equal(chw.permute(0, 2, 3, 1).cpu(), vb.encode_normals(n, backend="torch"))


def test_encode_normals_rejects_bad_input():
    with pytest.raises(ValueError, match="normals"):
        vb.encode_normals(torch.zeros(4, 2))
    with pytest.raises(ValueError, match="NaN"):
        vb.encode_normals(torch.full((1, 3), float("nan")))
