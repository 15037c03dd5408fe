"""vbkernels.storage against a real S3 API (moto's server on 127.0.0.1, one per module):
whole-object puts, the manifest as part objects, resume from one listing, WebDataset and
Parquet shards with commit records, and float16 outputs."""

import hashlib
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from tests.helpers import write_images_and_clip
from vbkernels.cli import main
from vbkernels.storage import (
    LocalStore,
    PartManifestWriter,
    open_store,
    parse_storage_options,
    read_part_manifest,
)
from vbkernels.storage.local_s3 import make_bucket, requests, s3_server
from vbkernels.storage.shards import parse_size, plan_shards

NAMES = ["a.png", "b.png", "sub/c.png", "d.png"]


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """(endpoint, boto3 client) with the bucket ``vbk`` on a fresh local S3 server."""
    with s3_server() as endpoint:
        yield endpoint, make_bucket(endpoint, "vbk")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Four small encoded-depth PNGs (two sizes, one in a subfolder) and a 3-frame video."""
    return write_images_and_clip(tmp_path_factory.mktemp("storage") / "in", NAMES, 3)


def decode(inputs, out, *args, task="depth"):
    result = CliRunner().invoke(main, ["decode", task, str(inputs), "-o", str(out), "--quiet",
                                       "--workers", "0", *args])
    return result


def objects(client, prefix: str) -> dict[str, tuple]:
    """key (relative to prefix) -> (size, ETag, LastModified) of every object under it."""
    found = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket="vbk", Prefix=prefix):
        for item in page.get("Contents", ()):
            found[item["Key"][len(prefix):]] = (item["Size"], item["ETag"], item["LastModified"])
    return found


def is_output(key: str) -> bool:
    """A decoded output, not the run's bookkeeping (manifest, run summaries)."""
    return not (key in ("manifest.jsonl", "summary.json") or key.startswith(("manifest/",
                                                                             "runs/")))


def local_files(folder: Path) -> dict[str, bytes]:
    return {key: p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and is_output(key := p.relative_to(folder).as_posix())}


@pytest.fixture(scope="module")
def local_run(inputs, tmp_path_factory):
    """The local engine's files in a POSIX folder: what every other layout is held to."""
    out = tmp_path_factory.mktemp("local") / "out"
    result = decode(inputs, out)
    assert result.exit_code == 0, result.output
    return out


# ------------------------------------------------------------------------- the stores


@pytest.mark.parametrize("kind", ["local", "s3", "memory"])
def test_put_get_list_delete(kind, s3, tmp_path):
    target = {"local": str(tmp_path / "store"), "s3": "s3://vbk/roundtrip",
              "memory": "memory://vbk-roundtrip"}[kind]
    store = open_store(target)
    store.put("x/a.bin", b"alpha")
    store.put("x/b.bin", b"be")
    store.put("y.bin", b"")
    store.put("x/a.bin", b"alpha2")  # replaces
    assert store.get("x/a.bin") == b"alpha2"
    assert store.list() == {"x/a.bin": 6, "x/b.bin": 2, "y.bin": 0}
    assert store.list("x/") == {"x/a.bin": 6, "x/b.bin": 2}
    store.delete("x/b.bin")
    assert store.list("x/") == {"x/a.bin": 6}


def test_local_store_lists_no_temporary_files(tmp_path):
    store = LocalStore(tmp_path)
    store.put("a.npy", b"1")
    (tmp_path / ".b.npy.123.tmp").write_bytes(b"half")
    assert store.list() == {"a.npy": 1}


def test_multipart_put_round_trips_and_a_failed_part_commits_nothing(s3, monkeypatch):
    _, client = s3
    options = {"multipart_threshold": 6 << 20, "part_size": 5 << 20}
    store = open_store("s3://vbk/multipart", options)
    data = np.random.default_rng(0).integers(0, 256, 11 << 20, dtype=np.uint8).tobytes()
    store.put("whole.bin", data)
    assert store.get("whole.bin") == data

    real_upload_part = store.client.upload_part
    calls = []

    def failing_upload_part(**kwargs):
        calls.append(kwargs["PartNumber"])
        if kwargs["PartNumber"] == 2:
            raise ConnectionError("connection reset in the middle of the upload")
        return real_upload_part(**kwargs)

    monkeypatch.setattr(store.client, "upload_part", failing_upload_part)
    with pytest.raises(ConnectionError):
        store.put("broken.bin", data)
    assert calls == [1, 2]
    assert "broken.bin" not in store.list()
    assert not client.list_multipart_uploads(Bucket="vbk").get("Uploads")


