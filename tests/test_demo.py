"""``vbkernels demo``: the panel shows what the text says, and says where it went."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from PIL import Image

from vbkernels.cli import main

pytest.importorskip("matplotlib")


def _demo(*args):
    result = CliRunner().invoke(main, ["demo", "--height", "24", "--width", "32", "--no-h264",
                                       *map(str, args)])
    assert result.exit_code == 0, result.output
    return result.output


def test_panel_rows_match_the_scene_count_and_the_path_is_printed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    two = _demo("-n", 2, "-o", "two.png")
    assert "2 scenes of 24x32" in two
    assert f"panel of 2 scenes written to {tmp_path / 'two.png'}" in two
    five = _demo("-n", 5, "-o", "five.png")
    assert "5 scenes of 24x32" in five
    assert f"panel of the first 4 of 5 scenes written to {tmp_path / 'five.png'}" in five
    # One row per scene shown: 4 rows are about twice as tall as 2 (same width).
    ratio = Image.open(tmp_path / "five.png").height / Image.open(tmp_path / "two.png").height
    assert 1.6 < ratio < 2.2


def test_output_directory_gets_the_default_name(tmp_path):
    out = _demo("-n", 1, "-o", tmp_path)
    assert f"panel of 1 scene written to {tmp_path / 'vbkernels_demo.png'}" in out
    assert Image.open(tmp_path / "vbkernels_demo.png").format == "PNG"
    new_folder = tmp_path / "panels"  # a name without a suffix is a folder, created
    out = _demo("-n", 1, "-o", new_folder)
    assert f"written to {new_folder / 'vbkernels_demo.png'}" in out
    assert Image.open(new_folder / "vbkernels_demo.png").format == "PNG"


def test_speed_is_the_median_of_several_calls(monkeypatch):
    """issue 24, item 9: one timed call swung 20x between runs."""
    import torch

    from vbkernels.cli import demo

    calls = []
    clock = iter(range(1000))
    monkeypatch.setattr(demo.time, "perf_counter", lambda: float(next(clock)) ** 2)
    _, seconds = demo._decode_all({"depth": calls.append}, {"depth": torch.zeros(1, 1, 1, 3)},
                                  repeats=3)
    assert len(calls) == 4  # one warm-up, three timed
    # the clock reads 0, 1, 4, 9, 16, 25: calls of 1, 5 and 9 "seconds", median 5
    assert seconds == {"depth": 5.0}


def test_default_panel_name_is_ignored_by_git():
    import subprocess
    from pathlib import Path

    from vbkernels.cli.demo import DEFAULT_PANEL

    repo = Path(__file__).resolve().parents[1]
    ignored = subprocess.run(["git", "check-ignore", "-q", DEFAULT_PANEL], cwd=repo)
    if ignored.returncode == 128:
        pytest.skip("not a git checkout")
    assert ignored.returncode == 0, f"{DEFAULT_PANEL} is not in .gitignore"
    assert "median of 5 timed calls" in _demo("-n", 1, "--no-panel")
