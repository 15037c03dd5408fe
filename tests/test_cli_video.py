"""``vbkernels decode`` on videos: --frames, --stack, --contact-sheet (issue 24, item 5)."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import vbkernels as vb
from vbkernels import cli
from vbkernels.pipeline.clips import parse_frames, select_frames
from vbkernels.scenes import make_scenes

pytest.importorskip("av")


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """A lossless 7-frame video of encoded depth, and its frames."""
    frames = vb.encode_depth(make_scenes(7, 30, 44, seed=8)["depth"]).numpy()
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    vb.encode_video(frames, path)
    return path, frames


def _invoke(*args):
    return CliRunner().invoke(cli.main, [str(a) for a in args], catch_exceptions=False)


def test_frames_stack_and_contact_sheet(tmp_path, clip):
    path, frames = clip
    out = tmp_path / "out"
    result = _invoke("decode", "depth", path, "-o", out, "--frames", "1:6:2", "--stack",
                     "--contact-sheet", "--outputs", "npy,distance", "--batch-size", 2)
    assert result.exit_code == 0, result.output
    picked = [1, 3, 5]
    assert sorted(p.name for p in (out / "clip").glob("*.depth.npy")) == [
        f"{i:06d}.depth.npy" for i in picked]
    depth, distance = vb.decode_depth(frames[picked], return_distance=True)
    stacked = np.load(out / "clip.depth.npy")
    assert stacked.shape == (3, 30, 44) and np.array_equal(stacked, depth)
    assert np.array_equal(np.load(out / "clip.depth.distance.npy"), distance)
    sheet = Image.open(out / "clip.depth.contact.png")
    preview = Image.open(out / "clip" / "000001.depth.preview.png")
    assert sheet.width == 2 * preview.width  # 3 tiles: a 2 x 2 grid
    assert "3 frame(s)" in result.output and "clip.depth.npy (3, 30, 44)" in result.output
    # A rerun of every frame stacks all 7, never the older run's 3 with the new ones.
    again = _invoke("decode", "depth", path, "-o", out, "--stack", "--outputs", "npy")
    assert again.exit_code == 0, again.output
    assert np.array_equal(np.load(out / "clip.depth.npy"), vb.decode_depth(frames))
    # And a rerun of that skips the video (all its outputs exist) and rebuilds the stack.
    (out / "clip.depth.npy").unlink()
    skipped = _invoke("decode", "depth", path, "-o", out, "--stack", "--outputs", "npy")
    assert skipped.exit_code == 0 and "nothing to decode" in skipped.output, skipped.output
    assert np.load(out / "clip.depth.npy").shape == (7, 30, 44)


def test_stack_of_every_frame_for_normals(tmp_path):
    frames = vb.encode_normals(make_scenes(3, 16, 18, seed=1)["normals"]).numpy()
    vb.encode_video(frames, tmp_path / "n.mkv")
    result = _invoke("decode", "normals", tmp_path / "n.mkv", "-o", tmp_path / "out",
                     "--stack", "--quiet")
    assert result.exit_code == 0, result.output
    stacked = np.load(tmp_path / "out" / "n.normals.npy")
    assert stacked.shape == (3, 16, 18, 3)
    assert np.array_equal(stacked, vb.decode_normals(frames))


@pytest.mark.parametrize("text", ["1:2:0", "-1:", "5", "a:b", "1:2:3:4"])
def test_bad_frames_are_usage_errors(tmp_path, clip, text):
    result = _invoke("decode", "depth", clip[0], "-o", tmp_path / "out", "--frames", text)
    assert result.exit_code == 2 and "--frames" in result.output, result.output
    with pytest.raises(ValueError, match="START"):
        parse_frames(text)


def test_frame_selection_reads_no_further_than_stop():
    read = []

    def frames():
        for i in range(100):
            read.append(i)
            yield i

    assert list(select_frames(frames(), slice(2, 9, 3))) == [2, 5, 8]
    assert read == list(range(10))  # frame 9 is read to learn that the range ended
    assert list(select_frames(iter(range(5)), slice(3, None, None))) == [3, 4]
