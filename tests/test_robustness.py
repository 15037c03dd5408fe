"""The codec-robustness report: function, files and the ``vbkernels robustness`` command."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import vbkernels
from vbkernels import robustness as rb
from vbkernels.cli import main
from vbkernels.palettes import Palette
from vbkernels.scenes import make_scenes

TINY = dict(scenes=2, height=24, width=32, seed=1)
CODECS = [
    "png",
    "jpeg q95",
    "jpeg q95 4:4:4",
    "webp lossless",
    "h264 yuv420p crf18",
    "h264 yuv444p crf0",
]
H264_MISSING = rb.h264_unavailable_reason()


@pytest.fixture(scope="module")
def report():
    return rb.robustness_report(codecs=CODECS, **TINY)


def _rows(report):
    return {row["codec"]: row for row in report["rows"]}


def test_lossless_rows_lose_only_the_8bit_quantisation(report):
    rows = _rows(report)
    for name in ("png", "webp lossless"):
        row = rows[name]
        assert row["chroma"] == "lossless"
        assert row["depth_off_walk_pct"] == 0.0 and row["depth_delta1"] == 1.0
        # One uint8 step of t is 1/1785; at <= 80 m the relative depth step stays below 0.6%.
        assert 0 < row["depth_abs_rel"] < 3e-3
        assert 0 < row["normals_mean_deg"] < 0.5  # p = round(255 (n + 1) / 2): at most ~0.4 degrees
        assert row["seg_miou"] == row["seg_miou_kept"] == 1.0 and row["seg_rejected_pct"] == 0.0
    assert rows["png"]["bits_per_pixel"] > 0


def test_chroma_subsampling_hurts_every_task(report):
    rows = _rows(report)
    sub, full = rows["jpeg q95"], rows["jpeg q95 4:4:4"]
    assert sub["chroma"] == "4:2:0" and full["chroma"] == "4:4:4"
    assert sub["depth_off_walk_pct"] > full["depth_off_walk_pct"]
    assert sub["depth_abs_rel"] > full["depth_abs_rel"]
    assert sub["normals_mean_deg"] > full["normals_mean_deg"]
    assert sub["seg_miou"] < full["seg_miou"]
    assert any(note.startswith("jpeg q95 (4:2:0) vs jpeg q95 4:4:4") for note in report["notes"])


@pytest.mark.skipif(
    H264_MISSING is not None, reason=f"H.264 rows need PyAV with libx264: {H264_MISSING}"
)
def test_h264_rows_run_when_pyav_has_libx264(report):
    rows = _rows(report)
    assert rows["h264 yuv420p crf18"]["chroma"] == "4:2:0"
    # 4:4:4 at CRF 0 loses only the limited-range YUV rounding: nothing leaves the walk.
    assert (
        rows["h264 yuv444p crf0"]["depth_off_walk_pct"]
        < rows["h264 yuv420p crf18"]["depth_off_walk_pct"]
    )
    assert report["skipped"] == []


def test_missing_h264_rows_are_skipped_with_the_reason(monkeypatch):
    monkeypatch.setattr(
        rb, "h264_unavailable_reason", lambda: "PyAV is not installed (pip install av)"
    )
    report = rb.robustness_report(codecs=["png", "h264 yuv444p crf28"], **TINY)
    assert [row["codec"] for row in report["rows"]] == ["png"]
    assert report["skipped"] == [
        {"codec": "h264 yuv444p crf28", "reason": "PyAV is not installed (pip install av)"}
    ]
    assert "h264 yuv444p crf28: PyAV is not installed" in rb.format_markdown(report)


def test_user_images_are_scored_against_their_own_decode():
    truth = make_scenes(2, 20, 28, seed=2)
    depth_rgb = vbkernels.encode_depth(truth["depth"])
    report = rb.robustness_report(images={"depth": depth_rgb}, codecs=["png", "jpeg q75"])
    png, jpeg = report["rows"]
    assert png["depth_abs_rel"] == 0.0 and png["depth_off_walk_pct"] == 0.0
    assert jpeg["depth_abs_rel"] > 0 and "normals_mean_deg" not in jpeg and "seg_miou" not in jpeg
    assert report["config"]["source"].startswith("user images: depth (2, 20, 28, 3)")


def test_write_report_writes_markdown_json_and_plot(report, tmp_path):
    paths = rb.write_report(report, tmp_path / "out")
    assert sorted(p.name for p in paths) == ["robustness.json", "robustness.md", "robustness.png"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        p.name for p in paths
    )  # no temp files
    saved = json.loads((tmp_path / "out" / "robustness.json").read_text())
    assert [row["codec"] for row in saved["rows"]] == [row["codec"] for row in report["rows"]]
    assert saved["rows"][0]["depth_abs_rel"] == pytest.approx(report["rows"][0]["depth_abs_rel"])
    markdown = (tmp_path / "out" / "robustness.md").read_text()
    for row in report["rows"]:
        assert f"| {row['codec']} | {row['chroma']} |" in markdown
    assert (tmp_path / "out" / "robustness.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_default_max_distance_is_half_the_smallest_palette_gap():
    colours = torch.tensor([[0, 0, 0], [0, 0, 30], [200, 0, 0]], dtype=torch.uint8)
    assert rb._half_min_palette_gap(colours) == 15.0
    report = rb.robustness_report(codecs=["png"], **TINY)
    assert report["config"]["max_distance"] == 10.0  # Cityscapes bus and train are 20 apart


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        (dict(codecs=["jpeg q50"]), ValueError, "codecs"),
        (dict(codecs=[]), ValueError, "codecs"),
        (dict(max_distance=-1.0), ValueError, "max_distance"),
        (dict(images={"depth": np.zeros((1, 4, 4, 3), np.float32)}), ValueError, "images['depth']"),
        (dict(images={"albedo": np.zeros((1, 4, 4, 3), np.uint8)}), ValueError, "images keys"),
        (dict(images=[np.zeros((1, 4, 4, 3), np.uint8)]), TypeError, "images"),
        (
            dict(
                palette=Palette(
                    "tiny",
                    ("a", "b"),
                    torch.tensor([[0, 0, 0], [255, 255, 255]], dtype=torch.uint8),
                )
            ),
            ValueError,
            "palette",
        ),
    ],
)
def test_bad_arguments(kwargs, error, words):
    with pytest.raises(error) as info:
        rb.robustness_report(**(TINY | kwargs))
    assert words in str(info.value)


def test_cli_writes_the_report(tmp_path):
    out = tmp_path / "report"
    result = CliRunner().invoke(
        main,
        [
            "robustness",
            "-n",
            "1",
            "--height",
            "16",
            "--width",
            "24",
            "--codec",
            "png",
            "--codec",
            "jpeg q90",
            "--device",
            "cpu",
            "-o",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "| jpeg q90 | 4:2:0 |" in result.output
    assert {p.name for p in out.iterdir()} == {"robustness.md", "robustness.json", "robustness.png"}


def test_cli_reads_user_images_and_rejects_bad_paths(tmp_path):
    from PIL import Image

    rgb = vbkernels.encode_normals(make_scenes(2, 16, 20, seed=3)["normals"]).numpy()
    for i, frame in enumerate(rgb):
        Image.fromarray(frame).save(tmp_path / f"n{i}.png")
    out = tmp_path / "report"
    result = CliRunner().invoke(
        main,
        [
            "robustness",
            "--normals",
            str(tmp_path),
            "--codec",
            "png",
            "--no-plot",
            "--device",
            "cpu",
            "-o",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "robustness.json").read_text())
    assert saved["rows"][0]["normals_mean_deg"] == 0.0 and not (out / "robustness.png").exists()
    missing = CliRunner().invoke(
        main, ["robustness", "--depth", str(tmp_path / "nope.png"), "-o", str(out)]
    )
    assert missing.exit_code == 2 and "no such file" in missing.output
    Image.fromarray(rgb[0][:8]).save(tmp_path / "n9.png")
    mixed = CliRunner().invoke(main, ["robustness", "--normals", str(tmp_path), "-o", str(out)])
    assert mixed.exit_code == 2 and "one size" in mixed.output


def test_markdown_marks_missing_and_nan_cells():
    row = {"codec": "png", "chroma": "lossless", "depth_abs_rel": math.nan}
    markdown = rb.format_markdown(
        {
            "config": {
                "source": "x",
                "palette": "p",
                "device": "cpu",
                "backend": "auto",
                "max_eval_depth": 80.0,
                "off_walk_units": 10.0,
                "max_distance": 10.0,
            },
            "rows": [row],
            "skipped": [],
            "notes": [],
        }
    )
    assert "| png | lossless | — | nan | — |" in markdown
