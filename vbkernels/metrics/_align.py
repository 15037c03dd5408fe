"""Per-image depth alignment: scale (and shift) fitted on each row's fit pixels, on the device.

Every function takes ``(N, P)`` float64 rows ``p`` (prediction), ``g`` (ground truth) and a
bool ``fit`` mask, and returns ``(scale, shift)`` of shape ``(N,)`` so that ``scale * p +
shift`` (``scale / p + shift`` in disparity space for ``"disparity-affine"``) matches ``g``.
A row whose fit is degenerate (no pixels, zero median, singular system) gets ``scale = 1,
shift = 0``. Nothing here reads a value back to the host: data-dependent choices are made
with ``torch.where``, sorts and ``searchsorted``, never with Python ``if`` on tensor values.
"""

from __future__ import annotations

import math

import torch

# Golden-section steps of the L1 affine search over theta = atan(scale): each shrinks the
# bracket (-pi/2, pi/2) by 0.618, so 64 steps leave 1.3e-13 rad (a relative 1e-13 in s).
_GOLDEN_STEPS = 64
_INV_PHI = (math.sqrt(5.0) - 1.0) / 2.0


def masked_median(x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Median of each row of ``x`` over ``keep`` (NaN for an empty row), without host sync."""
    ordered = torch.where(keep, x, math.inf).sort(dim=1).values
    count = keep.sum(1)
    lo = ((count - 1).clamp(min=0) // 2)[:, None]
    hi = (count // 2).clamp(max=x.shape[1] - 1)[:, None]
    median = (ordered.gather(1, lo) + ordered.gather(1, hi))[:, 0] / 2
    return torch.where(count > 0, median, math.nan)


def fit_median(p, g, fit):
    """``median(g) / median(p)``: the median scaling of Eigen et al. / ZoeDepth."""
    med_p, med_g = masked_median(p, fit), masked_median(g, fit)
    ok = torch.isfinite(med_p) & torch.isfinite(med_g) & (med_p > 0)
    scale = torch.where(ok, med_g / torch.where(ok, med_p, 1.0), 1.0)
    return scale, torch.zeros_like(scale)


def fit_lstsq_scale(p, g, fit):
    """``argmin_s sum (s p - g)²``."""
    pf, gf = torch.where(fit, p, 0.0), torch.where(fit, g, 0.0)
    spp, spg = (pf * pf).sum(1), (pf * gf).sum(1)
    ok = spp > 0
    scale = torch.where(ok, spg / torch.where(ok, spp, 1.0), 1.0)
    return scale, torch.zeros_like(scale)


def fit_lstsq_affine(x, y, fit):
    """``argmin_{s,b} sum (s x + b - y)²``, from centred sums (no cancellation of raw moments)."""
    n = fit.sum(1).to(torch.float64)
    safe_n = n.clamp(min=1)
    mx = torch.where(fit, x, 0.0).sum(1) / safe_n
    my = torch.where(fit, y, 0.0).sum(1) / safe_n
    dx = torch.where(fit, x - mx[:, None], 0.0)
    dy = torch.where(fit, y - my[:, None], 0.0)
    sxx, sxy = (dx * dx).sum(1), (dx * dy).sum(1)
    # Fewer than two distinct x values make the system singular: keep the prediction as is.
    ok = (n >= 2) & (sxx > 1e-24 * (mx * mx * safe_n).clamp(min=1e-300))
    scale = torch.where(ok, sxy / torch.where(ok, sxx, 1.0), 1.0)
    shift = torch.where(ok, my - scale * mx, 0.0)
    return scale, shift


def weighted_median(values, weights):
    """Per row, the smallest ``v`` whose cumulative weight (values sorted) reaches half the
    row's total: the minimiser of ``sum w |a - v|``. Rows of zero total weight give NaN."""
    ordered, order = values.sort(dim=1)
    cumulative = weights.gather(1, order).cumsum(1)
    total = cumulative[:, -1:]
    index = torch.searchsorted(cumulative, total / 2).clamp(max=values.shape[1] - 1)
    median = ordered.gather(1, index)[:, 0]
    return torch.where(total[:, 0] > 0, median, math.nan)


def fit_l1_scale(p, g, fit):
    """``argmin_s sum (1/g) |s p - g|`` (MoGe's ``align_depth_scale`` with weight ``1/g``):
    the weighted median of ``g/p`` with weights ``|p|/g``."""
    usable = fit & (p != 0)
    ratio = torch.where(usable, g / torch.where(usable, p, 1.0), math.inf)
    weight = torch.where(usable, p.abs() / torch.where(usable, g, 1.0), 0.0)
    scale = weighted_median(ratio, weight)
    scale = torch.where(torch.isfinite(scale), scale, 1.0)
    return scale, torch.zeros_like(scale)


def _l1_affine_cost(slope, p, g, weight, fit):
    """For each row's ``slope``, the best shift (weighted median of ``g - slope p``) and the
    cost ``sum w |slope p + shift - g|`` at it."""
    residual = torch.where(fit, g - slope[:, None] * p, math.inf)
    shift = weighted_median(residual, weight)
    shift = torch.where(torch.isfinite(shift), shift, 0.0)
    cost = torch.where(fit, weight * (slope[:, None] * p + shift[:, None] - g).abs(), 0.0).sum(1)
    return cost, shift


def fit_l1_affine(p, g, fit):
    """``argmin_{s,b} sum (1/g) |s p + b - g|`` (MoGe's ``align_depth_affine`` with weight
    ``1/g``, moge/utils/alignment.py). MoGe enumerates anchor pixels (quadratic in the pixel
    count); here the cost minimised over ``b`` (a weighted median) is convex in ``s``, so a
    golden-section search over ``theta = atan(s)`` finds the same minimum in
    ``_GOLDEN_STEPS`` sorts per image, with a fixed step count and so no host sync."""
    weight = torch.where(fit, 1.0 / torch.where(fit, g, 1.0), 0.0)
    lo = torch.full(p.shape[:1], -math.pi / 2, dtype=p.dtype, device=p.device)
    hi = -lo
    a = hi - _INV_PHI * (hi - lo)
    b = lo + _INV_PHI * (hi - lo)
    cost_a = _l1_affine_cost(torch.tan(a), p, g, weight, fit)[0]
    cost_b = _l1_affine_cost(torch.tan(b), p, g, weight, fit)[0]
    for _ in range(_GOLDEN_STEPS):
        left = cost_a <= cost_b  # the minimum lies in [lo, b]
        lo, hi = torch.where(left, lo, a), torch.where(left, b, hi)
        new = torch.where(left, hi - _INV_PHI * (hi - lo), lo + _INV_PHI * (hi - lo))
        new_cost = _l1_affine_cost(torch.tan(new), p, g, weight, fit)[0]
        a, b, cost_a, cost_b = (
            torch.where(left, new, b),
            torch.where(left, a, new),
            torch.where(left, new_cost, cost_b),
            torch.where(left, cost_a, new_cost),
        )
    scale = torch.tan(torch.where(cost_a <= cost_b, a, b))
    shift = _l1_affine_cost(scale, p, g, weight, fit)[1]
    ok = fit.sum(1) >= 2
    return torch.where(ok, scale, 1.0), torch.where(ok, shift, 0.0)


def fit_disparity_affine(p, g, fit):
    """``argmin_{s,b} sum (s / p + b - 1 / g)²`` over the fit pixels with ``p > 0``: least
    squares in inverse-depth space, as Marigold's ``least_square_disparity`` (eval.py) and
    Depth Anything's relative-depth evaluation fit."""
    usable = fit & (p > 0)
    x = torch.where(usable, 1.0 / torch.where(usable, p, 1.0), 0.0)
    y = torch.where(usable, 1.0 / torch.where(usable, g, 1.0), 0.0)
    return fit_lstsq_affine(x, y, usable)
