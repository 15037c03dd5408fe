"""vbkernels.files: the direct 16-bit PNG writer against Pillow's reader."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from vbkernels import files


def _pillow_read16(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        return np.asarray(img).astype(np.uint16)


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (5, 1), (13, 31), (120, 333)])
@pytest.mark.parametrize("level", [0, 1, 6, 9])
def test_png16_round_trips_through_pillow(shape, level):
    rng = np.random.default_rng(shape[0] * 1000 + shape[1] + level)
    depth = rng.integers(0, 65536, size=shape, dtype=np.uint16)
    depth.flat[0], depth.flat[-1] = 0, 65535  # both ends of the range
    data = files.png_bytes(depth, compress_level=level)
    assert data[:8] == files.PNG_SIGNATURE
    assert np.array_equal(_pillow_read16(data), depth)


def test_png16_without_isal_uses_zlib(monkeypatch):
    """The writer's zlib fallback gives the same pixels (ISA-L is an optional extra)."""
    import builtins

    real_import = builtins.__import__

    def no_isal(name, *args, **kwargs):
        if name == "isal" or name.startswith("isal."):
            raise ImportError("no isal here")
        return real_import(name, *args, **kwargs)

    depth = (np.arange(600, dtype=np.uint16).reshape(20, 30) * 97)
    monkeypatch.setattr(builtins, "__import__", no_isal)
    data = files.png16_bytes(depth, 1)
    monkeypatch.undo()
    assert np.array_equal(_pillow_read16(data), depth)


def test_png16_takes_strided_views():
    depth = np.arange(40 * 60, dtype=np.uint16).reshape(40, 60)[::2, ::3]
    assert np.array_equal(_pillow_read16(files.png_bytes(depth)), depth)


def test_png_bytes_refuses_other_arrays():
    with pytest.raises(ValueError, match="single-channel"):
        files.png_bytes(np.zeros((2, 2, 3), np.uint16))
    with pytest.raises(ValueError, match="uint8 or uint16"):
        files.png_bytes(np.zeros((2, 2), np.float32))