def test_storage_options_are_checked():
    assert parse_storage_options(["endpoint_url=http://127.0.0.1:9", "verify=false",
                                  "part_size=8388608"]) == {
        "endpoint_url": "http://127.0.0.1:9", "verify": False, "part_size": 8388608}
    with pytest.raises(ValueError, match="key=value"):
        parse_storage_options(["endpoint_url"])
    with pytest.raises(ValueError, match="unknown storage option.*endpoint"):
        open_store("s3://vbk/x", {"endpoint": "http://127.0.0.1:9"})
    with pytest.raises(ValueError, match="needs a bucket"):
        open_store("s3:///x")


def test_manifest_parts_union_newest_row_wins(s3):
    from vbkernels.pipeline import ManifestRow

    store = open_store("s3://vbk/parts")
    with PartManifestWriter(store, run="20260101T000000Z-aaaa", rows_per_part=2) as first:
        first.append(ManifestRow("s3://in/a.png", 1, ["a.depth.npy"], "ok"))
        first.append(ManifestRow("s3://in/b.png", 0, [], "failed", "cannot read"))
        first.append(ManifestRow("s3://in/c.png", 1, ["c.depth.npy"], "ok"))
    assert len(first.parts) == 2
    with PartManifestWriter(store, run="20260102T000000Z-bbbb") as second:
        second.append(ManifestRow("s3://in/a.png", 1, ["a.depth.npy", "a.depth.png"], "ok"))
        second.append(ManifestRow("s3://in/b.png", 1, ["b.depth.npy"], "ok"))
        second.append(ManifestRow("s3://in/c.png", 1, ["c.depth.npy"], "skipped"))  # not put
    rows = read_part_manifest(store)
    assert rows["s3://in/a.png"].outputs == ["a.depth.npy", "a.depth.png"]
    assert rows["s3://in/b.png"].status == "ok"
    assert rows["s3://in/c.png"].outputs == ["c.depth.npy"]
    assert len(store.list("manifest/")) == 3


# ------------------------------------------------------------- per-frame files on S3


def test_files_to_s3_match_the_local_files_and_a_rerun_writes_nothing(s3, inputs, local_run):
    _, client = s3
    result = decode(inputs, "s3://vbk/files")
    assert result.exit_code == 0, result.output

    store = open_store("s3://vbk/files")
    written = objects(client, "files/")
    outputs = {k: v for k, v in written.items() if is_output(k)}
    assert {k: store.get(k) for k in outputs} == local_files(local_run)
    parts = [k for k in written if k.startswith("manifest/part-")]
    assert len(parts) == 1
    rows = [json.loads(line) for line in store.get(parts[0]).decode().splitlines()]
    assert sorted(Path(r["path"]).name for r in rows) == ["a.png", "b.png", "c.png",
                                                           "clip.mp4", "d.png"]
    assert all(r["status"] == "ok" for r in rows)

    requests.clear()
    again = decode(inputs, "s3://vbk/files")
    assert again.exit_code == 0, again.output
    assert requests.written("vbk") == []  # not one put, not even a manifest part
    assert "DELETE" not in requests.by_method
    assert objects(client, "files/") == written


def test_files_resume_redoes_only_inputs_with_missing_outputs(s3, inputs, local_run):
    _, client = s3
    assert decode(inputs, "s3://vbk/resume").exit_code == 0
    store = open_store("s3://vbk/resume")
    store.delete("b.depth.png")
    store.delete("clip/000001.depth.npy")
    requests.clear()

    result = decode(inputs, "s3://vbk/resume")

    assert result.exit_code == 0, result.output
    after = objects(client, "resume/")
    changed = [k.removeprefix("resume/") for k in requests.written("vbk")]
    assert [k for k in changed if is_output(k)] == [
        "b.depth.npy", "b.depth.png", "clip/000000.depth.npy", "clip/000000.depth.png",
        "clip/000001.depth.npy", "clip/000001.depth.png", "clip/000002.depth.npy",
        "clip/000002.depth.png"]
    newest = max(k for k in after if k.startswith("manifest/part-"))
    rows = [json.loads(line) for line in store.get(newest).decode().splitlines()]
    assert sorted(Path(r["path"]).name for r in rows) == ["b.png", "clip.mp4"]


