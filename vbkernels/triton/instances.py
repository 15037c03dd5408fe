"""Triton kernels for the two per-pixel steps of ``decode_instances``.

Same contract and the same integer fixed-point arithmetic as
``vbkernels/reference/instances.py`` (read its docstring), so both backends give identical
histograms and labels. One program handles ``LANES x SPAN`` consecutive pixels of one image
(grid: pixel tiles x images), so the image index and that image's colour list are scalars.
This module imports Triton; ``vbkernels.instances`` imports it only when the Triton
backend is asked for, keeping ``import vbkernels`` cheap.
"""

from __future__ import annotations

import contextlib

import torch
import triton
import triton.language as tl

from ..reference import instances as ref

# A program is a (LANES, SPAN) tile of consecutive pixels of one image.
SPAN = 16
LANES = 64
# Under TRITON_INTERPRET=1 (CPU tensors) each program is a Python pass over numpy arrays:
# big tiles mean few programs and a fast CI. Results do not depend on the tile size.
LANES_INTERPRETED = 1024
# CUDA caps grid axis 1 at 65535: larger batches are launched in slices of images.
MAX_IMAGES_PER_LAUNCH = 65535

STEPS = tl.constexpr(ref.STEPS)
BIN_SHIFT = tl.constexpr(ref.BIN_SHIFT)
BINS = tl.constexpr(ref.BINS)
BINS_PER_CHANNEL = tl.constexpr(ref.BINS_PER_CHANNEL)
NO_CENTRE = tl.constexpr(ref.NO_CENTRE)


@triton.jit
def load_q(p_pixel, s_c, m_load, IS_FLOAT: tl.constexpr):
    """Fixed-point colour of the pixels at ``p_pixel`` and whether each is valid."""
    b_r = tl.load(p_pixel, mask=m_load, other=0)
    b_g = tl.load(p_pixel + s_c, mask=m_load, other=0)
    b_b = tl.load(p_pixel + 2 * s_c, mask=m_load, other=0)
    if IS_FLOAT:
        b_r, b_g, b_b = b_r.to(tl.float32), b_g.to(tl.float32), b_b.to(tl.float32)
        m_valid = m_load & (b_r == b_r) & (b_g == b_g) & (b_b == b_b)
        # NaN -> 0 before clamping: min/max propagate NaN differently across versions.
        b_r = tl.minimum(tl.maximum(tl.where(b_r == b_r, b_r, 0.0), 0.0), 1.0)
        b_g = tl.minimum(tl.maximum(tl.where(b_g == b_g, b_g, 0.0), 0.0), 1.0)
        b_b = tl.minimum(tl.maximum(tl.where(b_b == b_b, b_b, 0.0), 0.0), 1.0)
        # Same operations, same order as reference.instances.quantize: identical rounding.
        q_r = tl.floor(b_r * 255.0 * STEPS + 0.5).to(tl.int32)
        q_g = tl.floor(b_g * 255.0 * STEPS + 0.5).to(tl.int32)
        q_b = tl.floor(b_b * 255.0 * STEPS + 0.5).to(tl.int32)
    else:
        m_valid = m_load
        q_r, q_g, q_b = b_r.to(tl.int32) * STEPS, b_g.to(tl.int32) * STEPS, b_b.to(tl.int32) * STEPS
    return q_r, q_g, q_b, m_valid


@triton.jit
def close_to(q_r, q_g, q_b, p_other, s_c, m_other, tolerance, IS_FLOAT: tl.constexpr):
    """True where the neighbour at ``p_other`` is missing, or valid and within tolerance."""
    n_r, n_g, n_b, m_ok = load_q(p_other, s_c, m_other, IS_FLOAT)
    diff = tl.maximum(tl.maximum(tl.abs(q_r - n_r), tl.abs(q_g - n_g)), tl.abs(q_b - n_b))
    return (~m_other) | (m_ok & (diff <= tolerance))


@triton.jit
def pixel_tile(pid, n_pixels, width, LANES: tl.constexpr, SPAN: tl.constexpr):
    """A (LANES, SPAN) tile of consecutive pixels: lane i holds SPAN neighbours in a row
    of the flattened image, so one lane mostly sees one colour (see lane_sums)."""
    o_lane = tl.arange(0, LANES)[:, None]
    o_col = tl.arange(0, SPAN)[None, :]
    o_pix = pid.to(tl.int64) * (LANES * SPAN) + o_lane * SPAN + o_col
    return o_pix, o_col, o_pix < n_pixels, o_pix // width, o_pix % width


