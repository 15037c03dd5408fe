"""The Ray engine (``--engine ray``, ``vbkernels.distributed``) against the local engine on
one local Ray cluster shared by this module (bound to 127.0.0.1): the same files, bit for
bit, the same manifest rows, the skip-on-rerun and the resume-after-a-kill behaviour; a
real SIGINT to a driver that joined the cluster by address; what a failed connection
says."""

import ipaddress
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from vbkernels.cli import main

from .test_manifest_runs import (
    ROOT,
    check_interrupted_run,
    interrupt_after_first_output,
    make_pngs,
    start_decode,
)

FRAME_SHAPES = {"a.png": (32, 48), "sub/b.png": (40, 24), "c.png": (32, 48)}
GOOD = ["a.png", "c.png", "clip.mp4", "d.jpg", "sub/b.png"]


@pytest.fixture(scope="module")
def ray_cluster():
    import ray

    from vbkernels.distributed import start_local_ray

    start_local_ray(num_cpus=2, include_dashboard=False, log_to_driver=False)
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
            if p.is_file() and p.name not in ("manifest.jsonl", "summary.json")
            and p.parent.name != "runs"}


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
    """Rows by input name, without the fields that differ from run to run."""
    return {Path(row["path"]).relative_to(inputs).as_posix():
            {k: v for k, v in row.items() if k not in ("run", "time", "engine")}
            for row in rows}


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
    assert {row["engine"] for row in manifest(ray_out)} == {"ray"}
    assert {row["backend"] for row in manifest(ray_out)} == {"cpu"}  # as the actor resolved
    assert json.loads((ray_out / "summary.json").read_text())["engine"] == "ray"
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


# ------------------------------------------------------------ loopback, bar, signals


def _descendants(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(entry))
    found, todo = set(), [root]
    while todo:
        pid = todo.pop()
        found.add(pid)
        todo += children.get(pid, [])
    return found


def _listening_addresses(pids) -> set[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """The local addresses of TCP sockets in LISTEN state held by ``pids`` (Linux /proc)."""
    inodes = set()
    for pid in pids:
        try:
            links = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
        except OSError:
            continue
        inodes |= {int(link[8:-1]) for link in links if link.startswith("socket:[")}
    found = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A" or int(fields[9]) not in inodes:
                continue
            words = fields[1].split(":")[0]
            raw = b"".join(bytes.fromhex(words[i:i + 8])[::-1] for i in range(0, len(words), 8))
            address = ipaddress.ip_address(raw)
            found.add(getattr(address, "ipv4_mapped", None) or address)
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_the_local_cluster_listens_on_loopback_only(ray_cluster, runs):
    """After a run (actors and workers started): every socket the cluster's processes
    listen on is bound to 127.0.0.1, and the node's address is 127.0.0.1."""
    assert {node["NodeManagerAddress"] for node in ray_cluster.nodes()} == {"127.0.0.1"}
    addresses = _listening_addresses(_descendants(os.getpid()))
    assert addresses, "found no listening sockets: the check would prove nothing"
    assert all(address.is_loopback for address in addresses), addresses


def test_the_plan_knows_the_frame_total_before_ray_starts(runs, tmp_path):
    from vbkernels.distributed import plan_files

    pipeline = plan_files([str(runs[0])], "depth", tmp_path / "out", workers=1)
    assert pipeline.total_frames() == len(GOOD) - 1 + 3 + 1  # clip.mp4: 3; broken.png: 1
    assert not (tmp_path / "out").exists()


def test_a_sigint_to_a_driver_that_joined_by_address(ray_cluster, tmp_path):
    """``timeout -s INT`` on ``--engine ray --ray-address HOST:PORT``: every input whose
    outputs the actors wrote gets this run's ok row, though its report never reached the
    driver; the command says what it wrote and exits 130."""
    inputs = make_pngs(tmp_path / "in", 48, shape=(96, 128))
    out = tmp_path / "out"
    address = ray_cluster.get_runtime_context().gcs_address
    process = start_decode(["depth", str(tmp_path / "in"), "-o", str(out), "--engine", "ray",
                            "--ray-address", address, "--workers", "1", "--batch-size", "4",
                            "--preview", "--quiet"], cwd=tmp_path)

    _, stderr = interrupt_after_first_output(process, out, ".depth.preview.png")

    assert process.returncode == 130, stderr
    assert "interrupted: wrote" in stderr and "Traceback" not in stderr
    assert " INFO " not in stderr  # Ray logs at warning level without --verbose
    check_interrupted_run(out, inputs, [".depth.npy", ".depth.png", ".depth.preview.png"],
                          "ray")


_CONNECT = """
import sys
from vbkernels.distributed import RayConnectionError, RayOptions, connect
for address in sys.argv[1:]:
    try:
        connect(RayOptions(address=address))
        print("connected")
    except RayConnectionError as exc:
        print("refused:", exc)
"""


def test_a_failed_connection_says_what_to_do(ray_cluster, tmp_path):
    """Nothing listening: said at once. A token-authenticated cluster joined by address
    without the token (Ray's InvalidAuthToken): the token variables and ``auto``."""
    import socket

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        free = f"127.0.0.1:{probe.getsockname()[1]}"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("RAY_AUTH", "RAY_ADDRESS"))}
    env["PYTHONPATH"] = str(ROOT)
    address = ray_cluster.get_runtime_context().gcs_address
    result = subprocess.run([sys.executable, "-c", _CONNECT, free, address], env=env,
                            capture_output=True, text=True, timeout=240, cwd=tmp_path)

    first, second = result.stdout.strip().split("\n")
    assert first.startswith(f"refused: nothing answers at --ray-address {free}")
    assert second.startswith(f"refused: cannot join the Ray cluster at {address}")
    assert "RAY_AUTH_MODE=token" in second and "RAY_AUTH_TOKEN" in second
    assert "--ray-address auto" in second
