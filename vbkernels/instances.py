"""``decode_instances``: find each image's instance colours and label its pixels, batched.

In the Vision Banana convention an instance map paints every object in its own,
unannounced colour on a black background. The decoder finds the colours on a per-image
colour histogram and then labels every pixel with the nearest one:

1. **Histogram** (a kernel, one pass over the pixels): 5 bits per channel (32^3 bins per
   image). Every pixel counts in ``count_all``; *flat* pixels (right and lower neighbours
   within ``FLAT_TOLERANCE`` in every channel) also count in ``count_flat`` and add their
   colour to ``sum_flat``. Anti-aliased or JPEG-smeared edges are mixtures of two
   instances' colours and are not flat, so they cannot seed a spurious colour.
2. **Candidates**: bins whose flat count is a maximum of their 3x3x3 neighbourhood and
   whose neighbourhood holds at least ``FLAT_FRACTION * min_pixels`` flat pixels; the
   colour is the mean of those neighbourhood pixels.
3. **Merge**: greedily, strongest first, a candidate within ``merge_distance`` of a kept
   one (or of ``background``) is dropped.
4. **Refine** (on the histogram, not the pixels): ``ROUNDS`` times, every bin goes to its
   nearest colour within ``max_distance`` and each colour becomes the mean of its flat
   pixels; colours whose bins hold fewer than ``min_pixels`` pixels are dropped.
5. **Label** (a kernel, one pass): the nearest colour (background = label 0) within
   ``max_distance``; ties to the lower index. Instances left with fewer than
   ``min_pixels`` pixels are dropped and those pixels relabelled (one more pass, rare).
6. **Order**: ids by pixel count, descending, then colour (R, G, B) ascending.

All colour arithmetic is integer fixed point (1/16 unit, ``reference/instances.py``), so
every backend with the two instance kernels gives identical results on every device. The
kernels are chosen by ``_dispatch.select`` like every other op, and the chosen backend also
decides how steps 2-6 run (no flag):

- ``triton`` (CUDA tensors, or CPU tensors under ``TRITON_INTERPRET=1``):
  ``Backend.label_instances``, all on the device (``triton/instance_search.py``): peak
  finding, merge, refinement, labelling, dropping and ordering are Triton kernels over
  fixed-size per-image buffers, batch-parallel. The host reads device memory once per
  batch (to size the palette and learn whether an instance fell under ``min_pixels``) and
  once more only when one did: at most 2 host syncs per batch, where the torch steps below
  cost ~260 small ops and ~14 syncs (tests/test_instance_search.py counts them).
- ``cpu``: ``Backend.search_colours`` does steps 2-4 in one native call.
- ``torch``: the torch functions below (the reference the others are tested against).

``split_components=True`` then splits the labels on its own host path (SciPy, or CuPy on
CUDA; one ``ndimage.label`` per image and colour, with their syncs), after any of these.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from . import _checks as chk
from ._api import _refuse_transforms
from ._dispatch import select
from .reference import instances as ref

# A pixel is flat when its right and lower neighbours differ by at most this (0..255 units)
# in every channel. Interior JPEG noise at quality 75 stays well inside it; an edge between
# two instance colours >= 60 apart, smeared over two or three pixels, does not.
FLAT_TOLERANCE = 12.0
# A candidate needs this fraction of min_pixels as flat pixels near its histogram peak.
FLAT_FRACTION = 0.25
# Refinement rounds on the histogram (bin -> nearest colour -> mean of its flat pixels),
# plus the final mean. A second round changed no figure of the quality tests.
ROUNDS = 1
# At most this many candidate colours per image enter the merge step (strongest first).
MAX_CANDIDATES = 512
# Bounds the (images x candidates x candidates) and (bins x colours) work tensors.
PAIRS_PER_BLOCK = 1 << 21
_INT32_MAX = torch.iinfo(torch.int32).max


class Instances(NamedTuple):
    """What ``decode_instances`` returns (a tuple: ``labels, palette, counts = ...``)."""

    labels: Any  # (..., H, W) int32: 0 background, 1..counts[i] instances, -1 no colour
    palette: Any  # (..., N_max, 3) float32 in 0..255 units; rows >= counts[i] are zero
    counts: Any  # (...,) int64: instances found in each image


class _Params(NamedTuple):
    # 3 fixed-point ints, host values: no device copy, so the device path has no sync here
    background_q: tuple[int, int, int] | None
    max_dist2_q: int  # keep a pixel when its squared fixed-point distance is <= this
    merge_dist2_q: int
    min_pixels: int
    min_flat: int


def decode_instances(rgb: torch.Tensor | np.ndarray, *,
                     background: Sequence[float] | None = (0, 0, 0),
                     max_distance: float | None = 40.0, min_pixels: int = 64,
                     merge_distance: float | None = None, split_components: bool = False,
                     layout: str = "auto", backend: str = "auto") -> Instances:
    """Discover the instance colours of each image and label its pixels
    (docs/format.md, Instances).

    Ids are ordered by pixel count, descending, then by colour (R, then G, then B)
    ascending; ``split_components`` pieces of one colour tie-break on their first pixel in
    raster order. The same input always gives the same output, on every backend.

    Degenerate inputs: only background gives no instances (labels 0); an image where every
    pixel has a different colour has no flat regions, hence no instances (pixels near the
    background get 0, the rest -1); a single-pixel image is one instance only when
    ``min_pixels == 1``; an empty batch or ``H == 0``/``W == 0`` gives empty outputs.

    Args:
        rgb: image of shape ``(*, H, W, 3)`` or ``(*, 3, H, W)``: uint8 (0..255) or
            float16/bfloat16/float32/float64 in [0, 1] (clamped); a torch tensor on any
            device with any strides, or a NumPy array.
        background: 3 values in 0..255, labelled 0 and never an instance; ``None`` makes
            every colour (black included) an instance.
        max_distance: a pixel farther than this (0..255 units) from every colour gets -1;
            ``None`` labels every pixel with its nearest colour.
        min_pixels: every instance has at least this many pixels (an image whose colours
            are all smaller has no instances; their pixels go to the nearest remaining
            colour).
        merge_distance: colours closer than this are one instance; default
            ``max_distance / 2`` (20 when ``max_distance`` is None).
        split_components: give each 8-connected region of one colour its own id, with
            ``scipy.ndimage.label`` (CPU) or ``cupyx.scipy.ndimage.label`` (CUDA; without
            CuPy the labels are split on the host with SciPy). SciPy/CuPy are optional:
            ``RuntimeError`` if neither is installed. The split runs on the host, image by
            image, after the decode (with host syncs of its own on CUDA).
        layout: ``"hwc"``, ``"chw"`` or ``"auto"``.
        backend: ``"auto"`` or a name from :func:`available_backends` whose backend has the
            instance kernels (``torch``, ``triton``, ``cpu``); another name is a
            ``RuntimeError``.

    Returns:
        ``Instances(labels, palette, counts)`` on the input's device (NumPy in, NumPy out):

        - ``labels`` ``(*, H, W)`` int32: 0 for pixels nearest ``background``,
          ``1..counts[i]`` for the instances of image ``i``, -1 for pixels farther than
          ``max_distance`` from every colour and for NaN pixels.
        - ``palette`` ``(*, N_max, 3)`` float32 in 0..255 units: row ``k-1`` is the colour
          of instance ``k`` (the mean of its flat, i.e. interior, pixels, rounded to 1/16
          unit); rows past ``counts[i]`` are zero. ``N_max`` is the largest count in the
          batch.
        - ``counts`` ``(*,)`` int64.

    Example::

        >>> rgb = torch.zeros(8, 8, 3, dtype=torch.uint8)
        >>> rgb[:4, :4] = torch.tensor([200, 30, 30], dtype=torch.uint8)
        >>> found = decode_instances(rgb, min_pixels=4)
        >>> found.counts, found.palette
        (tensor(1), tensor([[200.,  30.,  30.]]))
    """
    _refuse_transforms("decode_instances")
    img = chk.image(rgb, layout)
    tensor, view, batch = img.tensor, img.view, img.batch
    params = _params(background, max_distance, min_pixels, merge_distance)
    ops = _kernels(backend, tensor)
    n, height, width = view.shape[:3]
    if view.numel() == 0:
        labels = torch.zeros((n, height, width), dtype=torch.int32, device=tensor.device)
        palette = torch.zeros((n, 0, 3), dtype=torch.float32, device=tensor.device)
        counts = torch.zeros((n,), dtype=torch.int64, device=tensor.device)
    else:
        labels, centres_q, counts = _decode(ops, view, params)
        if split_components:
            labels, centres_q, counts = _split_components(labels, centres_q, counts)
        palette = centres_q.to(torch.float32) / ref.STEPS
    result = Instances(
        labels.reshape(batch + (height, width)),
        palette.reshape(batch + tuple(palette.shape[1:])),
        counts.reshape(batch),
    )
    if img.numpy_io:
        return Instances(*(t.numpy() for t in result))
    return result


# --------------------------------------------------------------------------- arguments


def _params(background, max_distance, min_pixels, merge_distance) -> _Params:
    background_q = None
    if background is not None:
        values = torch.as_tensor(background, dtype=torch.float64).reshape(-1).cpu()
        if values.numel() != 3 or not torch.isfinite(values).all() or values.min() < 0 \
                or values.max() > 255:
            raise ValueError(
                f"background must be None or 3 values in 0..255 units, got {background!r}")
        background_q = tuple(torch.round(values * ref.STEPS).to(torch.int64).tolist())
    max_distance = chk.optional_positive(max_distance, "max_distance")
    if merge_distance is None:
        merge_distance = 20.0 if max_distance is None else max_distance / 2
    merge_distance = chk.optional_positive(merge_distance, "merge_distance")
    if isinstance(min_pixels, bool) or not isinstance(min_pixels, int) or min_pixels < 1:
        raise ValueError(f"min_pixels must be an integer >= 1, got {min_pixels!r}")
    return _Params(
        background_q=background_q,
        max_dist2_q=_dist2_q(max_distance),
        merge_dist2_q=_dist2_q(merge_distance),
        min_pixels=min_pixels,
        min_flat=max(1, math.ceil(FLAT_FRACTION * min_pixels)),
    )


def _background(p: _Params, device: torch.device) -> torch.Tensor | None:
    """The background as a (3,) int64 fixed-point tensor on ``device`` (None without one)."""
    if p.background_q is None:
        return None
    return torch.tensor(p.background_q, dtype=torch.int64, device=device)


def _dist2_q(distance: float | None) -> int:
    """Threshold on squared fixed-point distances: d <= r  <=>  d2_q <= floor((16 r)^2)."""
    if distance is None:
        return _INT32_MAX
    return min(_INT32_MAX, math.floor((distance * ref.STEPS) ** 2))


class _Kernels(NamedTuple):
    """The two per-pixel kernel ops of the chosen backend (contract: reference/instances.py),
    its native host-side colour search when it has one (``Backend.search_colours``), and its
    device path for everything after the histogram (``Backend.label_instances``)."""

    colour_histogram: Callable
    assign_pixels: Callable
    search_colours: Callable | None
    label_instances: Callable | None


def _kernels(backend: Any, tensor: torch.Tensor) -> _Kernels:
    """Both instance kernels from one backend, chosen like every other op's."""
    chosen, histogram = select("colour_histogram", backend, tensor.device, tensor.dtype)
    _, assign = select("assign_pixels", chosen.name, tensor.device, tensor.dtype)
    return _Kernels(histogram, assign, chosen.search_colours, chosen.label_instances)