@triton.jit
def lead_of(key, o_col):
    """Each lane's first key (column 0): shape (LANES,)."""
    return tl.sum(tl.where(o_col == 0, key, 0), axis=1)


@triton.jit
def histogram_kernel(rgb, s_n, s_h, s_w, s_c, height, width, n_pixels, tolerance,
                     count_all, count_flat, sum_flat,
                     IS_FLOAT: tl.constexpr, LANES: tl.constexpr, SPAN: tl.constexpr):
    image = tl.program_id(1).to(tl.int64)
    o_pix, o_col, m_pix, o_h, o_w = pixel_tile(tl.program_id(0), n_pixels, width, LANES, SPAN)
    p_pixel = rgb + image * s_n + o_h * s_h + o_w * s_w
    q_r, q_g, q_b, m_valid = load_q(p_pixel, s_c, m_pix, IS_FLOAT)
    m_right = m_pix & (o_w + 1 < width)
    m_down = m_pix & (o_h + 1 < height)
    m_flat = m_valid & close_to(q_r, q_g, q_b, p_pixel + s_w, s_c, m_right, tolerance, IS_FLOAT)
    m_flat = m_flat & close_to(q_r, q_g, q_b, p_pixel + s_h, s_c, m_down, tolerance, IS_FLOAT)
    b_bin = ((q_r >> BIN_SHIFT) * BINS_PER_CHANNEL + (q_g >> BIN_SHIFT)) * BINS_PER_CHANNEL
    b_bin = b_bin + (q_b >> BIN_SHIFT)
    # Pixels in the lane's first bin are summed in registers and added with one atomic per
    # lane: inside an instance a whole lane shares a bin, so atomics on the few hot bins
    # drop SPAN-fold. The other pixels (edges, noise) go one atomic each.
    b_lead = lead_of(b_bin, o_col)
    m_same = m_valid & (b_bin == b_lead[:, None])
    m_same_flat = m_same & m_flat
    o_lead = image * BINS + b_lead.to(tl.int64)
    n_same = lane_sum(m_same.to(tl.int64), m_same)
    n_flat = lane_sum(m_same_flat.to(tl.int64), m_same_flat)
    m_lane_flat = n_flat > 0
    tl.atomic_add(count_all + o_lead, n_same, mask=n_same > 0)
    tl.atomic_add(count_flat + o_lead, n_flat, mask=m_lane_flat)
    tl.atomic_add(sum_flat + o_lead * 3, lane_sum(q_r, m_same_flat), mask=m_lane_flat)
    tl.atomic_add(sum_flat + o_lead * 3 + 1, lane_sum(q_g, m_same_flat), mask=m_lane_flat)
    tl.atomic_add(sum_flat + o_lead * 3 + 2, lane_sum(q_b, m_same_flat), mask=m_lane_flat)
    m_rest = m_valid & ~m_same
    m_rest_flat = m_rest & m_flat
    o_bin = image * BINS + b_bin.to(tl.int64)
    b_one = tl.full([LANES, SPAN], 1, tl.int64)
    tl.atomic_add(count_all + o_bin, b_one, mask=m_rest)
    tl.atomic_add(count_flat + o_bin, b_one, mask=m_rest_flat)
    tl.atomic_add(sum_flat + o_bin * 3, q_r.to(tl.int64), mask=m_rest_flat)
    tl.atomic_add(sum_flat + o_bin * 3 + 1, q_g.to(tl.int64), mask=m_rest_flat)
    tl.atomic_add(sum_flat + o_bin * 3 + 2, q_b.to(tl.int64), mask=m_rest_flat)


@triton.jit
def lane_sum(values, mask):
    """Sum over each lane of ``values`` where ``mask``, as int64: shape (LANES,)."""
    return tl.sum(tl.where(mask, values, 0).to(tl.int64), axis=1)


