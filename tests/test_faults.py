"""Faults and hostile inputs in the file pipeline (issue 23): real signals to the command
and its workers, worker deaths, name clashes across input kinds, damaged videos, file
names that are not UTF-8, torn manifests, a full disk, stale temporary files, symlink
loops, and the small one-line errors. PNG bombs and memory: tests/test_png_fuzz.py."""

import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import vbkernels
from tests.helpers import child_pids, process_alive
from vbkernels import files
from vbkernels.pipeline import (
    LocalPipeline,
    ManifestRow,
    ManifestWriter,
    PipelineOptions,
    build_task,
    decode_files,
    expand_inputs,
    read_manifest,
)
from vbkernels.pipeline import local as local_engine
from vbkernels.scenes import make_scenes

REPO = Path(__file__).resolve().parents[1]
linux_only = pytest.mark.skipif(not Path("/proc/self/stat").exists(),
                                reason="reads /proc for worker processes")


def _depth_rgb(height, width, seed):
    return vbkernels.encode_depth(make_scenes(1, height, width, seed=seed)["depth"]).numpy()[0]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """40 small depth PNGs: with previews, a 2-worker run lasts a few seconds."""
    path = tmp_path_factory.mktemp("images")
    rgb = _depth_rgb(96, 128, 1)
    for i in range(40):
        Image.fromarray(np.roll(rgb, i, 1)).save(path / f"f{i:03d}.png")
    return path


def _left_alive(pids, within=3.0):
    deadline = time.monotonic() + within
    while time.monotonic() < deadline and any(process_alive(p) for p in pids):
        time.sleep(0.05)
    return [p for p in pids if process_alive(p)]


# The command with a 10-minute stop grace: a stop that waits out its grace period (the
# old fault) then shows as a hang, not as a few seconds too many.
_LONG_GRACE = ("import vbkernels.pipeline.local as engine; engine._SHUTDOWN_GRACE_S = 600; "
               "from vbkernels.cli import main; main(prog_name='vbkernels')")


def _start(inputs, out, *extra, long_grace=False):
    command = ["-c", _LONG_GRACE] if long_grace else ["-m", "vbkernels"]
    return subprocess.Popen(
        [sys.executable, *command, "decode", "depth", *map(str, inputs), "-o", str(out),
         "--workers", "2", "--device", "cpu", "--quiet", *extra],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
        # A shell's background job starts with SIGINT ignored; the CLI must see it here.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _wait_for_outputs(process, out, count=1, pattern="*.depth.npy"):
    deadline = time.monotonic() + 120
    while len(list(out.glob(pattern))) < count and time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        time.sleep(0.02)
    workers = child_pids(process.pid)
    assert len(workers) == 2, workers
    return workers


def _finish(process, timeout=60):
    try:
        _, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the command did not stop within {timeout} s")
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    return stderr


def _temporaries(out):
    return [p for p in out.rglob("*") if p.name.endswith(".tmp")]


def _rows(out):
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


# ----------------------------------------------------------------- process lifetime


@linux_only
def test_sigterm_stops_like_ctrl_c_and_no_worker_survives(folder, tmp_path):
    out = tmp_path / "out"
    process = _start([folder], out, "--preview")
    workers = _wait_for_outputs(process, out)
    process.send_signal(signal.SIGTERM)
    stderr = _finish(process)
    assert process.returncode == 143, stderr
    assert "interrupted: wrote" in stderr and "SIGTERM" in stderr
    assert not _left_alive(workers)
    assert not _temporaries(out)
    assert all(row["status"] == "ok" for row in _rows(out))  # nothing half-done recorded


@linux_only
def test_workers_leave_when_the_main_process_is_killed(folder, tmp_path):
    """Before: workers lived on with parent 1, blocked on their queue, for ever."""
    out = tmp_path / "out"
    process = _start([folder], out, "--preview")
    workers = _wait_for_outputs(process, out)
    process.kill()
    _finish(process)
    assert not _left_alive(workers, within=3.0)
    # A worker killed mid-write may leave its temporary file: the next run removes it.
    decode_files([folder / "f000.png"], "depth", out, workers=0, device="cpu")
    assert not _temporaries(out)


@linux_only
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["kill", "term"])
def test_a_dead_worker_fails_at_most_its_one_input(folder, tmp_path, sig):
    """Before: SIGKILL broke the pool (every input in flight failed, then an uncaught
    BrokenProcessPool); SIGTERM failed the file with "cannot write: 1"."""
    out = tmp_path / "out"
    process = _start(sorted(folder.glob("*.png"))[:16], out, "--preview")
    workers = _wait_for_outputs(process, out)
    os.kill(workers[0], sig)
    stderr = _finish(process)
    rows = _rows(out)
    failed = [row for row in rows if row["status"] == "failed"]
    assert len(rows) == 16 and len(failed) <= 1, stderr
    assert "Traceback" not in stderr
    if failed:  # it was on a file (it nearly always is)
        assert process.returncode == 1
        assert "worker process" in failed[0]["error"] and "died" in failed[0]["error"]
        assert signal.Signals(sig).name in failed[0]["error"]
    assert not _temporaries(out)
    assert not _left_alive(workers)


