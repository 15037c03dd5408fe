"""Gradients through the decoders (docs/format.md, Gradients), on every backend that loads.

The expected gradients come from explicit formulas differentiated by torch autograd on
pixels whose segment is known by construction (away from ties and segment ends), so the
registered backward is checked against something it does not share code with; gradcheck
checks it against finite differences of each backend's own forward kernel.
"""

from __future__ import annotations

import math

import pytest
import torch

import vbkernels as vb
from tests.conftest import PAIR_IDS, PAIRS, is_interpreted
from vbkernels._walk import SEGMENTS

DEFAULT_LAM, DEFAULT_C = -3.0, 10.0 / 3.0


@pytest.fixture(params=PAIRS, ids=PAIR_IDS)
def pair(request):
    return request.param


def _segment_pixels(per_segment: int, seed: int, dtype=torch.float64):
    """(M, 3) pixels in (0, 1) near known segments: ``s`` in [0.25, 0.75] along segment k,
    each fixed channel 0.01..0.05 off its vertex value, and the segment index of each."""
    gen = torch.Generator().manual_seed(seed)
    pixels, segments = [], []
    for k, seg in enumerate(SEGMENTS):
        for _ in range(per_segment):
            s = 0.25 + 0.5 * torch.rand((), generator=gen, dtype=torch.float64)
            pixel = torch.zeros(3, dtype=torch.float64)
            pixel[seg.varying] = s if seg.rising else 1.0 - s
            for ch, value in ((seg.fixed_a, seg.value_a), (seg.fixed_b, seg.value_b)):
                off = 0.01 + 0.04 * torch.rand((), generator=gen, dtype=torch.float64)
                pixel[ch] = off if value == 0 else 1.0 - off
            pixels.append(pixel)
            segments.append(k)
    return torch.stack(pixels).to(dtype), torch.tensor(segments)


def _expected_depth_and_distance(x: torch.Tensor, segments: torch.Tensor):
    """Depth and distance of (M, 3) pixels on known segments, by explicit formulas."""
    depth, distance = [], []
    for pixel, k in zip(x, segments.tolist()):
        seg = SEGMENTS[k]
        s = pixel[seg.varying] if seg.rising else 1.0 - pixel[seg.varying]
        t = (k + s) / 7.0
        depth.append(vb.inverse_power_transform(t, lam=DEFAULT_LAM, c=DEFAULT_C))
        da = 255.0 * pixel[seg.fixed_a] - seg.value_a
        db = 255.0 * pixel[seg.fixed_b] - seg.value_b
        distance.append(torch.sqrt(da * da + db * db))
    return torch.stack(depth), torch.stack(distance)


def _grad(fn, x: torch.Tensor, weights) -> torch.Tensor:
    """Gradient of ``sum(w * output)`` over ``fn``'s outputs, with fixed weights per output."""
    x = x.detach().clone().requires_grad_(True)
    outputs = fn(x)
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    loss = sum((w.to(o.dtype) * o).sum() for w, o in zip(weights, outputs))
    (grad,) = torch.autograd.grad(loss, x)
    return grad


# --------------------------------------------------------------------------- no silent detach


def test_every_backend_carries_the_graph(pair):
    name, device = pair
    rgb = torch.rand((1, 3, 4, 3), device=device, requires_grad=True)
    results = [
        vb.hilbert_project(rgb, backend=name),
        *vb.decode_depth(rgb, backend=name, return_distance=True),
        *vb.decode_normals(rgb, backend=name, return_norm=True),
    ]
    for result in results:
        assert result.requires_grad and result.grad_fn is not None
    sum(r.sum() for r in results).backward()
    assert rgb.grad is not None and torch.isfinite(rgb.grad).all()
    assert rgb.grad.abs().sum() > 0


def test_auto_and_layouts_carry_the_graph():
    rgb = torch.rand((2, 3, 4, 5), requires_grad=True)  # channels first
    depth = vb.decode_depth(rgb)
    normals = vb.decode_normals(rgb)
    assert depth.shape == (2, 4, 5) and normals.shape == (2, 3, 4, 5)
    (depth.sum() + normals.sum()).backward()
    assert rgb.grad.shape == rgb.shape
    with torch.no_grad():  # no graph wanted: the plain path, identical values
        torch.testing.assert_close(vb.decode_depth(rgb), depth.detach())
        torch.testing.assert_close(vb.decode_normals(rgb), normals.detach())


