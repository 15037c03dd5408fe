"""``vbkernels decode colormap``: images painted by matplotlib decoded through the command
line give what ``vbkernels.decode_colormap`` gives on the same files."""

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import vbkernels
from vbkernels import cli
from vbkernels.pipeline import build_task

plt = pytest.importorskip("matplotlib.pyplot")


def _invoke(*args):
    return CliRunner().invoke(cli.main, [str(a) for a in args], catch_exceptions=False)


def _pixels(path):
    return np.asarray(Image.open(path).convert("RGB"))


def _ramp(height=24, width=36, low=0.0, high=50.0, seed=0):
    """A smooth ramp over [low, high] plus noise, so every part of the map is used."""
    rng = np.random.default_rng(seed)
    x = np.linspace(0.0, 1.0, width)[None, :] * np.linspace(0.6, 1.0, height)[:, None]
    return low + (high - low) * np.clip(x + rng.normal(0, 0.02, (height, width)), 0, 1)


@pytest.fixture(scope="module")
def painted(tmp_path_factory):
    """Two turbo PNGs as plt.imsave writes them (0..50) and a JPEG q90 of the first."""
    folder = tmp_path_factory.mktemp("painted")
    for i in range(2):
        plt.imsave(folder / f"img{i}.png", _ramp(seed=i), cmap="turbo", vmin=0, vmax=50)
    Image.open(folder / "img0.png").convert("RGB").save(folder / "img2.jpg", quality=90)
    return folder


def test_cli_matches_the_library_on_matplotlib_images(painted, tmp_path):
    out = tmp_path / "out"
    result = _invoke("decode", "colormap", painted, "-o", out, "--colormap", "turbo",
                     "--vmin", 0, "--vmax", 50, "--max-distance", 6,
                     "--outputs", "npy,distance,preview", "--workers", 1, "--quiet")
    assert result.exit_code == 0, result.output
    for name in ("img0.png", "img1.png", "img2.jpg"):
        stem = name.split(".")[0]
        rgb = _pixels(painted / name)
        values, distance = vbkernels.decode_colormap(rgb, "turbo", vmin=0, vmax=50,
                                                     max_distance=6, return_distance=True)
        got = np.load(out / f"{stem}.colormap.npy")
        assert got.dtype == np.float32 and got.shape == rgb.shape[:2]
        np.testing.assert_array_equal(got, values)
        np.testing.assert_array_equal(np.load(out / f"{stem}.colormap.distance.npy"), distance)
        preview = _pixels(out / f"{stem}.colormap.preview.png")
        # The preview paints the values back with the same map: the image part, pixel for
        # pixel, is what the values encode to (NaN black), a colour bar beside it.
        repainted = vbkernels.encode_colormap(values, "turbo", vmin=0, vmax=50)
        np.testing.assert_array_equal(preview[:rgb.shape[0], :rgb.shape[1]], repainted)
        assert preview.shape[1] > rgb.shape[1]
    png_values = np.load(out / "img0.colormap.npy")
    assert np.isfinite(png_values).all()  # painted pixels are on the map
    np.testing.assert_array_equal(_pixels(out / "img0.colormap.preview.png")[:24, :36],
                                  _pixels(painted / "img0.png"))
    assert np.abs(png_values - _ramp(seed=0)).max() <= 50 / 255  # within a colour step
    assert np.isnan(np.load(out / "img2.colormap.npy")).any()  # JPEG pixels beyond 6 units