@linux_only
def test_ctrl_c_is_quick_and_a_second_one_still_exits_130(folder, tmp_path):
    """Before: the stop sat out its whole 10 s grace period; a second Ctrl-C in it gave
    click's "Aborted!" and exit status 1."""
    out = tmp_path / "one"
    process = _start([folder], out, "--preview", long_grace=True)
    workers = _wait_for_outputs(process, out)
    process.send_signal(signal.SIGINT)
    # Files in flight take ~0.2 s here: the run stops long before the grace period ends.
    stderr = _finish(process, timeout=120)
    assert process.returncode == 130, stderr
    assert not _left_alive(workers)

    out = tmp_path / "two"
    process = _start([folder], out, "--preview")
    workers = _wait_for_outputs(process, out)
    process.send_signal(signal.SIGINT)
    time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    stderr = _finish(process)
    assert process.returncode == 130, stderr
    assert "Aborted" not in stderr and "Traceback" not in stderr and "died" not in stderr
    assert not _temporaries(out)
    assert not _left_alive(workers)


_STUCK_WORKER = """
import ctypes, sys, time
from vbkernels.pipeline.workers import WorkerPool

def deadlock_holding_the_gil():
    # As a worker hung in C code does (a fork-inherited lock): a mutex locked twice,
    # through PyDLL, which keeps the GIL; signals do not interrupt it.
    libc, mutex = ctypes.PyDLL(None), ctypes.create_string_buffer(64)
    libc.pthread_mutex_lock(mutex)
    libc.pthread_mutex_lock(mutex)

pool = WorkerPool(1)
pool.submit(deadlock_holding_the_gil)
print(pool.pids()[0], flush=True)
time.sleep(120)
"""


@linux_only
def test_a_worker_stuck_in_c_code_still_dies_with_its_parent():
    parent = subprocess.Popen([sys.executable, "-c", _STUCK_WORKER], cwd=REPO,
                              stdout=subprocess.PIPE, text=True)
    try:
        worker = int(parent.stdout.readline())
        time.sleep(0.5)  # the task has started
        assert process_alive(worker)
    finally:
        parent.kill()
        parent.wait()  # not communicate(): a surviving worker holds the pipe open
        parent.stdout.close()
    left = _left_alive([worker], within=3.0)
    for pid in left:  # the fault: do not leave it running after the test
        os.kill(pid, signal.SIGKILL)
    assert not left


def _self_kill(seconds):
    time.sleep(seconds)
    os.kill(os.getpid(), signal.SIGKILL)


def test_pool_replaces_a_dead_worker_and_fails_only_its_task():
    from vbkernels.pipeline.workers import WorkerDied, WorkerPool

    pool = WorkerPool(2)
    try:
        slow = [pool.submit(time.sleep, 0.3) for _ in range(3)]
        doomed = pool.submit(_self_kill, 0.05)
        after = [pool.submit(os.getpid) for _ in range(4)]
        with pytest.raises(WorkerDied, match="SIGKILL"):
            doomed.result(timeout=30)
        assert all(f.result(timeout=30) is None for f in slow)
        pids = {f.result(timeout=30) for f in after}
        assert pool.deaths == 1 and len(pool.pids()) == 2 and pids <= set(pool.pids())
    finally:
        pool.shutdown()