def test_ops_without_a_gradient_refuse_instead_of_detaching(pair):
    name, device = pair
    rgb = torch.rand((1, 2, 3, 3), device=device, requires_grad=True)
    t = torch.rand((4,), device=device, requires_grad=True)
    palette = [[0, 0, 0], [255, 0, 0]]
    with pytest.raises(RuntimeError, match="decode_segmentation has no gradient"):
        vb.decode_segmentation(rgb, palette, return_distance=True, backend=name)
    with pytest.raises(RuntimeError, match="hilbert_walk has no gradient"):
        vb.hilbert_walk(t, backend=name)
    with pytest.raises(RuntimeError, match="encode_depth has no gradient"):
        vb.encode_depth(t, dtype=torch.float32, backend=name)
    # Integer outputs carry no gradient by nature, and no_grad asks for none: both run.
    vb.decode_segmentation(rgb, palette, backend=name)
    vb.hilbert_walk(t, dtype=torch.uint8, backend=name)
    with torch.no_grad():
        vb.hilbert_walk(t, backend=name)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs_get_gradients_in_their_dtype(pair, dtype):
    name, device = pair
    x, _ = _segment_pixels(1, seed=13, dtype=torch.float32)
    x = x.to(dtype).view(1, 1, 7, 3)
    weights = [torch.ones(1, 1, 7, dtype=torch.float64)]
    got = _grad(lambda v: vb.decode_depth(v, backend=name), x.to(device), weights)
    expected = _grad(lambda v: vb.decode_depth(v, backend="torch"), x.to(torch.float32), weights)
    assert got.dtype == dtype
    torch.testing.assert_close(got.cpu(), expected.to(dtype))


def test_empty_batch_carries_the_graph():
    rgb = torch.rand((0, 4, 5, 3), requires_grad=True)
    depth = vb.decode_depth(rgb)
    assert depth.shape == (0, 4, 5) and depth.requires_grad
    depth.sum().backward()
    assert rgb.grad.shape == rgb.shape


def test_out_with_grad_is_refused():
    rgb = torch.rand((2, 3, 3), requires_grad=True)
    with pytest.raises(RuntimeError, match="out= does not support autograd"):
        vb.decode_depth(rgb, out=torch.empty(2, 3))


# --------------------------------------------------------------------------- backward values


def test_gradcheck_float64(pair):
    """Every backend reads float64 images (the Triton kernels too, interpreted on CPU)."""
    name, device = pair
    x, _ = _segment_pixels(2, seed=1)
    x = x.view(1, 2, 7, 3).to(device).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda v: vb.hilbert_project(v, backend=name), (x,))
    assert torch.autograd.gradcheck(lambda v: vb.decode_depth(v, backend=name), (x,))
    assert torch.autograd.gradcheck(
        lambda v: vb.decode_depth(v, backend=name, max_depth=2.0), (x,))
    assert torch.autograd.gradcheck(
        lambda v: vb.decode_normals(v, backend=name, out_dtype=torch.float64,
                                    convention="opencv"), (x,))


def test_depth_and_distance_gradients_match_the_formulas(pair):
    name, device = pair
    x, segments = _segment_pixels(3, seed=2)
    gen = torch.Generator().manual_seed(3)
    weights = [torch.randn(len(x), generator=gen, dtype=torch.float64) for _ in range(2)]
    expected = _grad(lambda v: _expected_depth_and_distance(v, segments), x, weights)
    got = _grad(lambda v: vb.decode_depth(v.view(1, -1, 3), backend=name,
                                          return_distance=True),
                x.to(device), [w.view(1, -1).to(device) for w in weights])
    torch.testing.assert_close(got.cpu().view(-1, 3), expected, rtol=1e-5, atol=1e-6)


