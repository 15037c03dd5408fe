"""``vbkernels.eval`` against tests/eval_oracles.py: for each protocol, the numbers of the
whole evaluation (files in the preset's layout, pairing, crops, masks, protocol settings,
metrics) equal an independent NumPy implementation of that reference's formulas to 1e-6.

Predictions are ``.npy`` arrays (noisy, scaled and shifted ground truth) so that every
alignment has something to fit; one case decodes walk-painted PNGs instead.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import vbkernels
from tests import eval_oracles as oracles
from vbkernels import cli
from vbkernels.eval import evaluate, write_fixture
from vbkernels.files import npy_bytes, png_bytes, write_atomic

TOL = 1e-6


def filled(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Holes filled from the left, as a generator paints every pixel."""
    left = np.maximum.accumulate(np.where(valid, np.arange(values.shape[1]), 0), axis=1)
    out = np.take_along_axis(values, left[..., None] if values.ndim == 3 else left, axis=1)
    out = out.copy()
    out[out == 0] = np.median(values[valid])  # a first column that was a hole
    return out


def noisy_depth(fixture, seed=1, scale=1.15, shift=0.05):
    rng = np.random.default_rng(seed)
    preds = []
    for depth, valid in zip(fixture.values, fixture.valid):
        smooth = filled(depth, valid)
        noise = rng.uniform(0.9, 1.1, size=depth.shape)
        preds.append((smooth * scale * noise + shift).astype(np.float32))
    return preds


def write_npy(fixture, preds, folder: Path):
    for sample, pred in zip(fixture.samples, preds):
        write_atomic(folder / Path(sample.name).with_suffix(".npy"), npy_bytes(pred),
                     overwrite=True)


def assert_agrees(ours: dict, reference: dict):
    compared = 0
    for name, value in reference.items():
        if isinstance(value, (list, dict)):
            continue
        assert ours[name] == pytest.approx(value, abs=TOL), name
        compared += 1
    assert compared >= 2


@pytest.fixture(scope="module")
def nyu(tmp_path_factory):
    root = tmp_path_factory.mktemp("nyu")
    fixture = write_fixture("nyuv2", root / "NYU", n=2, seed=3)
    preds = noisy_depth(fixture)
    write_npy(fixture, preds, root / "pred")
    return root, fixture, preds


@pytest.fixture(scope="module")
def kitti(tmp_path_factory):
    root = tmp_path_factory.mktemp("kitti")
    fixture = write_fixture("kitti-eigen", root / "KITTI", n=2, seed=4)
    preds = noisy_depth(fixture, scale=1.05, shift=0.5)
    write_npy(fixture, preds, root / "pred")
    return root, fixture, preds


def run(task, root, dataset, gt, protocol, **kwargs):
    return evaluate(task, [root / "pred"], dataset=dataset, gt_root=root / gt,
                    protocol=protocol, pred_format="npy", workers=0, worst_k=0, **kwargs)


@pytest.mark.parametrize("alignment", ["lstsq-affine", "disparity-affine"])
def test_marigold_nyuv2(nyu, alignment):
    root, fixture, preds = nyu
    ours = run("depth", root, "nyuv2", "NYU", "marigold", overrides={"align": alignment})
    reference = oracles.marigold(list(zip(preds, fixture.values, fixture.valid)),
                                 min_depth=1e-3, max_depth=10.0, alignment=alignment,
                                 crop="eigen-nyu")
    assert_agrees(ours.metrics, reference)


def test_marigold_kitti_kb_and_eigen_crop(kitti):
    root, fixture, preds = kitti
    ours = run("depth", root, "kitti-eigen", "KITTI", "marigold")
    assert ours.settings.crop == "kb+eigen"
    samples = [tuple(oracles.kb_crop(x) for x in s)
               for s in zip(preds, fixture.values, fixture.valid)]
    assert ours.settings.min_depth == 1e-5  # Marigold's KITTI range
    reference = oracles.marigold(samples, min_depth=1e-5, max_depth=80.0,
                                 alignment="lstsq-affine", crop="eigen-kitti")
    assert_agrees(ours.metrics, reference)


def test_zoedepth_kitti_kb_and_garg_crop(kitti):
    root, fixture, preds = kitti
    ours = run("depth", root, "kitti-eigen", "KITTI", "zoedepth")
    samples = [tuple(oracles.kb_crop(x) for x in s)
               for s in zip(preds, fixture.values, fixture.valid)]
    reference = oracles.zoedepth(samples, min_depth=1e-3, max_depth=80.0, crop="garg")
    assert_agrees(ours.metrics, reference)


