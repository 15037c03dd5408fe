"""Surface-normal metrics: angular error, pooled over every valid pixel of the dataset.

The angular error of a pixel is the angle between the predicted and true normal,
``theta = atan2(|p x g|, p . g)`` in degrees. ``atan2`` is used rather than
``acos(p . g / (|p| |g|))`` because ``acos`` loses about half the significant digits near
0 degrees, exactly where good predictions sit; neither vector needs to be unit length. A
prediction shorter than ``eps`` (the zero vector that ``decode_normals`` returns for a
grey (0.5, 0.5, 0.5) pixel) has no direction and scores 90 degrees, the expected error of a
random guess.

========== ===============================================================
mean       mean of theta over the valid pixels
median     median of theta (mean of the two middle values for an even count)
rmse       ``sqrt(mean(theta²))``
within_T   percentage of valid pixels with ``theta < T``, T = 5, 7.5, 11.25, 22.5, 30
========== ===============================================================

A pixel is valid when ``mask`` (if given) is True, the target is finite with
``|g| > eps`` (unlabelled pixels are often stored as zero vectors) and the prediction has no
NaN. The five thresholds and the metric set are DSINE's (utils/utils.py
``compute_normal_metrics``: mean, median, rmse, a1..a5 at 5, 7.5, 11.25, 22.5, 30 degrees).

Averaging. ``reduction="pixel"`` (default) pools all valid pixels of all images seen (the
NYUv2 protocol, and DSINE's, which concatenates every pixel's error before the
statistics). ``reduction="image"`` computes each statistic per image, then takes the mean
over the images with at least one valid pixel. An image is one ``(H, W)`` slice of the
pixel shape (the shape without the channel axis): leading dims are batch dims; a pixel
shape of fewer than two dims is one image. ``per_image()`` lists every image's statistics.

Frames. Angles do not depend on the frame when prediction and target share one, but a
ground truth stored in another frame scores an axis flip as error (DSINE#4 got 170 degrees
that way). ``frame`` names the target's frame and ``pred_frame`` (default: ``frame``) the
prediction's; the prediction is converted to the target's frame before the angle:

========== ==========================================================================
opengl     x right, y up, z toward the camera (``decode_normals``' default)
opencv     x right, y down, z forward (away from the camera)
dsine      x right, y down, z toward the camera (DSINE's NYUv2/ScanNet ground truth)
========== ==========================================================================

``convert_normals(n, src, dst)`` does the same conversion for any array.

Exact median: ``update`` appends each batch's angles (float32, NaN for invalid pixels, so no
host sync is needed to compact them) to a buffer on the tensors' device; ``compute()``
drops the NaNs and picks the two middle order statistics with ``torch.kthvalue``, an exact
selection. The median is therefore exact for the float32-rounded angles (relative error at
most 6e-8 against float64). The cost is 4 bytes of memory per pixel passed to ``update``
(masked pixels included): 1.2 GB for the 654 640x480 NYUv2 test images. Pass
``median=False`` to keep nothing and leave ``median`` out of the result; no bounded-memory
streaming method can give an exact median. Per-image medians (for ``reduction="image"``
and ``per_image()``) are taken in ``update`` by a per-row sort, with no host sync.

All other arithmetic is float64 whatever the input dtype.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ._align import masked_median
from ._common import as_tensor, check_float, check_mask, check_pair, to_python

DEFAULT_THRESHOLDS = (5.0, 7.5, 11.25, 22.5, 30.0)
REDUCTIONS = ("pixel", "image")
# Sign of each axis relative to the OpenGL frame (x right, y up, z toward the camera).
FRAMES = {
    "opengl": (1.0, 1.0, 1.0),
    "opencv": (1.0, -1.0, -1.0),
    "dsine": (1.0, -1.0, 1.0),
}


def _check_frame(frame, name: str) -> str:
    if frame not in FRAMES:
        raise ValueError(f"{name} must be one of {tuple(FRAMES)}, got {frame!r}")
    return frame


def convert_normals(normals, src: str, dst: str, *, channel_dim: int = -1):
    """``normals`` (3 components along ``channel_dim``) from frame ``src`` to frame ``dst``
    (``"opengl"``, ``"opencv"`` or ``"dsine"``; see the module docstring). Every frame is an
    axis flip of the others, so this negates the components whose sign differs. NumPy in,
    NumPy out; torch in, torch out on the same device and dtype."""
    _check_frame(src, "src")
    _check_frame(dst, "dst")
    is_numpy = isinstance(normals, np.ndarray)
    n = as_tensor(normals, "normals")
    if n.dim() == 0 or not -n.dim() <= channel_dim < n.dim() or n.shape[channel_dim] != 3:
        raise ValueError(
            f"normals must have 3 components along channel_dim={channel_dim}, got shape "
            f"{tuple(n.shape)}"
        )
    flips = [a * b for a, b in zip(FRAMES[src], FRAMES[dst])]
    shape = [1] * n.dim()
    shape[channel_dim] = 3
    signs = torch.tensor(flips, device=n.device).reshape(shape)
    out = n * signs.to(n.dtype)
    return out.numpy() if is_numpy else out


class NormalMetrics:
    """Stateful angular-error accumulator (see the module docstring for the definitions).

    ``update(pred, target, mask=None)`` takes normals of shape ``(..., 3)`` (channels last,
    e.g. ``(N, H, W, 3)``; ``channel_dim`` picks another axis), float tensors or NumPy arrays
    on any device; ``mask`` is a bool tensor of the shape without the channel axis. It
    launches device work only. ``compute()`` returns Python floats, ``per_image()`` one dict
    per image; ``reset()`` forgets.
    """

    def __init__(
        self,
        *,
        thresholds=DEFAULT_THRESHOLDS,
        channel_dim: int = -1,
        eps: float = 1e-6,
        median: bool = True,
        reduction: str = "pixel",
        frame: str = "opengl",
        pred_frame: str | None = None,
    ):
        try:
            self.thresholds = tuple(float(t) for t in thresholds)
        except TypeError:
            raise TypeError(
                f"thresholds must be a sequence of numbers in degrees, got {thresholds!r}"
            ) from None
        if not self.thresholds or not all(0 < t <= 180 for t in self.thresholds):
            raise ValueError(f"thresholds must be numbers in (0, 180] degrees, got {thresholds!r}")
        if isinstance(channel_dim, bool) or not isinstance(channel_dim, int):
            raise TypeError(f"channel_dim must be an int, got {channel_dim!r}")
        if (
            isinstance(eps, bool)
            or not isinstance(eps, (int, float))
            or not math.isfinite(eps)
            or eps < 0
        ):
            raise ValueError(f"eps must be a finite number >= 0, got {eps!r}")
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
        self.channel_dim = channel_dim
        self.eps = float(eps)
        self.keep_median = bool(median)
        self.reduction = reduction
        self.frame = _check_frame(frame, "frame")
        self.pred_frame = _check_frame(frame if pred_frame is None else pred_frame, "pred_frame")
        self.reset()

    @property
    def names(self) -> tuple[str, ...]:
        within = tuple(f"within_{t:g}" for t in self.thresholds)
        return ("mean",) + (("median",) if self.keep_median else ()) + ("rmse",) + within

    def reset(self) -> None:
        self._sums = None  # (3 + len(thresholds),) float64: count, sum, sum of squares, hits
        self._angles: list[torch.Tensor] = []
        # Per update: (per-image statistics (N, len(names)) float64, valid counts (N,) int64)
        self._per_image: list[tuple[torch.Tensor, torch.Tensor]] = []

    def update(self, pred, target, mask=None) -> None:
        pred, target, mask = self._check(pred, target, mask)
        if target.numel() == 0:
            return
        angle, valid = self._angles_of(pred, target, mask)
        weight = valid.to(torch.float64)
        angle_or_zero = torch.where(valid, angle, 0.0)
        hits = [((angle < t) & valid).sum(dtype=torch.float64) for t in self.thresholds]
        sums = torch.stack(
            [weight.sum(), angle_or_zero.sum(), (angle_or_zero * angle_or_zero).sum()] + hits
        )
        self._sums = sums if self._sums is None else self._sums + sums
        if self.keep_median and self.reduction == "pixel":
            self._angles.append(torch.where(valid, angle, math.nan).to(torch.float32).reshape(-1))
        self._per_image.append(self._image_statistics(angle, valid))

    def _image_statistics(self, angle: torch.Tensor, valid: torch.Tensor):
        """Per-image statistics in ``names`` order (NaN without valid pixels) and counts."""
        hw = angle.shape[-2] * angle.shape[-1] if angle.dim() >= 2 else angle.numel()
        angle, valid = angle.reshape(-1, hw), valid.reshape(-1, hw)
        count = valid.sum(1)
        n = count.to(torch.float64).clamp(min=1)
        angle_or_zero = torch.where(valid, angle, 0.0)
        columns = [angle_or_zero.sum(1) / n]
        if self.keep_median:
            columns.append(masked_median(angle, valid))
        columns.append(((angle_or_zero * angle_or_zero).sum(1) / n).sqrt())
        columns += [100.0 * ((angle < t) & valid).sum(1) / n for t in self.thresholds]
        stats = torch.stack(columns, dim=1)
        return torch.where((count > 0)[:, None], stats, math.nan), count

    def compute(self) -> dict[str, float]:
        """The metrics in degrees / percent (NaN when no valid pixel was seen) and
        ``valid_pixels``."""
        if self._sums is None:
            return dict.fromkeys(self.names, math.nan) | {"valid_pixels": 0, "images": 0}
        if self.reduction == "image":
            return self._image_mean()
        count, total, squares, *hits = self._sums.cpu().tolist()
        n = max(count, 1.0)
        result = {"mean": total / n if count else math.nan}
        if self.keep_median:
            result["median"] = self._median()
        result["rmse"] = math.sqrt(squares / n) if count else math.nan
        for name, hit in zip(self.names[-len(self.thresholds) :], hits):
            result[name] = 100.0 * hit / n if count else math.nan
        result["valid_pixels"] = int(count)
        result["images"] = self._images_with_pixels()
        return result

    def per_image(self) -> list[dict]:
        """One dict per image passed to ``update`` (in order): the statistics of that image
        alone (NaN without valid pixels) and its ``valid_pixels``."""
        if not self._per_image:
            return []
        stats, counts = (torch.cat(column) for column in zip(*self._per_image))
        return [
            dict(zip(self.names, row), valid_pixels=n)
            for row, n in zip(stats.cpu().tolist(), counts.cpu().tolist())
        ]

    def _images_with_pixels(self) -> int:
        counts = torch.cat([counts for _, counts in self._per_image])
        return int(to_python((counts > 0).sum()))

    def _image_mean(self) -> dict[str, float]:
        stats, counts = (torch.cat(column) for column in zip(*self._per_image))
        has_pixels = counts > 0
        images = has_pixels.sum()
        means = torch.where(has_pixels[:, None], stats, 0.0).sum(0) / images.clamp(min=1)
        means = torch.where(images > 0, means, math.nan)
        result = dict(zip(self.names, means.cpu().tolist()))
        result["valid_pixels"] = int(to_python(counts.sum()))
        result["images"] = int(to_python(images))
        return result

    def _median(self) -> float:
        angles = torch.cat(self._angles)
        angles = angles[~torch.isnan(angles)]  # compaction syncs, which compute() may do
        n = angles.numel()
        if n == 0:
            return math.nan
        lo = angles.kthvalue((n + 1) // 2).values
        hi = angles.kthvalue(n // 2 + 1).values
        return (to_python(lo.double()) + to_python(hi.double())) / 2

    def _angles_of(self, pred: torch.Tensor, target: torch.Tensor, mask):
        """Angle in degrees (float64) and validity, both of the shape without the channel axis."""
        p = pred.movedim(self.channel_dim, -1).to(torch.float64)
        if self.pred_frame != self.frame:
            p = convert_normals(p, self.pred_frame, self.frame)
        g = target.movedim(self.channel_dim, -1).to(torch.float64)
        g_norm = torch.linalg.vector_norm(g, dim=-1)
        valid = torch.isfinite(g).all(-1) & (g_norm > self.eps) & ~torch.isnan(p).any(-1)
        if mask is not None:
            valid &= mask
        # Zero invalid pixels first so an inf there cannot produce NaN in the cross product.
        p = torch.where(valid[..., None], p, 0.0)
        g = torch.where(valid[..., None], g, 0.0)
        cross = torch.linalg.vector_norm(torch.linalg.cross(p, g, dim=-1), dim=-1)
        dot = (p * g).sum(-1)
        angle = torch.rad2deg(torch.atan2(cross, dot))
        has_direction = torch.linalg.vector_norm(p, dim=-1) > self.eps
        return torch.where(has_direction, angle, 90.0), valid

    def _check(self, pred, target, mask):
        pred, target = check_pair(pred, target, check_float)
        if target.dim() == 0 or not -target.dim() <= self.channel_dim < target.dim():
            raise ValueError(
                f"channel_dim={self.channel_dim} is out of range for target of shape "
                f"{tuple(target.shape)}"
            )
        if target.shape[self.channel_dim] != 3:
            raise ValueError(
                f"target must have 3 channels along channel_dim={self.channel_dim}, got shape "
                f"{tuple(target.shape)}"
            )
        pixel_shape = target.movedim(self.channel_dim, -1).shape[:-1]
        return pred, target, check_mask(mask, target, pixel_shape)


def normal_metrics(pred, target, mask=None, **options) -> dict[str, float]:
    """One-shot :class:`NormalMetrics`: ``options`` are its constructor arguments."""
    metric = NormalMetrics(**options)
    metric.update(pred, target, mask)
    return metric.compute()