def test_normals_and_norm_gradients_match_the_formulas(pair):
    name, device = pair
    gen = torch.Generator().manual_seed(4)
    x = torch.rand((20, 3), generator=gen, dtype=torch.float64) * 0.9 + 0.05
    weights = [torch.randn(20, 3, generator=gen, dtype=torch.float64),
               torch.randn(20, generator=gen, dtype=torch.float64)]

    def formula(v):
        m = 2.0 * v - 1.0
        norm = m.norm(dim=-1)
        return m / norm.unsqueeze(-1) * torch.tensor([1.0, -1.0, -1.0], dtype=v.dtype), norm

    expected = _grad(formula, x, weights)
    got = _grad(lambda v: vb.decode_normals(v.view(1, 4, 5, 3), backend=name,
                                            convention="opencv", return_norm=True,
                                            out_dtype=torch.float64),
                x.to(device), [weights[0].view(1, 4, 5, 3).to(device),
                               weights[1].view(1, 4, 5).to(device)])
    torch.testing.assert_close(got.cpu().view(-1, 3), expected, rtol=1e-6, atol=1e-6)


def test_float32_gradients_match_the_float64_reference(pair):
    name, device = pair
    x, _ = _segment_pixels(4, seed=5)
    x = x.view(1, 4, 7, 3)
    gen = torch.Generator().manual_seed(6)
    weights = [torch.randn(1, 4, 7, generator=gen, dtype=torch.float64) for _ in range(2)]

    def depth(backend):
        return lambda v: vb.decode_depth(v, backend=backend, return_distance=True)

    expected = _grad(depth("torch"), x, weights)
    got = _grad(depth(name), x.to(torch.float32).to(device), [w.to(device) for w in weights])
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.cpu().double(), expected, rtol=1e-4, atol=1e-3)


def test_ties_nan_white_and_clamped_channels_get_zero_gradient(pair):
    name, device = pair
    x = torch.tensor([
        [0.5, 0.5, 0.5],   # mid-grey: every segment ties
        [1.0, 0.0, 0.0],   # red: the vertex between segments 0 and 1
        [float("nan"), 0.5, 0.5],
        [1.0, 1.0, 1.0],   # white: infinite depth
        [1.2, 0.3, 0.02],  # red clamped: on segment 1, the red channel is clamped
    ], dtype=torch.float32, device=device).view(1, 1, 5, 3)
    grad = _grad(lambda v: vb.decode_depth(v, backend=name, return_distance=True), x,
                 [torch.ones(1, 1, 5, device=device)] * 2).view(5, 3)
    assert not torch.isnan(grad).any()
    assert (grad[:3] == 0).all()
    assert (grad[3] == 0).all()  # depth: white; distance: on the walk
    assert grad[4, 0] == 0 and grad[4, 1] != 0 and grad[4, 2] != 0
    normals_grad = _grad(lambda v: vb.decode_normals(v, backend=name), x,
                         [torch.ones(1, 1, 5, 3, device=device)]).view(5, 3)
    assert (normals_grad[0] == 0).all() and (normals_grad[2] == 0).all()  # below eps; NaN
    assert normals_grad[4, 0] == 0 and not torch.isnan(normals_grad).any()


# --------------------------------------------------------------------------- registration


def test_opcheck_with_the_autograd_registration(pair):
    name, device = pair
    x = torch.rand((1, 2, 3, 3), dtype=torch.float64, device=device, requires_grad=True)
    ops = torch.ops.vbkernels
    torch.library.opcheck(ops.hilbert_project, (x, name))
    torch.library.opcheck(ops.decode_depth, (x, -3.0, 10 / 3, 20.0, True, name))
    torch.library.opcheck(ops.decode_normals, (x, True, 1e-6, torch.float32, True, name))
    if name == "triton":  # its fused decode_depth backward is an op of its own
        grads = (torch.rand((1, 2, 3), dtype=torch.float64, device=device),
                 torch.rand((1, 2, 3), device=device))
        torch.library.opcheck(ops.decode_depth_backward_triton,
                              (x.detach(), *grads, -3.0, 10 / 3, 2.0))
        torch.library.opcheck(ops.decode_normals_backward_triton,
                              (x.detach(), torch.rand_like(x.detach()), grads[1], True, 1e-6))


