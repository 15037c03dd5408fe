"""Procedural scenes (vbkernels.scenes): ground truth that is geometrically right, and the
generator/codec degradation."""

import numpy as np
import pytest
import torch

from vbkernels.scenes import CLASS_IDS, SKY_DEPTH, degrade, make_scenes

OBJECT_CLASSES = (CLASS_IDS["person"], CLASS_IDS["car"], CLASS_IDS["truck"], CLASS_IDS["bus"])


@pytest.fixture(scope="module")
def scenes():
    return make_scenes(3, 48, 64, seed=7)


def test_shapes_dtypes_and_ranges(scenes):
    assert scenes["depth"].shape == (3, 48, 64) and scenes["depth"].dtype == torch.float32
    assert scenes["normals"].shape == (3, 48, 64, 3) and scenes["normals"].dtype == torch.float32
    assert scenes["semantic"].dtype == torch.int64 and scenes["instance"].dtype == torch.int64
    depth = scenes["depth"]
    assert torch.isfinite(depth).all() and (depth > 0).all() and depth.max() <= SKY_DEPTH
    assert torch.allclose(scenes["normals"].norm(dim=-1), torch.ones(3, 48, 64), atol=1e-5)
    assert scenes["semantic"].min() >= 0 and scenes["semantic"].max() < 19


def test_same_seed_same_scene_other_seed_other_scene():
    a, b = make_scenes(2, 16, 20, seed=3), make_scenes(2, 16, 20, seed=3)
    c = make_scenes(2, 16, 20, seed=4)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["depth"], c["depth"])


def test_instances_are_objects_numbered_without_gaps(scenes):
    is_object = torch.isin(scenes["semantic"], torch.tensor(OBJECT_CLASSES))
    assert torch.equal(scenes["instance"] > 0, is_object)
    for instance in scenes["instance"]:
        ids = torch.unique(instance).tolist()
        assert ids == list(range(len(ids)))  # 0, 1..M
    assert scenes["instance"].max() >= 1  # objects are actually visible


def test_each_instance_has_one_class(scenes):
    for semantic, instance in zip(scenes["semantic"], scenes["instance"]):
        for object_id in torch.unique(instance)[1:]:
            assert torch.unique(semantic[instance == object_id]).numel() == 1


def test_ground_is_a_plane(scenes):
    # On a plane, inverse z-depth is affine in the pixel coordinates, and the normal is
    # constant, pointing up (the camera pitch is within 10 degrees).
    v, u = torch.meshgrid(torch.arange(48.0), torch.arange(64.0), indexing="ij")
    for depth, normals, semantic in zip(scenes["depth"], scenes["normals"], scenes["semantic"]):
        road = semantic == CLASS_IDS["road"]
        assert road.sum() > 50
        design = torch.stack([u[road], v[road], torch.ones_like(u[road])], dim=1).double()
        inverse = (1 / depth[road]).double()
        coef = torch.linalg.lstsq(design, inverse[:, None]).solution
        residual = (design @ coef).squeeze(1) - inverse
        assert residual.abs().max() < 1e-5 * inverse.abs().max() + 1e-6
        ground_normal = normals[road]
        assert (ground_normal - ground_normal[0]).abs().max() < 1e-5
        assert ground_normal[0, 1] > 0.98


def test_sky_is_a_camera_facing_plane(scenes):
    sky = scenes["semantic"] == CLASS_IDS["sky"]
    assert sky.any()
    assert torch.all(scenes["depth"][sky] == SKY_DEPTH)
    assert torch.allclose(scenes["normals"][sky], torch.tensor([0.0, 0.0, 1.0]), atol=1e-6)


def test_visible_surfaces_face_the_camera(scenes):
    # The camera ray of pixel (u, v) from the centre is (u/f, -v/f, -1) with the focal
    # length f set by the horizontal fov (55..75 degrees). A visible surface has n . ray < 0,
    # i.e. n_x u - n_y v < f n_z, which must hold for the true f, so for the bound of the
    # f range that makes it weakest. A flipped normal fails it.
    n = scenes["normals"]
    v, u = torch.meshgrid(torch.arange(48.0) + 0.5 - 24, torch.arange(64.0) + 0.5 - 32,
                          indexing="ij")
    f_min, f_max = 32 / np.tan(np.radians(75) / 2), 32 / np.tan(np.radians(55) / 2)
    lhs = n[..., 0] * u - n[..., 1] * v
    bound = torch.where(n[..., 2] >= 0, f_max * n[..., 2], f_min * n[..., 2])
    assert torch.all(lhs < bound + 1e-3)
    flipped = -n
    lhs_flipped = flipped[..., 0] * u - flipped[..., 1] * v
    z = flipped[..., 2]
    bound_flipped = torch.where(z >= 0, f_max * z, f_min * z)
    assert not torch.all(lhs_flipped < bound_flipped + 1e-3)


