"""Closeness checks shared by the tests, with one tolerance table.

Every comparison against a float64 truth (``tests/truth.py``) goes through here, so a
tolerance is stated once per output dtype and per quantity (docs/format.md, Precision).
"""

from __future__ import annotations

import numpy as np
import torch

# Relative tolerance of depth against its float64 value, by the dtype of the output:
# float32 is the format's 1e-5; float64 output is computed in float64 (the Triton kernels
# come within 1.5e-11: their scalars travel as pairs of float32).
DEPTH_RTOL = {torch.float32: 1e-5, torch.float64: 1e-10}
# Absolute tolerance of unit normals against float64, by output dtype: the format's 1e-6
# for float32 (and float64, whose arithmetic may be float32), one unit in the last place
# of the half types (the final rounding).
NORMALS_ATOL = {
    torch.float64: 1e-6,
    torch.float32: 1e-6,
    torch.float16: float(torch.finfo(torch.float16).eps),
    torch.bfloat16: float(torch.finfo(torch.bfloat16).eps),
}
# Walk position t against float64 (docs/format.md, Depth): 1e-6 in any float width.
T_ATOL = 1e-6


def as_float64(x) -> np.ndarray:
    """A tensor (any device, any dtype) or array as a float64 NumPy array."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().to(torch.float64).numpy()
    return np.asarray(x, dtype=np.float64)


def torch_dtype_of(x) -> torch.dtype:
    if isinstance(x, torch.Tensor):
        return x.dtype
    return getattr(torch, np.asarray(x).dtype.name)


def assert_depth_close(got, want, rtol: float | None = None) -> None:
    """Same NaN and infinite positions, finite values within ``rtol`` (default: the table's
    figure for ``got``'s dtype)."""
    if rtol is None:
        rtol = DEPTH_RTOL[torch_dtype_of(got)]
    got, want = as_float64(got), as_float64(want)
    assert got.shape == want.shape, (got.shape, want.shape)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
    np.testing.assert_array_equal(got[np.isinf(got)], want[np.isinf(want)])
    finite = np.isfinite(want)
    np.testing.assert_allclose(got[finite], want[finite], rtol=rtol, atol=0)


def assert_normals_close(got, want, atol: float | None = None) -> None:
    """Unit normals within ``atol`` per component (default: the table's figure)."""
    if atol is None:
        atol = NORMALS_ATOL[torch_dtype_of(got)]
    np.testing.assert_allclose(as_float64(got), as_float64(want), atol=atol, rtol=0)


def assert_t_close(got, want) -> None:
    np.testing.assert_allclose(as_float64(got), as_float64(want), atol=T_ATOL, rtol=0)

# decode_colormap on float images against float64 (docs/format.md, Colormaps), by work
# dtype (float32 for the half types and float32): "t" is the largest position error once
# the segment is right; "dist2" is how far above the minimum squared distance (0..255 units)
# a segment may lie and still count as right (float32 cancellation in ee*L - dot^2);
# "distance" is the absolute distance error, worst on long segments (a 255-unit segment
# loses ~0.06 units near the line in float32; the built-in maps ~0.002).
COLORMAP_ATOL = {
    torch.float32: {"t": 1e-6, "dist2": 0.05, "distance": 0.1},
    torch.float64: {"t": 1e-12, "dist2": 1e-6, "distance": 1e-4},
}


def triton_devices() -> list[str]:
    """The devices the triton backend runs on here: "cuda" on a GPU, "cpu" under the
    interpreter, none when it does not load."""
    from vbkernels._dispatch import BackendUnavailable, load_backend

    try:
        backend = load_backend("triton")
    except BackendUnavailable:
        return []
    return [dev for dev in ("cpu", "cuda") if dev in backend.devices]


def compile_for_sm90(script: str) -> str:
    """Run ``script`` in a fresh interpreter without TRITON_INTERPRET (so Triton compiles
    for sm_90 with fp fusion on by default) and return its stdout; fails on an error."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_DEFAULT_FP_FUSION"] = "1"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, "-c", script], env=env, cwd=root,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


# ------------------------------------------------------------------ processes and inputs


def child_pids(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (Linux: read from /proc; no psutil needed)."""
    from pathlib import Path

    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def process_alive(pid: int) -> bool:
    """``pid`` exists and is not a zombie (Linux /proc)."""
    from pathlib import Path

    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def write_images_and_clip(folder, names, seed: int, *, even_shape=(16, 24),
                          odd_shape=(12, 20)):
    """Random RGB PNGs at ``names`` (the i-th ``even_shape`` or ``odd_shape`` by parity,
    subfolders made) and a 3-frame 24x16 yuv444p H.264 ``clip.mp4``: the small mixed
    input folder of the storage tests. Returns ``folder``."""
    import av
    from PIL import Image

    rng = np.random.default_rng(seed)
    for i, name in enumerate(names):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        shape = even_shape if i % 2 == 0 else odd_shape
        Image.fromarray(rng.integers(0, 256, (*shape, 3), dtype=np.uint8)).save(folder / name)
    with av.open(str(folder / "clip.mp4"), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 24, 16, "yuv444p"
        for _ in range(3):
            rgb = rng.integers(0, 256, (16, 24, 3), dtype=np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        container.mux(stream.encode())
    return folder