def test_torch_compile_fullgraph_matches_eager():
    x, _ = _segment_pixels(1, seed=7, dtype=torch.float32)
    x = x.view(1, 1, 7, 3)

    def loss(v):
        depth, distance = vb.decode_depth(v, return_distance=True)
        return depth.sum() + distance.sum() + vb.decode_normals(v)[..., 2].sum()

    compiled = torch.compile(loss, fullgraph=True, backend="aot_eager")
    expected = _grad(loss, x, [torch.ones(())])
    torch.testing.assert_close(_grad(compiled, x, [torch.ones(())]), expected)


def test_torch_func_grad_and_jacrev():
    x, _ = _segment_pixels(1, seed=8)
    x = x.view(1, 1, 7, 3)
    expected = _grad(lambda v: vb.decode_depth(v), x, [torch.ones(())])
    got = torch.func.grad(lambda v: vb.decode_depth(v).sum())(x)
    torch.testing.assert_close(got, expected)
    jacobian = torch.func.jacrev(lambda v: vb.hilbert_project(v))(x)
    assert jacobian.shape == (1, 1, 7, 1, 1, 7, 3)
    torch.testing.assert_close(jacobian.sum(dim=(0, 1, 2)), _grad(vb.hilbert_project, x,
                                                                  [torch.ones(())]))


def _func_decoders(backend):
    """The three decoders with torch.func rules, each as image -> one tensor or a tuple."""
    return {
        "depth": lambda v: vb.decode_depth(v, return_distance=True, max_depth=50.0,
                                           backend=backend),
        "t": lambda v: vb.hilbert_project(v, backend=backend),
        "normals": lambda v: vb.decode_normals(v, return_norm=True, convention="opencv",
                                               backend=backend),
    }


@pytest.mark.parametrize("name", ["depth", "t", "normals"])
def test_torch_func_vmap_matches_the_batched_call(pair, name):
    """issue 24, item 6: vmap failed with 'Cannot access data pointer of Tensor that
    doesn't have storage'. uint8 and float, nested vmap, and per-sample gradients."""
    backend, device = pair
    fn = _func_decoders(backend)[name]
    for x in (torch.randint(0, 256, (3, 2, 5, 4, 3), dtype=torch.uint8),
              torch.rand(3, 2, 5, 4, 3, dtype=torch.float64)):
        x = x.to(device)
        for got, expected in zip(torch.func.vmap(fn)(x), fn(x)):
            torch.testing.assert_close(got, expected, equal_nan=True)
        if is_interpreted(backend, device):  # seconds a call: the nesting is backend-blind
            continue
        for got, expected in zip(torch.func.vmap(torch.func.vmap(fn), in_dims=1)(x),
                                 fn(x.transpose(0, 1))):
            torch.testing.assert_close(got, expected, equal_nan=True)
    x = torch.rand(3, 1, 4, 5, 3, dtype=torch.float64, device=device)

    def loss(v):
        return sum((o * o).sum() for o in fn(v))

    per_sample = torch.func.vmap(torch.func.grad(loss))(x)
    for i in range(x.shape[0]):
        torch.testing.assert_close(per_sample[i], _grad(lambda v: fn(v), x[i],
                                                         [2 * o for o in fn(x[i])]))


@pytest.mark.parametrize("name", ["depth", "t", "normals"])
def test_torch_func_jacfwd_and_jvp_match_jacrev(pair, name):
    """Forward mode (the Functions' jvp) gives the reverse-mode Jacobian."""
    backend, device = pair
    fn = _func_decoders(backend)[name]
    x, _ = _segment_pixels(1, seed=9)
    x = torch.cat([x, torch.rand(5, 3, dtype=torch.float64)]).view(1, 3, 4, 3).to(device)
    forward = torch.func.jacfwd(fn)(x)
    reverse = torch.func.jacrev(fn)(x)
    for got, expected in zip(forward, reverse):  # float32 outputs: float32 tangents
        torch.testing.assert_close(got, expected, check_dtype=False, rtol=1e-5, atol=1e-5)
    tangent = torch.rand_like(x)
    outputs, tangents = torch.func.jvp(fn, (x,), (tangent,))
    for out, out_tangent, jacobian in zip(outputs, tangents, reverse):
        assert out_tangent.dtype == out.dtype and out_tangent.shape == out.shape
        expected = (jacobian * tangent).flatten(-4).sum(-1)
        torch.testing.assert_close(out_tangent.to(torch.float64), expected,
                                   rtol=1e-5, atol=1e-6)


