"""The ``vbkernels`` command line end to end (click's CliRunner) on small generated files;
every output is checked against the library call on the same decoded pixels."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import vbkernels
from vbkernels import cli
from vbkernels.cli import io as vio
from vbkernels.cli.previews import INSTANCE_COLOURS
from vbkernels.instances import decode_instances
from vbkernels.palettes import load_palette
from vbkernels.pipeline import depth_to_png16
from vbkernels.pipeline.sources import frame_rgb
from vbkernels.scenes import make_scenes

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def encoded():
    scenes = make_scenes(3, 20, 28, seed=5)
    voc = load_palette("voc")
    semantic = scenes["semantic"] % len(voc)
    return {
        "depth": vbkernels.encode_depth(scenes["depth"]).numpy(),
        "normals": vbkernels.encode_normals(scenes["normals"]).numpy(),
        "seg": vbkernels.encode_segmentation(semantic, voc.colors).numpy(),
    }


def _invoke(*args):
    result = CliRunner().invoke(cli.main, [str(a) for a in args], catch_exceptions=False)
    return result


def _read(path):
    return np.array(Image.open(path).convert("RGB"))


def _save_images(folder, frames, suffix=".png", **save_args):
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, frame in enumerate(frames):
        path = folder / f"img{i}{suffix}"
        Image.fromarray(frame).save(path, **save_args)
        paths.append(path)
    return paths


def test_decode_depth_directory_matches_library(tmp_path, encoded):
    _save_images(tmp_path / "in", encoded["depth"])
    result = _invoke("decode", "depth", tmp_path / "in", "-o", tmp_path / "out", "--quiet",
                     "--batch-size", 2)
    assert result.exit_code == 0, result.output
    for i in range(3):
        rgb = _read(tmp_path / "in" / f"img{i}.png")
        expected = vbkernels.decode_depth(rgb)
        got = np.load(tmp_path / "out" / f"img{i}.depth.npy")
        assert got.dtype == np.float32 and np.array_equal(got, expected)
        png16 = np.asarray(Image.open(tmp_path / "out" / f"img{i}.depth.png"))
        assert png16.dtype == np.uint16 or Image.open(
            tmp_path / "out" / f"img{i}.depth.png").mode == "I;16"
        want = depth_to_png16(expected, 1000).astype(np.int64)
        assert np.array_equal(png16.astype(np.int64), want)
    assert not list((tmp_path / "out").glob(".*tmp"))


def test_depth_png16_convention():
    depth = np.array([[0.0, 1.0, 1.2344, 65.535, 65.536, np.inf, np.nan, 1.0005]], np.float32)
    assert depth_to_png16(depth, 1000).tolist() == [[0, 1000, 1234, 65535, 0, 0, 0, 1000]]
    assert depth_to_png16(np.array([2.0]), 256).tolist() == [512]  # KITTI: value / 256 = m


def test_decode_depth_lam_c_and_preview(tmp_path, encoded):
    pytest.importorskip("matplotlib")
    _save_images(tmp_path / "in", encoded["depth"][:1])
    result = _invoke("decode", "depth", tmp_path / "in" / "img0.png", "-o", tmp_path / "out",
                     "--lam", -2.5, "--c", 2, "--max-depth", 30, "--preview", "--quiet")
    assert result.exit_code == 0, result.output
    expected = vbkernels.decode_depth(encoded["depth"][0], lam=-2.5, c=2, max_depth=30)
    assert np.array_equal(np.load(tmp_path / "out" / "img0.depth.npy"), expected)
    preview = Image.open(tmp_path / "out" / "img0.depth.preview.png")
    assert preview.width > 28 and preview.height >= 20  # image plus colourbar


def test_bad_lam_is_a_usage_error(tmp_path, encoded):
    _save_images(tmp_path / "in", encoded["depth"][:1])
    result = _invoke("decode", "depth", tmp_path / "in", "-o", tmp_path / "out", "--lam", 0.5)
    assert result.exit_code == 2 and "lam" in result.output
    assert not (tmp_path / "out").exists()


def test_decode_normals_glob_opencv(tmp_path, encoded):
    _save_images(tmp_path / "in", encoded["normals"])
    result = _invoke("decode", "normals", str(tmp_path / "in" / "img[01].png"), "-o",
                     tmp_path / "out", "--convention", "opencv", "--preview", "--quiet")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "img0.normals.npy", "img0.normals.preview.png", "img1.normals.npy",
        "img1.normals.preview.png", "manifest.jsonl", "runs", "summary.json"]
    for i in range(2):
        expected = vbkernels.decode_normals(encoded["normals"][i], convention="opencv")
        assert np.array_equal(np.load(tmp_path / "out" / f"img{i}.normals.npy"), expected)
        preview = _read(tmp_path / "out" / f"img{i}.normals.preview.png")
        assert np.abs(preview.astype(int) - encoded["normals"][i].astype(int)).max() <= 1


def test_decode_seg_jpeg_with_palette(tmp_path, encoded):
    _save_images(tmp_path / "in", encoded["seg"], suffix=".jpg", quality=90)
    result = _invoke("decode", "seg", tmp_path / "in", "-o", tmp_path / "out", "--palette", "voc",
                     "--max-distance", 30, "--preview", "--quiet")
    assert result.exit_code == 0, result.output
    voc = load_palette("voc")
    for i in range(3):
        rgb = _read(tmp_path / "in" / f"img{i}.jpg")
        expected = vbkernels.decode_segmentation(rgb, voc.colors.numpy(), max_distance=30)
        labels = np.load(tmp_path / "out" / f"img{i}.seg.npy")
        assert labels.dtype == np.uint8 and np.array_equal(labels, expected)
        assert np.array_equal(np.asarray(Image.open(tmp_path / "out" / f"img{i}.seg.png")), labels)
        preview = _read(tmp_path / "out" / f"img{i}.seg.preview.png")
        preview = preview[:labels.shape[0], :labels.shape[1]]  # the legend is beside it
        void = np.tile([224, 224, 192], ((labels == 255).sum(), 1))
        assert np.array_equal(preview[labels == 255], void)


def test_decode_seg_palette_file(tmp_path):
    palette = tmp_path / "two.csv"
    palette.write_text("name,r,g,b\nbackground,0,0,0\nthing,255,255,255\n")
    image = np.zeros((6, 5, 3), np.uint8)
    image[2:, 1:] = 250
    _save_images(tmp_path / "in", [image])
    result = _invoke("decode", "seg", tmp_path / "in", "-o", tmp_path / "out", "--palette",
                     palette, "--quiet")
    assert result.exit_code == 0, result.output
    want = (image[..., 0] > 0).astype(np.uint8)
    assert np.array_equal(np.load(tmp_path / "out" / "img0.seg.npy"), want)
    bad = _invoke("decode", "seg", tmp_path / "in", "-o", tmp_path / "o2", "--palette", "nope")
    assert bad.exit_code == 2 and "palette" in bad.output


def _write_mp4(path, frames):
    av = pytest.importorskip("av")
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.options = {"crf": "18"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def test_decode_video_streams_every_frame(tmp_path, encoded):
    av = pytest.importorskip("av")
    frames = np.concatenate([encoded["depth"], encoded["depth"][::-1]])  # 6 frames, 20x28
    _write_mp4(tmp_path / "clip.mp4", frames)
    with av.open(str(tmp_path / "clip.mp4")) as container:
        decoded_frames = [frame_rgb(f) for f in container.decode(video=0)]
    result = _invoke("decode", "depth", tmp_path / "clip.mp4", "-o", tmp_path / "out",
                     "--batch-size", 4)
    assert result.exit_code == 0, result.output
    assert "6 frame(s)" in result.output
    outputs = sorted((tmp_path / "out" / "clip").glob("*.depth.npy"))
    assert [p.name for p in outputs] == [f"{i:06d}.depth.npy" for i in range(6)]
    for path, rgb in zip(outputs, decoded_frames):
        assert np.array_equal(np.load(path), vbkernels.decode_depth(rgb))


def test_bad_file_is_reported_and_the_rest_go_on(tmp_path, encoded):
    paths = _save_images(tmp_path / "in", encoded["depth"][:2])
    (tmp_path / "in" / "broken.png").write_bytes(b"this is not a png")
    result = _invoke("decode", "depth", tmp_path / "in", tmp_path / "missing.png", "-o",
                     tmp_path / "out", "--quiet")
    assert result.exit_code == 1
    assert "broken.png" in result.output and "missing.png" in result.output
    assert "2 input(s) failed" in result.output
    for path in paths:
        assert (tmp_path / "out" / f"{path.stem}.depth.npy").exists()
    assert not (tmp_path / "out" / "broken.depth.npy").exists()


def test_rerun_skips_done_inputs_and_overwrite_redoes_them(tmp_path, encoded):
    _save_images(tmp_path / "in", encoded["depth"][:2])
    out = tmp_path / "out" / "img0.depth.npy"
    assert _invoke("decode", "depth", tmp_path / "in", "-o", tmp_path / "out").exit_code == 0
    out.write_bytes(b"sentinel")
    again = _invoke("decode", "depth", tmp_path / "in", "-o", tmp_path / "out")
    assert again.exit_code == 0, again.output
    assert "all 2 input(s) are done already" in again.output
    assert out.read_bytes() == b"sentinel"  # skipped, not rewritten
    forced = _invoke("decode", "depth", tmp_path / "in", "-o", tmp_path / "out", "--quiet",
                     "--overwrite")
    assert forced.exit_code == 0
    assert np.array_equal(np.load(out), vbkernels.decode_depth(encoded["depth"][0]))


def test_partial_outputs_are_redone_and_overwrite_drops_stale_previews(tmp_path, encoded):
    pytest.importorskip("matplotlib")
    _save_images(tmp_path / "in", encoded["depth"][:2])
    args = ("decode", "depth", tmp_path / "in", "-o", tmp_path / "out", "--quiet")
    assert _invoke(*args, "--preview").exit_code == 0
    (tmp_path / "out" / "img1.depth.preview.png").unlink()  # as if stopped mid-way
    (tmp_path / "out" / "img1.depth.npy").write_bytes(b"partial")
    result = _invoke(*args[:-1], "--preview")
    assert result.exit_code == 0, result.output
    assert "decoded 1 frame(s) from 1 input(s)" in result.output
    assert "1 input(s) skipped" in result.output
    assert np.array_equal(np.load(tmp_path / "out" / "img1.depth.npy"),
                          vbkernels.decode_depth(encoded["depth"][1]))
    assert (tmp_path / "out" / "img1.depth.preview.png").exists()
    # Without --preview the previews are not asked for: everything is done...
    assert "all 2 input(s)" in _invoke(*args[:-1]).output
    # ...and --overwrite replaces the outputs and removes the stale previews.
    assert _invoke(*args, "--overwrite").exit_code == 0
    assert sorted(p.name for p in (tmp_path / "out").glob("img*")) == [
        "img0.depth.npy", "img0.depth.png", "img1.depth.npy", "img1.depth.png"]


def test_same_output_name_from_two_inputs_is_an_error(tmp_path, encoded):
    _save_images(tmp_path / "a", encoded["depth"][:1])
    _save_images(tmp_path / "b", encoded["depth"][1:2])
    result = _invoke("decode", "depth", tmp_path / "a" / "img0.png", tmp_path / "b" / "img0.png",
                     "-o", tmp_path / "out", "--quiet")
    assert result.exit_code == 1 and "same name" in result.output
    assert np.array_equal(np.load(tmp_path / "out" / "img0.depth.npy"),
                          vbkernels.decode_depth(encoded["depth"][0]))


def test_write_atomic_never_leaves_partial_files(tmp_path, monkeypatch):
    target = tmp_path / "sub" / "x.bin"
    vio.write_atomic(target, b"first", overwrite=False)
    assert target.read_bytes() == b"first"
    with pytest.raises(vio.OutputExists):
        vio.write_atomic(target, b"second", overwrite=False)
    assert target.read_bytes() == b"first"

    def crash(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        vio.write_atomic(target, b"third", overwrite=True)
    assert target.read_bytes() == b"first"
    assert sorted(p.name for p in target.parent.iterdir()) == ["x.bin"]


def test_instances_subcommand(tmp_path):
    image = np.zeros((16, 16, 3), np.uint8)
    image[2:8, 2:8] = (200, 30, 30)
    image[9:15, 6:14] = (30, 30, 200)
    _save_images(tmp_path / "in", [image])
    result = _invoke("decode", "instances", tmp_path / "in", "-o", tmp_path / "out",
                     "--min-pixels", 4, "--quiet", "--preview")
    assert result.exit_code == 0, result.output
    labels, colours, counts = decode_instances(image, min_pixels=4)
    assert counts == 2  # the two squares
    got = np.load(tmp_path / "out" / "img0.instances.npy")
    assert got.dtype == np.int32 and np.array_equal(got, np.asarray(labels))
    png = np.asarray(Image.open(tmp_path / "out" / "img0.instances.png"))
    assert np.array_equal(png.astype(np.int64), np.asarray(labels).astype(np.int64) % 65536)
    preview = _read(tmp_path / "out" / "img0.instances.preview.png")
    assert preview.shape == image.shape
    assert preview[4, 4].tolist() == list(INSTANCE_COLOURS[labels[4, 4] - 1])  # a fixed cycle
    assert preview[0, 0].tolist() == [0, 0, 0] and preview[1, 3].tolist() == [255, 255, 255]


def test_unavailable_command_explains(monkeypatch):
    monkeypatch.setitem(cli._COMMANDS, "ghost", ("vbkernels.no_such_module", "ghost", "A ghost."))
    result = _invoke("ghost", "--anything")
    assert result.exit_code == 1
    assert "not available" in result.output and "vbkernels.no_such_module" in result.output
    assert "Traceback" not in result.output


def test_help_lists_every_command():
    result = _invoke("--help")
    assert result.exit_code == 0
    for name in ("decode", "demo", "precision", "bench", "robustness"):
        assert name in result.output


def test_demo_on_a_tiny_scene(tmp_path):
    pytest.importorskip("matplotlib")
    panel = tmp_path / "panel.png"
    result = _invoke("demo", "-n", 2, "--height", 24, "--width", 32, "--no-h264", "-o", panel)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    lossless = next(line for line in lines if line.startswith("lossless"))
    degraded = next(line for line in lines if line.startswith("degraded"))
    delta1 = float(lossless.split(")")[1].split()[0])
    assert delta1 == 1.0  # 8 bits alone keep every depth within 1.25x
    assert float(degraded.split(")")[1].split()[0]) > 0.8
    assert "frames/s" in result.output
    assert Image.open(panel).width > 300


def test_precision_table_and_plot(tmp_path):
    pytest.importorskip("matplotlib")
    plot = tmp_path / "p.png"
    result = _invoke("precision", "--plot", plot)
    assert result.exit_code == 0, result.output
    assert "largest finite depth 412.49 m" in result.output
    assert "3.73 mm" in result.output  # the step at 1 m (docs/format.md, Depth: about 3.7 mm)
    assert "8.708 m" in result.output  # the blue vertex
    assert Image.open(plot).format == "PNG"
    assert _invoke("precision", "--c", -1, "--no-plot").exit_code == 2


def test_python_dash_m_runs_the_cli():
    result = subprocess.run([sys.executable, "-m", "vbkernels", "precision", "--no-plot"],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "412.49" in result.stdout


def test_backend_is_passed_through_and_its_errors_are_messages(tmp_path, encoded):
    _save_images(tmp_path / "in", encoded["depth"][:1])
    result = _invoke("decode", "depth", tmp_path / "in", "-o", tmp_path / "out", "--quiet",
                     "--backend", "numpy", "--device", "cpu")
    assert result.exit_code == 0, result.output
    expected = vbkernels.decode_depth(encoded["depth"][0], backend="numpy")
    assert np.array_equal(np.load(tmp_path / "out" / "img0.depth.npy"), expected)
    # The CUDA backend never runs on CPU tensors: a message, not a traceback.
    failed = _invoke("decode", "depth", tmp_path / "in", "-o", tmp_path / "out2", "--quiet",
                     "--backend", "cuda", "--device", "cpu")
    assert failed.exit_code == 1 and "decoding failed" in failed.output
    assert "Traceback" not in failed.output


def test_instances_options_match_the_api(tmp_path):
    image = np.zeros((16, 16, 3), np.uint8)
    image[:] = (250, 250, 250)
    image[2:8, 2:8] = (200, 30, 30)
    image[2:8, 10:15] = (200, 30, 30)
    image[9:15, 6:14] = (205, 35, 30)
    _save_images(tmp_path / "in", [image])
    result = _invoke("decode", "instances", tmp_path / "in", "-o", tmp_path / "out", "--quiet",
                     "--min-pixels", 4, "--background", "250,250,250", "--merge-distance", 20,
                     "--split-components", "--workers", 0)
    assert result.exit_code == 0, result.output
    labels, _, counts = decode_instances(image, min_pixels=4, background=(250, 250, 250),
                                         merge_distance=20, split_components=True)
    assert counts == 3  # two squares of one colour split apart; the near colour merged
    assert np.array_equal(np.load(tmp_path / "out" / "img0.instances.npy"), np.asarray(labels))
    none = _invoke("decode", "instances", tmp_path / "in", "-o", tmp_path / "o2", "--quiet",
                   "--min-pixels", 4, "--background", "none")
    assert none.exit_code == 0, none.output
    expected = decode_instances(image, min_pixels=4, background=None).labels
    assert np.array_equal(np.load(tmp_path / "o2" / "img0.instances.npy"), np.asarray(expected))
    bad = _invoke("decode", "instances", tmp_path / "in", "-o", tmp_path / "o3",
                  "--background", "1,2")
    assert bad.exit_code == 2 and "--background" in bad.output


def test_depth_vmin_vmax_reach_the_preview(tmp_path, encoded, monkeypatch):
    from types import SimpleNamespace

    from vbkernels.pipeline import tasks

    calls = []

    def fake_preview(depth, **scale):
        calls.append(scale)
        return b"preview"

    monkeypatch.setattr(tasks, "_previews", lambda: SimpleNamespace(depth_preview_png=fake_preview))
    _save_images(tmp_path / "in", encoded["depth"][:2])
    result = _invoke("decode", "depth", tmp_path / "in", "-o", tmp_path / "out", "--quiet",
                     "--outputs", "preview", "--vmin", 1, "--vmax", 20, "--workers", 0)
    assert result.exit_code == 0, result.output
    assert calls == [{"vmin": 1.0, "vmax": 20.0}] * 2
    assert sorted(p.name for p in (tmp_path / "out").glob("img*")) == [
        "img0.depth.preview.png", "img1.depth.preview.png"]
    bad = _invoke("decode", "depth", tmp_path / "in", "-o", tmp_path / "o2",
                  "--vmin", 5, "--vmax", 1)
    assert bad.exit_code == 2 and "vmin" in bad.output


def test_outputs_choice_and_keep_suffix(tmp_path, encoded):
    folder = tmp_path / "in"
    _save_images(folder, encoded["depth"][:1])
    Image.fromarray(encoded["depth"][1]).save(folder / "img0.bmp")
    clash = _invoke("decode", "depth", folder, "-o", tmp_path / "clash", "--quiet")
    assert clash.exit_code == 1 and "same name" in clash.output and "--keep-suffix" in clash.output
    result = _invoke("decode", "depth", folder, "-o", tmp_path / "out", "--quiet",
                     "--outputs", "npy", "--keep-suffix")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "out").glob("img*")) == [
        "img0.bmp.depth.npy", "img0.png.depth.npy"]
    assert np.array_equal(np.load(tmp_path / "out" / "img0.bmp.depth.npy"),
                          vbkernels.decode_depth(encoded["depth"][1]))
    bad = _invoke("decode", "normals", folder, "-o", tmp_path / "o2", "--outputs", "npy,png")
    assert bad.exit_code == 2 and "--outputs" in bad.output


def test_no_inputs_is_said_plainly(tmp_path):
    (tmp_path / "empty").mkdir()
    result = _invoke("decode", "depth", tmp_path / "empty", "-o", tmp_path / "out")
    assert result.exit_code == 1
    assert "holds no image or video files" in result.output and "nan" not in result.output
    assert "no frames decoded" in result.output


def test_option_names_agree_across_commands(tmp_path):
    from vbkernels._dispatch import BACKEND_NAMES

    help_text = _invoke("decode", "depth", "--help").output
    assert all(name in help_text for name in BACKEND_NAMES)
    robustness_help = _invoke("robustness", "--help").output
    assert "-o, --output" in robustness_help and "--output-dir" not in robustness_help
    old = _invoke("robustness", "-n", 1, "--height", 16, "--width", 24, "--codec", "png",
                  "--no-plot", "--device", "cpu", "--output-dir", tmp_path / "old")
    assert old.exit_code == 0, old.output
    assert (tmp_path / "old" / "robustness.md").exists()
