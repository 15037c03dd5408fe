"""``vbkernels eval`` end to end on tiny fixtures in each preset's native layout.

Predictions are made from the ground truth with the library's own encoders, so the expected
numbers are known in closed form: the identity scores delta1 = 1 and an AbsRel within the
8-bit walk's quantisation, depth x1.1 an AbsRel of 0.1 (0 after median alignment), normals
rotated by theta a mean error of theta, swapped classes IoU 0 for the two classes.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import vbkernels
from vbkernels import cli
from vbkernels.eval import datasets, evaluate, resolve, write_fixture
from vbkernels.files import npy_bytes, png16_bytes, png_bytes, write_atomic
from vbkernels.palettes import load_palette

# Half a colour step of the walk, relative, up to 10 m is below 0.13 %; the ground truth's
# own millimetre rounding adds at most 0.1 % at 0.5 m (the fixtures' nearest depth).
QUANTISATION = 0.003


def invoke(*args):
    return CliRunner().invoke(cli.main, ["eval", *map(str, args)], catch_exceptions=False)


def write_depth_predictions(fixture, folder: Path, factor: float = 1.0, suffix=".png"):
    for sample, depth in zip(fixture.samples, fixture.values):
        rgb = vbkernels.encode_depth(torch.from_numpy(depth * factor)).numpy()
        write_atomic(folder / Path(sample.name).with_suffix(suffix), png_bytes(rgb),
                     overwrite=True)


@pytest.fixture(scope="module")
def nyu(tmp_path_factory):
    root = tmp_path_factory.mktemp("nyu")
    fixture = write_fixture("nyuv2", root / "NYU", n=2)
    write_depth_predictions(fixture, root / "gen")
    write_depth_predictions(fixture, root / "gen11", 1.1)
    return root, fixture


@pytest.fixture(scope="module")
def kitti(tmp_path_factory):
    root = tmp_path_factory.mktemp("kitti")
    fixture = write_fixture("kitti-eigen", root / "KITTI", n=2)
    write_depth_predictions(fixture, root / "gen")
    return root, fixture


def read_json(out: Path) -> dict:
    return json.loads((out / "metrics.json").read_text())


# ----------------------------------------------------------------------------- depth


def test_nyuv2_identity_writes_every_output(nyu, tmp_path):
    root, _ = nyu
    out = tmp_path / "out"
    result = invoke("depth", root / "gen", "--dataset", "nyuv2", "--gt-root", root / "NYU",
                    "-o", out, "--quiet")
    assert result.exit_code == 0, result.output
    report = read_json(out)
    assert report["count"] == {"expected": 2, "found": 2, "missing": 0, "failed": 0}
    assert report["metrics"]["delta1"] == 1.0
    assert 0 < report["metrics"]["abs_rel"] < QUANTISATION
    assert report["settings"]["crop"] == "eigen" and report["settings"]["align"] == "none"
    assert "| nyuv2 |" in (out / "metrics.md").read_text()
    rows = (out / "per_image.csv").read_text().splitlines()
    assert len(rows) == 3 and rows[0].startswith("name,") and "off_walk" in rows[0]
    assert {p.name for p in (out / "plots").iterdir()} == {"error_histogram.png", "worst.png"}


def test_nyuv2_depth_times_1_1(nyu, tmp_path):
    root, _ = nyu
    plain = evaluate("depth", [root / "gen11"], dataset="nyuv2", gt_root=root / "NYU",
                     workers=0, worst_k=0)
    assert plain.metrics["abs_rel"] == pytest.approx(0.1, abs=QUANTISATION)
    median = evaluate("depth", [root / "gen11"], dataset="nyuv2", gt_root=root / "NYU",
                      overrides={"align": "median"}, workers=0, worst_k=0)
    assert median.metrics["abs_rel"] < QUANTISATION


def test_eigen_crop_counts_only_the_crop(nyu):
    root, fixture = nyu
    result = evaluate("depth", [root / "gen"], dataset="nyuv2", gt_root=root / "NYU",
                      workers=0, worst_k=0)
    inside = sum(int(v[45:471, 41:601].sum()) for v in fixture.valid)
    assert result.metrics["valid_pixels"] == inside
    uncropped = evaluate("depth", [root / "gen"], dataset="nyuv2", gt_root=root / "NYU",
                         overrides={"crop": "none"}, workers=1, worst_k=0)
    assert uncropped.metrics["valid_pixels"] == sum(int(v.sum()) for v in fixture.valid)


def test_kitti_identity_with_kb_and_garg_crop(kitti, tmp_path):
    root, fixture = kitti
    out = tmp_path / "out"
    result = invoke("depth", root / "gen", "--dataset", "kitti-eigen", "--gt-root",
                    root / "KITTI", "--split", fixture.split, "-o", out, "--quiet")
    assert result.exit_code == 0, result.output
    report = read_json(out)
    assert report["metrics"]["delta1"] == 1.0
    assert report["metrics"]["abs_rel"] < 0.02  # sparse depths up to 79 m: coarser steps
    assert report["split_sha256"]
    expected = 0
    for valid in fixture.valid:
        h, w = valid.shape
        kb = valid[h - 352:, (w - 1216) // 2:(w - 1216) // 2 + 1216]
        expected += int(kb[int(0.40810811 * 352):int(0.99189189 * 352),
                           int(0.03594771 * 1216):int(0.96405229 * 1216)].sum())
    assert report["metrics"]["valid_pixels"] == expected


def test_a_pixel_inside_eigen_but_outside_garg(tmp_path):
    """KITTI-sized ground truth with one valid pixel at row 0.35 H (after the KB crop):
    Eigen's crop (rows from 0.3324 H) keeps it, Garg's (rows from 0.408 H) does not."""
    fixture = write_fixture("kitti-eigen", tmp_path / "K", n=1)
    raw = np.zeros((375, 1242), np.uint16)
    row = (375 - 352) + int(0.35 * 352)
    raw[row, 600] = 5 * 256
    write_atomic(fixture.samples[0].gt, png16_bytes(raw), overwrite=True)
    depth = raw.astype(np.float32) / 256
    write_atomic(tmp_path / "gen" / fixture.samples[0].name,
                 png_bytes(vbkernels.encode_depth(torch.from_numpy(depth)).numpy()),
                 overwrite=True)
    args = dict(dataset="kitti-eigen", gt_root=tmp_path / "K", workers=0, worst_k=0)
    garg = evaluate("depth", [tmp_path / "gen"], overrides={"crop": "kb+garg"}, **args)
    eigen = evaluate("depth", [tmp_path / "gen"], overrides={"crop": "kb+eigen"}, **args)
    assert garg.metrics["valid_pixels"] == 0 and garg.metrics["images"] == 0
    assert eigen.metrics["valid_pixels"] == 1 and eigen.metrics["delta1"] == 1.0


def test_an_image_under_the_minimum_valid_pixels_does_not_count(nyu):
    root, fixture = nyu
    least = min(int(v[45:471, 41:601].sum()) for v in fixture.valid)
    result = evaluate("depth", [root / "gen11"], dataset="nyuv2", gt_root=root / "NYU",
                      overrides={"min_valid_pixels": least + 1}, workers=0, worst_k=0)
    assert result.metrics["images"] == 1
    skipped = [r for r in result.per_image if not r["counted"]]
    assert len(skipped) == 1 and skipped[0]["valid_pixels"] == least


def test_npy_and_png16_predictions_score_like_the_decoded_ones(nyu, tmp_path):
    root, fixture = nyu
    for sample, depth in zip(fixture.samples, fixture.values):
        stem = Path(sample.name).with_suffix("")
        write_atomic(tmp_path / "npy" / f"{stem}.depth.npy", npy_bytes(depth * 1.1),
                     overwrite=True)
        raw = np.round(depth * 1.1 * 1000).astype(np.uint16)
        write_atomic(tmp_path / "png16" / f"{stem}.png", png16_bytes(raw), overwrite=True)
    # max_depth 20: no ground truth near the clamp, so x1.1 is exactly AbsRel 0.1
    args = dict(dataset="nyuv2", gt_root=root / "NYU", workers=0, worst_k=0,
                overrides={"max_depth": 20.0})
    npy = evaluate("depth", [tmp_path / "npy"], pred_format="npy", **args)
    png16 = evaluate("depth", [tmp_path / "png16"], pred_format="png16", **args)
    assert npy.metrics["abs_rel"] == pytest.approx(0.1, abs=1e-6)
    assert png16.metrics["abs_rel"] == pytest.approx(0.1, abs=1e-3)
    assert npy.metrics["delta1"] == 1.0


def test_colormap_painted_depth(nyu, tmp_path):
    root, fixture = nyu
    from vbkernels.colormap import encode_colormap

    for sample, depth in zip(fixture.samples, fixture.values):
        rgb = encode_colormap(torch.from_numpy(depth), "viridis", vmin=0.0, vmax=10.0)
        write_atomic(tmp_path / "cm" / sample.name, png_bytes(np.asarray(rgb)), overwrite=True)
    result = evaluate("depth", [tmp_path / "cm"], dataset="nyuv2", gt_root=root / "NYU",
                      decoder="colormap:viridis", vmin=0.0, vmax=10.0, workers=0, worst_k=0)
    assert result.metrics["delta1"] > 0.99
    assert result.metrics["abs_rel"] < 0.02  # 256 colours over 10 m: 2 cm steps


# ------------------------------------------------------------- pairing and bad inputs


def test_missing_predictions_exit_1_unless_allowed(nyu, tmp_path):
    root, fixture = nyu
    gen = tmp_path / "gen"
    write_depth_predictions(fixture, gen)
    (gen / fixture.samples[1].name).unlink()
    args = ["depth", gen, "--dataset", "nyuv2", "--gt-root", root / "NYU", "--quiet"]
    assert invoke(*args, "-o", tmp_path / "a").exit_code == 1
    assert invoke(*args, "-o", tmp_path / "b", "--allow-missing").exit_code == 0
    report = read_json(tmp_path / "a")
    assert report["count"]["missing"] == 1 and report["missing"] == [fixture.samples[1].name]
    assert report["unused"] == []
    assert report["count"]["found"] == 1


def test_an_unreadable_prediction_is_named_and_the_rest_scored(nyu, tmp_path):
    root, fixture = nyu
    gen = tmp_path / "gen"
    write_depth_predictions(fixture, gen)
    (gen / fixture.samples[0].name).write_bytes(b"not a png")
    result = invoke("depth", gen, "--dataset", "nyuv2", "--gt-root", root / "NYU", "-o",
                    tmp_path / "o", "--workers", "0")
    assert result.exit_code == 1
    assert fixture.samples[0].name in result.output
    report = read_json(tmp_path / "o")
    assert report["count"]["failed"] == 1 and report["metrics"]["images"] == 1


def test_match_stem_and_order(nyu, tmp_path):
    root, fixture = nyu
    for i, (sample, depth) in enumerate(zip(fixture.samples, fixture.values)):
        rgb = vbkernels.encode_depth(torch.from_numpy(depth)).numpy()
        write_atomic(tmp_path / "flat" / Path(sample.name).name, png_bytes(rgb), overwrite=True)
        write_atomic(tmp_path / "ordered" / f"frame_{i:03d}.png", png_bytes(rgb), overwrite=True)
    args = dict(dataset="nyuv2", gt_root=root / "NYU", workers=0, worst_k=0)
    assert evaluate("depth", [tmp_path / "flat"], match="stem", **args).count["found"] == 2
    ordered = evaluate("depth", [tmp_path / "ordered"], match="order", split=fixture.split,
                       **args)
    assert ordered.metrics["delta1"] == 1.0 and ordered.count["found"] == 2


def test_mismatched_size_without_fit_names_the_file(nyu, tmp_path):
    root, fixture = nyu
    depth, valid = fixture.values[0], fixture.valid[0]
    # holes filled from the left (a generator paints every pixel), then half the size
    left = np.maximum.accumulate(np.where(valid, np.arange(depth.shape[1]), 0), axis=1)
    filled = np.take_along_axis(depth, left, axis=1)
    small = vbkernels.encode_depth(torch.from_numpy(filled[::2, ::2].copy()))
    write_atomic(tmp_path / "gen" / fixture.samples[0].name, png_bytes(small.numpy()),
                 overwrite=True)
    result = invoke("depth", tmp_path / "gen", "--dataset", "nyuv2", "--gt-root", root / "NYU",
                    "-o", tmp_path / "o", "--allow-missing", "--workers", "0")
    assert result.exit_code == 1
    assert fixture.samples[0].name in result.output and "--fit" in result.output
    fitted = evaluate("depth", [tmp_path / "gen"], dataset="nyuv2", gt_root=root / "NYU",
                      overrides={"fit": "resize"}, workers=0, worst_k=0)
    assert fitted.count["failed"] == 0 and fitted.metrics["delta1"] > 0.99


def test_letterboxed_prediction_is_cut_before_resizing(nyu, tmp_path):
    root, fixture = nyu
    depth = fixture.values[0]
    square = np.zeros((640, 640), np.float32)
    square[80:560] = depth  # 480 rows centred in a 640 x 640 frame
    write_atomic(tmp_path / "gen" / fixture.samples[0].name,
                 png_bytes(vbkernels.encode_depth(torch.from_numpy(square)).numpy()),
                 overwrite=True)
    result = evaluate("depth", [tmp_path / "gen"], dataset="nyuv2", gt_root=root / "NYU",
                      overrides={"fit": "letterbox", "resize": "nearest"}, workers=0,
                      worst_k=0)
    assert result.metrics["delta1"] == 1.0 and result.metrics["abs_rel"] < QUANTISATION


@pytest.mark.parametrize("args, message", [
    (["--dataset", "nyu"], "dataset must be one of"),
    (["--split", "nope.txt"], "nope.txt"),
])
def test_bad_arguments_are_clear_errors(nyu, tmp_path, args, message):
    root, _ = nyu
    base = {"--dataset": "nyuv2", "--gt-root": root / "NYU"}
    pairs = dict(zip(args[::2], args[1::2]))
    merged = [x for k, v in {**base, **pairs}.items() for x in (k, v)]
    result = invoke("depth", root / "gen", *merged, "-o", tmp_path / "o")
    assert result.exit_code == 1 and message in result.output
    assert "Traceback" not in result.output and not (tmp_path / "o").exists()


def test_split_line_with_missing_ground_truth_names_the_line(nyu, tmp_path):
    root, fixture = nyu
    split = tmp_path / "split.txt"
    split.write_text(fixture.split.read_text() + "test/x/rgb_9.png test/x/depth_9.png\n")
    result = invoke("depth", root / "gen", "--dataset", "nyuv2", "--gt-root", root / "NYU",
                    "--split", split, "-o", tmp_path / "o")
    assert result.exit_code == 1 and f"{split}:3" in result.output
    assert "depth_9.png" in result.output


def test_wrong_ground_truth_units_name_the_file(tmp_path):
    fixture = write_fixture("nyuv2", tmp_path / "NYU", n=1)
    eight_bit = np.clip(fixture.values[0] * 25, 0, 255).astype(np.uint8)
    write_atomic(fixture.samples[0].gt, png_bytes(eight_bit), overwrite=True)
    write_depth_predictions(fixture, tmp_path / "gen")
    result = invoke("depth", tmp_path / "gen", "--dataset", "nyuv2", "--gt-root",
                    tmp_path / "NYU", "-o", tmp_path / "o", "--workers", "0")
    assert result.exit_code == 1
    assert str(fixture.samples[0].gt) in result.output and "16-bit" in result.output


# --------------------------------------------------------------------------- normals


def rotate_each(normals: np.ndarray, theta_deg: float) -> np.ndarray:
    """Every normal turned by exactly theta, about an axis perpendicular to it."""
    n = normals.astype(np.float64)
    axis = np.cross(n, np.array([1.0, 0.0, 0.0]))
    axis /= np.linalg.norm(axis, axis=-1, keepdims=True)
    t = math.radians(theta_deg)
    # Rodrigues with axis . n = 0: n cos t + (axis x n) sin t
    return n * math.cos(t) + np.cross(axis, n) * math.sin(t)


@pytest.mark.parametrize("theta", [0.0, 15.0])
def test_dsine_normals_rotated_by_theta(tmp_path, theta):
    fixture = write_fixture("nyuv2-normals", tmp_path / "DSINE", n=3)
    flip = np.array([1.0, -1.0, 1.0])  # DSINE's frame -> OpenGL's (what the generator paints)
    for sample, normals in zip(fixture.samples, fixture.values):
        turned = rotate_each(normals, theta) * flip
        rgb = vbkernels.encode_normals(torch.from_numpy(turned.astype(np.float32))).numpy()
        write_atomic(tmp_path / "gen" / sample.name, png_bytes(rgb), overwrite=True)
    out = tmp_path / "out"
    result = invoke("normals", tmp_path / "gen", "--dataset", "nyuv2-normals", "--gt-root",
                    tmp_path / "DSINE", "-o", out, "--quiet")
    assert result.exit_code == 0, result.output
    report = read_json(out)
    assert report["settings"]["gt_frame"] == "dsine"
    assert report["metrics"]["mean"] == pytest.approx(theta, abs=0.5)  # 8-bit colours
    assert report["metrics"]["valid_pixels"] == sum(int(v.sum()) for v in fixture.valid)


# ---------------------------------------------------------------------- segmentation


def write_label_predictions(fixture, folder: Path, palette, mapping=None):
    for sample, labels in zip(fixture.samples, fixture.values):
        shown = labels.copy()
        if mapping:
            for a, b in mapping.items():
                shown[labels == a] = b
        shown[shown == 255] = 0  # the generator paints every pixel with some class
        rgb = vbkernels.encode_segmentation(torch.from_numpy(shown), palette.colors).numpy()
        write_atomic(folder / sample.name, png_bytes(rgb), overwrite=True)


def test_cityscapes_from_label_ids_identity_and_swapped(tmp_path):
    fixture = write_fixture("cityscapes", tmp_path / "CS", n=2)
    palette = load_palette("cityscapes")
    write_label_predictions(fixture, tmp_path / "same", palette)
    write_label_predictions(fixture, tmp_path / "swap", palette, {0: 1, 1: 0})
    out = tmp_path / "out"
    result = invoke("seg", tmp_path / "same", "--dataset", "cityscapes", "--gt-root",
                    tmp_path / "CS", "-o", out, "--quiet")
    assert result.exit_code == 0, result.output
    assert read_json(out)["metrics"]["miou"] == 1.0
    assert (out / "plots" / "confusion.png").exists()
    swapped = evaluate("seg", [tmp_path / "swap"], dataset="cityscapes",
                       gt_root=tmp_path / "CS", workers=0, worst_k=0)
    present = sorted({int(x) for v in fixture.values for x in np.unique(v) if x != 255})
    iou = swapped.metrics["iou"]
    assert iou[0] == 0.0 and iou[1] == 0.0
    assert all(iou[c] == 1.0 for c in present if c > 1)
    assert swapped.metrics["miou"] == pytest.approx((len(present) - 2) / len(present))


def test_cityscapes_label_id_without_train_id_is_ignored(tmp_path):
    """labelId 4 ('static') has no train id: ignored however it is predicted; labelId 7
    ('road') is train id 0."""
    fixture = write_fixture("cityscapes", tmp_path / "CS", n=1, size=(4, 4))
    ids = np.full((4, 4), 7, np.uint8)
    ids[0, 0] = 4
    write_atomic(fixture.samples[0].gt, png_bytes(ids), overwrite=True)
    labels, valid = datasets.read_ground_truth(fixture.preset, fixture.samples[0])
    assert labels[0, 0] == 255 and not valid[0, 0] and (labels.ravel()[1:] == 0).all()
    palette = load_palette("cityscapes")
    pred = np.full((4, 4), 0, np.int64)
    pred[0, 0] = 5  # wrong, but on an ignored pixel
    rgb = vbkernels.encode_segmentation(torch.from_numpy(pred), palette.colors).numpy()
    write_atomic(tmp_path / "gen" / fixture.samples[0].name, png_bytes(rgb), overwrite=True)
    result = evaluate("seg", [tmp_path / "gen"], dataset="cityscapes", gt_root=tmp_path / "CS",
                      workers=0, worst_k=0)
    assert result.metrics["miou"] == 1.0 and result.metrics["pixel_accuracy"] == 1.0


def test_label_train_ids_are_accepted(tmp_path):
    fixture = write_fixture("cityscapes", tmp_path / "CS", n=1)
    gt = fixture.samples[0].gt
    train = Path(str(gt).replace("_labelIds.png", "_labelTrainIds.png"))
    write_atomic(train, png_bytes(fixture.values[0].astype(np.uint8)), overwrite=True)
    gt.unlink()
    samples = datasets.list_samples(fixture.preset, tmp_path / "CS")
    assert [s.gt for s in samples] == [train]
    labels, _ = datasets.read_ground_truth(fixture.preset, samples[0])
    np.testing.assert_array_equal(labels, fixture.values[0])


def test_ade20k_label_0_is_ignored_and_1_is_class_0(tmp_path):
    fixture = write_fixture("ade20k", tmp_path / "ADE", n=1, size=(2, 2))
    raw = np.array([[0, 1], [1, 2]], np.uint8)
    write_atomic(fixture.samples[0].gt, png_bytes(raw), overwrite=True)
    labels, valid = datasets.read_ground_truth(fixture.preset, fixture.samples[0])
    np.testing.assert_array_equal(labels, [[255, 0], [0, 1]])
    np.testing.assert_array_equal(valid, [[False, True], [True, True]])
    palette = load_palette("ade20k")
    pred = np.array([[3, 0], [0, 1]])  # the 'other' pixel's prediction does not count
    rgb = vbkernels.encode_segmentation(torch.from_numpy(pred), palette.colors).numpy()
    write_atomic(tmp_path / "gen" / "images/validation/ADE_val_00000001.png", png_bytes(rgb),
                 overwrite=True)
    result = evaluate("seg", [tmp_path / "gen"], dataset="ade20k", gt_root=tmp_path / "ADE",
                      workers=0, worst_k=0)
    assert result.metrics["miou"] == 1.0 and result.metrics["pixel_accuracy"] == 1.0


def test_ade20k_identity(tmp_path):
    fixture = write_fixture("ade20k", tmp_path / "ADE", n=2)
    write_label_predictions(fixture, tmp_path / "gen", load_palette("ade20k"))
    out = tmp_path / "out"
    result = invoke("seg", tmp_path / "gen", "--dataset", "ade20k", "--gt-root",
                    tmp_path / "ADE", "-o", out, "--quiet", "--workers", "0")
    assert result.exit_code == 0, result.output
    report = read_json(out)
    assert report["metrics"]["miou"] == 1.0 and report["count"]["found"] == 2
    assert report["settings"]["protocol"] == "mmseg"
    assert "| ade20k | 100.00 |" in (out / "metrics.md").read_text()  # aAcc in %


# ------------------------------------------------------------------------- protocols


def test_protocol_settings_and_overrides():
    zoe = resolve("depth", "kitti-eigen", "zoedepth")
    assert (zoe.align, zoe.crop, zoe.max_depth, zoe.range) == ("none", "kb+garg", 80.0,
                                                               "strict")
    assert resolve("depth", "nyuv2", "marigold").align == "lstsq-affine"
    assert resolve("depth", "nyuv2", "depth-anything-v2").range == "inclusive"
    assert resolve("depth", "nyuv2", "zoedepth", align="median").align == "median"
    assert resolve("seg", "cityscapes").protocol == "cityscapes"
    with pytest.raises(ValueError, match="align must be one of"):
        resolve("depth", "nyuv2", align="mean")
    with pytest.raises(ValueError, match="scores normals"):
        resolve("depth", "nyuv2", "dsine")
    with pytest.raises(ValueError, match="depth only"):
        resolve("normals", "nyuv2-normals", align="median")
    with pytest.raises(ValueError, match="reduction must be pixel"):
        resolve("seg", "ade20k", reduction="image")


# ------------------------------------------------------------------------ micro-cases


def test_strict_vs_inclusive_range(tmp_path):
    """Ground truth of exactly 10.000 m (NYUv2's max_depth): out under the strict range
    (0.001 < g < 10), in under the inclusive one (Depth Anything V2)."""
    fixture = write_fixture("nyuv2", tmp_path / "NYU", n=1)
    raw = np.full((480, 640), 5000, np.uint16)
    raw[100, 100:103] = 10000
    write_atomic(fixture.samples[0].gt, png16_bytes(raw), overwrite=True)
    pred = raw.astype(np.float32) / 1000
    write_atomic(tmp_path / "pred" / "test/scene_00/rgb_0000.npy", npy_bytes(pred),
                 overwrite=True)
    args = dict(dataset="nyuv2", gt_root=tmp_path / "NYU", pred_format="npy", workers=0,
                worst_k=0)
    strict = evaluate("depth", [tmp_path / "pred"], overrides={"range": "strict"}, **args)
    inclusive = evaluate("depth", [tmp_path / "pred"], overrides={"range": "inclusive"}, **args)
    in_crop = 426 * 560
    assert strict.metrics["valid_pixels"] == in_crop - 3
    assert inclusive.metrics["valid_pixels"] == in_crop


def test_pooled_vs_per_image_normals(tmp_path):
    """Image A: one valid pixel, wrong by theta; image B: three valid pixels, exact. Pooled
    over pixels the mean is theta / 4, per image then over images theta / 2."""
    fixture = write_fixture("nyuv2-normals", tmp_path / "D", n=2, size=(2, 2))
    up = np.array([128, 128, 255], np.uint8)  # DSINE PNG colour of (almost) +z
    a = np.zeros((2, 2, 3), np.uint8)
    a[0, 0] = up
    b = np.tile(up, (2, 2, 1))
    b[1, 1] = 0  # black: not valid
    for sample, image in zip(fixture.samples, (a, b)):
        write_atomic(sample.gt, png_bytes(image), overwrite=True)
    g = up.astype(np.float64) / 255 * 2 - 1
    wrong = np.array([1.0, 0.0, 0.0])
    theta = np.degrees(np.arccos(g @ wrong / np.linalg.norm(g)))
    preds = [np.tile(g, (2, 2, 1)), np.tile(g, (2, 2, 1))]
    preds[0][0, 0] = wrong
    for sample, pred in zip(fixture.samples, preds):
        write_atomic(tmp_path / "pred" / Path(sample.name).with_suffix(".npy"),
                     npy_bytes(pred.astype(np.float32)), overwrite=True)
    args = dict(dataset="nyuv2-normals", gt_root=tmp_path / "D", pred_format="npy",
                pred_frame="dsine", workers=0, worst_k=0)
    pooled = evaluate("normals", [tmp_path / "pred"], overrides={"reduction": "pixel"}, **args)
    per_image = evaluate("normals", [tmp_path / "pred"], overrides={"reduction": "image"},
                         **args)
    assert pooled.metrics["mean"] == pytest.approx(theta / 4, abs=1e-4)
    assert per_image.metrics["mean"] == pytest.approx(theta / 2, abs=1e-4)


# -------------------------------------------------------------- the other presets


@pytest.mark.parametrize("name", ["scannet", "ibims", "diode", "eth3d"])
def test_other_depth_presets_identity(tmp_path, name):
    fixture = write_fixture(name, tmp_path / "GT", n=2)
    for sample, depth, valid in zip(fixture.samples, fixture.values, fixture.valid):
        pred = np.where(valid, depth, 1.0).astype(np.float32)
        write_atomic(tmp_path / "pred" / Path(sample.name).with_suffix(".npy"),
                     npy_bytes(pred), overwrite=True)
    result = evaluate("depth", [tmp_path / "pred"], dataset=name, gt_root=tmp_path / "GT",
                      pred_format="npy", workers=0, worst_k=0)
    assert result.count == {"expected": 2, "found": 2, "missing": 0, "failed": 0}
    assert result.metrics["abs_rel"] == pytest.approx(0, abs=1e-6)
    lo, hi = datasets.get_preset(name).depth_range
    expected = sum(int((v & (d > lo) & (d < (hi or np.inf))).sum())
                   for v, d in zip(fixture.valid, fixture.values))
    assert result.metrics["valid_pixels"] == expected > 0


def test_diode_indoors_and_outdoor_split_the_all_set(tmp_path):
    fixture = write_fixture("diode", tmp_path / "DIODE", n=4)
    write_npy_depth = {s.name: d for s, d in zip(fixture.samples, fixture.values)}
    for name, depth in write_npy_depth.items():
        write_atomic(tmp_path / "pred" / Path(name).with_suffix(".npy"), npy_bytes(depth),
                     overwrite=True)
    counts = {}
    for preset in ("diode", "diode-indoors", "diode-outdoor"):
        result = evaluate("depth", [tmp_path / "pred"], dataset=preset,
                          gt_root=tmp_path / "DIODE", pred_format="npy", workers=0, worst_k=0,
                          match="path")
        counts[preset] = result.count["expected"]
        assert result.count["missing"] == 0 and result.metrics["delta1"] == 1.0
    assert counts == {"diode": 4, "diode-indoors": 2, "diode-outdoor": 2}


def test_folder_preset_by_stem_with_masks(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(2):
        depth = rng.uniform(1, 5, (6, 8)).astype(np.float32)
        mask = np.ones((6, 8), np.uint8)
        mask[0] = 0
        write_atomic(tmp_path / "gt" / "deep" / f"img{i}.npy", npy_bytes(depth), overwrite=True)
        write_atomic(tmp_path / "gt" / "deep" / f"img{i}.mask.png", png_bytes(mask),
                     overwrite=True)
        write_atomic(tmp_path / "pred" / f"img{i}.depth.npy", npy_bytes(depth * 1.1),
                     overwrite=True)
    preset = datasets.folder_preset("depth", gt_suffix=".npy", mask_suffix=".mask.png")
    result = evaluate("depth", [tmp_path / "pred"], dataset=preset, gt_root=tmp_path / "gt",
                      pred_format="npy", workers=0, worst_k=0)
    assert result.count["found"] == 2
    assert result.metrics["valid_pixels"] == 2 * 5 * 8
    assert result.metrics["abs_rel"] == pytest.approx(0.1, abs=1e-6)


# --------------------------------------------------------------------------- suite


def test_suite_writes_runs_and_the_average_row(nyu, kitti, tmp_path):
    (nyu_root, _), (kitti_root, _) = nyu, kitti
    config = tmp_path / "suite.toml"
    config.write_text(f"""
[defaults]
task = "depth"
protocol = "zoedepth"

[[run]]
name = "NYUv2"
dataset = "nyuv2"
gt_root = "{nyu_root / 'NYU'}"
predictions = ["{nyu_root / 'gen11'}"]
worst_k = 0

[[run]]
name = "KITTI"
dataset = "kitti-eigen"
gt_root = "{kitti_root / 'KITTI'}"
predictions = ["{kitti_root / 'gen'}"]
worst_k = 0
""")
    out = tmp_path / "out"
    result = CliRunner().invoke(cli.main, ["eval", "suite", str(config), "-o", str(out)],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "suite.json").read_text())
    runs = {r["name"]: r["metrics"] for r in report["runs"]}
    average = report["averages"][0]
    assert average["name"] == "2-dataset average"
    assert average["metrics"]["abs_rel"] == pytest.approx(
        (runs["NYUv2"]["abs_rel"] + runs["KITTI"]["abs_rel"]) / 2)
    assert "2-dataset average" in (out / "suite.md").read_text()
    assert (out / "NYUv2" / "metrics.json").exists() and (out / "KITTI" / "per_image.csv").exists()


def test_e2e_benchmark_eval_rows_run_on_two_frames():
    """The benchmark's eval code path (no figures checked: timing never decides a test)."""
    from vbkernels.benchmark import e2e

    rows = e2e.time_eval(2, log=lambda _: None)
    assert set(rows) == {"eval depth nyuv2 (2 640x480 frames)",
                         "decode pipeline, same 2 frames"}
    assert all(fps > 0 for fps in rows.values())


@pytest.mark.parametrize("resize", ["nearest", "logits"])
def test_segmentation_generated_at_twice_the_size(tmp_path, resize):
    """Labels painted at 2x: --fit resize with nearest labels or resized palette logits."""
    fixture = write_fixture("cityscapes", tmp_path / "CS", n=2)
    palette = load_palette("cityscapes")
    for sample, labels in zip(fixture.samples, fixture.values):
        big = np.where(labels == 255, 0, labels).repeat(2, 0).repeat(2, 1)
        rgb = vbkernels.encode_segmentation(torch.from_numpy(big), palette.colors).numpy()
        write_atomic(tmp_path / "gen" / sample.name, png_bytes(rgb), overwrite=True)
    result = evaluate("seg", [tmp_path / "gen"], dataset="cityscapes", gt_root=tmp_path / "CS",
                      overrides={"fit": "resize", "resize": resize}, workers=0, worst_k=1)
    assert result.count["failed"] == 0 and result.metrics["miou"] == 1.0
    assert result.worst and result.worst[0][2].shape == (48, 64)


def test_match_order_pairs_video_frame_i_with_split_line_i(tmp_path):
    av = pytest.importorskip("av")
    fixture = write_fixture("scannet", tmp_path / "SN", n=3)
    with av.open(str(tmp_path / "clip.mp4"), mode="w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv444p"
        stream.options = {"crf": "0"}
        for i, depth in enumerate(fixture.values):  # frame i: depth x (1 + 0.1 i)
            rgb = vbkernels.encode_depth(torch.from_numpy(depth * (1 + 0.1 * i))).numpy()
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    result = evaluate("depth", [tmp_path / "clip.mp4"], dataset="scannet",
                      gt_root=tmp_path / "SN", split=fixture.split, match="order", workers=0,
                      worst_k=0, overrides={"max_depth": 20.0})
    assert result.count == {"expected": 3, "found": 3, "missing": 0, "failed": 0}
    assert [r["name"] for r in result.per_image] == [s.name for s in fixture.samples]
    for i, row in enumerate(result.per_image):
        assert row["abs_rel"] == pytest.approx(0.1 * i, abs=0.02)  # RGB -> YUV rounding


def test_dsine_split_lists_only_the_rgb_path(tmp_path):
    """DSINE's split/test.txt holds one path a line (test/000000_img.png): the ground truth
    is the _normal.png beside it."""
    fixture = write_fixture("nyuv2-normals", tmp_path / "nyuv2", n=2)
    split = tmp_path / "test.txt"
    split.write_text("".join(f"{s.name}\n" for s in fixture.samples))
    samples = datasets.list_samples(fixture.preset, tmp_path / "nyuv2", split)
    assert [s.gt for s in samples] == [s.gt for s in fixture.samples]
    assert samples[0].name == "test/000000_img.png"


def test_eth3d_marigold_layout_maps_depth_to_rgb():
    rgb = datasets.get_preset("eth3d").rgb_from_gt
    assert rgb("depth/office_dslr_depth/office/ground_truth_depth/dslr_images/DSC_0219.JPG") \
        == "rgb/office/images/dslr_images/DSC_0219.JPG"
    assert rgb("office/ground_truth_depth/dslr_images/DSC_0219.JPG") \
        == "office/images/dslr_images/DSC_0219.JPG"


def test_eval_is_registered_and_a_bad_suite_file_is_named(tmp_path):
    assert "eval" in CliRunner().invoke(cli.main, ["--help"]).output
    config = tmp_path / "suite.toml"
    config.write_text('[[run]]\nname = "x"\ntask = "depth"\ndataset = "nyuv2"\n'
                      'gt_root = "NYU"\npredictions = ["gen"]\nalign = "median"\ncolour = 1\n')
    result = invoke("suite", config, "-o", tmp_path / "out")
    assert result.exit_code == 1 and str(config) in result.output and "colour" in result.output
    config.write_text("[[run]\n")
    result = invoke("suite", config, "-o", tmp_path / "out")
    assert result.exit_code == 1 and "cannot read the suite file" in result.output


def test_normals_generated_at_twice_the_size_are_resized_and_renormalised(tmp_path):
    fixture = write_fixture("nyuv2-normals", tmp_path / "D", n=1, size=(12, 16))
    normals = fixture.values[0] * np.array([1, -1, 1], np.float32)  # to OpenGL
    big = normals.repeat(2, 0).repeat(2, 1)
    rgb = vbkernels.encode_normals(torch.from_numpy(big)).numpy()
    write_atomic(tmp_path / "gen" / fixture.samples[0].name, png_bytes(rgb), overwrite=True)
    result = evaluate("normals", [tmp_path / "gen"], dataset="nyuv2-normals",
                      gt_root=tmp_path / "D", overrides={"fit": "resize"}, workers=0,
                      worst_k=0)
    # bilinear blends of 2x2 blocks: under a degree where neighbours agree, more elsewhere
    assert result.metrics["median"] < 1.0 and result.count["failed"] == 0


def test_center_crop_scores_only_the_region_the_generator_saw(tmp_path):
    fixture = write_fixture("scannet", tmp_path / "SN", n=1)  # 48 x 64 ground truth
    depth, valid = fixture.values[0], fixture.valid[0]
    square = depth[:, 8:56]  # the generator saw the centred 48 x 48
    write_atomic(tmp_path / "pred" / "scene0000_00/color/000000.npy", npy_bytes(square),
                 overwrite=True)
    result = evaluate("depth", [tmp_path / "pred"], dataset="scannet", gt_root=tmp_path / "SN",
                      pred_format="npy", overrides={"fit": "center-crop"}, workers=0,
                      worst_k=0)
    assert result.metrics["valid_pixels"] == int(valid[:, 8:56].sum())
    assert result.metrics["abs_rel"] == pytest.approx(0, abs=1e-7)


def test_off_walk_share_counts_pixels_far_from_the_walk(tmp_path):
    fixture = write_fixture("scannet", tmp_path / "SN", n=1)
    rgb = vbkernels.encode_depth(torch.from_numpy(fixture.values[0])).numpy()
    rgb[:6] = 128  # mid-grey: far from every edge of the cube walk
    write_atomic(tmp_path / "gen" / "scene0000_00/color/000000.png", png_bytes(rgb),
                 overwrite=True)
    result = evaluate("depth", [tmp_path / "gen"], dataset="scannet", gt_root=tmp_path / "SN",
                      workers=0, worst_k=0)
    assert result.per_image[0]["off_walk"] == pytest.approx(6 / 48)


def test_kitti_predictions_made_from_the_kb_cropped_rgb(kitti, tmp_path):
    root, fixture = kitti
    for sample, depth in zip(fixture.samples, fixture.values):
        h, w = depth.shape
        cropped = depth[h - 352:, (w - 1216) // 2:(w - 1216) // 2 + 1216]
        write_atomic(tmp_path / "pred" / Path(sample.name).with_suffix(".npy"),
                     npy_bytes(np.ascontiguousarray(cropped)), overwrite=True)
    full = evaluate("depth", [root / "gen"], dataset="kitti-eigen", gt_root=root / "KITTI",
                    workers=0, worst_k=0)
    cut = evaluate("depth", [tmp_path / "pred"], dataset="kitti-eigen", gt_root=root / "KITTI",
                   pred_format="npy", workers=0, worst_k=0)
    assert cut.count["failed"] == 0 and cut.metrics["abs_rel"] == pytest.approx(0, abs=1e-7)
    assert cut.metrics["valid_pixels"] == full.metrics["valid_pixels"]


def test_logits_resize_differs_from_nearest_labels(tmp_path):
    """Columns alternating red, blue (2x wide) over ground truth of purple, the class half
    way between: resized logits average red's and blue's and pick purple; nearest labels
    pick the blue columns."""
    palette = tmp_path / "rgb3.csv"
    palette.write_text("# ignore_index: 255\n# ignore_color: 0,255,0\nname,r,g,b\n"
                       "red,255,0,0\nblue,0,0,255\npurple,128,0,128\n")
    write_atomic(tmp_path / "gt" / "a.png", png_bytes(np.full((4, 4), 2, np.uint8)),
                 overwrite=True)
    rgb = np.zeros((4, 8, 3), np.uint8)
    rgb[:, 0::2, 0] = 255
    rgb[:, 1::2, 2] = 255
    write_atomic(tmp_path / "gen" / "a.png", png_bytes(rgb), overwrite=True)
    preset = datasets.folder_preset("seg", num_classes=3, palette=str(palette))
    scores = {}
    for resize in ("logits", "nearest"):
        result = evaluate("seg", [tmp_path / "gen"], dataset=preset, gt_root=tmp_path / "gt",
                          overrides={"fit": "resize", "resize": resize}, workers=0, worst_k=0)
        scores[resize] = result.metrics["pixel_accuracy"]
    assert scores == {"logits": 1.0, "nearest": 0.0}


def test_error_histogram_counts_valid_pixels_in_range(nyu):
    root, fixture = nyu
    result = evaluate("depth", [root / "gen11"], dataset="nyuv2", gt_root=root / "NYU",
                      workers=0, worst_k=0)
    counts = np.asarray(result.histogram["counts"])
    assert counts.sum() == sum(int(v[45:471, 41:601].sum()) for v in fixture.valid)
    peak = (np.argmax(counts) + 0.5) / len(counts) - 0.5  # bin centre, ln(p / g)
    assert peak == pytest.approx(math.log(1.1), abs=0.01)


def test_progress_counts_every_paired_image(nyu, tmp_path):
    root, fixture = nyu
    gen = tmp_path / "gen"
    write_depth_predictions(fixture, gen)
    (gen / fixture.samples[0].name).write_bytes(b"not a png")  # a failed one counts too
    calls = []
    evaluate("depth", [gen], dataset="nyuv2", gt_root=root / "NYU", workers=0, worst_k=0,
             batch_size=1, progress=lambda done, total: calls.append((done, total)))
    assert calls[0] == (0, 2) and calls[-1] == (2, 2)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