def test_segmentation_logits_under_vmap_and_jacfwd():
    """Plain torch ops: the README says every torch.func transform works on it."""
    x = torch.rand(2, 3, 4, 3, dtype=torch.float64)

    def logits(v):
        return vb.segmentation_logits(v, "voc", temperature=500.0)

    torch.testing.assert_close(torch.func.vmap(logits)(x), torch.stack([logits(v) for v in x]))
    torch.testing.assert_close(torch.func.jacfwd(logits)(x[0]), torch.func.jacrev(logits)(x[0]))


def test_decoders_without_torch_func_rules_say_so():
    x = torch.randint(0, 256, (2, 3, 4, 3), dtype=torch.uint8)
    for fn in (lambda v: vb.decode_segmentation(v, "cityscapes"),
               lambda v: vb.decode_colormap(v, "turbo")):
        with pytest.raises(RuntimeError, match="vmap.*decode_depth, hilbert_project"):
            torch.func.vmap(fn)(x)
    with pytest.raises(RuntimeError, match="torch.func"):
        torch.func.vmap(lambda v: vb.decode_depth(v, out=torch.empty(3, 4)))(x)


# --------------------------------------------------------------------------- smooth variants


def test_soft_projection_tends_to_the_hard_one():
    gen = torch.Generator().manual_seed(9)
    x = torch.rand((1, 32, 32, 3), generator=gen, dtype=torch.float64)
    d2 = torch.stack([(255 * x[..., s.fixed_a] - s.value_a) ** 2
                      + (255 * x[..., s.fixed_b] - s.value_b) ** 2 for s in SEGMENTS], -1)
    two = d2.topk(2, dim=-1, largest=False).values
    clear = (two[..., 1] - two[..., 0]) > 1.0  # away from ties by one squared unit
    hard = vb.hilbert_project(x)
    soft = vb.hilbert_project(x, temperature=0.01)
    torch.testing.assert_close(soft[clear], hard[clear], rtol=0, atol=1e-12)
    assert clear.float().mean() > 0.9
    # A higher temperature blends the segments: t moves.
    assert (vb.hilbert_project(x, temperature=1e4) - hard).abs().max() > 1e-3


def _optimise_toward(target_t: float, temperature, steps: int = 300) -> torch.Tensor:
    x = torch.tensor([[[[0.9, 0.0, 0.0]]]], requires_grad=True)  # on black -> red
    optimiser = torch.optim.Adam([x], lr=0.01)
    for _ in range(steps):
        optimiser.zero_grad()
        t = vb.hilbert_project(x, temperature=temperature)
        ((t - target_t) ** 2).sum().backward()
        optimiser.step()
    return x.detach()


def test_soft_projection_moves_a_colour_past_a_walk_vertex():
    """Red -> yellow: the hard projection stops at the red vertex (its gradient along green
    is zero), the soft one carries the colour onto the next segment."""
    target = 1.5 / 7.0  # half-way from red to yellow
    hard = _optimise_toward(target, None)
    assert hard[..., 1].item() == 0.0
    assert vb.hilbert_project(hard).item() <= 1.0 / 7.0 + 1e-6
    soft = _optimise_toward(target, 100.0)
    assert abs(vb.hilbert_project(soft).item() - target) < 0.01


