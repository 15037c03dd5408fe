"""Monocular depth metrics: accumulate on the device, read back once in ``compute()``.

Notation: over the valid pixels of one image, ``p`` is the predicted depth (after the
optional alignment and clamp, below), ``g`` the ground truth, both in metres, and
``d = ln p - ln g``. ``mean`` is the mean over those pixels.

=========== =====================================================================
delta_i     ``mean(max(p/g, g/p) < thr_i)``; thresholds 1.25, 1.25², 1.25³ by default
abs_rel     ``mean(|p - g| / g)``
sq_rel      ``mean((p - g)² / g)`` (metres)
rmse        ``sqrt(mean((p - g)²))`` (metres)
rmse_log    ``sqrt(mean(d²))``
log10       ``mean(|log10 p - log10 g|)``
silog       ``100 * sqrt(mean(d²) - mean(d)²)``: the KITTI depth benchmark's scale-invariant
            log error (lambda = 1, square root, times 100), as in BTS/AdaBins/NeWCRFs and
            Marigold's ``silog_rmse`` (src/util/metric.py).
silog_eigen ``mean(d²) - lam * mean(d)²`` with ``lam = silog_lambda = 0.5``: the
            scale-invariant error of Eigen et al. 2014 (eq. 4), no square root.
silog_da2   ``sqrt(mean(d²) - 0.5 * mean(d)²)``: Depth Anything V2's ``silog``
            (metric_depth/util/metric.py ``eval_depth``): lambda 0.5 under the square
            root, no factor 100.
irmse       ``sqrt(mean((1/p - 1/g)²))`` in 1/m (Marigold's ``i_rmse``); the KITTI
            benchmark prints iRMSE in 1/km, i.e. this value times 1000
            (``vbkernels.metrics.format_row`` does that scaling, not this class).
=========== =====================================================================

Valid pixels. A pixel is valid when ``mask`` (if given) is True, the target is finite and
inside the valid range, and the prediction is not NaN. ``range="strict"`` (default, the
Eigen-split convention of Marigold and ZoeDepth) keeps ``min_depth < g < max_depth``;
``range="inclusive"`` keeps ``min_depth <= g <= max_depth`` (Depth Anything V2's
metric_depth/train.py). NaN predictions are left out rather than poisoning the means. A
prediction of +inf (a white pixel decoded without ``max_depth``) is kept and makes the
metrics inf unless a clamp to ``max_depth`` removes it.

Alignment (per image, fitted on the valid pixels whose prediction is finite):

====================== ===============================================================
``"none"`` / None      metric depth, as predicted
``"median"``           ``p * median(g) / median(p)`` (mean of the two middle values for an
                       even count)
``"lstsq"``            ``s p`` with ``s = argmin sum (s p - g)²``
``"lstsq-affine"``     ``s p + b`` by least squares in depth space (Marigold's
                       ``least_square``); the old name ``"lstsq_shift"`` is an alias
``"disparity-affine"`` ``1 / (s / p + b)``: ``s, b`` fitted by least squares between
                       ``1/p`` and ``1/g`` on the fit pixels with ``p > 0`` (Marigold's
                       ``least_square_disparity``, Depth Anything's relative-depth protocol).
                       An aligned disparity below ``min_disparity`` (1e-3 1/m by default,
                       Marigold eval.py's floor), zero and negative ones included, is raised
                       to it, so the depth is at most ``1 / min_disparity`` (1000 m); a pixel
                       with ``p <= 0`` has infinite disparity and aligned depth 0. The
                       reported ``scale``/``shift`` are the disparity-space ``s, b``.
``"l1-scale"``         ``s p`` with ``s = argmin sum |s p - g| / g`` (MoGe's
                       ``align_depth_scale`` with weight ``1/g``, moge/test/metrics.py)
``"l1-affine"``        ``s p + b`` minimising ``sum |s p + b - g| / g`` (MoGe's
                       ``align_depth_affine``, moge/utils/alignment.py)
====================== ===============================================================

MoGe fits its L1 alignments on a 64x64 nearest-resized copy of the image; here every fit
pixel takes part (``"l1-affine"`` sorts each image's pixels 66 times, see ``_align``). An
image whose fit is degenerate keeps ``s = 1, b = 0``.

Clamp. ``clamp="after"`` (default) aligns the raw prediction, then clamps it to
``[min_depth, max_depth]`` (Marigold's eval.py order); ``clamp="before"`` clamps the raw
prediction, then aligns without clamping again (ZoeDepth's ``compute_metrics`` clamps
before its median scaling); ``clamp=None`` never clamps (Depth Anything V2, MoGe).

Averaging. ``reduction="image"`` (default) computes every metric per image and averages
over the images that count; ``reduction="pixel"`` pools the valid pixels of the images
that count. An image counts when it has at least ``min_valid_pixels`` valid pixels (and
at least one): Depth Anything V2 skips images with fewer than 10. ``per_image()`` lists
every image seen, counted or not, with its metrics, valid pixels and fitted scale/shift.

The per-image median and the L1 fits need no host sync: they sort each image's fit set
with the other pixels pushed to +inf and gather order statistics at indices computed on the
device. All arithmetic is float64 whatever the input dtype, so results do not depend on it.
"""