def _exit_at_start():
    os._exit(3)


def test_a_pool_whose_workers_cannot_start_gives_up_instead_of_looping():
    from vbkernels.pipeline.workers import PoolBroken, WorkerPool

    pool = WorkerPool(1, initializer=_exit_at_start)
    try:
        with pytest.raises(PoolBroken, match="keep dying"):
            pool.submit(os.getpid).result(timeout=60)
        with pytest.raises(PoolBroken):  # later calls fail the same way, not with a raise
            pool.submit(os.getpid).result(timeout=60)
    finally:
        pool.terminate()


def test_a_worker_killed_mid_write_leaves_no_temporary_file(folder, tmp_path, monkeypatch):
    """The pool's workers fork from this process, so the patched writer is theirs: it
    writes half of one output's temporary file and dies as the OOM killer would."""
    real = local_engine.write_atomic

    def dying_write(path, data, *, overwrite):
        if path.name == "f003.depth.npy":
            with open(files.tmp_name(path), "wb") as handle:
                handle.write(data[: len(data) // 2])
            os.kill(os.getpid(), signal.SIGKILL)
        real(path, data, overwrite=overwrite)

    monkeypatch.setattr(local_engine, "write_atomic", dying_write)
    inputs = sorted(folder.glob("*.png"))[:8]
    out = tmp_path / "out"
    summary = decode_files(inputs, "depth", out, workers=2, device="cpu", kinds="npy")
    assert list(summary.failed) == [str(folder / "f003.png")]
    assert "SIGKILL" in summary.failed[str(folder / "f003.png")]
    assert summary.worker_deaths == 1 and len(summary.done) == 7
    assert not _temporaries(out)
    monkeypatch.setattr(local_engine, "write_atomic", real)
    again = decode_files(inputs, "depth", out, workers=2, device="cpu", kinds="npy")
    assert again.done == [str(folder / "f003.png")] and len(again.skipped) == 7


def test_stale_temporary_files_of_dead_writers_are_removed_on_the_next_run(folder, tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    pid, host = int(dead.stdout), files.host_tag()
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    stale = out / "sub" / f".f000.depth.npy.{host}.{pid}.tmp"
    elsewhere = out / f".f001.depth.npy.0badc0de.{pid}.tmp"  # another machine's writer
    live = out / f".f002.depth.npy.{host}.{os.getpid()}.tmp"
    for path in (stale, elsewhere, live):
        path.write_bytes(b"half")
    decode_files([folder / "f000.png"], "depth", out, workers=0, device="cpu")
    assert not stale.exists()       # this machine's writer is gone
    assert elsewhere.exists()       # maybe alive: its own machine's runs decide
    assert live.exists()            # its writer (this process) is alive


def test_temporary_names_stay_within_255_bytes(tmp_path):
    """Before: ``.NAME.PID.tmp`` pushed legal names of 236-245 bytes past the limit."""
    for length in (10, 236, 245, 255):
        path = tmp_path / ("é" * (length // 2) + "a" * (length % 2))
        assert len(os.fsencode(path.name)) == length
        tmp = files.tmp_name(path)
        assert len(os.fsencode(tmp.name)) <= 255 and tmp.parent == path.parent
        assert tmp.name.endswith(f".{files.host_tag()}.{os.getpid()}.tmp")
        assert tmp.name.startswith(".")
        files.write_atomic(path, b"data", overwrite=False)
        assert path.read_bytes() == b"data" and not list(tmp_path.glob(".*"))
        path.unlink()
    a, b = tmp_path / ("a" * 250 + "1"), tmp_path / ("a" * 250 + "2")
    assert files.tmp_name(a) != files.tmp_name(b)


# ---------------------------------------------------------------- names and completeness


def test_a_video_and_an_image_with_the_same_output_names_clash(tmp_path):
    """Before: clip.mp4's frame 0 silently replaced clip/000000.png's outputs."""
    av = pytest.importorskip("av")
    folder = tmp_path / "in"
    (folder / "clip").mkdir(parents=True)
    Image.fromarray(_depth_rgb(20, 24, 2)).save(folder / "clip" / "000000.png")
    _write_mp4(av, folder / "clip.mp4", np.stack([_depth_rgb(16, 16, 3)] * 3))
    out = tmp_path / "out"
    summary = decode_files([folder], "depth", out, workers=0, device="cpu")
    # Sorted, clip/000000.png comes first: the video is the one refused.
    assert list(summary.failed) == [str(folder / "clip.mp4")]
    assert "000000.png" in summary.failed[str(folder / "clip.mp4")]
    assert np.load(out / "clip" / "000000.depth.npy").shape == (20, 24)
    claims = local_engine.OutputClaims()
    from vbkernels.pipeline import Source
    image = Source(Path("x/clip/000001.png"), "image", Path("clip/000001.png"))
    video = Source(Path("x/clip.mp4"), "video", Path("clip.mp4"))
    assert claims.claim(image, out / "clip" / "000001") is None
    assert claims.claim(video, out / "clip" / "000000") == image.path  # image came first


def _write_mp4(av, path, frames, options=None):
    with av.open(str(path), mode="w", options=options or {}) as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def test_a_truncated_video_fails_and_is_redone(tmp_path):
    """Before: cut in half, it was recorded ok with 12 of 30 frames and reruns skipped it."""
    av = pytest.importorskip("av")
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (30, 32, 32, 3), dtype=np.uint8)
    whole = tmp_path / "whole.mp4"
    _write_mp4(av, whole, frames, {"movflags": "faststart"})
    folder = tmp_path / "in"
    folder.mkdir()
    data = whole.read_bytes()
    (folder / "cut.mp4").write_bytes(data[: len(data) // 2])
    out = tmp_path / "out"
    summary = decode_files([folder], "depth", out, workers=1, device="cpu", kinds="npy")
    assert list(summary.failed) == [str(folder / "cut.mp4")]
    assert "cut short" in summary.failed[str(folder / "cut.mp4")]
    again = decode_files([folder], "depth", out, workers=1, device="cpu", kinds="npy")
    assert not again.skipped and list(again.failed) == [str(folder / "cut.mp4")]
    complete = decode_files([whole], "depth", tmp_path / "ok", workers=0, device="cpu",
                            kinds="npy")
    assert complete.frames == 30 and not complete.failed
    damaged = tmp_path / "damaged.mp4"  # whole, but one packet mid-stream is garbage
    _remux_with_garbage(av, whole, damaged, 15)
    summary = decode_files([damaged], "depth", tmp_path / "bad", workers=0, device="cpu",
                           kinds="npy")
    assert list(summary.failed) == [str(damaged)] and summary.frames < 30


def _remux_with_garbage(av, source, target, index):
    with av.open(str(source)) as inp, av.open(str(target), "w") as out:
        stream = out.add_stream_from_template(inp.streams.video[0])
        for i, packet in enumerate(inp.demux(inp.streams.video[0])):
            if packet.dts is None:
                continue
            if i == index:
                bad = av.Packet(b"\x00\x00\x00\x01\x65" + bytes(range(256)) * 4)
                bad.pts, bad.dts, bad.time_base = packet.pts, packet.dts, packet.time_base
                packet = bad
            packet.stream = stream
            out.mux(packet)


def test_a_file_name_that_is_not_utf8_is_recorded_losslessly(folder, tmp_path):
    """Before: UnicodeEncodeError in the manifest stopped the run, and every rerun."""
    names = [b"a.png", b"bad\xff\xfe.png", b"z.png"]
    src = tmp_path / "in"
    src.mkdir()
    for name in names:
        (src / os.fsdecode(name)).write_bytes((folder / "f000.png").read_bytes())
    out = tmp_path / "out"
    summary = decode_files([src], "depth", out, workers=0, device="cpu", kinds="npy")
    assert len(summary.done) == 3 and not summary.failed
    text = (out / "manifest.jsonl").read_bytes().decode("utf-8")  # still UTF-8
    paths = {os.fsencode(row["path"]) for row in map(json.loads, text.splitlines())}
    assert os.fsencode(src) + b"/bad\xff\xfe.png" in paths
    again = decode_files([src], "depth", out, workers=0, device="cpu", kinds="npy")
    assert len(again.skipped) == 3
    row = ManifestRow("plain é", 1, ["é.depth.npy"])
    assert "é" in row.to_json()  # other rows keep their characters


def test_a_torn_manifest_line_is_skipped_with_a_warning_and_not_glued_on(tmp_path):
    with ManifestWriter(tmp_path) as writer:
        writer.append(ManifestRow(str(tmp_path / "a.png"), 1, ["a.depth.npy"]))
    with open(tmp_path / "manifest.jsonl", "ab") as handle:
        handle.write(b'{"path": "torn", "fra')  # a crash mid-row
    with pytest.warns(RuntimeWarning, match="no newline"):
        assert list(read_manifest(tmp_path)) == [str(tmp_path / "a.png")]
    with ManifestWriter(tmp_path) as writer:
        writer.append(ManifestRow(str(tmp_path / "b.png"), 1, ["b.depth.npy"]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rows = read_manifest(tmp_path)
    assert sorted(rows) == [str(tmp_path / "a.png"), str(tmp_path / "b.png")]


def test_a_short_manifest_write_is_taken_back(tmp_path, monkeypatch):
    writer = ManifestWriter(tmp_path)
    writer.append(ManifestRow("a", 1, ["a.depth.npy"]))
    real_write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: real_write(fd, data[:7]))
    with pytest.raises(OSError, match="short write"):
        writer.append(ManifestRow("b", 1, ["b.depth.npy"]))
    monkeypatch.setattr(os, "write", real_write)
    writer.append(ManifestRow("c", 1, ["c.depth.npy"]))
    writer.close()
    lines = (tmp_path / "manifest.jsonl").read_text().splitlines()
    assert [json.loads(line)["path"] for line in lines] == ["a", "c"]


def _mount_tmpfs(path, size):
    if not sys.platform.startswith("linux"):
        return "tmpfs is Linux's"
    path.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                            capture_output=True, text=True)
    return None if result.returncode == 0 else (
        f"cannot mount a tmpfs here: {result.stderr.strip() or result.returncode}")


def test_a_full_disk_fails_inputs_and_leaves_only_whole_files(folder, tmp_path):
    out = tmp_path / "small"
    why = _mount_tmpfs(out, "160k")
    if why:
        pytest.skip(why)
    try:
        inputs = sorted(folder.glob("*.png"))[:12]  # 48 KB of npy each: the disk fills
        summary = decode_files(inputs, "depth", out, workers=2, device="cpu", kinds="npy")
        assert summary.failed and summary.done
        assert all("No space left" in message or "cannot record" in message
                   for message in summary.failed.values())
        assert not _temporaries(out)
        for path in out.glob("*.npy"):
            assert np.load(path).shape == (96, 128)  # whole, never truncated
        text = (out / "manifest.jsonl").read_bytes() if (out / "manifest.jsonl").exists() \
            else b""
        assert not text or text.endswith(b"\n")
        for line in text.splitlines():
            json.loads(line)
    finally:
        subprocess.run(["umount", "-l", str(out)], check=False)  # -l: even if busy


def test_a_manifest_on_a_full_disk_does_not_stop_the_run(folder, tmp_path):
    """Before: the manifest append's ENOSPC escaped as a traceback and ended the run."""
    out = tmp_path / "full"
    why = _mount_tmpfs(out, "64k")
    if why:
        pytest.skip(why)
    try:
        earlier = b"{}" + b" " * 4093 + b"\n"  # one whole page: the next row needs another
        (out / "manifest.jsonl").write_bytes(earlier)
        fd = os.open(out / "filler", os.O_WRONLY | os.O_CREAT)
        try:
            while os.write(fd, bytes(4096)):
                pass
        except OSError:
            pass  # the disk is full
        finally:
            os.close(fd)
        inputs = sorted(folder.glob("*.png"))[:2]
        summary = decode_files(inputs, "depth", out, workers=0, device="cpu", kinds="npy")
        assert sorted(summary.failed) == [str(p) for p in inputs]
        assert summary.not_recorded == 2
        assert (out / "manifest.jsonl").read_bytes() == earlier
        assert not _temporaries(out) and not list(out.glob("*.npy"))
    finally:
        subprocess.run(["umount", "-l", str(out)], check=False)  # -l: even if busy


def test_a_double_star_glob_does_not_follow_symlink_loops(folder, tmp_path):
    """Before: 40 nested names of each file through the loop, 80 spurious name clashes."""
    (tmp_path / "a").mkdir()
    for name in ("x.png", "y.png"):
        (tmp_path / "a" / name).write_bytes((folder / "f000.png").read_bytes())
    (tmp_path / "a" / "loop").symlink_to("..")
    sources, errors = expand_inputs([str(tmp_path / "**" / "*.png")])
    assert [s.path for s in sources] == [tmp_path / "a" / "x.png", tmp_path / "a" / "y.png"]
    assert not errors


# -------------------------------------------------------------------- one-line errors


def test_an_unwritable_output_directory_is_a_one_line_error(folder, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = subprocess.run(
        [sys.executable, "-m", "vbkernels", "decode", "depth", str(folder / "f000.png"), "-o",
         str(blocker / "out"), "--workers", "0", "--device", "cpu", "--quiet"],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "cannot create the output directory" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_memory_error_has_a_reason(folder, tmp_path, monkeypatch):
    def no_memory(path, max_pixels="pillow"):
        raise MemoryError

    monkeypatch.setattr(local_engine, "read_image", no_memory)
    pipeline = LocalPipeline(build_task("depth"), tmp_path, PipelineOptions(
        workers=1, device="cpu"))
    pipeline.plan(expand_inputs([folder / "f000.png"])[0])
    summary = pipeline.run()
    assert summary.failed == {str(folder / "f000.png"): "cannot read: out of memory "
                                                        "(MemoryError)"}


def test_max_pixels_on_the_command_line(folder, tmp_path):
    from click.testing import CliRunner

    from vbkernels.cli import main

    args = ["decode", "depth", str(folder / "f000.png"), "-o", str(tmp_path / "out"),
            "--workers", "0", "--device", "cpu", "--quiet"]
    refused = CliRunner().invoke(main, [*args, "--max-pixels", "12287"])
    assert refused.exit_code == 1
    assert "128 x 96 = 12288 pixels, over the limit of 12287" in refused.output
    assert CliRunner().invoke(main, [*args, "--max-pixels", "12288"]).exit_code == 0
    bad = CliRunner().invoke(main, [*args, "--max-pixels", "lots"])
    assert bad.exit_code == 2 and "pillow or none" in bad.output


@pytest.mark.parametrize("backend", ["torch", "cpu", "numpy"])
def test_an_expanded_out_is_refused_as_torch_refuses_it(backend):
    """Before: the cpu backend wrote every row into the same memory."""
    from vbkernels._dispatch import available_backends

    if backend not in available_backends():
        pytest.skip(f"the {backend} backend is not available here")
    rgb = torch.from_numpy(_depth_rgb(4, 5, 3))
    out = torch.empty(1, 5).expand(4, 5)
    with pytest.raises(RuntimeError, match="more than one element"):
        vbkernels.decode_depth(rgb, out=out, backend=backend)


_VIDEO_THEN_REPLACE = """
import os, signal, sys
import numpy as np
from vbkernels.pipeline.sources import read_video
from vbkernels.pipeline.workers import WorkerDied, WorkerPool
from vbkernels.video import encode_video

def die():
    os.kill(os.getpid(), signal.SIGKILL)

frames = np.random.default_rng(0).integers(0, 256, (3, 64, 96, 3), dtype=np.uint8)
encode_video(frames, sys.argv[1], codec="yuv444p")
assert len(list(read_video(sys.argv[1]))) == 3  # frames converted on this (main) thread
pool = WorkerPool(1)
try:
    try:
        pool.submit(die).result(timeout=30)
    except WorkerDied:
        pass
    print(pool.submit(os.getpid).result(timeout=30) in pool.pids(), flush=True)
finally:
    pool.shutdown()
"""


@linux_only
def test_a_worker_replaced_after_a_video_read_starts(tmp_path):
    """Before: PyAV's per-thread frame converter (with FFmpeg slice threads) of the main
    thread was freed in the replacement worker, forked from the pool's thread, and that
    worker hung for ever in pthread_cond_destroy, and so did the pool's shutdown."""
    pytest.importorskip("av")
    result = subprocess.run([sys.executable, "-c", _VIDEO_THEN_REPLACE, str(tmp_path / "v.mp4")],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "True", result.stderr
