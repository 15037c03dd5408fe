"""Monocular depth metrics: accumulate on the device, read back once in ``compute()``.

Notation: over the valid pixels of one image, ``p`` is the predicted depth (after the
optional alignment and the clamp to ``[min_depth, max_depth]``), ``g`` the ground truth and
``d = ln p - ln g``. ``mean`` is the mean over those pixels.

========== =====================================================================
delta_i    ``mean(max(p/g, g/p) < thr_i)``; thresholds 1.25, 1.25², 1.25³ by default
abs_rel    ``mean(|p - g| / g)``
sq_rel     ``mean((p - g)² / g)``
rmse       ``sqrt(mean((p - g)²))``
rmse_log   ``sqrt(mean(d²))``
log10      ``mean(|log10 p - log10 g|)``
silog      ``100 * sqrt(mean(d²) - mean(d)²)``: the KITTI depth benchmark's scale-invariant
           log error (lambda = 1, square root, times 100), as in BTS/AdaBins/NeWCRFs.
silog_eigen ``mean(d²) - lam * mean(d)²`` with ``lam = silog_lambda = 0.5``: the
           scale-invariant error of Eigen et al. 2014 (eq. 4), no square root.
========== =====================================================================

A pixel is valid when ``mask`` (if given) is True, the target is finite with
``min_depth < g < max_depth`` (the Eigen-split convention), and the prediction is not NaN.
NaN predictions are left out rather than poisoning the means; ``compute()`` reports how
many pixels were used (``valid_pixels``). A prediction of +inf (a white pixel decoded
without ``max_depth``) is kept and makes the metrics inf unless ``max_depth`` clamps it.

``reduction="image"`` (default, the usual benchmark protocol) computes every metric per
image and averages over the images that have at least one valid pixel;
``reduction="pixel"`` pools all valid pixels of all images.

Alignment (per image, fitted on the valid pixels whose prediction is finite, before the
clamp): ``"median"`` scales ``p`` by ``median(g) / median(p)`` (mean of the two middle
values for an even count); ``"lstsq"`` scales by ``s = argmin sum (s p - g)²``;
``"lstsq_shift"`` fits ``s p + b`` by least squares. An image whose fit is degenerate (no
pixels, zero median, singular system) keeps ``s = 1, b = 0``. The per-image median needs
no host sync: each image's fit set is sorted with the other pixels pushed to +inf, and the
middle order statistics are gathered at indices computed on the device from the count.

All arithmetic is float64 whatever the input dtype, so results do not depend on it.
"""

from __future__ import annotations

import math

import torch

from ._common import check_float, check_mask, check_nonnegative_number, check_pair, to_python

ALIGNMENTS = (None, "median", "lstsq", "lstsq_shift")
REDUCTIONS = ("image", "pixel")
DEFAULT_THRESHOLDS = (1.25, 1.25**2, 1.25**3)

# Per-image sums kept after the delta counts, in this order; "m2" is not a plain sum but
# sum((d - mean(d))²), which pools exactly across images (Chan et al.'s merge) and avoids
# the cancellation of mean(d²) - mean(d)² that a near-constant d would suffer.
_SUM_NAMES = ("abs_rel", "sq_rel", "se", "d2", "log10", "d", "m2")


