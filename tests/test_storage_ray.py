"""Object-store outputs on a real two-node Ray cluster: two 1-CPU nodes on 127.0.0.1
(``ray.cluster_utils.Cluster``) and a real S3 API (moto's server on 127.0.0.1), shared by
this module's tests and always shut down. Inputs are read from the bucket, outputs written
to it, and the results held to the local engine's files."""

import io
import json
import os
import tarfile

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from tests.helpers import write_images_and_clip
from vbkernels.cli import main
from vbkernels.storage import open_store
from vbkernels.storage.local_s3 import make_bucket, requests, s3_server

BUCKET = "vbk-ray"
IMAGES = ["a.png", "b.png", "sub/c.png", "d.png", "e.png"]
FRAMES = len(IMAGES) + 3  # and a 3-frame video


def make_inputs(folder):
    return write_images_and_clip(folder, IMAGES, 11, even_shape=(12, 20), odd_shape=(16, 24))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """(local input folder, local engine's output folder, boto3 client): the S3 server
    first, so that every Ray process inherits its AWS_* environment."""

    import ray
    from ray._private import ray_constants
    from ray.cluster_utils import Cluster

    root = tmp_path_factory.mktemp("ray-s3")
    inputs = make_inputs(root / "in")
    local = CliRunner().invoke(main, ["decode", "depth", str(inputs), "-o", str(root / "local"),
                                      "--quiet", "--workers", "0"])
    assert local.exit_code == 0, local.output
    with s3_server() as endpoint:
        client = make_bucket(endpoint, BUCKET)
        for path in sorted(p for p in inputs.rglob("*") if p.is_file()):
            client.put_object(Bucket=BUCKET, Key=f"in/{path.relative_to(inputs).as_posix()}",
                              Body=path.read_bytes())
        # Ray's loopback mode for the start: nodes at 127.0.0.1, servers on loopback only.
        variable = ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR
        saved = ray_constants.ENABLE_RAY_CLUSTER, os.environ.get(variable)
        ray_constants.ENABLE_RAY_CLUSTER = False
        os.environ[variable] = "0"
        nodes = Cluster(initialize_head=True, head_node_args={
            "num_cpus": 1, "node_ip_address": "127.0.0.1", "include_dashboard": False})
        try:
            nodes.add_node(num_cpus=1, node_ip_address="127.0.0.1")
            ray.init(address=nodes.address, logging_level="WARNING", log_to_driver=False)
            yield inputs, root / "local", client
        finally:
            ray.shutdown()
            nodes.shutdown()
            ray_constants.ENABLE_RAY_CLUSTER = saved[0]
            if saved[1] is None:
                os.environ.pop(variable, None)
            else:
                os.environ[variable] = saved[1]


def decode(out, *args):
    return CliRunner().invoke(main, ["decode", "depth", f"s3://{BUCKET}/in", "-o", out,
                                     "--quiet", "--engine", "ray", *args])


def objects(client, prefix: str) -> dict:
    found = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        for item in page.get("Contents", ()):
            found[item["Key"][len(prefix):]] = (item["Size"], item["ETag"], item["LastModified"])
    return found


def local_files(folder) -> dict:
    return {key: p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and not (key := p.relative_to(folder).as_posix()).startswith("runs/")
            and key not in ("manifest.jsonl", "summary.json")}


def tar_outputs(store) -> dict:
    """files-layout name -> bytes over every committed WebDataset shard."""
    found = {}
    for key in store.list("shards/"):
        if not key.endswith(".json"):
            continue
        record = json.loads(store.get(key))
        with tarfile.open(fileobj=io.BytesIO(store.get(record["data"]))) as tar:
            members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
        for name, body in members.items():
            sample, suffix = name.split(".", 1)
            if suffix != "json":
                meta = json.loads(members[sample + ".json"])
                assert meta["name"] + "." + suffix not in found
                found[meta["name"] + "." + suffix] = body
    return found


class KilledBeforeCommit(RuntimeError):
    pass


def crash_before_commit(victim: str, plan):
    """``before_commit`` hook, run inside the Ray task between the shard's put and its
    record's: the task dies there for the shard ``victim``."""
    if plan.id == victim:
        raise KilledBeforeCommit(f"killed after writing {plan.data_key}")