@triton.jit
def assign_kernel(rgb, s_n, s_h, s_w, s_c, height, width, n_pixels,
                  centres, num_centres, centre_stride, max_dist2, first_label,
                  labels, l_n, l_h, l_w, counts, count_stride,
                  IS_FLOAT: tl.constexpr, LANES: tl.constexpr, SPAN: tl.constexpr):
    image = tl.program_id(1).to(tl.int64)
    o_pix, o_col, m_pix, o_h, o_w = pixel_tile(tl.program_id(0), n_pixels, width, LANES, SPAN)
    p_pixel = rgb + image * s_n + o_h * s_h + o_w * s_w
    q_r, q_g, q_b, m_valid = load_q(p_pixel, s_c, m_pix, IS_FLOAT)
    count = tl.load(num_centres + image).to(tl.int32)
    p_centre = centres + image * centre_stride
    best_d2 = tl.full([LANES, SPAN], 2147483647, tl.int32)
    best = tl.zeros([LANES, SPAN], tl.int32)
    for k in range(0, count):
        d_r = q_r - tl.load(p_centre + 3 * k)
        d_g = q_g - tl.load(p_centre + 3 * k + 1)
        d_b = q_b - tl.load(p_centre + 3 * k + 2)
        d2 = d_r * d_r + d_g * d_g + d_b * d_b
        # Strict < keeps the first (lowest-index) colour on ties, like torch's min.
        better = d2 < best_d2
        best_d2 = tl.where(better, d2, best_d2)
        best = tl.where(better, k, best)
    m_keep = m_valid & (best_d2 <= max_dist2) & (count > 0)
    label = tl.where(m_keep, best + first_label, NO_CENTRE)
    tl.store(labels + image * l_n + o_h * l_h + o_w * l_w, label, mask=m_pix)
    # Pixels per colour (slot 0: no colour), aggregated per lane as in histogram_kernel.
    b_slot = tl.where(m_keep, best + 1, 0)
    b_lead = lead_of(b_slot, o_col)
    m_same = m_pix & (b_slot == b_lead[:, None])
    n_same = lane_sum(m_same.to(tl.int64), m_same)
    p_counts = counts + image * count_stride
    tl.atomic_add(p_counts + b_lead, n_same, mask=n_same > 0)
    tl.atomic_add(p_counts + b_slot, tl.full([LANES, SPAN], 1, tl.int64), mask=m_pix & ~m_same)


def _image_slices(n: int):
    for start in range(0, n, MAX_IMAGES_PER_LAUNCH):
        yield slice(start, min(n, start + MAX_IMAGES_PER_LAUNCH))


def colour_histogram(rgb, flat_tolerance_q, count_all, count_flat, sum_flat) -> None:
    n, height, width = rgb.shape[:3]
    lanes = _lanes(rgb.device)
    with _on_device(rgb.device):
        for imgs in _image_slices(n):
            view = rgb[imgs]
            grid = (triton.cdiv(height * width, lanes * SPAN), view.shape[0])
            histogram_kernel[grid](
                view, *view.stride(), height, width, height * width, flat_tolerance_q,
                count_all[imgs], count_flat[imgs], sum_flat[imgs],
                IS_FLOAT=rgb.is_floating_point(), LANES=lanes, SPAN=SPAN,
            )


def assign_pixels(rgb, centres_q, num_centres, max_dist2_q, first_label, labels,
                  counts) -> None:
    n, height, width = rgb.shape[:3]
    centres_q = centres_q.contiguous()
    num_centres = num_centres.contiguous()
    lanes = _lanes(rgb.device)
    with _on_device(rgb.device):
        for imgs in _image_slices(n):
            view, out = rgb[imgs], labels[imgs]
            grid = (triton.cdiv(height * width, lanes * SPAN), view.shape[0])
            assign_kernel[grid](
                view, *view.stride(), height, width, height * width,
                centres_q[imgs], num_centres[imgs], centres_q.shape[1] * 3, max_dist2_q,
                first_label, out, *out.stride(), counts[imgs], counts.stride(0),
                IS_FLOAT=rgb.is_floating_point(), LANES=lanes, SPAN=SPAN,
            )


def _lanes(device: torch.device) -> int:
    return LANES if device.type == "cuda" else LANES_INTERPRETED


def _on_device(device: torch.device):
    """Launch on the tensor's GPU (and torch's current stream there), not GPU 0."""
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()



def label_instances(rgb, count_all, count_flat, sum_flat, params, max_candidates, rounds):
    """Steps 2-6 of decode_instances as device kernels (picked up by _dispatch as
    ``Backend.label_instances``); see ``instance_search.label_instances``. Imported here,
    on call: that module builds on this one's kernels."""
    from .instance_search import label_instances as on_device

    return on_device(rgb, count_all, count_flat, sum_flat, params, max_candidates, rounds)