def test_log_scale_and_a_colours_file(tmp_path):
    """An image painted through matplotlib's LogNorm (plt.imsave has no norm argument)
    decoded with --scale log, the map given as a CSV of its bytes."""
    from matplotlib.colors import LogNorm

    folder = tmp_path / "in"
    folder.mkdir()
    depth = _ramp(low=1.0, high=100.0)
    rgb = plt.get_cmap("viridis")(LogNorm(vmin=1, vmax=100)(depth), bytes=True)[..., :3]
    Image.fromarray(rgb).save(folder / "log.png")
    bytes_ = (plt.get_cmap("viridis")(np.arange(256))[:, :3] * 255).astype(np.uint8)
    np.savetxt(tmp_path / "viridis.csv", bytes_, fmt="%d", delimiter=",")
    result = _invoke("decode", "colormap", folder, "-o", tmp_path / "out", "--quiet",
                     "--colormap", tmp_path / "viridis.csv", "--scale", "log",
                     "--vmin", 1, "--vmax", 100, "--workers", 0)
    assert result.exit_code == 0, result.output
    got = np.load(tmp_path / "out" / "log.colormap.npy")
    want = vbkernels.decode_colormap(_pixels(folder / "log.png"), "viridis", vmin=1, vmax=100,
                                     scale="log")
    np.testing.assert_array_equal(got, want)
    assert np.abs(np.log(got / depth)).max() <= np.log(100) / 255  # within a colour step


def test_bad_colormap_and_range_are_clear_errors(painted, tmp_path):
    args = ("decode", "colormap", painted / "img0.png", "-o", tmp_path / "out")
    unknown = _invoke(*args, "--colormap", "no_such_map")
    assert unknown.exit_code == 2
    assert "colormap must be one of viridis" in unknown.output
    assert "'no_such_map'" in unknown.output
    (tmp_path / "two.csv").write_text("0,0\n255,255\n")
    short = _invoke(*args, "--colormap", tmp_path / "two.csv")
    assert short.exit_code == 2 and "two.csv" in short.output and "(N, 3)" in short.output
    (tmp_path / "big.csv").write_text("0,0,0\n300,0,0\n")
    big = _invoke(*args, "--colormap", tmp_path / "big.csv")
    assert big.exit_code == 2 and "0..255" in big.output
    missing = _invoke("decode", "colormap", painted / "img0.png", "-o", tmp_path / "out")
    assert missing.exit_code == 2 and "--colormap" in missing.output
    backwards = _invoke(*args, "--colormap", "turbo", "--vmin", 50, "--vmax", 0)
    assert backwards.exit_code == 2 and "vmin must be < vmax" in backwards.output
    no_log = _invoke(*args, "--colormap", "turbo", "--scale", "log")
    assert no_log.exit_code == 2 and "0 < vmin" in no_log.output
    wrong_kind = _invoke(*args, "--colormap", "turbo", "--outputs", "npy,png")
    assert wrong_kind.exit_code == 2 and "--outputs" in wrong_kind.output
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").glob("img0.*"))


def test_rerun_skips_and_overwrite_redoes(painted, tmp_path):
    args = ("decode", "colormap", painted / "img0.png", painted / "img1.png", "-o",
            tmp_path / "out", "--colormap", "turbo", "--vmax", 50, "--workers", 0)
    assert _invoke(*args, "--quiet").exit_code == 0
    out = tmp_path / "out" / "img0.colormap.npy"
    out.write_bytes(b"sentinel")
    again = _invoke(*args)
    assert again.exit_code == 0, again.output
    assert "all 2 input(s) are done already" in again.output
    assert out.read_bytes() == b"sentinel"
    assert _invoke(*args, "--quiet", "--overwrite").exit_code == 0
    np.testing.assert_array_equal(
        np.load(out), vbkernels.decode_colormap(_pixels(painted / "img0.png"), "turbo", vmax=50))


def test_build_task_takes_names_files_arrays_and_checks_them(tmp_path):
    np.save(tmp_path / "grey.npy", np.linspace(0, 1, 16)[:, None].repeat(3, axis=1))
    from_file = build_task("colormap", colormap=str(tmp_path / "grey.npy"))
    assert from_file.colormap.painted.shape == (16, 3)
    named = build_task("colormap", colormap="coolwarm", vmin=1, vmax=9, max_distance=2)
    assert named.colormap.n == 256 and (named.vmin, named.vmax) == (1.0, 9.0)
    assert build_task("colormap", colormap="magma_r").colormap.name == "magma_r"
    with pytest.raises(ValueError, match="scale must be one of"):
        build_task("colormap", colormap="turbo", scale="sqrt")
    with pytest.raises(ValueError, match="max_distance must be >= 0"):
        build_task("colormap", colormap="turbo", max_distance=-1)