def test_zoedepth_nyuv2_on_decoded_walk_images(nyu, tmp_path):
    """The decode path through the command line: walk-painted PNGs decoded by the pipeline;
    metrics.json holds what the oracle gives on the same decoded depth."""
    root, fixture, preds = nyu
    decoded = []
    for sample, pred in zip(fixture.samples, preds):
        rgb = vbkernels.encode_depth(torch.from_numpy(pred)).numpy()
        write_atomic(tmp_path / "gen" / sample.name, png_bytes(rgb), overwrite=True)
        decoded.append(vbkernels.decode_depth(rgb))
    out = tmp_path / "out"
    result = CliRunner().invoke(cli.main, [
        "eval", "depth", str(tmp_path / "gen"), "--dataset", "nyuv2", "--gt-root",
        str(root / "NYU"), "--protocol", "zoedepth", "-o", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    ours = json.loads((out / "metrics.json").read_text())["metrics"]
    reference = oracles.zoedepth(list(zip(decoded, fixture.values, fixture.valid)),
                                 min_depth=1e-3, max_depth=10.0, crop="eigen-nyu")
    assert_agrees(ours, reference)


def test_depth_anything_v2_nyuv2(nyu):
    root, fixture, preds = nyu
    ours = run("depth", root, "nyuv2", "NYU", "depth-anything-v2")
    assert ours.settings.max_depth == 20.0  # the indoor metric models' range
    reference = oracles.depth_anything_v2(list(zip(preds, fixture.values, fixture.valid)),
                                          min_depth=1e-3, max_depth=20.0)
    assert_agrees(ours.metrics, reference)


@pytest.mark.parametrize("alignment", ["l1-affine", "l1-scale"])
def test_moge_diode(tmp_path, alignment):
    fixture = write_fixture("diode", tmp_path / "DIODE", n=2, size=(8, 12), seed=5)
    preds = noisy_depth(fixture, scale=0.7, shift=0.3)
    write_npy(fixture, preds, tmp_path / "pred")
    ours = run("depth", tmp_path, "diode", "DIODE", "moge", overrides={"align": alignment})
    reference = oracles.moge(list(zip(preds, fixture.values, fixture.valid)),
                             alignment=alignment)
    assert_agrees(ours.metrics, reference)


@pytest.mark.parametrize("reduction", ["pixel", "image"])
def test_dsine_normals(tmp_path, reduction):
    fixture = write_fixture("nyuv2-normals", tmp_path / "DSINE", n=3, seed=6)
    rng = np.random.default_rng(7)
    preds = []
    for normals in fixture.values:
        noisy = normals + rng.normal(scale=0.2, size=normals.shape)
        noisy /= np.linalg.norm(noisy, axis=-1, keepdims=True)
        preds.append((noisy * [1, -1, 1]).astype(np.float32))  # DSINE's frame -> OpenGL's
    write_npy(fixture, preds, tmp_path / "pred")
    ours = run("normals", tmp_path, "nyuv2-normals", "DSINE", "dsine",
               overrides={"reduction": reduction}, pred_frame="opengl")
    reference = oracles.dsine(list(zip(preds, fixture.values, fixture.valid)),
                              pred_frame="opengl", reduction=reduction)
    assert_agrees(ours.metrics, reference)


def test_mmseg_ade20k(tmp_path):
    fixture = write_fixture("ade20k", tmp_path / "ADE", n=3, seed=8)
    rng = np.random.default_rng(9)
    preds = [np.where(rng.random(v.shape) < 0.7, np.where(v == 255, 0, v),
                      rng.integers(0, 6, v.shape)).astype(np.int64) for v in fixture.values]
    write_npy(fixture, preds, tmp_path / "pred")
    ours = run("seg", tmp_path, "ade20k", "ADE", "mmseg")
    raw = [np.asarray(Image.open(s.gt)) for s in fixture.samples]
    reference = oracles.mmseg(list(zip(preds, raw, [None] * len(raw))), num_classes=150,
                              reduce_zero_label=True)
    assert_agrees(ours.metrics, reference)
    assert ours.metrics["iou"] == pytest.approx(reference["iou"], abs=TOL, nan_ok=True)


def test_cityscapes_from_label_ids(tmp_path):
    fixture = write_fixture("cityscapes", tmp_path / "CS", n=3, seed=10)
    rng = np.random.default_rng(11)
    preds = []
    for v in fixture.values:
        guess = rng.choice(np.array([0, 1, 2, 8, 10, 11, 13, 18, 255]), size=v.shape)
        preds.append(np.where(rng.random(v.shape) < 0.6, np.where(v == 255, 3, v),
                              guess).astype(np.int64))
    write_npy(fixture, preds, tmp_path / "pred")
    ours = run("seg", tmp_path, "cityscapes", "CS", "cityscapes")
    label_ids = [np.asarray(Image.open(s.gt)) for s in fixture.samples]
    reference = oracles.cityscapes(list(zip(preds, label_ids, [None] * len(preds))))
    assert_agrees(ours.metrics, reference)
    assert ours.metrics["category_iou"] == pytest.approx(reference["category_iou"], abs=TOL,
                                                         nan_ok=True)