from __future__ import annotations

import math

import torch

from . import _align
from ._common import check_float, check_mask, check_nonnegative_number, check_pair, to_python

ALIGNMENTS = (
    "none",
    "median",
    "lstsq",
    "lstsq-affine",
    "disparity-affine",
    "l1-scale",
    "l1-affine",
)
# Older or alternative spellings, accepted and mapped to the names above.
ALIGNMENT_ALIASES = {None: "none", "lstsq_shift": "lstsq-affine"}
CLAMPS = ("after", "before", None)
RANGES = ("strict", "inclusive")
REDUCTIONS = ("image", "pixel")
DEFAULT_THRESHOLDS = (1.25, 1.25**2, 1.25**3)

_FITS = {
    "median": _align.fit_median,
    "lstsq": _align.fit_lstsq_scale,
    "lstsq-affine": _align.fit_lstsq_affine,
    "l1-scale": _align.fit_l1_scale,
    "l1-affine": _align.fit_l1_affine,
}

# Per-image sums kept after the delta counts, in this order; "m2" is not a plain sum but
# sum((d - mean(d))²), which pools exactly across images (Chan et al.'s merge) and avoids
# the cancellation of mean(d²) - mean(d)² that a near-constant d would suffer. "d" and "m2"
# must stay the last two (``_pool`` relies on it).
_SUM_NAMES = ("abs_rel", "sq_rel", "se", "d2", "log10", "inv_se", "d", "m2")


def canonical_alignment(alignment) -> str:
    """The canonical name of ``alignment`` (None and the old ``"lstsq_shift"`` included)."""
    try:
        name = ALIGNMENT_ALIASES.get(alignment, alignment)
    except TypeError:  # unhashable
        name = alignment
    if name not in ALIGNMENTS:
        raise ValueError(
            f"alignment must be one of {ALIGNMENTS} (or None, 'lstsq_shift'), got {alignment!r}"
        )
    return name


