"""The file pipeline (vbkernels.pipeline): stage functions, the local engine against the
library called on each file alone, the manifest and resume rule, and Ctrl-C."""

import io
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import vbkernels
from tests.helpers import child_pids, process_alive
from vbkernels.pipeline import (
    BatchDecoder,
    LocalPipeline,
    ManifestRow,
    ManifestWriter,
    PipelineOptions,
    Source,
    build_task,
    decode_file,
    decode_files,
    depth_to_png16,
    expand_inputs,
    frames_from_bytes,
    gpu_input,
    input_key,
    is_done,
    output_stem,
    read_frames,
    read_manifest,
)
from vbkernels.scenes import make_scenes

REPO = Path(__file__).resolve().parents[1]
av = pytest.importorskip("av")


def _depth_rgb(n, height, width, seed):
    return vbkernels.encode_depth(make_scenes(n, height, width, seed=seed)["depth"]).numpy()


def _write_mp4(path, frames):
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Mixed sizes interleaved (so batches break on size), a video, a truncated PNG."""
    folder = tmp_path_factory.mktemp("in")
    frames = {"a": _depth_rgb(1, 12, 16, 1)[0], "b": _depth_rgb(1, 10, 14, 2)[0],
              "c": _depth_rgb(1, 12, 16, 3)[0], "d": _depth_rgb(1, 9, 9, 4)[0],
              "e": _depth_rgb(1, 12, 16, 5)[0]}
    for name, rgb in frames.items():
        Image.fromarray(rgb).save(folder / f"{name}.png")
    _write_mp4(folder / "clip.mp4", np.concatenate([_depth_rgb(3, 16, 16, 6)] * 2))
    whole = (folder / "a.png").read_bytes()
    (folder / "broken.png").write_bytes(whole[: len(whole) // 2])
    return folder


def _expected_depth(path):
    source = Source(Path(path), "video" if path.suffix == ".mp4" else "image", Path(path.name))
    return [vbkernels.decode_depth(rgb) for rgb in read_frames(source)]


def _outputs(out):
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and p.name not in ("manifest.jsonl", "summary.json")
            and p.parent.name != "runs"}


@pytest.fixture(scope="module")
def runs(inputs, tmp_path_factory):
    """The same folder decoded with 0 (in-process), 1 and 2 worker processes."""
    results = {}
    for workers in (0, 1, 2):
        out = tmp_path_factory.mktemp(f"out{workers}")
        summary = decode_files([inputs], "depth", out, workers=workers, batch_size=2,
                               device="cpu")
        results[workers] = (out, summary)
    return results


def test_outputs_match_the_library_on_each_file_alone(inputs, runs):
    out, summary = runs[2]
    assert summary.frames == 5 + 6 and not summary.interrupted
    for path in sorted(inputs.iterdir()):
        if path.name == "broken.png":
            continue
        expected = _expected_depth(path)
        for index, depth in enumerate(expected):
            stem = out / path.stem if len(expected) == 1 and path.suffix == ".png" else (
                out / path.stem / f"{index:06d}")
            got = np.load(stem.with_name(stem.name + ".depth.npy"))
            assert got.dtype == np.float32 and np.array_equal(got, depth, equal_nan=True)
            png = np.asarray(Image.open(stem.with_name(stem.name + ".depth.png")))
            assert np.array_equal(png.astype(np.int64),
                                  depth_to_png16(depth, 1000).astype(np.int64))
    assert len(list((out / "clip").glob("*.depth.npy"))) == 6


def test_worker_count_changes_nothing(runs):
    reference = _outputs(runs[0][0])
    assert len(reference) == 2 * 11
    for workers in (1, 2):
        assert _outputs(runs[workers][0]) == reference


def test_broken_file_is_a_failed_row_and_the_rest_go_on(inputs, runs):
    for out, summary in runs.values():
        assert list(summary.failed) == [str(inputs / "broken.png")]
        assert "cannot read" in summary.failed[str(inputs / "broken.png")]
        rows = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
        by_path = {Path(row["path"]).name: row for row in rows}
        assert sorted(by_path) == ["a.png", "b.png", "broken.png", "c.png", "clip.mp4",
                                   "d.png", "e.png"]
        assert by_path["broken.png"]["status"] == "failed" and by_path["broken.png"]["error"]
        run_fields = ("run", "time", "engine", "backend")
        assert {k: v for k, v in by_path["clip.mp4"].items() if k not in run_fields} == {
            "path": str(inputs / "clip.mp4"), "frames": 6, "status": "ok", "error": None,
            "outputs": sorted(f"clip/{i:06d}.depth.{ext}" for i in range(6)
                              for ext in ("npy", "png"))}
        assert by_path["a.png"]["outputs"] == ["a.depth.npy", "a.depth.png"]
        assert not list(out.rglob("*.tmp"))


def test_rerun_skips_done_inputs_and_redoes_partial_ones(inputs, tmp_path):
    out = tmp_path / "out"
    decode_files([inputs], "depth", out, workers=0, device="cpu")
    again = decode_files([inputs], "depth", out, workers=0, device="cpu")
    assert again.frames == 0 and len(again.skipped) == 6 and list(again.failed) == [
        str(inputs / "broken.png")]
    # A video with one frame's PNG missing and an image with only its .npy are redone.
    (out / "clip" / "000004.depth.png").unlink()
    (out / "c.depth.png").unlink()
    (out / "c.depth.npy").write_bytes(b"stale")
    third = decode_files([inputs], "depth", out, workers=1, device="cpu")
    assert sorted(Path(p).name for p in third.done) == ["c.png", "clip.mp4"]
    assert third.frames == 1 + 6 and len(third.skipped) == 4
    assert np.array_equal(np.load(out / "c.depth.npy"), _expected_depth(inputs / "c.png")[0])
    rows = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert [r["status"] for r in rows if r["path"].endswith("clip.mp4")] == ["ok", "skipped", "ok"]
    # Asking for a preview too: nothing has one yet, so everything is redone.
    pytest.importorskip("matplotlib")
    fourth = decode_files([inputs / "a.png"], "depth", out, workers=0, device="cpu",
                          kinds="npy,png,preview")
    assert fourth.done == [str(inputs / "a.png")] and (out / "a.depth.preview.png").exists()


def test_video_without_an_ok_row_is_redone(inputs, tmp_path):
    out = tmp_path / "out"
    decode_files([inputs / "clip.mp4"], "depth", out, workers=0, device="cpu")
    (out / "manifest.jsonl").unlink()  # as if killed before the row was written
    again = decode_files([inputs / "clip.mp4"], "depth", out, workers=0, device="cpu")
    assert again.frames == 6 and not again.skipped


def test_is_done_rule(tmp_path):
    image = Source(tmp_path / "x.png", "image", Path("x.png"))
    suffixes = [".depth.npy", ".depth.png"]
    assert is_done(image, suffixes, tmp_path) is None
    (tmp_path / "x.depth.npy").write_bytes(b"")
    assert is_done(image, suffixes, tmp_path) is None  # partial
    (tmp_path / "x.depth.png").write_bytes(b"")
    row = is_done(image, suffixes, tmp_path)
    assert row.status == "skipped" and row.outputs == ["x.depth.npy", "x.depth.png"]
    video = Source(tmp_path / "v.mp4", "video", Path("v.mp4"))
    (tmp_path / "v").mkdir()
    (tmp_path / "v" / "000000.depth.npy").write_bytes(b"")
    assert is_done(video, [".depth.npy"], tmp_path, manifest={}) is None  # no ok row
    with ManifestWriter(tmp_path) as writer:
        writer.append(ManifestRow(str(video.path), 1, ["v/000000.depth.npy"], "ok"))
    manifest = read_manifest(tmp_path)
    assert is_done(video, [".depth.npy"], tmp_path, manifest=manifest).frames == 1
    assert is_done(video, [".depth.npy", ".depth.png"], tmp_path, manifest=manifest) is None


def _append_rows(path, tag, count):
    with ManifestWriter(path) as writer:
        for i in range(count):
            writer.append(ManifestRow(f"{tag}/{i}", i, [f"x{i}" * 50], "ok"))


def test_manifest_appends_whole_lines_from_two_processes(tmp_path):
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_append_rows, args=(tmp_path, tag, 300)) for tag in "ab"]
    for process in workers:
        process.start()
    for process in workers:
        process.join()
    lines = (tmp_path / "manifest.jsonl").read_text().splitlines()
    assert len(lines) == 600
    assert sorted(json.loads(line)["path"] for line in lines) == sorted(
        f"{tag}/{i}" for tag in "ab" for i in range(300))
    with pytest.raises(ValueError, match="status"):
        ManifestRow("p", status="done")


def test_stage_functions_for_a_distributed_engine(inputs):
    """What a Ray actor would do: bytes in, build_task, decode, encode per frame."""
    task = build_task("depth", lam=-2.5, c=2.0)
    assert task.suffixes() == [".depth.npy", ".depth.png"]
    assert task.suffixes("npy,preview") == [".depth.npy", ".depth.preview.png"]
    assert task.suffixes(["png16"]) == [".depth.png"]
    for name in ("a.png", "clip.mp4"):
        data = (inputs / name).read_bytes()
        frames = list(frames_from_bytes(data, name))
        source = Source(inputs / name, "video" if name.endswith("mp4") else "image", Path(name))
        assert all(np.array_equal(x, y) for x, y in zip(frames, read_frames(source), strict=True))
    batch = torch.from_numpy(np.stack(frames))
    decoded = task.decode(batch)
    files = task.encode({k: v[1].numpy() for k, v in decoded.items()}, ["npy"])
    expected = vbkernels.decode_depth(frames[1], lam=-2.5, c=2.0)
    assert np.array_equal(np.load(io.BytesIO(files[".depth.npy"])), expected)


@pytest.mark.parametrize("name, options, words", [
    ("depth", dict(lam=0.5), "lam"), ("depth", dict(png_scale=0), "png_scale"),
    ("depth", dict(vmin=5.0, vmax=1.0), "vmin"), ("seg", dict(palette="nope"), "palette"),
    ("instances", dict(background=(0, 0, 300)), "background"),
    ("instances", dict(min_pixels=0), "min_pixels"), ("depth", dict(backend="gpu"), "backend"),
    ("albedo", {}, "task"),
])
def test_build_task_checks_options(name, options, words):
    with pytest.raises(ValueError, match=words):
        build_task(name, **options)


def test_output_choice_is_checked():
    with pytest.raises(ValueError, match="npy, preview"):
        build_task("normals").suffixes("png")
    with pytest.raises(ValueError):
        build_task("depth").suffixes("")


def test_output_stem_and_keep_suffix(tmp_path):
    image = Source(tmp_path / "sub" / "a.png", "image", Path("sub/a.png"))
    video = Source(tmp_path / "clip.mp4", "video", Path("clip.mp4"))
    assert output_stem(image, 0, tmp_path / "o") == tmp_path / "o" / "sub" / "a"
    assert output_stem(image, 0, tmp_path / "o", keep_suffix=True) == tmp_path / "o/sub/a.png"
    assert output_stem(video, 7, tmp_path / "o") == tmp_path / "o" / "clip" / "000007"
    assert output_stem(video, 7, tmp_path / "o", keep_suffix=True) == (
        tmp_path / "o" / "clip.mp4" / "000007")
    sources, errors = expand_inputs([tmp_path / "nothing.png"])
    assert not sources and errors == [(str(tmp_path / "nothing.png"), "no such file or directory")]


def test_batch_decoder_host_and_device_frames_agree():
    frames = list(_depth_rgb(3, 8, 10, 7))
    decoder = BatchDecoder(build_task("depth"), torch.device("cpu"))
    from_host = decoder.submit(frames).result()["depth"]
    from_tensors = decoder.submit([torch.from_numpy(f) for f in frames]).result()["depth"]
    assert np.array_equal(from_host, from_tensors)
    assert np.array_equal(from_host, vbkernels.decode_depth(np.stack(frames)))


def test_gpu_input_is_off_on_cpu_and_with_the_flag(inputs, tmp_path):
    jpeg = Source(tmp_path / "x.jpg", "image", Path("x.jpg"))
    assert not gpu_input.on_device(jpeg, torch.device("cpu"), True)
    assert not gpu_input.on_device(jpeg, torch.device("cuda"), False)
    if gpu_input.jpeg_decoder_available():  # the nvJPEG route's code, run on the CPU
        rgb = _depth_rgb(1, 16, 16, 8)[0]
        Image.fromarray(rgb).save(jpeg.path, quality=95)
        got = gpu_input.decode_jpeg_bytes(jpeg.path.read_bytes(), torch.device("cpu"))
        assert got.shape == (16, 16, 3) and got.dtype == torch.uint8
    else:
        assert not gpu_input.on_device(jpeg, torch.device("cuda"), True)


def test_name_clash_fails_the_second_input(tmp_path):
    for folder in ("x", "y"):
        (tmp_path / folder).mkdir()
        Image.fromarray(_depth_rgb(1, 6, 6, 9)[0]).save(tmp_path / folder / "a.png")
    Image.fromarray(_depth_rgb(1, 6, 6, 9)[0]).save(tmp_path / "x" / "a.jpg")
    pipeline = LocalPipeline(build_task("depth"), tmp_path / "out",
                             PipelineOptions(workers=0, device="cpu"))
    sources, _ = expand_inputs([tmp_path / "x" / "a.png", tmp_path / "y" / "a.png",
                                tmp_path / "x" / "a.jpg"])
    pipeline.plan(sources)
    summary = pipeline.run()
    assert sorted(Path(p).parent.name + "/" + Path(p).name for p in summary.failed) == [
        "x/a.jpg", "y/a.png"]
    assert "--keep-suffix" in summary.failed[str(tmp_path / "y" / "a.png")]
    kept = decode_files([tmp_path / "x"], "depth", tmp_path / "kept", workers=0,
                        device="cpu", keep_suffix=True)
    assert not kept.failed and (tmp_path / "kept" / "a.jpg.depth.npy").exists()
    assert (tmp_path / "kept" / "a.png.depth.npy").exists()


@pytest.mark.skipif(not Path("/proc").exists(), reason="reads /proc for worker processes")
def test_ctrl_c_stops_cleanly(tmp_path):
    pytest.importorskip("matplotlib")
    _write_mp4(tmp_path / "long.mp4", np.concatenate([_depth_rgb(4, 32, 32, 10)] * 20))
    out = tmp_path / "out"
    process = subprocess.Popen(
        [sys.executable, "-m", "vbkernels", "decode", "depth", str(tmp_path / "long.mp4"),
         "-o", str(out), "--workers", "2", "--batch-size", "1", "--preview", "--device", "cpu"],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
        # A shell's background job starts with SIGINT ignored; the CLI must see it here.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 120
        while not list(out.glob("long/*.depth.npy")) and time.monotonic() < deadline:
            assert process.poll() is None, process.communicate()
            time.sleep(0.05)
        workers = child_pids(process.pid)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, stderr
    assert "interrupted: wrote" in stderr and "long.mp4" in stderr
    written = int(stderr.split("interrupted: wrote ")[1].split()[0])
    assert 0 < written < 80 and len(list(out.glob("long/*.depth.npy"))) >= written
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    assert len(workers) >= 2 and not [pid for pid in workers if process_alive(pid)]
    rows = (out / "manifest.jsonl").read_text() if (out / "manifest.jsonl").exists() else ""
    assert '"ok"' not in rows  # the video is not done: a rerun redoes it


def test_e2e_benchmark_runs_on_a_tiny_folder(tmp_path):
    """The benchmark's code paths (no figures checked: timing never decides a test)."""
    from vbkernels.benchmark import e2e

    result = e2e.run(frames=2, height=24, width=32, folder=tmp_path / "in", log=lambda _: None,
                     rounds=1)
    assert result["frames"] == 2 and set(result["rows"]) >= {
        "pipeline, defaults", "pipeline, --workers 1", "read only, processes",
        "kernel alone (batches of 16)", "plain multiprocessing pool"}
    assert "| pipeline, defaults |" in e2e.markdown(result)


