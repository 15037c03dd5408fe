"""Differentiable decoding in plain torch (docs/format.md, Gradients).

Two kinds of function live here:

- The backward passes of the hard decoders (``hilbert_project``, ``decode_depth``,
  ``decode_normals``). Every backend runs its own forward kernel; ``vbkernels._autograd``
  registers these as the backward of all of them. Each recomputes the segment choice from
  the saved input (nothing else is stored) and returns the gradient with respect to that
  input, in its dtype.
- The smooth decoders for training, written as ordinary torch ops that autograd
  differentiates: the softmin walk position (``soft_walk_position``) and the per-class
  segmentation logits (``segmentation_logits``).

Gradients are with respect to the float input ``x`` in [0, 1] (not 0..255 units). The rules:
a channel clamped by the decoder (``x`` outside [0, 1]) gets zero gradient, as
``torch.clamp`` gives; NaN pixels, exact segment ties and white (infinite depth) get zero
gradient, never NaN.
"""

from __future__ import annotations

import torch

from .._walk import SEGMENTS
from ._common import fractions, nan_pixels, to_units, work_dtype
from .depth import inverse_power_tu, project_units, walk_position
from .normals import _flip


def _segment_table(device: torch.device, dtype: torch.dtype):
    """Per-segment (7,) varying channel, (7,) sign of ``ds/dx``, (7, 2) fixed channels and
    (7, 2) their values in 0..255 units, as tensors to index with a segment map."""
    varying = torch.tensor([seg.varying for seg in SEGMENTS], device=device)
    sign = torch.tensor([1.0 if seg.rising else -1.0 for seg in SEGMENTS], dtype=dtype,
                        device=device)
    fixed = torch.tensor([[seg.fixed_a, seg.fixed_b] for seg in SEGMENTS], device=device)
    value = torch.tensor([[seg.value_a, seg.value_b] for seg in SEGMENTS], dtype=dtype,
                         device=device)
    return varying, sign, fixed, value


def _segment_distances(p: torch.Tensor) -> list[torch.Tensor]:
    """Squared distance (0..255 units) of (..., 3) pixels to each of the 7 segments' lines."""
    return [(p[..., seg.fixed_a] - seg.value_a) ** 2 + (p[..., seg.fixed_b] - seg.value_b) ** 2
            for seg in SEGMENTS]


class _Projection:
    """The hard projection of a float image, recomputed for a backward pass.

    ``live`` marks the pixels that get a gradient at all (not NaN, not an exact tie between
    segments); ``inside`` the channels the decoder did not clamp.
    """

    def __init__(self, rgb: torch.Tensor):
        self.x = rgb.to(work_dtype(rgb.dtype))
        self.p = to_units(rgb)
        self.k, self.s, self.r, self.d2 = project_units(self.p, *fractions(rgb, self.p))
        ties = sum((d2 == self.d2).to(torch.int32) for d2 in _segment_distances(self.p))
        self.live = ~nan_pixels(self.p) & (ties == 1)
        self.inside = (self.x >= 0.0) & (self.x <= 1.0)
        self.table = _segment_table(rgb.device, self.x.dtype)

    def position_grad(self, coef: torch.Tensor) -> torch.Tensor:
        """(..., 3) gradient of ``coef * t``: ``±coef/7`` on the chosen segment's varying
        channel (``dt/dx = ±1/7``), zero on its two fixed channels. ``coef`` must already be
        zero where the pixel is not live."""
        varying, sign, _, _ = self.table
        channels = torch.arange(3, device=coef.device)
        on_varying = self.inside & (varying[self.k].unsqueeze(-1) == channels)
        return torch.where(on_varying, (coef * sign[self.k] / 7.0).unsqueeze(-1), 0.0)

    def distance_grad(self, grad_distance: torch.Tensor) -> torch.Tensor:
        """(..., 3) gradient of ``grad_distance * sqrt(d2)``: along the two fixed channels
        (``(p - v) * 255 / dist`` each); the varying channel does not move the distance.
        Zero on the walk itself (distance 0, where the square root has no derivative)."""
        _, _, fixed, value = self.table
        fixed_k = fixed[self.k]
        offset = self.p.gather(-1, fixed_k) - value[self.k]
        on_walk = self.d2 == 0.0
        dist = torch.sqrt(torch.where(on_walk, 1.0, self.d2))
        coef = torch.where(self.live & ~on_walk, grad_distance.to(self.x.dtype) / dist, 0.0)
        grad = torch.zeros_like(self.x).scatter(-1, fixed_k, offset * (255.0 * coef).unsqueeze(-1))
        return torch.where(self.inside, grad, 0.0)


def hilbert_project_backward(rgb: torch.Tensor, grad_t: torch.Tensor) -> torch.Tensor:
    """Gradient of ``hilbert_project`` with respect to the float image ``rgb`` (N, H, W, 3)."""
    proj = _Projection(rgb)
    coef = torch.where(proj.live, grad_t.to(proj.x.dtype), 0.0)
    return proj.position_grad(coef).to(rgb.dtype)


def depth_slope(t: torch.Tensor, u: torch.Tensor, lam: float, c: float):
    """``(dd/dt, depth)`` of the inverse power transform at ``(t, u = 1 - t)``.

    ``d = -lam*c*expm1(a*log(u))`` with ``a = 1/(lam+1)``, so ``dd/dt = lam*c*a*u^(a-1)``,
    evaluated from the same ``log(u)`` as the forward. White (``u == 0``) gives slope 0,
    not infinity: there is no finite step toward it.
    """
    a = 1.0 / (lam + 1.0)
    white = u <= 0.0
    log_u = torch.where(t < 0.5, torch.log1p(-t), torch.log(torch.where(white, 1.0, u)))
    slope = torch.where(white, 0.0, (lam * c * a) * torch.exp(log_u * (a - 1.0)))
    depth = torch.where(white, float("inf"), (-lam * c) * torch.expm1(log_u * a))
    return slope, depth


