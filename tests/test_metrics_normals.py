"""Normal metrics worked by hand: pooled vs per-image averaging, per-image results, frames."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vbkernels.metrics import NormalMetrics, convert_normals, normal_metrics


def _tilted(degrees):
    """Unit normals tilted by ``degrees`` from +z about the y axis, shape (len, 3)."""
    r = np.radians(np.asarray(degrees, dtype=np.float64))
    return np.stack([np.sin(r), np.zeros_like(r), np.cos(r)], axis=-1)


def _two_images():
    # Image 0: one valid pixel at 10 degrees (three masked); image 1: four pixels at 30.
    pred = np.stack([_tilted([10, 0, 0, 0]), _tilted([30, 30, 30, 30])]).reshape(2, 2, 2, 3)
    target = np.tile([0.0, 0.0, 1.0], (2, 2, 2, 1))
    mask = np.array([[[True, False], [False, False]], [[True, True], [True, True]]])
    return torch.from_numpy(pred), torch.from_numpy(target), torch.from_numpy(mask)


def test_pixel_and_image_reduction_by_hand():
    pred, target, mask = _two_images()
    pooled = normal_metrics(pred, target, mask)
    per_image = normal_metrics(pred, target, mask, reduction="image")
    assert pooled["mean"] == pytest.approx((10 + 4 * 30) / 5, rel=1e-12)
    assert per_image["mean"] == pytest.approx((10 + 30) / 2, rel=1e-12)
    assert pooled["median"] == pytest.approx(30.0, rel=1e-6)
    assert per_image["median"] == pytest.approx(20.0, rel=1e-12)
    assert pooled["rmse"] == pytest.approx(math.sqrt((100 + 4 * 900) / 5), rel=1e-12)
    assert per_image["rmse"] == pytest.approx(20.0, rel=1e-12)
    assert pooled["within_22.5"] == pytest.approx(100 * 1 / 5)
    assert per_image["within_22.5"] == pytest.approx((100 + 0) / 2)
    assert pooled["valid_pixels"] == per_image["valid_pixels"] == 5
    assert pooled["images"] == per_image["images"] == 2


def test_per_image_results_and_images_without_pixels():
    pred, target, mask = _two_images()
    metric = NormalMetrics(reduction="image")
    metric.update(pred, target, mask)
    metric.update(pred[:1], target[:1], torch.zeros(1, 2, 2, dtype=torch.bool))
    rows = metric.per_image()
    assert [r["valid_pixels"] for r in rows] == [1, 4, 0]
    assert rows[0]["mean"] == pytest.approx(10.0) and rows[1]["median"] == pytest.approx(30.0)
    assert all(math.isnan(v) for k, v in rows[2].items() if k != "valid_pixels")
    got = metric.compute()  # the empty image does not count
    assert got["mean"] == pytest.approx(20.0) and got["images"] == 2


@pytest.mark.parametrize("theta", [1.0, 12.5, 60.0])
def test_rotated_normals_score_the_rotation_angle(theta):
    rng = np.random.default_rng(3)
    target = rng.normal(size=(2, 5, 7, 3))
    target /= np.linalg.norm(target, axis=-1, keepdims=True)
    t = np.radians(theta)
    rotation = np.array([[1, 0, 0], [0, np.cos(t), -np.sin(t)], [0, np.sin(t), np.cos(t)]])
    # Rotating about x moves every normal by theta only if it is perpendicular to x.
    target[..., 0] = 0.0
    target /= np.linalg.norm(target, axis=-1, keepdims=True)
    pred = target @ rotation.T
    for reduction in ("pixel", "image"):
        got = normal_metrics(torch.from_numpy(pred), torch.from_numpy(target), reduction=reduction)
        assert got["mean"] == pytest.approx(theta, rel=1e-9)
        assert got["median"] == pytest.approx(theta, rel=1e-6)


def test_convert_normals_axes():
    up_toward = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])  # OpenGL: up; toward the camera
    assert np.array_equal(convert_normals(up_toward, "opengl", "opencv"), [[0, -1, 0], [0, 0, -1]])
    assert np.array_equal(convert_normals(up_toward, "opengl", "dsine"), [[0, -1, 0], [0, 0, 1]])
    assert np.array_equal(convert_normals(up_toward, "dsine", "opencv"), [[0, 1, 0], [0, 0, -1]])
    n = torch.randn(4, 3, 2, 2, dtype=torch.float64)
    back = convert_normals(
        convert_normals(n, "opencv", "dsine", channel_dim=1), "dsine", "opencv", channel_dim=1
    )
    assert torch.equal(back, n)
    with pytest.raises(ValueError, match="src"):
        convert_normals(up_toward, "blender", "opengl")
    with pytest.raises(ValueError, match="3 components"):
        convert_normals(np.zeros((2, 4)), "opengl", "dsine")


def test_frames_convert_the_prediction_to_the_targets_frame():
    rng = np.random.default_rng(4)
    target_dsine = rng.normal(size=(1, 4, 5, 3))
    pred_opengl = torch.from_numpy(convert_normals(target_dsine, "dsine", "opengl"))
    target_dsine = torch.from_numpy(target_dsine)
    # Read in the right frames, the prediction is perfect ...
    got = normal_metrics(pred_opengl, target_dsine, frame="dsine", pred_frame="opengl")
    assert got["mean"] == pytest.approx(0.0, abs=1e-6)
    # ... and read as if both were in one frame, the y flip is an error.
    assert normal_metrics(pred_opengl, target_dsine)["mean"] > 10
    with pytest.raises(ValueError, match="pred_frame"):
        NormalMetrics(pred_frame="z-up")
    with pytest.raises(ValueError, match="reduction"):
        NormalMetrics(reduction="batch")