# --------------------------------------------------------------------------- pipeline


def _decode(ops, view: torch.Tensor, p: _Params):
    """Histogram -> colours -> labels for a non-empty (N, H, W, 3) view."""
    n, device = view.shape[0], view.device
    count_all = torch.zeros((n, ref.BINS), dtype=torch.int64, device=device)
    count_flat = torch.zeros_like(count_all)
    sum_flat = torch.zeros((n, ref.BINS, 3), dtype=torch.int64, device=device)
    tolerance_q = int(FLAT_TOLERANCE * ref.STEPS)
    ops.colour_histogram(view, tolerance_q, count_all, count_flat, sum_flat)
    if ops.label_instances is not None:  # steps 2-6 as device kernels, <= 2 host syncs
        return ops.label_instances(view, count_all, count_flat, sum_flat, p, MAX_CANDIDATES,
                                   ROUNDS)
    if ops.search_colours is not None:  # a backend that does steps 2-4 in one call
        centres, live = ops.search_colours(
            count_all, count_flat, sum_flat, _background(p, torch.device("cpu")),
            p.max_dist2_q, p.merge_dist2_q, p.min_pixels, p.min_flat, MAX_CANDIDATES, ROUNDS)
        return _label(ops, view, centres, live, p)
    bins = _Bins.gather(count_all, count_flat, sum_flat)
    centres, live = _candidates(count_flat, sum_flat, p)
    live = _suppress(centres, live, p)
    centres, live = _refine(bins, centres, live, p)
    return _label(ops, view, centres, live, p)