def test_degrade_keeps_type_shape_and_stays_close():
    rgb = (make_scenes(2, 24, 30, seed=1)["normals"] * 127.5 + 127.5).round().to(torch.uint8)
    out = degrade(rgb, jpeg_quality=90, blur_sigma=0.5)
    assert out.dtype == torch.uint8 and out.shape == rgb.shape
    diff = (out.float() - rgb.float()).abs()
    # Flat regions survive nearly intact; edges (many in so small an image) carry the error.
    assert 0 < diff.mean() < 15 and diff.median() <= 3
    assert torch.equal(out, degrade(rgb, jpeg_quality=90, blur_sigma=0.5))
    arr = degrade(rgb[0].numpy(), jpeg_quality=None, blur_sigma=0)
    assert isinstance(arr, np.ndarray) and np.array_equal(arr, rgb[0].numpy())


def test_degrade_blur_preserves_flat_regions_and_softens_edges():
    rgb = torch.zeros(1, 9, 9, 3, dtype=torch.uint8)
    rgb[:, :, 5:] = 200
    out = degrade(rgb, jpeg_quality=None, blur_sigma=1.0)
    assert out[0, 4, 0, 0] == 0 and out[0, 4, 8, 0] == 200
    assert 0 < out[0, 4, 4, 0] < 200 and 0 < out[0, 4, 5, 0] < 200


def test_degrade_h264_round_trip_odd_size():
    pytest.importorskip("av")
    rgb = (make_scenes(3, 21, 27, seed=2)["normals"] * 127.5 + 127.5).round().to(torch.uint8)
    out = degrade(rgb, jpeg_quality=None, blur_sigma=0, h264=True)
    assert out.shape == rgb.shape and out.dtype == torch.uint8
    assert (out.float() - rgb.float()).abs().mean() < 12


@pytest.mark.parametrize("bad, error", [
    (torch.zeros(4, 4, 3), ValueError),            # float, not uint8
    (torch.zeros(4, 4, 4, dtype=torch.uint8), ValueError),
    ([[0, 0, 0]], TypeError),
])
def test_degrade_rejects_bad_input(bad, error):
    with pytest.raises(error, match="rgb_uint8"):
        degrade(bad)


def test_make_scenes_rejects_bad_sizes():
    with pytest.raises(ValueError, match="height"):
        make_scenes(1, -1, 4)


def test_scenes_return_the_camera_they_were_rendered_with():
    """issue 24, item 4: README examples guessed a 65-degree camera. With the scenes' own
    intrinsics, the normals implied by the depth are the true ones (to float rounding) at
    nearly every pixel; a 20 % wrong focal length is off at many."""
    import vbkernels as vb

    truth = make_scenes(2, 48, 64, seed=0)
    intrinsics, fov = truth["intrinsics"], truth["fov"]
    assert intrinsics.shape == (2, 3, 3) and fov.shape == (2,)
    assert ((55 <= fov) & (fov <= 75)).all()
    focal = 64 / 2 / torch.tan(torch.deg2rad(fov) / 2)
    torch.testing.assert_close(intrinsics[:, 0, 0], focal)
    assert intrinsics[0, :, 2].tolist() == [31.5, 23.5, 1.0]

    def share_exact(camera):
        implied = vb.normals_from_depth(truth["depth"], camera, convention="opengl")
        angle = vb.normal_consistency(implied, truth["normals"])
        return float((angle[~angle.isnan()] < 0.1).float().mean())

    assert share_exact(intrinsics) > 0.85
    assert share_exact(intrinsics * torch.tensor([[1.2, 1, 1], [1, 1.2, 1], [1, 1, 1]])) < 0.7