def test_webdataset_from_s3_to_s3_resume_and_read_back(cluster):
    import functools

    from vbkernels.distributed import plan_files

    inputs, local, client = cluster
    # First run: the task of one shard dies between its two puts.
    pipeline = plan_files([f"s3://{BUCKET}/in"], "depth", f"s3://{BUCKET}/wds",
                          format="webdataset", shard_size=1)
    victim = pipeline.plans[2]
    pipeline.before_commit = functools.partial(crash_before_commit, victim.id)
    summary = pipeline.run()
    assert set(summary.failed) == {str(s.path) for s in victim.sources}
    crashed = objects(client, "wds/")
    assert f"shards/{victim.id}.tar" in crashed and f"shards/{victim.id}.json" not in crashed

    # The rerun (the command line) redoes that shard, same name and bytes, and nothing else.
    requests.clear()
    result = decode(f"s3://{BUCKET}/wds", "--format", "webdataset", "--shard-size", "1")
    assert result.exit_code == 0, result.output
    written = objects(client, "wds/")
    assert requests.written(BUCKET) == [f"wds/shards/{victim.id}.json",
                                        f"wds/shards/{victim.id}.tar"]
    assert written[f"shards/{victim.id}.tar"][:2] == crashed[f"shards/{victim.id}.tar"][:2]
    store = open_store(f"s3://{BUCKET}/wds")
    assert tar_outputs(store) == local_files(local)  # byte-identical per member

    requests.clear()
    again = decode(f"s3://{BUCKET}/wds", "--format", "webdataset", "--shard-size", "1")
    assert again.exit_code == 0, again.output
    assert requests.written(BUCKET) == []  # a rerun writes nothing
    assert objects(client, "wds/") == written

    # Training reads it back: 2 ranks x 2 DataLoader workers, every frame once.
    from vbkernels.data import ShardDataset

    seen = []
    for rank in range(2):
        loader = torch.utils.data.DataLoader(
            ShardDataset(f"s3://{BUCKET}/wds", rank=rank, world_size=2), batch_size=None,
            num_workers=2)
        seen += [(s["name"], s["depth"]) for s in loader]
    assert len(seen) == FRAMES
    want = local_files(local)
    for name, depth in seen:
        expected = np.load(io.BytesIO(want[name + ".depth.npy"]))
        assert torch.equal(depth, torch.from_numpy(expected)), name


def test_parquet_shards_land_on_both_nodes(cluster):
    from vbkernels.distributed import plan_files

    _, _, client = cluster
    pipeline = plan_files([f"s3://{BUCKET}/in"], "depth", f"s3://{BUCKET}/pq",
                          format="parquet", shard_size=1, dtype="float16")
    assert len(pipeline.plans) == len(IMAGES) + 1
    summary = pipeline.run()
    assert not summary.failed and summary.frames == FRAMES
    assert len(pipeline.nodes) == 2 and sum(pipeline.nodes.values()) == len(IMAGES) + 1
    keys = objects(client, "pq/shards/")
    assert len(keys) == 2 * (len(IMAGES) + 1)


def test_files_from_s3_to_s3_match_the_local_engine(cluster):
    _, local, client = cluster
    result = decode(f"s3://{BUCKET}/files", "--workers", "1")
    assert result.exit_code == 0, result.output
    store = open_store(f"s3://{BUCKET}/files")
    outputs = {k: store.get(k) for k in objects(client, "files/")
               if not k.startswith(("manifest/", "runs/")) and k != "summary.json"}
    assert outputs == local_files(local)
    assert any(k.startswith("manifest/part-") for k in objects(client, "files/"))


def test_a_bucket_that_does_not_exist_is_a_one_line_error(cluster):
    _, _, client = cluster
    result = decode("s3://no-such-bucket/out", "--format", "webdataset", "--shard-size", "1")
    assert result.exit_code == 1
    assert "cannot use s3://no-such-bucket/out" in result.output
    assert "NoSuchBucket" in result.output and "Traceback" not in result.output
    # (moto keeps one in-process state: other modules' buckets may be listed too)
    assert "no-such-bucket" not in [b["Name"] for b in client.list_buckets()["Buckets"]]