def test_training_loop_reaches_one_percent_absrel():
    """A learnable RGB image, AbsRel on decoded depth: the soft decoder, annealed, then the
    hard decoder; the hard decode ends within 1 % AbsRel of the target depth map.

    The image is ``sigmoid(logits)``, as a generator's output head would make it: a colour
    pushed outside [0, 1] is clamped by the decoder and gets no gradient back."""
    gen = torch.Generator().manual_seed(10)
    target = 0.5 + 20.0 * torch.rand((2, 8, 8), generator=gen)
    start = target * torch.exp(0.5 * torch.randn((2, 8, 8), generator=gen))  # far off
    logits = torch.logit(vb.encode_depth(start, dtype=torch.float32), eps=1e-3)
    logits.requires_grad_(True)
    optimiser = torch.optim.Adam([logits])

    def absrel(depth):
        return ((depth - target).abs() / target).mean()

    initial = absrel(vb.decode_depth(torch.sigmoid(logits.detach()))).item()
    for temperature, lr, steps in [(300.0, 0.1, 150), (30.0, 0.03, 100), (None, 0.01, 100)]:
        for group in optimiser.param_groups:
            group["lr"] = lr
        for _ in range(steps):
            optimiser.zero_grad()
            absrel(vb.decode_depth(torch.sigmoid(logits), temperature=temperature)).backward()
            optimiser.step()
    final = absrel(vb.decode_depth(torch.sigmoid(logits.detach()))).item()
    assert initial > 0.2 and final < 0.01, (initial, final)


def test_segmentation_logits_shape_values_and_training():
    palette = torch.tensor([[0, 0, 0], [255, 0, 0], [0, 0, 255]])
    rgb = torch.rand((2, 3, 4, 5), dtype=torch.float64)  # channels first, N = 2
    logits = vb.segmentation_logits(rgb, palette, temperature=50.0)
    assert logits.shape == (2, 3, 4, 5) and logits.dtype == torch.float64
    expected = -((255 * rgb.unsqueeze(1) - palette.view(1, 3, 3, 1, 1)) ** 2).sum(2) / 50.0
    torch.testing.assert_close(logits, expected)
    labels = vb.decode_segmentation(rgb, palette)
    assert (logits.argmax(1) == labels).all()
    assert vb.segmentation_logits(rgb[0, :, 0].T.contiguous().view(5, 1, 3), palette,
                                  layout="hwc").shape == (3, 5, 1)

    x = torch.rand((1, 6, 6, 3), generator=torch.Generator().manual_seed(11), requires_grad=True)
    want = torch.randint(0, 3, (1, 6, 6), generator=torch.Generator().manual_seed(12))
    optimiser = torch.optim.Adam([x], lr=0.02)
    for _ in range(100):
        optimiser.zero_grad()
        loss = torch.nn.functional.cross_entropy(
            vb.segmentation_logits(x, palette, temperature=2000.0), want)
        loss.backward()
        optimiser.step()
    assert (vb.decode_segmentation(x.detach(), palette) == want).all()


def test_segmentation_logits_nan_and_arguments():
    x = torch.tensor([[[[float("nan"), 0.0, 0.0], [0.5, 0.5, 0.5]]]], requires_grad=True)
    logits = vb.segmentation_logits(x, [[0, 0, 0], [255, 255, 255]])
    assert torch.isnan(logits[..., 0]).all() and torch.isfinite(logits[..., 1]).all()
    logits[..., 1].sum().backward()
    assert not torch.isnan(x.grad).any() and (x.grad[0, 0, 0] == 0).all()
    for bad in (0.0, -1.0, math.inf):
        with pytest.raises(ValueError, match="temperature"):
            vb.segmentation_logits(x, [[0, 0, 0]], temperature=bad)
    with pytest.raises(ValueError, match="temperature"):
        vb.decode_depth(x, temperature=0.0)


# --------------------------------------------------------------------------- Triton backward


def _triton_devices() -> list[str]:
    return [device for name, device in PAIRS if name == "triton"]