class DepthMetrics:
    """Stateful depth-metric accumulator (see the module docstring for the formulas).

    ``update(pred, target, mask=None)`` takes depth maps of shape ``(..., H, W)`` (any
    number of leading batch dims, or none), float tensors or NumPy arrays, on any device;
    it launches device work only and never reads a value back. ``compute()`` returns a
    dict of Python floats, ``per_image()`` a list of per-image dicts; ``reset()`` forgets.
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
        clamp: str | None = "after",
        range: str = "strict",  # noqa: A002 - the documented option name
        min_valid_pixels: int = 1,
        min_disparity: float = 1e-3,
    ):
        self.min_depth = check_nonnegative_number(min_depth, "min_depth")
        self.max_depth = check_nonnegative_number(max_depth, "max_depth", allow_none=True)
        if self.max_depth is not None and self.max_depth <= self.min_depth:
            raise ValueError(
                f"max_depth must be greater than min_depth={self.min_depth}, got {max_depth!r}"
            )
        self.thresholds = _check_thresholds(thresholds)
        self.alignment = canonical_alignment(alignment)
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
        if clamp not in CLAMPS:
            raise ValueError(f"clamp must be one of {CLAMPS}, got {clamp!r}")
        if range not in RANGES:
            raise ValueError(f"range must be one of {RANGES}, got {range!r}")
        if (
            isinstance(silog_lambda, bool)
            or not isinstance(silog_lambda, (int, float))
            or not math.isfinite(silog_lambda)
        ):
            raise ValueError(f"silog_lambda must be a finite number, got {silog_lambda!r}")
        if (
            isinstance(min_valid_pixels, bool)
            or not isinstance(min_valid_pixels, int)
            or min_valid_pixels < 0
        ):
            raise ValueError(f"min_valid_pixels must be an int >= 0, got {min_valid_pixels!r}")
        min_disparity = check_nonnegative_number(min_disparity, "min_disparity")
        if min_disparity <= 0:
            raise ValueError(f"min_disparity must be > 0, got {min_disparity!r}")
        self.reduction = reduction
        self.silog_lambda = float(silog_lambda)
        self.clamp = clamp
        self.range = range
        self.min_valid_pixels = min_valid_pixels
        self.min_disparity = min_disparity
        self.reset()

    @property
    def names(self) -> tuple[str, ...]:
        """Metric names in the order ``compute()`` returns them."""
        deltas = tuple(f"delta{i + 1}" for i in range(len(self.thresholds)))
        return deltas + (
            "abs_rel",
            "sq_rel",
            "rmse",
            "rmse_log",
            "log10",
            "silog",
            "silog_eigen",
            "silog_da2",
            "irmse",
        )

    def reset(self) -> None:
        self._pixel_sums = None  # (len(thresholds) + len(_SUM_NAMES),) float64: pooled sums
        self._image_sums = None  # (len(names),) float64: sum of per-image metrics
        self._pixels = None  # int64 scalar: valid pixels of the counted images
        self._images = None  # int64 scalar: images that count
        # Per update: (metrics (N, len(names)), valid counts (N,), counted (N,), scale, shift)
        self._per_image: list[tuple[torch.Tensor, ...]] = []

    def update(self, pred, target, mask=None) -> None:
        pred, target, mask = _check_pair(pred, target, mask)
        if target.numel() == 0:
            return
        sums, counts, scale, shift = self._per_image_sums(pred, target, mask)
        if self._pixel_sums is None:
            self._allocate(target.device)
        counted = counts >= max(self.min_valid_pixels, 1)
        kept = torch.where(counted, counts, 0)
        self._pixel_sums, self._pixels = _pool(
            torch.cat((self._pixel_sums[None], torch.where(counted[:, None], sums, 0.0))),
            torch.cat((self._pixels[None], kept)),
        )
        per_image = _metrics_from_sums(sums, counts, len(self.thresholds), self.silog_lambda)
        self._image_sums += torch.where(counted[:, None], per_image, 0.0).sum(0)
        self._images += counted.sum()
        self._per_image.append((per_image, counts, counted, scale, shift))

    def compute(self) -> dict[str, float]:
        """The metrics (NaN when no image counted), ``valid_pixels`` and ``images`` (both of
        the images that count)."""
        if self._pixel_sums is None:
            values = [math.nan] * len(self.names)
            return dict(zip(self.names, values), valid_pixels=0, images=0)
        if self.reduction == "pixel":
            metrics = _metrics_from_sums(
                self._pixel_sums[None], self._pixels[None], len(self.thresholds), self.silog_lambda
            )[0]
            metrics = torch.where(self._pixels > 0, metrics, math.nan)
        else:
            metrics = torch.where(
                self._images > 0, self._image_sums / self._images.clamp(min=1), math.nan
            )
        host = metrics.cpu().tolist()
        result = dict(zip(self.names, host))
        result["valid_pixels"] = int(to_python(self._pixels))
        result["images"] = int(to_python(self._images))
        return result

    def per_image(self) -> list[dict]:
        """One dict per image passed to ``update`` (in order): every metric (NaN without
        valid pixels), ``valid_pixels``, ``counted`` (at least ``min_valid_pixels``),
        ``scale`` and ``shift`` (the fitted alignment; 1 and 0 without alignment)."""
        if not self._per_image:
            return []
        parts = (torch.cat(column) for column in zip(*self._per_image))
        metrics, counts, counted, scale, shift = parts
        metrics = torch.where((counts > 0)[:, None], metrics, math.nan).cpu().tolist()
        counts, counted = counts.cpu().tolist(), counted.cpu().tolist()
        scale, shift = scale.cpu().tolist(), shift.cpu().tolist()
        return [
            dict(zip(self.names, row), valid_pixels=n, counted=c, scale=s, shift=b)
            for row, n, c, s, b in zip(metrics, counts, counted, scale, shift)
        ]

    def _allocate(self, device: torch.device) -> None:
        n_sums = len(self.thresholds) + len(_SUM_NAMES)
        self._pixel_sums = torch.zeros(n_sums, dtype=torch.float64, device=device)
        self._image_sums = torch.zeros(len(self.names), dtype=torch.float64, device=device)
        self._pixels = torch.zeros((), dtype=torch.int64, device=device)
        self._images = torch.zeros((), dtype=torch.int64, device=device)

    def _valid(self, p: torch.Tensor, g: torch.Tensor, mask) -> torch.Tensor:
        hw = g.shape[1]
        if self.range == "strict":
            valid = torch.isfinite(g) & (g > self.min_depth)
            if self.max_depth is not None:
                valid &= g < self.max_depth
        else:
            valid = torch.isfinite(g) & (g >= self.min_depth)
            if self.max_depth is not None:
                valid &= g <= self.max_depth
        valid &= ~torch.isnan(p)
        if mask is not None:
            valid &= mask.reshape(-1, hw)
        return valid

    def _aligned(self, p, g, valid):
        """``p`` aligned per row, with the fitted scale and shift."""
        fit = valid & torch.isfinite(p)
        if self.alignment == "none":
            ones = torch.ones(p.shape[0], dtype=p.dtype, device=p.device)
            return p, ones, torch.zeros_like(ones)
        if self.alignment == "disparity-affine":
            scale, shift = _align.fit_disparity_affine(p, g, fit)
            inverse = torch.where(p > 0, 1.0 / torch.where(p > 0, p, 1.0), math.inf)
            disparity = torch.where(
                p > 0, scale[:, None] * inverse + shift[:, None], math.inf
            ).clamp(min=self.min_disparity)
            return 1.0 / disparity, scale, shift
        scale, shift = _FITS[self.alignment](p, g, fit)
        return p * scale[:, None] + shift[:, None], scale, shift

    def _per_image_sums(self, pred, target, mask):
        """Per-image sums ``(N, n_sums)`` float64, valid counts ``(N,)`` int64, scale, shift."""
        hw = target.shape[-2] * target.shape[-1]
        p = pred.reshape(-1, hw).to(torch.float64)
        g = target.reshape(-1, hw).to(torch.float64)
        valid = self._valid(p, g, mask)
        if self.clamp == "before":
            p = p.clamp(min=self.min_depth, max=self.max_depth)
        p, scale, shift = self._aligned(p, g, valid)
        if self.clamp == "after":
            p = p.clamp(min=self.min_depth, max=self.max_depth)
        # Invalid pixels get harmless values so no inf/NaN reaches the masked sums.
        p = torch.where(valid, p, 1.0)
        g = torch.where(valid, g, 1.0)
        weight = valid.to(torch.float64)
        ratio = torch.maximum(p / g, g / p)
        deltas = [((ratio < thr) & valid).sum(1, dtype=torch.float64) for thr in self.thresholds]
        err = p - g
        d = torch.log(p) - torch.log(g)
        inv_err = 1.0 / p - 1.0 / g
        terms = (
            err.abs() / g,
            err * err / g,
            err * err,
            d * d,
            (torch.log10(p) - torch.log10(g)).abs(),
            inv_err * inv_err,
            d,
        )
        sums = deltas + [(term * weight).sum(1) for term in terms]
        counts = valid.sum(1)
        mean_d = sums[-1] / counts.clamp(min=1)
        sums.append(((d - mean_d[:, None]) ** 2 * weight).sum(1))
        return torch.stack(sums, dim=1), counts, scale, shift


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
    abs_rel, sq_rel, se, d2, log10, inv_se, d, variance = means[:, n_thresholds:].unbind(1)
    # mean(d²) - lam mean(d)² written as Var(d) + (1 - lam) mean(d)², free of cancellation.
    silog_eigen = variance + (1 - silog_lambda) * d * d
    silog_da2 = (variance + 0.5 * d * d).sqrt()
    rest = torch.stack(
        (
            abs_rel,
            sq_rel,
            se.sqrt(),
            d2.sqrt(),
            log10,
            100 * variance.sqrt(),
            silog_eigen,
            silog_da2,
            inv_se.sqrt(),
        ),
        dim=1,
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
