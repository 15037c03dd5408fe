"""docs/format.md, Normals, on every backend: decode_normals / encode_normals."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import vbkernels as vb
from tests import truth
from tests.conftest import is_interpreted, random_rgb
from tests.helpers import assert_normals_close


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
    assert_normals_close(normals, want)
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
    assert_normals_close(normals, want)  # the tolerance of out_dtype (tests/helpers.py)


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


# --------------------------------------------------------------------- every uint8 colour


def _colours(start: int, stop: int, step: int = 1) -> torch.Tensor:
    """uint8 colours number start..stop (R major, B minor) as an (M, 3) tensor."""
    v = torch.arange(start, stop, step, dtype=torch.int32)
    return torch.stack([(v >> 16) & 255, (v >> 8) & 255, v & 255], -1).to(torch.uint8)


# sqrt of every possible |2p - 255|^2 (an integer up to 3 * 255^2), in float64.
_LENGTHS = torch.sqrt(torch.arange(3 * 255 * 255 + 1, dtype=torch.float64))


def _float64_normals(rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(unit vectors, |n|) in float64 from the exact integer vector m = 2p - 255."""
    m = rgb.to(torch.int32) * 2 - 255
    length = _LENGTHS[(m * m).sum(-1)]
    return m / length.unsqueeze(-1), length / 255


def _worst_errors(rgb: torch.Tensor, backend: str, device: str) -> tuple[float, float]:
    normals, norm = vb.decode_normals(rgb.to(device)[None], return_norm=True, backend=backend)
    want, want_norm = _float64_normals(rgb)
    return ((normals[0].cpu().double() - want).abs().max().item(),
            (norm[0].cpu().double() - want_norm).abs().max().item())


def test_all_2_24_uint8_colours_within_1e6_on_torch():
    """docs/format.md, Normals: within 1e-6 of float64 for every uint8 colour. 2p/255 - 1
    in float32 cancels near grey (1.2e-5 off at (127, 128, 128)); 2p - 255 is exact."""
    chunk = 1 << 21
    for start in range(0, 1 << 24, chunk):
        err, err_norm = _worst_errors(_colours(start, start + chunk), "torch", "cpu")
        assert err <= 1e-6 and err_norm <= 1e-6, (start, err, err_norm)


def test_uint8_colours_near_grey_and_across_the_cube(backend_device):
    """Every colour within 8 of grey in each channel, and a strided sample of the cube."""
    backend, device = backend_device
    near = torch.arange(120, 136, dtype=torch.uint8)
    grey = torch.cartesian_prod(near, near, near)
    step = 40_009 if is_interpreted(backend, device) else 997
    rgb = torch.cat([grey, _colours(0, 1 << 24, step)])
    err, err_norm = _worst_errors(rgb, backend, device)
    assert err <= 1e-6 and err_norm <= 1e-6, (err, err_norm)