@pytest.mark.parametrize("device", _triton_devices())
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_triton_backward_kernel_matches_the_reference(device, dtype):
    from vbkernels.reference.grad import decode_depth_backward as reference
    from vbkernels.reference.grad import hilbert_project_backward
    from vbkernels.triton.grad import decode_depth_backward as kernel

    x = torch.rand((2, 5, 7, 3), generator=torch.Generator().manual_seed(14), dtype=dtype)
    x = x * 1.1 - 0.05  # a few clamped channels
    x[0, 0, :4] = torch.tensor([[0.5, 0.5, 0.5], [1.0, 0.0, 0.0], [math.nan, 0.5, 0.5],
                                [1.0, 1.0, 1.0]], dtype=dtype)  # tie, vertex, NaN, white
    gen = torch.Generator().manual_seed(15)
    grad_depth = torch.randn((2, 5, 7), generator=gen, dtype=dtype)
    grad_distance = torch.randn((2, 5, 7), generator=gen)
    for args in [(grad_depth, grad_distance, None), (grad_depth, None, 3.0),
                 (None, grad_distance, None)]:
        expected = reference(x, *args[:2], -3.0, 10 / 3, args[2])
        got = kernel(x.to(device), *(a if a is None else a.to(device) for a in args[:2]),
                     -3.0, 10 / 3, args[2])
        tol = 1e-10 if dtype == torch.float64 else 1e-5  # log1p/expm1 ulps apart
        torch.testing.assert_close(got.cpu(), expected, rtol=tol, atol=tol)
        assert (got.cpu()[0, 0, :4] == 0).all()
    got = kernel(x.to(device), grad_depth.to(device), None, -3.0, 10 / 3, None, t_only=True)
    torch.testing.assert_close(got.cpu(), hilbert_project_backward(x, grad_depth))


@pytest.mark.parametrize("device", _triton_devices())
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_triton_normals_backward_kernel_matches_the_reference(device, dtype):
    from vbkernels.reference.grad import decode_normals_backward as reference
    from vbkernels.triton.grad import decode_normals_backward as kernel

    x = torch.rand((2, 5, 7, 3), generator=torch.Generator().manual_seed(18), dtype=dtype)
    x = x * 1.1 - 0.05
    x[0, 0, :2] = torch.tensor([[0.5, 0.5, 0.5], [math.nan, 0.5, 0.5]], dtype=dtype)
    gen = torch.Generator().manual_seed(19)
    grad_normals = torch.randn((2, 5, 7, 3), generator=gen, dtype=torch.float16)
    grad_norm = torch.randn((2, 5, 7), generator=gen)
    for args in [(grad_normals, grad_norm, True), (grad_normals, None, False),
                 (None, grad_norm, True)]:
        expected = reference(x, *args, 1e-6)
        got = kernel(x.to(device), *(a if a is None else a.to(device) for a in args[:2]),
                     args[2], 1e-6)
        tol = 1e-12 if dtype == torch.float64 else 1e-5
        torch.testing.assert_close(got.cpu(), expected, rtol=tol, atol=tol)
        assert (got.cpu()[0, 0, :2] == 0).all()


@pytest.mark.parametrize("device", _triton_devices())
def test_triton_backward_under_torch_compile(device):
    x, _ = _segment_pixels(1, seed=16, dtype=torch.float32)
    x = x.view(1, 1, 7, 3).to(device)

    def loss(v):
        depth, distance = vb.decode_depth(v, return_distance=True, backend="triton")
        return depth.sum() + distance.sum()

    compiled = torch.compile(loss, fullgraph=True,
                             backend="inductor" if device == "cuda" else "aot_eager")
    torch.testing.assert_close(_grad(compiled, x, [torch.ones(())]),
                               _grad(loss, x, [torch.ones(())]))


@pytest.mark.parametrize("device", _triton_devices())
def test_triton_backend_under_torch_func(device):
    """torch.func batches the backward with vmap: the triton backend falls back to the
    (vmappable) torch reference there, with the same values."""
    x, _ = _segment_pixels(1, seed=17)
    x = x.view(1, 1, 7, 3).to(device)
    got = torch.func.grad(lambda v: vb.decode_depth(v, backend="triton").sum())(x)
    torch.testing.assert_close(got, _grad(lambda v: vb.decode_depth(v, backend="triton"), x,
                                          [torch.ones(())]))


LOGIT_PAIRS = [p for p in PAIRS if p[0] in ("torch", "triton")]