def test_storage_option_errors_are_usage_errors(inputs, tmp_path):
    result = decode(inputs, "s3://vbk/x", "--storage-option", "endpoint")
    assert result.exit_code == 2 and "key=value" in result.output
    result = decode(inputs, tmp_path / "out", "--storage-option", "region_name=x")
    assert result.exit_code == 2 and "object-store" in result.output
    result = decode(inputs, tmp_path / "out", "--format", "parquet", "--shard-size", "lots")
    assert result.exit_code == 2 and "512MB" in result.output
    result = decode(inputs, tmp_path / "out", "--dtype", "float16", task="seg")
    assert result.exit_code == 2 and "depth and normals" in result.output


# ----------------------------------------------------------------------------- shards


def test_parse_size():
    assert parse_size("512MB") == 512 * 10**6
    assert parse_size("1.5GiB") == int(1.5 * 2**30)
    assert parse_size("100") == 100
    with pytest.raises(ValueError, match="512MB"):
        parse_size("big")


def test_plans_are_deterministic_and_a_video_is_a_shard_of_its_own(inputs):
    from vbkernels.pipeline import build_task, expand_inputs

    sources, _ = expand_inputs([inputs])
    task = build_task("depth")
    sizes = {str(s.path): 100 for s in sources}
    plans = plan_shards(task, ("npy",), "webdataset", sources, sizes, shard_size=250)
    again = plan_shards(task, ("npy",), "webdataset", list(reversed(sources)), sizes, 250)
    assert plans == again
    assert sorted([s.name.as_posix() for s in p.sources] for p in plans) == [
        ["a.png", "b.png"], ["clip.mp4"], ["d.png", "sub/c.png"]]
    other = plan_shards(build_task("depth", lam=-4.0), ("npy",), "webdataset", sources, sizes,
                        250)
    assert not {p.id for p in plans} & {p.id for p in other}  # options are in the name


def tar_members(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}


def shard_members(store) -> dict[str, bytes]:
    """``name + suffix`` (the files layout's name) -> bytes, over every committed shard."""
    found = {}
    for key in store.list("shards/"):
        if key.endswith(".json"):
            record = json.loads(store.get(key))
            data = store.get(record["data"])
            assert hashlib.sha256(data).hexdigest() == record["sha256"]
            members = tar_members(data)
            for member, body in members.items():
                if member.endswith(".json"):
                    continue
                key_part, suffix = member.split(".", 1)
                name = json.loads(members[key_part + ".json"])["name"]
                assert name + "." + suffix not in found
                found[name + "." + suffix] = body
    return found


def test_webdataset_shards_hold_the_local_files_bytes(s3, inputs, local_run):
    _, client = s3
    result = decode(inputs, "s3://vbk/wds", "--format", "webdataset", "--shard-size", "1500")
    assert result.exit_code == 0, result.output
    store = open_store("s3://vbk/wds")
    keys = sorted(store.list())
    records = [k for k in keys if k.endswith(".json")]
    assert len(records) >= 3 and len(keys) == 2 * len(records)
    assert shard_members(store) == local_files(local_run)

    data = store.get(json.loads(store.get(records[0]))["data"])
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names == sorted(names)  # keys in order, each key's members sorted
    assert all(m.mtime == 0 for m in members)
    assert all("." not in name.split(".", 1)[0] for name in names)  # dot-free keys
    meta = json.loads(tar_members(data)[names[0].split(".")[0] + ".json"])
    assert {"path", "frame", "name", "task", "options"} <= set(meta)

    before = objects(client, "wds/")
    requests.clear()
    assert decode(inputs, "s3://vbk/wds", "--format", "webdataset", "--shard-size",
                  "1500").exit_code == 0
    assert requests.written("vbk") == []  # a rerun writes nothing
    assert objects(client, "wds/") == before
    redo = decode(inputs, "s3://vbk/wds", "--format", "webdataset", "--shard-size", "1500",
                  "--overwrite")
    assert redo.exit_code == 0
    after = objects(client, "wds/")
    assert {k: v[:2] for k, v in after.items()} == {k: v[:2] for k, v in before.items()}