def test_decode_file_from_bytes_writes_what_the_local_engine_writes(inputs, runs, tmp_path):
    """The per-file unit a distributed engine runs: same files, same names, same rows."""
    task = build_task("depth")
    rows = {}
    for path in sorted(inputs.iterdir()):
        source = Source.from_name(f"s3://bucket/{path.name}", path.name)
        rows[path.name] = decode_file(task, source, tmp_path, data=path.read_bytes(),
                                      device="cpu", batch_size=4)
    assert _outputs(tmp_path) == _outputs(runs[0][0])
    assert rows["broken.png"].status == "failed" and rows["broken.png"].error
    assert rows["clip.mp4"].path == "s3://bucket/clip.mp4" and rows["clip.mp4"].frames == 6
    assert rows["a.png"].outputs == ["a.depth.npy", "a.depth.png"]
    assert input_key(rows["clip.mp4"].path) == "s3://bucket/clip.mp4"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("task", ["depth", "seg"])
def test_cuda_pipeline_writes_what_the_cpu_pipeline_writes(inputs, runs, task, tmp_path):
    """The GPU path (pinned staging, upload and download on side streams, one batch in
    flight) gives the CPU run's files byte for byte: uint8 decoding is exact on every
    backend. Runs in the device check (``-k cuda``); JPEG/video GPU input is off so both
    runs read the same pixels."""
    if task == "depth":
        reference = _outputs(runs[2][0])
    else:
        cpu = tmp_path / "cpu"
        decode_files([inputs], task, cpu, workers=2, batch_size=2, device="cpu")
        reference = _outputs(cpu)
    out = tmp_path / "cuda"
    summary = decode_files([inputs], task, out, workers=2, batch_size=2, device="cuda",
                           gpu_input=False)
    assert summary.frames == 5 + 6
    assert _outputs(out) == reference