class DepthMetrics:
    """Stateful depth-metric accumulator (see the module docstring for the formulas).

    ``update(pred, target, mask=None)`` takes depth maps of shape ``(..., H, W)`` (any
    number of leading batch dims, or none), float tensors or NumPy arrays, on any device;
    it launches device work only and never reads a value back. ``compute()`` returns a
    dict of Python floats; ``reset()`` forgets everything.
    """

    def __init__(
        self,
        *,
        min_depth: float = 1e-3,
        max_depth: float | None = None,
        thresholds=DEFAULT_THRESHOLDS,
        alignment: str | None = None,
        reduction: str = "image",
        silog_lambda: float = 0.5,
    ):
        self.min_depth = check_nonnegative_number(min_depth, "min_depth")
        self.max_depth = check_nonnegative_number(max_depth, "max_depth", allow_none=True)
        if self.max_depth is not None and self.max_depth <= self.min_depth:
            raise ValueError(
                f"max_depth must be greater than min_depth={self.min_depth}, got {max_depth!r}"
            )
        self.thresholds = _check_thresholds(thresholds)
        if alignment not in ALIGNMENTS:
            raise ValueError(f"alignment must be one of {ALIGNMENTS}, got {alignment!r}")
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
        if (
            isinstance(silog_lambda, bool)
            or not isinstance(silog_lambda, (int, float))
            or not math.isfinite(silog_lambda)
        ):
            raise ValueError(f"silog_lambda must be a finite number, got {silog_lambda!r}")
        self.alignment = alignment
        self.reduction = reduction
        self.silog_lambda = float(silog_lambda)
        self.reset()

    @property
    def names(self) -> tuple[str, ...]:
        """Metric names in the order ``compute()`` returns them."""
        deltas = tuple(f"delta{i + 1}" for i in range(len(self.thresholds)))
        return deltas + ("abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "silog", "silog_eigen")

    def reset(self) -> None:
        self._pixel_sums = None  # (len(thresholds) + len(_SUM_NAMES),) float64: pooled sums
        self._image_sums = None  # (len(names),) float64: sum of per-image metrics
        self._pixels = None  # int64 scalar: valid pixels seen
        self._images = None  # int64 scalar: images with at least one valid pixel

    def update(self, pred, target, mask=None) -> None:
        pred, target, mask = _check_pair(pred, target, mask)
        if target.numel() == 0:
            return
        sums, counts = self._per_image_sums(pred, target, mask)
        if self._pixel_sums is None:
            self._allocate(target.device)
        self._pixel_sums, self._pixels = _pool(
            torch.cat((self._pixel_sums[None], sums)), torch.cat((self._pixels[None], counts))
        )
        has_pixels = counts > 0
        per_image = _metrics_from_sums(sums, counts, len(self.thresholds), self.silog_lambda)
        self._image_sums += torch.where(has_pixels[:, None], per_image, 0.0).sum(0)
        self._images += has_pixels.sum()

    def compute(self) -> dict[str, float]:
        """The metrics (NaN when no valid pixel was seen), ``valid_pixels`` and ``images``."""
        if self._pixel_sums is None:
            values = [math.nan] * len(self.names)
            return dict(zip(self.names, values), valid_pixels=0, images=0)
        if self.reduction == "pixel":
            metrics = _metrics_from_sums(
                self._pixel_sums[None], self._pixels[None], len(self.thresholds), self.silog_lambda
            )[0]
            metrics = torch.where(self._pixels > 0, metrics, math.nan)
        else:
            metrics = self._image_sums / self._images
        host = metrics.cpu().tolist()
        result = dict(zip(self.names, host))
        result["valid_pixels"] = int(to_python(self._pixels))
        result["images"] = int(to_python(self._images))
        return result

    def _allocate(self, device: torch.device) -> None:
        n_sums = len(self.thresholds) + len(_SUM_NAMES)
        self._pixel_sums = torch.zeros(n_sums, dtype=torch.float64, device=device)
        self._image_sums = torch.zeros(len(self.names), dtype=torch.float64, device=device)
        self._pixels = torch.zeros((), dtype=torch.int64, device=device)
        self._images = torch.zeros((), dtype=torch.int64, device=device)

    def _per_image_sums(self, pred, target, mask):
        """Per-image sums ``(N, n_sums)`` float64 and valid counts ``(N,)`` int64."""
        hw = target.shape[-2] * target.shape[-1]
        p = pred.reshape(-1, hw).to(torch.float64)
        g = target.reshape(-1, hw).to(torch.float64)
        valid = torch.isfinite(g) & (g > self.min_depth) & ~torch.isnan(p)
        if self.max_depth is not None:
            valid &= g < self.max_depth
        if mask is not None:
            valid &= mask.reshape(-1, hw)
        if self.alignment is not None:
            p = _align(p, g, valid & torch.isfinite(p), self.alignment)
        p = p.clamp(min=self.min_depth, max=self.max_depth)
        # Invalid pixels get harmless values so no inf/NaN reaches the masked sums.
        p = torch.where(valid, p, 1.0)
        g = torch.where(valid, g, 1.0)
        weight = valid.to(torch.float64)
        ratio = torch.maximum(p / g, g / p)
        deltas = [((ratio < thr) & valid).sum(1, dtype=torch.float64) for thr in self.thresholds]
        err = p - g
        d = torch.log(p) - torch.log(g)
        terms = (
            err.abs() / g,
            err * err / g,
            err * err,
            d * d,
            (torch.log10(p) - torch.log10(g)).abs(),
            d,
        )
        sums = deltas + [(term * weight).sum(1) for term in terms]
        counts = valid.sum(1)
        mean_d = sums[-1] / counts.clamp(min=1)
        sums.append(((d - mean_d[:, None]) ** 2 * weight).sum(1))
        return torch.stack(sums, dim=1), counts


def depth_metrics(pred, target, mask=None, **options) -> dict[str, float]:
    """One-shot :class:`DepthMetrics`: ``options`` are its constructor arguments."""
    metric = DepthMetrics(**options)
    metric.update(pred, target, mask)
    return metric.compute()


def _metrics_from_sums(
    sums: torch.Tensor, counts: torch.Tensor, n_thresholds: int, silog_lambda: float
) -> torch.Tensor:
    """Rows of sums (as built by ``_per_image_sums``) to rows of metrics in ``names`` order."""
    n = counts.to(torch.float64).clamp(min=1)[:, None]
    means = sums / n
    deltas = means[:, :n_thresholds]
    abs_rel, sq_rel, se, d2, log10, d, variance = means[:, n_thresholds:].unbind(1)
    # mean(d²) - lam mean(d)² written as Var(d) + (1 - lam) mean(d)², free of cancellation.
    silog_eigen = variance + (1 - silog_lambda) * d * d
    rest = torch.stack(
        (abs_rel, sq_rel, se.sqrt(), d2.sqrt(), log10, 100 * variance.sqrt(), silog_eigen), dim=1
    )
    return torch.cat((deltas, rest), dim=1)


def _pool(sums: torch.Tensor, counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of per-group sums (last column m2) pooled into one row, and the total count."""
    total = counts.sum()
    pooled = sums.sum(0)
    n = counts.to(torch.float64)
    group_mean = sums[:, -2] / n.clamp(min=1)
    pooled_mean = pooled[-2] / n.sum().clamp(min=1)
    # An empty group has n = 0, so its (meaningless) mean adds nothing.
    pooled[-1] = sums[:, -1].sum() + (n * (group_mean - pooled_mean) ** 2).sum()
    return pooled, total


def _align(p: torch.Tensor, g: torch.Tensor, fit: torch.Tensor, alignment: str) -> torch.Tensor:
    """``p`` (N, P) scaled (and shifted) per row to match ``g`` on the ``fit`` pixels."""
    if alignment == "median":
        med_p = _masked_median(p, fit)
        med_g = _masked_median(g, fit)
        ok = torch.isfinite(med_p) & torch.isfinite(med_g) & (med_p > 0)
        scale = torch.where(ok, med_g / torch.where(ok, med_p, 1.0), 1.0)
        return p * scale[:, None]
    w = fit.to(torch.float64)
    pf = torch.where(fit, p, 0.0)
    gf = torch.where(fit, g, 0.0)
    spp, spg = (pf * pf).sum(1), (pf * gf).sum(1)
    if alignment == "lstsq":
        ok = spp > 0
        scale = torch.where(ok, spg / torch.where(ok, spp, 1.0), 1.0)
        return p * scale[:, None]
    n, sp, sg = w.sum(1), pf.sum(1), gf.sum(1)
    det = n * spp - sp * sp
    # A singular system (fewer than two distinct predictions) keeps the prediction as is.
    ok = det > 1e-12 * (n * spp).clamp(min=1e-300)
    safe_det = torch.where(ok, det, 1.0)
    scale = torch.where(ok, (n * spg - sp * sg) / safe_det, 1.0)
    shift = torch.where(ok, (spp * sg - sp * spg) / safe_det, 0.0)
    return p * scale[:, None] + shift[:, None]


def _masked_median(x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Median of each row of ``x`` over ``keep`` (NaN for an empty row), without host sync."""
    ordered = torch.where(keep, x, math.inf).sort(dim=1).values
    count = keep.sum(1)
    lo = ((count - 1).clamp(min=0) // 2)[:, None]
    hi = (count // 2).clamp(max=x.shape[1] - 1)[:, None]
    median = (ordered.gather(1, lo) + ordered.gather(1, hi))[:, 0] / 2
    return torch.where(count > 0, median, math.nan)


def _check_pair(pred, target, mask):
    pred, target = check_pair(pred, target, check_float)
    if target.dim() < 2:
        raise ValueError(f"target must have shape (..., H, W), got {tuple(target.shape)}")
    return pred, target, check_mask(mask, target, target.shape)


def _check_thresholds(thresholds) -> tuple[float, ...]:
    try:
        values = tuple(float(t) for t in thresholds)
    except TypeError:
        raise TypeError(f"thresholds must be a sequence of numbers, got {thresholds!r}") from None
    if not values or not all(math.isfinite(t) and t > 1 for t in values):
        raise ValueError(
            f"thresholds must be a non-empty sequence of finite numbers > 1, got {thresholds!r}"
        )
    return values
