"""Instance-colour kernels of the ``cpu`` backend, compiled from ``csrc/cpu/instances.cpp``.

``colour_histogram`` and ``assign_pixels`` have the signatures and results of
``vbkernels/reference/instances.py`` (integer fixed point, bit-identical). ``search_colours``
does the host-side steps of ``vbkernels.instances`` between them (candidates, merge,
refinement, order) in C++: on one 1080p frame the torch versions of those small steps cost
more than the two pixel passes.
"""

from __future__ import annotations

import torch

from ..reference import instances as ref
from ._lib import call, code, ptr, shape3, strides


def _accumulator(t: torch.Tensor) -> torch.Tensor:
    """``t`` itself when the library can add into it in place, else a zeroed contiguous twin
    (added back by ``_settle``)."""
    if t.dtype != torch.int64:
        raise TypeError(f"accumulators must be int64, got {t.dtype}")
    return t if t.is_contiguous() else torch.zeros(t.shape, dtype=torch.int64)


def _settle(target: torch.Tensor, acc: torch.Tensor) -> None:
    if acc is not target:
        target += acc


def colour_histogram(rgb, flat_tolerance_q, count_all, count_flat, sum_flat) -> None:
    if rgb.numel() == 0:
        return
    accs = [_accumulator(t) for t in (count_all, count_flat, sum_flat)]
    call("vbk_colour_histogram", {"rgb": rgb},
         ptr(rgb), code(rgb), strides(rgb), shape3(rgb), int(flat_tolerance_q),
         *(ptr(a) for a in accs))
    for target, acc in zip((count_all, count_flat, sum_flat), accs):
        _settle(target, acc)


def search_colours(count_all, count_flat, sum_flat, background_q, max_dist2_q, merge_dist2_q,
                   min_pixels, min_flat, max_candidates, rounds):
    """The live colours ``vbkernels.instances`` finds on these histograms, as ``(centres,
    live)``: (N, C, 3) int64 colours and an (N, C) bool mask, each image's live colours first,
    ordered by pixel count (descending) then colour, C the largest live count (dead rows 0).
    """
    n = count_all.shape[0]
    hists = [t.to(torch.int64).contiguous() for t in (count_all, count_flat, sum_flat)]
    background = None if background_q is None else background_q.to(torch.int64).cpu().contiguous()
    centres = torch.zeros((n, max_candidates, 3), dtype=torch.int64)
    found = torch.zeros((n,), dtype=torch.int64)
    call("vbk_search_colours", {},
         *(ptr(t) for t in hists), n, ptr(background), int(max_dist2_q), int(merge_dist2_q),
         int(min_pixels), int(min_flat), int(max_candidates), int(rounds), ptr(centres),
         ptr(found))
    width = int(found.max()) if n else 0
    live = torch.arange(width).unsqueeze(0) < found.unsqueeze(1)
    return centres[:, :width], live


def assign_pixels(rgb, centres_q, num_centres, max_dist2_q, first_label, labels,
                  counts) -> None:
    if labels.numel() == 0:
        return
    if labels.dtype != torch.int32:
        raise TypeError(f"labels must be int32, got {labels.dtype}")
    centres = centres_q.to(torch.int32).contiguous()
    num = num_centres.to(torch.int64).contiguous()
    acc = _accumulator(counts)
    call("vbk_assign_pixels", {"rgb": rgb},
         ptr(rgb), code(rgb), strides(rgb), shape3(rgb), ptr(centres), centres.shape[1],
         ptr(num), int(max_dist2_q), int(first_label), ptr(labels), strides(labels), ptr(acc))
    _settle(counts, acc)


# The fixed point this module assumes (csrc/cpu/instances.cpp hard-codes it).
assert (ref.STEPS, ref.BIN_SHIFT, ref.BINS_PER_CHANNEL) == (16, 7, 32)
