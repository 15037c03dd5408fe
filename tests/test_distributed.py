"""The Ray engine (``--engine ray``, ``vbkernels.distributed``) against the local engine on
one local Ray cluster shared by this module: the same files, bit for bit, the same
manifest rows, the skip-on-rerun and the resume-after-a-kill behaviour."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from vbkernels.cli import main

FRAME_SHAPES = {"a.png": (32, 48), "sub/b.png": (40, 24), "c.png": (32, 48)}
GOOD = ["a.png", "c.png", "clip.mp4", "d.jpg", "sub/b.png"]


@pytest.fixture(scope="module")
def ray_cluster():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def make_inputs(folder: Path) -> Path:
    """Mixed-size PNGs (two of one size, one in a subfolder), a JPEG, a 3-frame H.264
    video and a truncated PNG."""
    import av

    rng = np.random.default_rng(7)
    for name, shape in FRAME_SHAPES.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (*shape, 3), dtype=np.uint8)).save(folder / name)
    Image.fromarray(rng.integers(0, 256, (24, 40, 3), dtype=np.uint8)).save(folder / "d.jpg",
                                                                             quality=90)
    data = (folder / "a.png").read_bytes()
    (folder / "broken.png").write_bytes(data[: len(data) // 2])
    with av.open(str(folder / "clip.mp4"), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 48, 32, "yuv420p"
        for _ in range(3):
            rgb = rng.integers(0, 256, (32, 48, 3), dtype=np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        container.mux(stream.encode())
    return folder


def decode(inputs, out, *args):
    return CliRunner().invoke(main, ["decode", "depth", str(inputs), "-o", str(out), "--quiet",
                                     *args])


def output_files(out: Path) -> dict[str, Path]:
    return {p.relative_to(out).as_posix(): p for p in sorted(out.rglob("*"))
            if p.is_file() and p.name != "manifest.jsonl"}


def assert_same_outputs(expected: Path, actual: Path) -> None:
    """Same names; .npy files byte-identical, PNGs pixel-identical."""
    want, got = output_files(expected), output_files(actual)
    assert list(got) == list(want)
    for name, path in want.items():
        if name.endswith(".npy"):
            assert got[name].read_bytes() == path.read_bytes(), name
        else:
            np.testing.assert_array_equal(np.asarray(Image.open(got[name])),
                                          np.asarray(Image.open(path)), err_msg=name)


def manifest(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def by_input(rows, inputs: Path) -> dict[str, dict]:
    return {Path(row["path"]).relative_to(inputs).as_posix(): row for row in rows}


@pytest.fixture(scope="module")
def runs(ray_cluster, tmp_path_factory):
    """One input folder decoded by both engines (the local one without worker processes:
    forking this Ray-connected process is not what is under test)."""
    root = tmp_path_factory.mktemp("engines")
    inputs = make_inputs(root / "in")
    local = decode(inputs, root / "local", "--workers", "0")
    ray_run = decode(inputs, root / "ray", "--engine", "ray", "--workers", "1")
    return inputs, root / "local", root / "ray", local, ray_run


# The Ray runs use one actor (--workers 1 on a CPU-only cluster): each run starts its actor
# pool afresh, and on a busy 2-core machine starting two costs twice the CPU.


def test_ray_engine_writes_what_the_local_engine_writes(runs):
    inputs, local_out, ray_out, local, ray_run = runs
    assert local.exit_code == 1, local.output
    assert ray_run.exit_code == 1, ray_run.output
    assert "broken.png: cannot read" in ray_run.output
    assert_same_outputs(local_out, ray_out)
    assert len(output_files(ray_out)) == 2 * (len(GOOD) - 1 + 3)  # npy + png per frame

    local_rows = by_input(manifest(local_out), inputs)
    ray_rows = by_input(manifest(ray_out), inputs)
    assert ray_rows == local_rows
    assert sorted(ray_rows) == sorted([*GOOD, "broken.png"])
    assert ray_rows["clip.mp4"]["frames"] == 3
    assert all(ray_rows[name]["status"] == "ok" for name in GOOD)
    broken = ray_rows["broken.png"]
    assert (broken["status"], broken["frames"], broken["outputs"]) == ("failed", 0, [])
    assert broken["error"].startswith("cannot read")


def test_second_run_skips_every_input_that_was_done(runs):
    inputs, _, ray_out, _, _ = runs
    before = {name: p.stat().st_mtime_ns for name, p in output_files(ray_out).items()}
    first_rows = len(manifest(ray_out))

    again = decode(inputs, ray_out, "--engine", "ray", "--workers", "1")

    assert again.exit_code == 1, again.output  # the broken file fails again
    rows = by_input(manifest(ray_out)[first_rows:], inputs)
    assert {name: row["status"] for name, row in rows.items()} == {
        **{name: "skipped" for name in GOOD}, "broken.png": "failed"}
    assert rows["clip.mp4"]["frames"] == 3 and len(rows["clip.mp4"]["outputs"]) == 6
    assert {name: p.stat().st_mtime_ns for name, p in output_files(ray_out).items()} == before


def test_rerun_after_a_kill_decodes_only_what_is_missing(runs, tmp_path):
    """The state a killed run leaves: some inputs complete, one with half its outputs, a
    video with a frame missing and no manifest row. The rerun (Python entry point) redoes
    exactly those; a complete input is not even read (its file is garbage now)."""
    from vbkernels.distributed import decode_files

    inputs, local_out, _, _, _ = runs
    work = shutil.copytree(inputs, tmp_path / "in")
    out = shutil.copytree(local_out, tmp_path / "out")
    (out / "manifest.jsonl").unlink()
    for name in ("a.depth.npy", "a.depth.png", "c.depth.png", "clip/000001.depth.npy"):
        (out / name).unlink()
    (work / "d.jpg").write_bytes(b"not a JPEG any more")
    kept = {name: p.stat().st_mtime_ns for name, p in output_files(out).items()
            if name.startswith(("d.", "sub/"))}

    summary = decode_files([str(work)], "depth", out, workers=1)

    rows = by_input(manifest(out), work)
    assert {name: row["status"] for name, row in rows.items()} == {
        "a.png": "ok", "c.png": "ok", "clip.mp4": "ok", "d.jpg": "skipped",
        "sub/b.png": "skipped", "broken.png": "failed"}
    assert sorted(summary.skipped) == sorted(str(work / n) for n in ("d.jpg", "sub/b.png"))
    assert list(summary.failed) == [str(work / "broken.png")]
    assert summary.frames == 2 + 3
    assert_same_outputs(local_out, out)
    assert {name: p.stat().st_mtime_ns for name, p in output_files(out).items()
            if name in kept} == kept


@pytest.mark.parametrize("task, options, uri", [
    ("normals", {"convention": "opencv", "kinds": "npy,preview"}, False),
    ("seg", {"palette": "voc", "kinds": "npy,png,preview", "keep_suffix": True}, False),
    # Inputs given as URIs (as s3://... would be), listed and read through pyarrow.
    ("instances", {"min_pixels": 4, "max_distance": 60.0}, True),
    ("colormap", {"colormap": "viridis", "vmax": 10.0, "max_distance": 30.0,
                  "kinds": "npy,distance,preview"}, False),
])
def test_every_task_matches_the_local_engine(runs, tmp_path, task, options, uri):
    from vbkernels.distributed import decode_files
    from vbkernels.pipeline import decode_files as decode_locally

    inputs = runs[0]
    files = [str(inputs / name) for name in ("a.png", "sub/b.png", "d.jpg")]
    local = decode_locally(files, task, tmp_path / "local", workers=0, **options)
    ray_inputs = [Path(f).as_uri() for f in files] if uri else files
    ray_summary = decode_files(ray_inputs, task, tmp_path / "ray", workers=1, **options)

    assert not local.failed and not ray_summary.failed
    assert sorted(local.done) == sorted(files)
    assert sorted(ray_summary.done) == sorted(ray_inputs)
    assert_same_outputs(tmp_path / "local", tmp_path / "ray")
    assert output_files(tmp_path / "ray")