class _Bins(NamedTuple):
    """The non-empty histogram bins of the whole batch, as a flat list."""

    image: torch.Tensor  # (M,) int64
    colour: torch.Tensor  # (M, 3) int64: mean of the bin's flat pixels, else the bin centre
    count_all: torch.Tensor  # (M,) int64
    count_flat: torch.Tensor  # (M,) int64
    sum_flat: torch.Tensor  # (M, 3) int64

    @staticmethod
    def gather(count_all, count_flat, sum_flat) -> _Bins:
        image, index = (count_all > 0).nonzero(as_tuple=True)
        c_all, c_flat = count_all[image, index], count_flat[image, index]
        s_flat = sum_flat[image, index]
        side = ref.BINS_PER_CHANNEL
        per_channel = torch.stack([index // (side * side), (index // side) % side, index % side],
                                  dim=-1)
        half_bin = 1 << (ref.BIN_SHIFT - 1)
        centre = ((per_channel << ref.BIN_SHIFT) + half_bin).clamp(max=ref.Q_MAX)
        mean = _round_div(s_flat, c_flat.clamp(min=1).unsqueeze(-1))
        colour = torch.where((c_flat > 0).unsqueeze(-1), mean, centre)
        return _Bins(image, colour, c_all, c_flat, s_flat)


def _round_div(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """Integer num / den rounded half up, for num >= 0 and den > 0."""
    return torch.div(2 * num + den, 2 * den, rounding_mode="floor")


def _candidates(count_flat, sum_flat, p: _Params):
    """Histogram peaks: (N, C, 3) int64 colours, strongest first, and a (N, C) live mask."""
    n, side = count_flat.shape[0], ref.BINS_PER_CHANNEL
    flat = count_flat.view(n, 1, side, side, side).to(torch.float64)
    # Sums of integers below 2^53 are exact in float64, so the pooling is exact.
    peak = flat == F.max_pool3d(flat, 3, stride=1, padding=1)
    near = F.avg_pool3d(flat, 3, stride=1, padding=1, divisor_override=1)
    sums = sum_flat.view(n, side, side, side, 3).permute(0, 4, 1, 2, 3).to(torch.float64)
    near_sums = F.avg_pool3d(sums, 3, stride=1, padding=1, divisor_override=1)
    strength = near.view(n, -1).to(torch.int64)
    is_candidate = (peak & (flat > 0)).view(n, -1) & (strength >= p.min_flat)
    key = torch.where(is_candidate, strength, torch.full_like(strength, -1))
    # Stable sort: equal strengths stay in bin order, so the order is deterministic.
    key, order = torch.sort(key, dim=1, descending=True, stable=True)
    width = min(MAX_CANDIDATES, int(is_candidate.sum(dim=1).max()))
    order, live = order[:, :width], key[:, :width] >= 0
    colour_sums = near_sums.view(n, 3, -1).transpose(1, 2).to(torch.int64)
    picked_sums = torch.gather(colour_sums, 1, order.unsqueeze(-1).expand(-1, -1, 3))
    picked_counts = torch.gather(strength, 1, order).clamp(min=1).unsqueeze(-1)
    return _round_div(picked_sums, picked_counts), live


def _pair_dist2(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(n, P, 3) x (n, K, 3) int64 -> (n, P, K) squared distances (exact integers)."""
    return ((a[:, :, None, :] - b[:, None, :, :]) ** 2).sum(dim=-1)


def _suppress(centres: torch.Tensor, live: torch.Tensor, p: _Params) -> torch.Tensor:
    """Greedy merge: keep a colour unless a kept stronger one (or the background) is close.

    Colours are ordered strongest first. Instead of a loop over colours, each pass decides
    every colour whose stronger close neighbours are all decided, so the number of passes
    is the length of the longest chain of close colours (usually 1 or 2), not C.
    """
    n, c = live.shape
    if c == 0:
        return live
    chunk = max(1, PAIRS_PER_BLOCK // (c * c))
    return torch.cat([
        _suppress_chunk(centres[i:i + chunk], live[i:i + chunk], p) for i in range(0, n, chunk)
    ])


def _suppress_chunk(centres, live, p: _Params):
    c = live.shape[1]
    stronger = torch.ones((c, c), dtype=torch.bool, device=live.device).tril(-1)
    close = (_pair_dist2(centres, centres) <= p.merge_dist2_q) & stronger & live.unsqueeze(1)
    undecided = live.clone()
    if p.background_q is not None:
        background = _background(p, centres.device)
        near_background = ((centres - background) ** 2).sum(-1) <= p.merge_dist2_q
        undecided &= ~near_background
    kept = torch.zeros_like(live)
    while bool(undecided.any()):
        blocked = (close & kept.unsqueeze(1)).any(-1)
        waiting = (close & undecided.unsqueeze(1)).any(-1)
        kept |= undecided & ~blocked & ~waiting
        undecided &= ~blocked & waiting
    return kept


def _with_background(centres: torch.Tensor, live: torch.Tensor, p: _Params):
    """Prepend the background as colour 0 (when there is one): it competes, never moves."""
    if p.background_q is None:
        return centres, live, 0
    n = centres.shape[0]
    bg = _background(p, centres.device).view(1, 1, 3).expand(n, 1, 3)
    ones = torch.ones((n, 1), dtype=torch.bool, device=live.device)
    return torch.cat([bg, centres], dim=1), torch.cat([ones, live], dim=1), 1


def _nearest_bins(bins: _Bins, centres: torch.Tensor, live: torch.Tensor, p: _Params):
    """Index of each bin's nearest live colour within max_distance, or -1."""
    m, k = bins.image.shape[0], centres.shape[1]
    nearest = torch.full((m,), -1, dtype=torch.int64, device=centres.device)
    if k == 0:
        return nearest
    step = max(1, PAIRS_PER_BLOCK // k)
    for start in range(0, m, step):
        image = bins.image[start:start + step]
        d2 = _pair_dist2(bins.colour[start:start + step].unsqueeze(1), centres[image])[:, 0]
        d2 = d2.masked_fill(~live[image], torch.iinfo(torch.int64).max)
        best_d2, best = d2.min(dim=-1)
        nearest[start:start + step] = torch.where(best_d2 <= p.max_dist2_q, best, -1)
    return nearest


def _bin_stats(bins: _Bins, nearest: torch.Tensor, n: int, k: int):
    """Per (image, colour): pixels, flat pixels and flat colour sums of its bins."""
    slot = torch.where(nearest >= 0, bins.image * k + nearest, n * k)  # n*k: a dump slot
    device = nearest.device
    zeros = torch.zeros(n * k + 1, dtype=torch.int64, device=device)
    pixels = zeros.clone().index_add_(0, slot, bins.count_all)
    flat = zeros.clone().index_add_(0, slot, bins.count_flat)
    sums = zeros.view(-1, 1).repeat(1, 3).index_add_(0, slot, bins.sum_flat)
    return pixels[:-1].view(n, k), flat[:-1].view(n, k), sums[:-1].view(n, k, 3)


def _refine(bins: _Bins, centres, live, p: _Params):
    """Move each colour to the mean of its bins' flat pixels; drop colours too small.

    Colours stay in candidate order (strongest histogram peak first), which is what the
    re-merge of colours that moved together needs; the final order is decided later.
    """
    n = centres.shape[0]
    for round_ in range(ROUNDS + 1):
        full, full_live, offset = _with_background(centres, live, p)
        nearest = _nearest_bins(bins, full, full_live, p)
        pixels, flat, sums = _bin_stats(bins, nearest, n, full.shape[1])
        pixels, flat, sums = pixels[:, offset:], flat[:, offset:], sums[:, offset:]
        live = live & (flat > 0)
        means = _round_div(sums, flat.clamp(min=1).unsqueeze(-1))
        centres = torch.where(live.unsqueeze(-1), means, centres)
        if round_ == ROUNDS:
            break
        live = _suppress(centres, live & (pixels >= p.min_pixels) & (flat >= p.min_flat), p)
    return _compact(centres, live, _order(pixels, centres, live))


def _take(values: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    if values.dim() == 3:
        return torch.gather(values, 1, order.unsqueeze(-1).expand(-1, -1, values.shape[-1]))
    return torch.gather(values, 1, order)


def _order(counts: torch.Tensor, colours: torch.Tensor, live: torch.Tensor,
           tiebreak: torch.Tensor | None = None) -> torch.Tensor:
    """Per-image permutation: live first, by count descending, then colour R, G, B."""
    base = ref.Q_MAX + 1
    key_colour = (colours[..., 0] * base + colours[..., 1]) * base + colours[..., 2]
    order = torch.arange(counts.shape[1], device=counts.device).expand_as(counts)
    # Stable sorts from the least to the most significant key.
    for key, descending in ((tiebreak, False), (key_colour, False),
                            (torch.where(live, counts, -1), True)):
        if key is None:
            continue
        _, idx = torch.sort(torch.gather(key, 1, order), dim=1, descending=descending, stable=True)
        order = torch.gather(order, 1, idx)
    return order


def _compact(centres, live, order):
    """Reorder by ``order`` and cut the padding to the largest live count in the batch."""
    centres, live = _take(centres, order), _take(live, order)
    width = int(live.sum(dim=1).max()) if live.numel() else 0
    return centres[:, :width], live[:, :width]


def _label(ops, view, centres, live, p: _Params):
    """Label pixels; drop instances under min_pixels (then relabel); order by count."""
    labels = torch.empty(view.shape[:3], dtype=torch.int32, device=view.device)
    # Dropping colours only grows the others, but the re-sort by colour after a drop can move
    # tie pixels: at most two relabels (triton/instance_search.py, MAX_ASSIGN_PASSES).
    while True:
        pixels = _assign(ops, view, centres, live, p, labels)
        small = live & (pixels < p.min_pixels)
        if not bool(small.any()):
            break
        live = live & ~small
        centres, live = _compact(centres, live, _order(live.to(torch.int64), centres, live))
    order = _order(pixels, centres, live)
    identity = torch.arange(order.shape[1], device=order.device).expand_as(order)
    if not torch.equal(order, identity):
        labels = _relabel(labels, order)
        centres, live = _take(centres, order), _take(live, order)
    counts = live.sum(dim=1)
    return labels, torch.where(live.unsqueeze(-1), centres, 0), counts


def _assign(ops, view, centres, live, p: _Params, labels) -> torch.Tensor:
    """Write labels; return the (N, K) pixel count of each instance colour."""
    full, full_live, offset = _with_background(centres, live, p)
    num = full_live.sum(dim=1)  # live colours are packed first
    counts = torch.zeros((view.shape[0], full.shape[1] + 1), dtype=torch.int64,
                         device=view.device)
    ops.assign_pixels(view, full.to(torch.int32).contiguous(), num, p.max_dist2_q,
                      1 - offset, labels, counts)
    return counts[:, 1 + offset:]


def _relabel(labels: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """Instance ``order[i, j] + 1`` becomes ``j + 1``; background and -1 stay."""
    n, k = order.shape
    lut = torch.empty((n, k + 2), dtype=torch.int32, device=labels.device)
    lut[:, 0], lut[:, 1] = -1, 0
    new_ids = torch.arange(1, k + 1, dtype=torch.int32, device=labels.device).expand(n, k)
    lut[:, 2:].scatter_(1, order, new_ids)
    per_image = labels.shape[1] * labels.shape[2]
    step = max(1, PAIRS_PER_BLOCK // max(per_image, 1))
    for start in range(0, n, step):
        block = labels[start:start + step]
        labels[start:start + step] = torch.gather(
            lut[start:start + step], 1, (block.reshape(block.shape[0], -1).to(torch.int64) + 1)
        ).view_as(block)
    return labels


# --------------------------------------------------------------------------- components


def _split_components(labels, centres_q, counts):
    """Give each 8-connected region of one instance colour its own id (same ordering rule)."""
    n = labels.shape[0]
    pieces = [_split_image(labels[i], centres_q[i, :int(counts[i])]) for i in range(n)]
    width = max((colours.shape[0] for _, colours in pieces), default=0)
    new_centres = torch.zeros((n, width, 3), dtype=centres_q.dtype, device=labels.device)
    for i, (image_labels, colours) in enumerate(pieces):
        labels[i] = image_labels
        new_centres[i, :colours.shape[0]] = colours
    new_counts = torch.tensor([c.shape[0] for _, c in pieces], dtype=torch.int64,
                              device=labels.device)
    return labels, new_centres, new_counts


def _split_image(labels: torch.Tensor, colours: torch.Tensor):
    """(H, W) labels with instances 1..K -> split labels and (K', 3) colours."""
    k = colours.shape[0]
    if k == 0:
        return labels, colours
    piece_map, parent = _connected_components(labels, k)
    pieces = piece_map.reshape(-1)
    total = parent.shape[0]
    sizes = torch.zeros(total + 1, dtype=torch.int64, device=labels.device)
    sizes.index_add_(0, pieces, torch.ones_like(pieces))
    raster = torch.arange(pieces.shape[0], device=labels.device)
    first = torch.full((total + 1,), pieces.shape[0], dtype=torch.int64, device=labels.device)
    first.scatter_reduce_(0, pieces, raster, reduce="amin")
    piece_colours = colours[parent]
    live = torch.ones((1, total), dtype=torch.bool, device=labels.device)
    order = _order(sizes[1:].unsqueeze(0), piece_colours.unsqueeze(0), live,
                   first[1:].unsqueeze(0))[0]
    new_id = torch.empty(total + 1, dtype=torch.int32, device=labels.device)
    new_id[0] = 0
    new_id[1:][order] = torch.arange(1, total + 1, dtype=torch.int32, device=labels.device)
    split = torch.where(pieces > 0, new_id[pieces], labels.reshape(-1)).view_as(labels)
    return split, piece_colours[order]


def _connected_components(labels: torch.Tensor, k: int):
    """8-connected pieces of instances 1..k: (H, W) int64 piece ids (0 = none, 1..P) and
    the (P,) instance index (0-based) each piece belongs to."""
    ndimage, to_array, from_array, stream = _ndimage_for(labels.device)
    array = to_array(labels)
    structure = [[1, 1, 1], [1, 1, 1], [1, 1, 1]]
    piece_map = torch.zeros(labels.shape, dtype=torch.int64, device=labels.device)
    parents = []
    with stream:
        for instance in range(1, k + 1):
            pieces, count = ndimage.label(array == instance, structure=structure)
            pieces = from_array(pieces).to(torch.int64)
            piece_map = torch.where(pieces > 0, pieces + len(parents), piece_map)
            parents.extend([instance - 1] * int(count))
    parent = torch.tensor(parents, dtype=torch.int64, device=labels.device)
    return piece_map, parent


def _ndimage_for(device: torch.device):
    """``ndimage`` module and array converters for ``device``: CuPy on CUDA, else SciPy."""
    import contextlib

    if device.type == "cuda":
        try:
            import cupy
            from cupyx.scipy import ndimage as cupy_ndimage
        except ImportError:
            pass
        else:
            stream = cupy.cuda.ExternalStream(torch.cuda.current_stream(device).cuda_stream)
            return (cupy_ndimage, cupy.asarray,
                    lambda a: torch.as_tensor(a, device=device), stream)
    try:
        from scipy import ndimage
    except ImportError:
        raise RuntimeError(
            "split_components=True needs scipy (pip install scipy), or cupy for CUDA tensors"
        ) from None
    return (ndimage, lambda t: t.cpu().numpy(),
            lambda a: torch.from_numpy(a).to(device), contextlib.nullcontext())