class CrashBeforeCommit(RuntimeError):
    pass


def crash_on_second_shard(plan):
    """The ``before_commit`` hook of the test below: the process dies between the two puts
    of its second shard (the same for every run, the plans being sorted)."""
    if plan.id == CRASH["id"]:
        raise CrashBeforeCommit(f"killed before committing {plan.id}")


CRASH = {"id": None}


def test_a_crash_between_shard_and_record_is_redone_alone(s3, inputs):
    """The shard's data object is there, its record is not: readers and resume ignore it;
    the rerun rewrites that shard (same name, same bytes) and its record, nothing else."""
    _, client = s3
    from vbkernels.data import ShardDataset
    from vbkernels.pipeline import PipelineOptions, build_task, expand_inputs
    from vbkernels.pipeline.sharded import ShardedPipeline

    sources, _ = expand_inputs([inputs])
    options = PipelineOptions(workers=0, format="parquet", shard_size=1500)
    pipeline = ShardedPipeline(build_task("depth"), "s3://vbk/crash", options)
    plans = pipeline.plan(sources)
    CRASH["id"] = plans[1].id
    pipeline.before_commit = crash_on_second_shard
    summary = pipeline.run()
    assert set(summary.failed) == {str(s.path) for s in plans[1].sources}

    store = open_store("s3://vbk/crash")
    assert plans[1].data_key in store.list() and plans[1].record_key not in store.list()
    crashed = objects(client, "crash/")
    seen = [(s["path"], s["frame"]) for s in ShardDataset("s3://vbk/crash")]
    crashed_frames = sum(3 if s.kind == "video" else 1 for s in plans[1].sources)
    assert len(seen) == len(set(seen)) == len(NAMES) + 3 - crashed_frames
    assert not {str(s.path) for s in plans[1].sources} & {p for p, _ in seen}

    again = ShardedPipeline(build_task("depth"), "s3://vbk/crash", options)
    assert [p.id for p in again.plan(sources)] == [plans[1].id]
    requests.clear()
    assert not again.run().failed
    after = objects(client, "crash/")
    changed = [k.removeprefix("crash/") for k in requests.written("vbk")]
    assert changed == sorted([plans[1].data_key, plans[1].record_key])
    assert after[plans[1].data_key][:2] == crashed[plans[1].data_key][:2]  # same bytes
    frames = [(s["path"], s["frame"]) for s in ShardDataset("s3://vbk/crash")]
    assert len(frames) == len(set(frames)) == len(NAMES) + 3


def test_an_exception_while_writing_a_shard_commits_nothing(s3, inputs, monkeypatch):
    from vbkernels.pipeline import PipelineOptions, build_task, expand_inputs
    from vbkernels.pipeline.sharded import ShardedPipeline
    from vbkernels.storage import shards

    def broken_encoder(members):
        raise MemoryError("out of memory while building the shard")

    monkeypatch.setattr(shards, "webdataset_bytes", broken_encoder)
    sources, _ = expand_inputs([inputs / "a.png", inputs / "b.png"])
    pipeline = ShardedPipeline(build_task("depth"), "s3://vbk/broken",
                               PipelineOptions(workers=0, format="webdataset"))
    pipeline.plan(sources)
    summary = pipeline.run()
    assert sorted(summary.failed) == sorted(str(s.path) for s in sources)
    assert "out of memory" in next(iter(summary.failed.values()))
    assert open_store("s3://vbk/broken").list() == {}


