"""``vbkernels decode``: the distance outputs and the per-input warning when an input is not
the encoding the command expects (issue 24, item 2)."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import vbkernels as vb
from vbkernels import cli
from vbkernels.palettes import load_palette
from vbkernels.scenes import make_scenes


@pytest.fixture(scope="module")
def images():
    truth = make_scenes(2, 24, 32, seed=4)
    depth = truth["depth"].clamp(max=80.0)
    return {
        "depth": vb.encode_depth(truth["depth"]).numpy(),
        "normals": vb.encode_normals(truth["normals"]).numpy(),
        "seg": vb.encode_segmentation(truth["semantic"], "cityscapes").numpy(),
        "turbo": vb.encode_colormap(depth, "turbo", vmin=0, vmax=80).numpy(),
    }


def _invoke(*args):
    return CliRunner().invoke(cli.main, [str(a) for a in args], catch_exceptions=False)


def _save(folder, frames, stem="img"):
    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"{stem}{i}.png")
    return folder


@pytest.mark.parametrize("task", ["depth", "normals", "seg"])
def test_distance_output_matches_the_library(tmp_path, images, task):
    folder = _save(tmp_path / "in", images[task])
    result = _invoke("decode", task, folder, "-o", tmp_path / "out", "--outputs", "npy,distance",
                     "--workers", 0)
    assert result.exit_code == 0, result.output
    assert "warning" not in result.output
    for i, rgb in enumerate(images[task]):
        got = np.load(tmp_path / "out" / f"img{i}.{task}.distance.npy")
        if task == "depth":
            expected = vb.decode_depth(rgb, return_distance=True)[1]
        elif task == "seg":
            expected = vb.decode_segmentation(rgb, "cityscapes", return_distance=True)[1]
        else:  # distance of the colour from the sphere unit normals are painted on
            centred = rgb.astype(np.float64) - 127.5
            expected = np.abs(np.sqrt((centred ** 2).sum(-1)) - 127.5)
        assert got.dtype == np.float32 and got.shape == rgb.shape[:2]
        np.testing.assert_allclose(got, expected, atol=1e-3)


@pytest.mark.parametrize("task, wrong", [("depth", "turbo"), ("seg", "depth"),
                                         ("normals", "seg")])
def test_one_warning_per_input_far_from_the_encoding(tmp_path, images, task, wrong):
    folder = _save(tmp_path / "in", images[wrong], stem="wrong")
    _save(folder, images[task], stem="right")
    result = _invoke("decode", task, folder, "-o", tmp_path / "out", "--outputs", "npy")
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.output.splitlines() if line.startswith("warning:")]
    assert sorted(line.split(":")[1].strip() for line in warnings) == sorted(
        str(folder / f"wrong{i}.png") for i in range(2)), result.output
    assert all("median distance" in line for line in warnings)
    if task == "depth":
        assert "is this a colormap image? try `vbkernels decode colormap`" in warnings[0]


def test_a_video_far_from_the_encoding_warns_once(tmp_path, images):
    frames = np.concatenate([images["turbo"]] * 3)
    vb.encode_video(frames, tmp_path / "clip.mp4")
    result = _invoke("decode", "depth", tmp_path / "clip.mp4", "-o", tmp_path / "out",
                     "--outputs", "npy", "--batch-size", 2)
    assert result.exit_code == 0, result.output
    assert result.output.count("warning:") == 1, result.output


def test_the_python_pipeline_warns_through_warnings(tmp_path, images):
    from vbkernels.pipeline import decode_files

    folder = _save(tmp_path / "in", images["turbo"][:1])
    with pytest.warns(UserWarning, match=r"img0.png: median distance \d+/255 from the depth"):
        decode_files([folder], "depth", tmp_path / "out", workers=0, kinds="npy")
    with pytest.raises(ValueError, match="for_kinds"):  # encode without the decoded map
        vb.pipeline.build_task("seg").encode({"labels": np.zeros((2, 2), np.uint8)},
                                             ["distance"])
    assert load_palette("cityscapes").name == "cityscapes"


def test_colormap_says_its_range_and_warns_when_values_sit_at_the_ends(tmp_path, images):
    """issue 24, item 7: decode colormap used --vmin 0 --vmax 1 silently."""
    truth = make_scenes(2, 24, 32, seed=4)
    clipped = vb.encode_colormap(truth["depth"], "turbo", vmin=0, vmax=5).numpy()  # most > 5 m
    folder = _save(tmp_path / "in", clipped, stem="clipped")
    _save(folder, images["turbo"], stem="fine")  # painted over 0..80 m
    result = _invoke("decode", "colormap", folder, "-o", tmp_path / "out", "--colormap",
                     "turbo", "--vmax", 80)
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.output.splitlines() if "warning:" in line]
    assert len(warnings) == 2 and all("clipped" in line and "ends of the colormap" in line
                                      for line in warnings), result.output
    assert "vmin=0 .. vmax=80 (linear scale" in result.output
    default = _invoke("decode", "colormap", folder, "-o", tmp_path / "out2", "--colormap",
                      "turbo", "--quiet")
    assert default.exit_code == 0 and "span" not in default.output  # quiet: no summary
    default = _invoke("decode", "colormap", folder, "-o", tmp_path / "out3", "--colormap",
                      "turbo")
    assert "colormap values span vmin=0 .. vmax=1 (linear" in default.output


def test_decode_file_writes_the_distance_output(tmp_path, images):
    from vbkernels.pipeline import build_task, decode_file
    from vbkernels.pipeline.sources import Source

    folder = _save(tmp_path / "in", images["depth"][:1])
    row = decode_file(build_task("depth"), Source.from_name(folder / "img0.png"),
                      tmp_path / "out", kinds="npy,distance", device="cpu")
    assert row.status == "ok", row
    expected = vb.decode_depth(images["depth"][0], return_distance=True)[1]
    assert np.array_equal(np.load(tmp_path / "out" / "img0.depth.distance.npy"), expected)


@pytest.mark.parametrize("task", ["depth", "normals", "seg"])
def test_thresholds_separate_encoded_jpegs_from_wrong_images(task):
    """The measured gap of docs/format.md, Checking inputs, as a regression guard: encoded
    scenes after blur and JPEG q50 pass; colormap images (and the other tasks' images) warn."""
    from vbkernels.pipeline import build_task
    from vbkernels.scenes import degrade

    truth = make_scenes(3, 48, 64, seed=3)
    log_depth = truth["depth"].clamp(max=80.0).log()
    low, high = float(log_depth.min()), float(log_depth.max())
    wrong = [vb.encode_colormap(log_depth, name, vmin=low, vmax=high)
             for name in ("turbo", "viridis", "plasma", "magma", "inferno", "Spectral", "gray")]
    encoders = {"depth": lambda: vb.encode_depth(truth["depth"]),
                "normals": lambda: vb.encode_normals(truth["normals"]),
                "seg": lambda: vb.encode_segmentation(truth["semantic"], "cityscapes")}
    wrong += [encode() for name, encode in encoders.items() if name != task]
    decoder = build_task(task)

    def warnings_for(rgb):
        medians = decoder.decode(rgb)["median_distance"].numpy()
        return [decoder.warning({"median_distance": m}) for m in medians]

    assert warnings_for(degrade(encoders[task](), jpeg_quality=50)) == [None] * 3
    for rgb in wrong:
        assert all(warnings_for(rgb)), rgb.shape