@pytest.mark.parametrize("pair", LOGIT_PAIRS, ids=[f"{b}-{d}" for b, d in LOGIT_PAIRS])
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32, torch.float64])
def test_segmentation_logits_backends_agree_forward_and_backward(pair, dtype):
    """The fused Triton forward and backward against the torch reference, on a strided
    channels-first view with a NaN pixel and channels outside [0, 1]."""
    backend, device = pair
    palette = torch.tensor([[0, 0, 0], [255, 0, 0], [0, 0, 255], [90, 200, 30], [255] * 3],
                           device=device)
    gen = torch.Generator().manual_seed(3)
    if dtype == torch.uint8:
        base = torch.randint(0, 256, (2, 3, 9, 14), generator=gen, dtype=torch.uint8)
    else:
        base = torch.rand((2, 3, 9, 14), generator=gen, dtype=dtype) * 1.2 - 0.1
        base[0, 1, 2, 4] = float("nan")  # view pixel (0, 1, 1)
    rgb = base.to(device)[:, :, ::2, 1::3]  # strided, channels first
    want = vb.segmentation_logits(rgb, palette, temperature=700.0, backend="torch")
    got = vb.segmentation_logits(rgb, palette, temperature=700.0, backend=backend)
    assert got.shape == want.shape == (2, 5, 5, 5) and got.dtype == want.dtype
    torch.testing.assert_close(got, want, equal_nan=True, rtol=1e-6, atol=1e-6)
    if dtype == torch.uint8:
        return
    weights = torch.randn(want.shape, generator=gen, dtype=dtype).to(device)
    grads = []
    for name in ("torch", backend):
        x = rgb.detach().clone().requires_grad_(True)
        logits = vb.segmentation_logits(x, palette, temperature=700.0, backend=name)
        (logits.nan_to_num() * weights).sum().backward()
        grads.append(x.grad)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-5, atol=1e-6)
    assert not torch.isnan(grads[1]).any()
    assert (grads[1][0, :, 1, 1] == 0).all()  # the NaN pixel: zero, never NaN


@pytest.mark.parametrize("pair", LOGIT_PAIRS, ids=[f"{b}-{d}" for b, d in LOGIT_PAIRS])
def test_segmentation_logits_gradcheck_and_func(pair):
    backend, device = pair
    palette = torch.tensor([[10, 20, 30], [200, 40, 90], [60, 250, 120]], device=device)
    x = (0.05 + 0.9 * torch.rand((1, 3, 4, 3), dtype=torch.float64,
                                 generator=torch.Generator().manual_seed(5))).to(device)
    x.requires_grad_(True)

    def logits(image):
        return vb.segmentation_logits(image, palette, temperature=300.0, backend=backend)

    assert torch.autograd.gradcheck(logits, (x,))
    grad = torch.func.grad(lambda image: logits(image).square().sum())(x.detach())
    x.grad = None
    logits(x).square().sum().backward()
    torch.testing.assert_close(grad, x.grad)
    if backend == "triton":
        view = x.detach().movedim(1, -1).requires_grad_(True)
        torch.library.opcheck(torch.ops.vbkernels.segmentation_logits_triton,
                              (view, palette.to(torch.float64), 300.0))


def test_segmentation_logits_backend_choice():
    x = torch.rand((1, 2, 2, 3))
    palette = torch.tensor([[0.0, 0.0, 0.0], [255.0, 255.0, 255.0]], requires_grad=True)
    vb.segmentation_logits(x, palette).sum().backward()  # auto on CPU: torch, palette grad
    assert palette.grad is not None and palette.grad.abs().sum() > 0
    with pytest.raises(RuntimeError, match="does not implement segmentation_logits"):
        vb.segmentation_logits(x, [[0, 0, 0]], backend="cpu")
    with pytest.raises(ValueError, match="backend must be one of"):
        vb.segmentation_logits(x, [[0, 0, 0]], backend="tpu")
    if ("triton", "cpu") in PAIRS:
        with pytest.raises(RuntimeError, match="image only"):
            vb.segmentation_logits(x, palette, backend="triton")
