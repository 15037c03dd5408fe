"""Property tests (hypothesis): round trips within the bounds of docs/format.md, Precision;
layout invariance."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import vbkernels as vb

BACKENDS = ["torch", "numpy"]
SETTINGS = settings(max_examples=60, deadline=None)

depths = arrays(np.float64, st.integers(1, 40),
                elements=st.floats(0.0, 5000.0, allow_nan=False, allow_infinity=False))
images = arrays(np.uint8, st.tuples(st.integers(1, 4), st.integers(1, 6), st.integers(1, 6),
                                    st.just(3)))


@SETTINGS
@given(depth=depths, backend=st.sampled_from(BACKENDS),
       lam=st.floats(-8.0, -1.1), c=st.floats(0.2, 50.0))
def test_depth_round_trip_within_half_a_code(depth, backend, lam, c):
    rgb = vb.encode_depth(depth[None], lam=lam, c=c, backend=backend)
    t_back = vb.hilbert_project(rgb, backend=backend)[0].astype(np.float64)
    t_true = vb.power_transform(depth, lam=lam, c=c)
    assert np.max(np.abs(t_back - t_true)) <= 1 / (2 * 255 * 7) + 1e-7


@SETTINGS
@given(rgb=images, backend=st.sampled_from(BACKENDS))
def test_walk_colours_are_fixed_points(rgb, backend):
    """Projecting, walking and projecting again lands on the same t (a retraction)."""
    t = vb.hilbert_project(rgb, backend=backend)
    on_walk = vb.hilbert_walk(t, dtype=torch.float64, backend=backend)
    t_again = vb.hilbert_project(on_walk, backend=backend)
    np.testing.assert_allclose(t_again, t, atol=1e-9)


@SETTINGS
@given(rgb=images, backend=st.sampled_from(BACKENDS))
def test_layout_invariance(rgb, backend):
    chw = np.ascontiguousarray(np.moveaxis(rgb, -1, -3))
    np.testing.assert_array_equal(vb.decode_depth(chw, layout="chw", backend=backend),
                                  vb.decode_depth(rgb, layout="hwc", backend=backend))
    normals_chw = vb.decode_normals(chw, layout="chw", backend=backend)
    np.testing.assert_array_equal(np.moveaxis(normals_chw, -3, -1),
                                  vb.decode_normals(rgb, backend=backend))


@SETTINGS
@given(labels=arrays(np.int64, st.tuples(st.integers(1, 5), st.integers(1, 5)),
                     elements=st.integers(0, 18)))
def test_segmentation_round_trip(labels):
    palette = np.array([[(37 * i) % 256, (91 * i) % 256, (53 * i + 7) % 256] for i in range(19)])
    rgb = vb.encode_segmentation(labels, palette)
    np.testing.assert_array_equal(vb.decode_segmentation(rgb, palette), labels)


@SETTINGS
@given(normals=arrays(np.float64, st.tuples(st.integers(1, 20), st.just(3)),
                      elements=st.floats(-1.0, 1.0)))
def test_normals_round_trip_direction(normals):
    norms = np.linalg.norm(normals, axis=-1)
    normals = normals[norms > 0.2] / norms[norms > 0.2, None]
    if len(normals) == 0:
        return
    back = vb.decode_normals(vb.encode_normals(normals[None])).astype(np.float64)[0]
    cos = np.clip((back * normals).sum(-1), -1, 1)
    assert np.degrees(np.arccos(cos)).max() < 0.5