def test_parquet_shards_tensor_columns_row_groups_and_float16(inputs, tmp_path, local_run):
    import pyarrow as pa
    import pyarrow.parquet as pq

    result = decode(inputs, tmp_path / "pq", "--format", "parquet", "--dtype", "float16")
    assert result.exit_code == 0, result.output
    records = [json.loads(p.read_text()) for p in sorted((tmp_path / "pq/shards").glob("*.json"))]
    assert len(records) == 2  # the images in one shard, the video in its own
    by_frames = {r["frames"]: r for r in records}
    images = pq.read_table(tmp_path / "pq" / by_frames[4]["data"])
    video = pq.ParquetFile(tmp_path / "pq" / by_frames[3]["data"])
    assert isinstance(video.schema_arrow.field("depth").type, pa.FixedShapeTensorType)
    assert video.schema_arrow.field("depth").type.value_type == pa.float16()
    assert video.metadata.row_group(0).column(0).compression == "ZSTD"
    assert "depth_npy" in images.column_names  # two frame sizes: npy bytes per frame
    assert images.column("key").to_pylist() == ["000000000", "000000001", "000000002",
                                                "000000003"]
    for row in images.to_pylist():
        want = np.load(io.BytesIO(local_files(local_run)[row["name"] + ".depth.npy"]))
        got = np.load(io.BytesIO(row["depth_npy"]))
        assert got.dtype == np.float16
        finite = np.isfinite(want)
        assert np.array_equal(np.isfinite(got), finite)
        # float16 keeps 11 significant bits: relative error at most 2^-11 (round to nearest)
        assert np.all(np.abs(got[finite] - want[finite]) <= 2.0**-11 * np.abs(want[finite]))


def test_parquet_row_groups_hold_16_to_64_frames(tmp_path):
    folder = tmp_path / "many"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for i in range(70):
        Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)).save(
            folder / f"{i:03d}.png")
    assert decode(folder, tmp_path / "pq", "--format", "parquet", "--outputs", "npy").exit_code == 0
    import pyarrow.parquet as pq

    (data,) = sorted((tmp_path / "pq/shards").glob("*.parquet"))
    groups = [g.num_rows for g in
              (pq.ParquetFile(data).metadata.row_group(i)
               for i in range(pq.ParquetFile(data).metadata.num_row_groups))]
    assert sum(groups) == 70 and all(16 <= n <= 64 for n in groups[:-1])


def test_overwrite_with_other_shards_retires_the_old_ones(inputs, tmp_path):
    """A rerun with --overwrite and another shard size gives new shard names: the old
    shards holding the same inputs go, so readers see every frame once."""
    from vbkernels.data import ShardDataset

    out = tmp_path / "again"
    assert decode(inputs, out, "--format", "webdataset", "--shard-size", "1").exit_code == 0
    first = sorted(p.name for p in (out / "shards").iterdir())
    assert len(first) == 2 * (len(NAMES) + 1)
    result = decode(inputs, out, "--format", "webdataset", "--overwrite")
    assert result.exit_code == 0, result.output
    second = sorted(p.name for p in (out / "shards").iterdir())
    assert len(second) == 2 * 2
    assert len(set(first) & set(second)) == 2  # the video's shard: the same inputs, the same name
    frames = [(s["path"], s["frame"]) for s in ShardDataset(out)]
    assert len(frames) == len(set(frames)) == len(NAMES) + 3


def test_an_fsspec_store_takes_files_and_shards(inputs, local_run):
    """memory:// stands for gs://, az://...: the same outputs through fsspec's pipe_file."""
    assert decode(inputs, "memory://vbk-fsspec/files").exit_code == 0
    store = open_store("memory://vbk-fsspec/files")
    assert {k: store.get(k) for k in store.list() if is_output(k)} == local_files(local_run)
    assert decode(inputs, "memory://vbk-fsspec/wds", "--format", "webdataset").exit_code == 0
    assert shard_members(open_store("memory://vbk-fsspec/wds")) == local_files(local_run)


def test_an_output_scheme_nothing_can_write_is_refused(inputs):
    result = decode(inputs, "nosuchscheme://bucket/out")
    assert result.exit_code == 2 and "nosuchscheme://" in result.output


def test_worker_processes_write_to_s3_with_their_own_clients(s3, inputs, local_run):
    """The store travels to forked workers without its client; each makes its own."""
    result = decode(inputs, "s3://vbk/forked", "--workers", "2")
    assert result.exit_code == 0, result.output
    store = open_store("s3://vbk/forked")
    assert {k: store.get(k) for k in store.list() if is_output(k)} == local_files(local_run)
    result = decode(inputs, "s3://vbk/forked-wds", "--workers", "2", "--format", "webdataset",
                    "--shard-size", "1")
    assert result.exit_code == 0, result.output
    assert shard_members(open_store("s3://vbk/forked-wds")) == local_files(local_run)
