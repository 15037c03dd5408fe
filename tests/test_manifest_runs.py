"""What a run leaves behind on the local engine: refused outputs, ``file://`` inputs, the
run fields of manifest rows, ``summary.json``, ``--dry-run``, and the rows of a run
stopped by a real SIGINT. (The Ray engine's interrupt is in test_distributed.py.)"""

import datetime
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from vbkernels.cli import main
from vbkernels.pipeline import decode_files
from vbkernels.pipeline.outputs import UnsupportedOutput, check_output

ROOT = Path(__file__).resolve().parents[1]


def make_pngs(folder: Path, count: int, shape=(24, 32)) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(3)
    paths = []
    for i in range(count):
        path = folder / f"f{i:03d}.png"
        Image.fromarray(rng.integers(0, 256, (*shape, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def every_file(folder: Path) -> dict[str, int]:
    return {p.relative_to(folder).as_posix(): p.stat().st_mtime_ns
            for p in folder.rglob("*") if p.is_file()}


# ----------------------------------------------------------------- refused outputs


def _unwritable(output: str):
    """An output scheme no installed storage client writes (s3:// and fsspec's schemes are
    object stores now, tests/test_storage.py)."""
    if output.startswith("gs://"):
        from importlib.util import find_spec

        if find_spec("gcsfs") is not None:
            pytest.skip("gcsfs is installed: gs:// outputs are written")
    return output


@pytest.mark.parametrize("engine", ["local", "ray"])
@pytest.mark.parametrize("output", ["gs://bucket/out", "nosuchscheme://nn/out"])
def test_scheme_outputs_are_refused_before_any_work(tmp_path, monkeypatch, engine, output):
    output = _unwritable(output)
    make_pngs(tmp_path / "in", 1)
    monkeypatch.chdir(tmp_path)
    before = every_file(tmp_path)

    result = CliRunner().invoke(main, ["decode", "depth", "in", "-o", output, "--engine",
                                       engine, "--quiet"])

    assert result.exit_code == 2, result.output
    scheme = output.split("://")[0]
    assert f"no installed storage client handles {scheme}://" in result.output
    assert "Traceback" not in result.output
    assert sorted(os.listdir(tmp_path)) == ["in"]  # no s3:/ folder, nothing else
    assert every_file(tmp_path) == before


def test_the_python_api_of_both_engines_refuses_them_too(tmp_path, monkeypatch):
    from vbkernels.distributed import decode_files as decode_on_ray

    make_pngs(tmp_path / "in", 1)
    monkeypatch.chdir(tmp_path)
    for run in (decode_files, decode_on_ray):
        with pytest.raises(UnsupportedOutput, match=r"handles nosuchscheme://"):
            run(["in"], "depth", "nosuchscheme://bucket/out", workers=0)
    assert sorted(os.listdir(tmp_path)) == ["in"]


def test_file_uris_are_local_paths(tmp_path):
    assert check_output((tmp_path / "a b").as_uri()) == tmp_path / "a b"
    assert check_output("relative/out") == Path("relative/out")
    with pytest.raises(ValueError, match="names the host"):
        check_output("file://server/share/out")


# ------------------------------------------------------------------ file:// inputs


def test_the_local_engine_reads_file_uris(tmp_path):
    (single,) = make_pngs(tmp_path / "one", 1)
    make_pngs(tmp_path / "in dir" / "sub", 2)
    out = tmp_path / "out"

    summary = decode_files([single.as_uri(), (tmp_path / "in dir").as_uri()], "depth",
                           out.as_uri(), workers=0, kinds="npy", keep_suffix=True)

    assert not summary.failed
    assert sorted(summary.done) == sorted(
        [str(single)] + [str(tmp_path / "in dir" / "sub" / f"f00{i}.png") for i in (0, 1)])
    assert sorted(every_file(out)) == ["f000.png.depth.npy", "manifest.jsonl",
                                       f"runs/{rows(out)[0]['run']}.json",
                                       "sub/f000.png.depth.npy", "sub/f001.png.depth.npy",
                                       "summary.json"]


def test_other_uri_inputs_say_which_engine_reads_them(tmp_path):
    summary = decode_files(["s3://bucket/a.png"], "depth", tmp_path / "out", workers=0)
    assert "Ray engine only" in summary.failed["s3://bucket/a.png"]


# ---------------------------------------------------------- run fields and summaries


def test_rows_name_their_run_time_engine_and_backend(tmp_path):
    make_pngs(tmp_path / "in", 3)
    (tmp_path / "in" / "broken.png").write_bytes(b"not a png")
    out = tmp_path / "out"

    first = decode_files([tmp_path / "in"], "depth", out, workers=0, kinds="npy")
    first_rows = rows(out)
    second = decode_files([tmp_path / "in"], "depth", out, workers=0, kinds="npy")
    second_rows = rows(out)[len(first_rows):]

    assert len(first.done) == 3 and len(second.skipped) == 3
    runs = {row["run"] for row in first_rows}, {row["run"] for row in second_rows}
    assert len(runs[0]) == 1 and len(runs[1]) == 1 and runs[0] != runs[1]
    for row in first_rows + second_rows:
        assert row["engine"] == "local"
        assert row["backend"] in ("cpu", "torch")  # "auto" resolved on the CPU
        when = datetime.datetime.fromisoformat(row["time"])
        assert abs((datetime.datetime.now(datetime.timezone.utc) - when).total_seconds()) < 600
    assert {row["status"] for row in second_rows} == {"skipped", "failed"}

    run_files = sorted((out / "runs").glob("*.json"))
    assert [p.stem for p in run_files] == sorted(runs[0] | runs[1])
    latest = json.loads((out / "summary.json").read_text())
    assert latest == json.loads((out / "runs" / f"{next(iter(runs[1]))}.json").read_text())
    assert (latest["inputs"], latest["done"], latest["skipped"], latest["failed"]) == (4, 0, 3, 1)
    earlier = json.loads((out / "runs" / f"{next(iter(runs[0]))}.json").read_text())
    assert (earlier["frames"], earlier["done"], earlier["interrupted"]) == (3, 3, False)
    assert earlier["frames_per_s"] > 0 and earlier["seconds"] > 0
    assert earlier["settings"]["kinds"] == ["npy"] and earlier["settings"]["lam"] == -3.0
    assert earlier["engine"] == "local" and earlier["task"] == "depth"


def test_no_manifest_means_no_summary_either(tmp_path):
    make_pngs(tmp_path / "in", 1)
    decode_files([tmp_path / "in"], "depth", tmp_path / "out", workers=0, manifest=False)
    assert sorted(os.listdir(tmp_path / "out")) == ["f000.depth.npy", "f000.depth.png"]


# ------------------------------------------------------------------------ dry runs


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path):
    inputs = tmp_path / "in"
    make_pngs(inputs, 3)
    out = tmp_path / "out"
    decode_files([inputs / "f000.png"], "depth", out, workers=0)
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(inputs / "f001.jpg")  # clashes
    before = every_file(out)

    result = CliRunner().invoke(main, ["decode", "depth", str(inputs), "missing.png", "-o",
                                       str(out), "--dry-run"])

    assert result.exit_code == 1, result.output  # inputs that would fail
    lines = result.stdout.splitlines()
    assert f"skip    {inputs / 'f000.png'}" in lines
    assert f"decode  {inputs / 'f001.jpg'}" in lines  # sorted first: it claims the name
    assert f"decode  {inputs / 'f002.png'}" in lines
    assert any(line.startswith(f"fail    {inputs / 'f001.png'}: its outputs would overwrite")
               for line in lines)
    assert "fail    missing.png: no such file or directory" in lines
    assert "dry run: 2 input(s) to decode (2 frame(s)), 1 to skip" in result.stderr
    assert every_file(out) == before

    fresh = CliRunner().invoke(main, ["decode", "depth", str(inputs / "f002.png"), "-o",
                                      str(tmp_path / "new"), "--dry-run", "--overwrite"])
    assert fresh.exit_code == 0, fresh.output
    assert not (tmp_path / "new").exists()


# ------------------------------------------------------------- a real Ctrl-C (SIGINT)


def start_decode(args: list[str], cwd: Path, env=None) -> subprocess.Popen:
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return subprocess.Popen([sys.executable, "-m", "vbkernels", "decode", *args], cwd=cwd,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def interrupt_after_first_output(process: subprocess.Popen, out: Path, suffix: str,
                                 limit_s: float = 240) -> tuple[str, str]:
    """SIGINT to the command (as ``timeout -s INT`` sends it) once its first output is
    on disk; the command's stdout and stderr."""
    deadline = time.monotonic() + limit_s
    while not any(out.glob(f"*{suffix}")):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            stdout, stderr = process.communicate()
            pytest.fail(f"no output appeared (exit {process.returncode}): {stderr[-2000:]}")
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    return process.communicate(timeout=120)


def check_interrupted_run(out: Path, inputs: list[Path], suffixes: list[str],
                          engine: str) -> None:
    """Every input whose outputs are all on disk has this run's ok row; none other has;
    the run summary says it was interrupted."""
    run_rows = rows(out)
    assert len({row["run"] for row in run_rows}) == 1
    ok = {row["path"] for row in run_rows if row["status"] == "ok"}
    complete = {str(p) for p in inputs
                if all((out / (p.stem + s)).is_file() for s in suffixes)}
    assert complete, "the run was stopped before any input was complete"
    assert complete != {str(p) for p in inputs}, "the run finished before the signal"
    assert ok == complete
    assert all(row["engine"] == engine for row in run_rows)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] is True
    assert summary["done"] == len(complete)
    assert summary["done"] + summary["unfinished"] == len(inputs)


def test_a_sigint_leaves_an_ok_row_for_every_input_it_wrote(tmp_path):
    inputs = make_pngs(tmp_path / "in", 48, shape=(96, 128))
    out = tmp_path / "out"
    process = start_decode(["depth", str(tmp_path / "in"), "-o", str(out), "--preview",
                            "--workers", "2", "--quiet"], cwd=tmp_path)

    _, stderr = interrupt_after_first_output(process, out, ".depth.preview.png")

    assert process.returncode == 130, stderr
    assert "interrupted: wrote" in stderr and "Traceback" not in stderr
    check_interrupted_run(out, inputs, [".depth.npy", ".depth.png", ".depth.preview.png"],
                          "local")


def test_an_address_where_nothing_listens_is_one_clear_line(tmp_path):
    import socket

    make_pngs(tmp_path / "in", 1)
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{probe.getsockname()[1]}"

    result = CliRunner().invoke(main, ["decode", "depth", str(tmp_path / "in"), "-o",
                                       str(tmp_path / "out"), "--engine", "ray",
                                       "--ray-address", address, "--quiet"])

    assert result.exit_code == 1, result.output
    assert f"Error: nothing answers at --ray-address {address}" in result.output
    assert "--ray-address auto" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