def decode_depth_backward(rgb: torch.Tensor, grad_depth: torch.Tensor | None,
                          grad_distance: torch.Tensor | None, lam: float, c: float,
                          max_depth: float | None) -> torch.Tensor:
    """Gradient of ``decode_depth`` (depth and, when given, distance) with respect to the
    float image ``rgb`` (N, H, W, 3). Depth clamped by ``max_depth`` gets zero gradient."""
    proj = _Projection(rgb)
    grad = torch.zeros_like(proj.x)
    if grad_depth is not None:
        t, u = walk_position(proj.k, proj.s, proj.r)
        slope, depth = depth_slope(t, u, lam, c)
        keep = proj.live & (u > 0.0)
        if max_depth is not None:
            keep = keep & (depth <= max_depth)
        coef = torch.where(keep, grad_depth.to(proj.x.dtype) * slope, 0.0)
        grad = grad + proj.position_grad(coef)
    if grad_distance is not None:
        grad = grad + proj.distance_grad(grad_distance)
    return grad.to(rgb.dtype)


def decode_normals_backward(rgb: torch.Tensor, grad_normals: torch.Tensor | None,
                            grad_norm: torch.Tensor | None, flip_yz: bool,
                            eps: float) -> torch.Tensor:
    """Gradient of ``decode_normals`` with respect to the float image ``rgb`` (N, H, W, 3).

    With ``m = 2*clamp(x) - 1`` and ``n = m/|m|``: ``dn/dm = (I - n n^T)/|m|`` and
    ``d|m|/dm = n``; ``dm/dx = 2``. Pixels with ``|m| < eps`` (decoded as the zero vector)
    and NaN pixels get zero gradient.
    """
    x = rgb.to(work_dtype(rgb.dtype))
    m = x.clamp(0.0, 1.0) * 2.0 - 1.0
    length = torch.sqrt((m[..., 0] * m[..., 0] + m[..., 1] * m[..., 1]) + m[..., 2] * m[..., 2])
    live = (length >= eps).unsqueeze(-1)  # False for NaN too
    length = torch.where(live, length.unsqueeze(-1), 1.0)
    n = m / length
    grad_m = torch.zeros_like(x)
    if grad_normals is not None:
        g = _flip(grad_normals.to(x.dtype), flip_yz)
        grad_m = grad_m + (g - n * (n * g).sum(-1, keepdim=True)) / length
    if grad_norm is not None:
        grad_m = grad_m + n * grad_norm.to(x.dtype).unsqueeze(-1)
    inside = (x >= 0.0) & (x <= 1.0)
    return torch.where(live & inside, 2.0 * grad_m, 0.0).to(rgb.dtype)


# --------------------------------------------------------------------------- smooth decoders


def _without_nan(rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(rgb with NaN pixels zeroed, their (...) mask)``: computing on zeros and filling
    NaN in afterwards keeps NaN out of the gradient."""
    nan = torch.isnan(rgb).any(dim=-1)
    return rgb.masked_fill(nan.unsqueeze(-1), 0), nan


def soft_walk_position(rgb: torch.Tensor, temperature: float):
    """``(t, u = 1 - t)`` of the softmin over the 7 segment projections, shape (...).

    Each segment k proposes its own projection ``t_k = (k + s_k)/7``; the weights are
    ``softmax(-d2_k / temperature)`` with ``d2_k`` the squared distance (0..255 units) to the
    segment. As ``temperature -> 0`` this tends to the hard ``t`` everywhere except at exact
    ties (where it averages the tied segments). ``rgb`` is (..., 3), NaN pixels give NaN.
    """
    safe, nan = _without_nan(rgb)
    p = to_units(safe)
    up, down = fractions(safe, p)
    t_k, u_k = [], []
    for k, seg in enumerate(SEGMENTS):
        s, r = ((up, down) if seg.rising else (down, up))
        t, u = walk_position(k, s[..., seg.varying], r[..., seg.varying])
        t_k.append(t)
        u_k.append(u)
    weights = torch.softmax(torch.stack(_segment_distances(p), -1) / -temperature, dim=-1)
    t = (weights * torch.stack(t_k, -1)).sum(-1)
    u = (weights * torch.stack(u_k, -1)).sum(-1)
    return t.masked_fill(nan, float("nan")), u.masked_fill(nan, float("nan"))


def soft_depth(t: torch.Tensor, u: torch.Tensor, lam: float, c: float,
               max_depth: float | None) -> torch.Tensor:
    """The inverse power transform of a soft ``(t, u)``; white gives +inf with zero gradient."""
    white = u <= 0.0
    depth = inverse_power_tu(torch.where(white, 0.0, t), torch.where(white, 1.0, u), lam, c)
    depth = torch.where(white, float("inf"), depth)
    return depth if max_depth is None else depth.clamp_max(max_depth)


def segmentation_logits(rgb: torch.Tensor, palette: torch.Tensor,
                        temperature: float) -> torch.Tensor:
    """``-dist^2 / temperature`` (0..255 units) of (N, H, W, 3) pixels to each of the (K, 3)
    palette colours, as (N, K, H, W): the layout ``torch.nn.functional.cross_entropy``
    takes. NaN pixels give NaN logits (and zero gradient)."""
    safe, nan = _without_nan(rgb)
    p = to_units(safe)
    colours = palette.to(p.dtype).reshape(-1, 3, 1, 1)
    d2 = sum((p[..., ch].unsqueeze(1) - colours[:, ch]) ** 2 for ch in range(3))
    return (d2 / -temperature).masked_fill(nan.unsqueeze(1), float("nan"))
