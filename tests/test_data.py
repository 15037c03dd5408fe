"""vbkernels.data.ShardDataset: every frame of a sharded output exactly once over
DataLoader workers and distributed ranks, from a folder and from S3 (moto on 127.0.0.1)."""

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from vbkernels.cli import main
from vbkernels.data import ShardDataset, shard_urls
from vbkernels.storage.local_s3 import make_bucket, s3_server

IMAGES = 10


@pytest.fixture(scope="module")
def s3():
    with s3_server() as endpoint:
        make_bucket(endpoint, "vbk-data")
        yield endpoint


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data") / "in"
    folder.mkdir()
    rng = np.random.default_rng(5)
    for i in range(IMAGES):
        Image.fromarray(rng.integers(0, 256, (8, 12, 3), dtype=np.uint8)).save(
            folder / f"f{i:02d}.png")
    return folder


def write_shards(inputs, out, fmt, shard_size="1"):
    """One image a shard (every input is bigger than one byte)."""
    result = CliRunner().invoke(main, ["decode", "depth", str(inputs), "-o", str(out),
                                       "--quiet", "--workers", "0", "--format", fmt,
                                       "--outputs", "npy", "--shard-size", shard_size])
    assert result.exit_code == 0, result.output


def read_all(dataset, workers: int) -> list:
    loader = torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=workers)
    return [(sample["path"], sample["frame"], sample["depth"]) for sample in loader]


@pytest.mark.parametrize("fmt", ["webdataset", "parquet"])
def test_two_workers_times_two_ranks_read_every_frame_once(s3, inputs, fmt):
    import vbkernels as vb
    from vbkernels.pipeline import read_image

    out = f"s3://vbk-data/{fmt}"
    write_shards(inputs, out, fmt)
    seen = []
    for rank in range(2):
        seen += read_all(ShardDataset(out, rank=rank, world_size=2), workers=2)
    assert sorted(p for p, _, _ in seen) == sorted(str(p) for p in inputs.glob("*.png"))
    assert all(frame == 0 for _, frame, _ in seen)
    for path, _, depth in seen:  # the right frame under each name
        want = vb.decode_depth(read_image(path))
        assert torch.equal(depth, torch.as_tensor(want))
    assert len(ShardDataset(out)) == IMAGES


def test_more_readers_than_shards_is_a_clear_error(inputs, tmp_path):
    write_shards(inputs, tmp_path / "few", "parquet", shard_size="1GB")  # one shard
    dataset = ShardDataset(tmp_path / "few", rank=0, world_size=2)
    with pytest.raises(ValueError, match=r"1 shard\(s\) for 2 rank\(s\) x 1 DataLoader"):
        next(iter(dataset))
    assert len(read_all(ShardDataset(tmp_path / "few"), workers=0)) == IMAGES


def test_no_committed_shards_and_a_corrupt_shard_are_errors(inputs, tmp_path):
    with pytest.raises(ValueError, match="no committed shards"):
        ShardDataset(tmp_path)
    write_shards(inputs, tmp_path / "one", "webdataset", shard_size="1GB")
    (data,) = (tmp_path / "one/shards").glob("*.tar")
    corrupt = bytearray(data.read_bytes())
    corrupt[len(corrupt) // 2] ^= 0xFF
    data.write_bytes(bytes(corrupt))
    with pytest.raises(OSError, match="SHA-256"):
        next(iter(ShardDataset(tmp_path / "one")))


def test_shard_urls_name_the_committed_data_objects(inputs, tmp_path):
    write_shards(inputs, tmp_path / "urls", "parquet", shard_size="1GB")
    (record,) = (tmp_path / "urls/shards").glob("*.json")
    (tmp_path / "urls/shards/uncommitted.parquet").write_bytes(b"PAR1")
    assert shard_urls(tmp_path / "urls") == [str(record.with_suffix(".parquet"))]
