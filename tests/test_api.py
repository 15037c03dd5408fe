"""docs/format.md, Images, Public API and Errors: layouts, strides, NumPy I/O, empty batches,
dispatch and errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import vbkernels as vb
from tests.conftest import random_rgb
from vbkernels import _dispatch

PALETTE = torch.tensor([[0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255], [90, 90, 200]])


def decoders(backend):
    """Each pixel decoder as a function of an image, returning one tensor or array."""
    return {
        "t": lambda x: vb.hilbert_project(x, backend=backend),
        "depth": lambda x: vb.decode_depth(x, backend=backend),
        "distance": lambda x: vb.decode_depth(x, return_distance=True, backend=backend)[1],
        "normals_hwc": lambda x: _hwc(vb.decode_normals(x, backend=backend), x),
        "norm": lambda x: vb.decode_normals(x, return_norm=True, backend=backend)[1],
        "labels": lambda x: vb.decode_segmentation(x, PALETTE, backend=backend),
    }


def _hwc(normals, x):
    """decode_normals answers in the input's layout; compare everything channels-last."""
    return normals.movedim(-3, -1) if x.shape[-1] != 3 else normals


def strided_variants(base_hwc: torch.Tensor):
    """The same pixels as many memory layouts: (name, tensor) pairs."""
    chw = base_hwc.permute(0, 3, 1, 2)
    wide = torch.zeros(base_hwc.shape[0], base_hwc.shape[1] * 2, base_hwc.shape[2] + 3, 5,
                       dtype=base_hwc.dtype)
    wide[:, ::2, 1:-2, 1:4] = base_hwc
    return [
        ("hwc", base_hwc.contiguous()),
        ("chw", chw.contiguous()),
        ("chw_view_of_hwc", chw),
        ("channels_last", chw.contiguous(memory_format=torch.channels_last)),
        ("sliced_padded", wide[:, ::2, 1:-2, 1:4]),
        ("transposed_hw", base_hwc.transpose(1, 2).contiguous().transpose(1, 2)),
        ("batch_permuted", base_hwc.unsqueeze(0).expand(2, -1, -1, -1, -1).transpose(0, 1)[:, 0]),
    ]


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32, torch.float16])
def test_any_strides_give_the_contiguous_result(backend_device, dtype):
    backend, device = backend_device
    base = random_rgb((2, 5, 7, 3), dtype, seed=30)
    for op_name, op in decoders(backend).items():
        want = op(base.to(device)).cpu()
        for name, variant in strided_variants(base):
            got = op(variant.to(device)).cpu()
            assert torch.equal(got, want) or torch.allclose(got, want, equal_nan=True, atol=0,
                                                            rtol=0), (op_name, name)


def test_leading_batch_dims_and_unbatched(backend_device):
    backend, device = backend_device
    base = random_rgb((2, 3, 4, 5, 3), torch.uint8, seed=31, device=device)
    depth = vb.decode_depth(base, backend=backend)
    assert depth.shape == (2, 3, 4, 5)
    single = vb.decode_depth(base[1, 2], backend=backend)
    assert single.shape == (4, 5)
    assert torch.equal(single, depth[1, 2])
    chw = vb.decode_segmentation(base.movedim(-1, -3), PALETTE, backend=backend)
    assert chw.shape == (2, 3, 4, 5)


@pytest.mark.parametrize("shape", [(0, 4, 5, 3), (2, 0, 5, 3), (2, 4, 0, 3), (0, 3, 4, 5)])
def test_empty_batches(backend_device, shape):
    backend, device = backend_device
    rgb = torch.zeros(shape, dtype=torch.uint8, device=device)
    batch_hw = shape[:-1] if shape[-1] == 3 else shape[:1] + shape[2:]
    assert vb.decode_depth(rgb, backend=backend).shape == batch_hw
    assert vb.hilbert_project(rgb, backend=backend).shape == batch_hw
    assert vb.decode_normals(rgb, backend=backend).shape == shape
    assert vb.decode_segmentation(rgb, PALETTE, backend=backend).shape == batch_hw


def test_numpy_in_numpy_out(backend_device):
    backend, device = backend_device
    if device != "cpu":
        pytest.skip("NumPy arrays live on the CPU")
    rgb = random_rgb((2, 4, 5, 3), torch.uint8, seed=32).numpy()
    depth = vb.decode_depth(rgb, backend=backend)
    assert isinstance(depth, np.ndarray) and depth.dtype == np.float32
    labels, dist = vb.decode_segmentation(rgb, PALETTE.numpy(), return_distance=True,
                                          backend=backend)
    assert isinstance(labels, np.ndarray) and isinstance(dist, np.ndarray)
    normals = vb.decode_normals(rgb[:, ::-1], backend=backend)  # negative strides
    assert isinstance(normals, np.ndarray)
    np.testing.assert_array_equal(normals, vb.decode_normals(rgb[:, ::-1].copy(), backend=backend))
    out = np.full((2, 4, 5), -1.0, np.float32)
    assert vb.decode_depth(rgb, out=out, backend=backend) is out
    np.testing.assert_array_equal(out, depth)
    enc = vb.encode_depth(depth, backend=backend)
    assert isinstance(enc, np.ndarray) and enc.dtype == np.uint8


def test_available_backends_and_selection():
    names = vb.available_backends()
    assert {"numpy", "torch"} <= set(names)
    for name in names:
        assert name in _dispatch.BACKEND_NAMES
    chosen, _ = _dispatch.select("decode_depth", "auto", torch.device("cpu"), torch.uint8)
    assert chosen.name in ("cpu", "torch")  # never the numpy baseline, never an interpreter
    assert not chosen.interpreted_on_cpu


def test_environment_variable_overrides_auto(monkeypatch):
    monkeypatch.setenv("VBKERNELS_BACKEND", "numpy")
    chosen, _ = _dispatch.select("decode_depth", "auto", torch.device("cpu"), torch.uint8)
    assert chosen.name == "numpy"
    monkeypatch.setenv("VBKERNELS_BACKEND", "nonsense")
    with pytest.raises(ValueError, match="backend must be one of"):
        vb.decode_depth(torch.zeros(1, 1, 3, dtype=torch.uint8))


def test_unavailable_backend_says_why():
    if torch.cuda.is_available():
        pytest.skip("on a GPU machine every backend may be available")
    with pytest.raises(RuntimeError, match="cuda"):
        vb.decode_depth(torch.zeros(1, 1, 3, dtype=torch.uint8), backend="cuda")
    with pytest.raises(ValueError, match="backend must be one of"):
        vb.decode_depth(torch.zeros(1, 1, 3, dtype=torch.uint8), backend="fastest")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA tensor")
def test_numpy_backend_refuses_cuda_tensors():
    with pytest.raises(RuntimeError, match="numpy"):
        vb.decode_depth(torch.zeros(1, 1, 3, dtype=torch.uint8, device="cuda"), backend="numpy")


# ------------------------------------------------------------- errors (docs/format.md, Errors)

GOOD = torch.zeros(1, 2, 2, 3, dtype=torch.uint8)


@pytest.mark.parametrize(
    "call,error,match",
    [
        (lambda: vb.decode_depth(torch.zeros(2, 2, 4, dtype=torch.uint8)),
         ValueError, "rgb has no channel"),
        (lambda: vb.decode_depth(torch.zeros(3, 3, dtype=torch.uint8)),
         ValueError, "rgb must have shape"),
        (lambda: vb.decode_depth(torch.zeros(1, 2, 2, 3, dtype=torch.int32)),
         TypeError, "rgb must be uint8"),
        (lambda: vb.decode_depth(torch.zeros(1, 2, 2, 3, dtype=torch.complex64)),
         TypeError, "rgb must be uint8"),
        (lambda: vb.decode_depth(torch.zeros(1, 2, 2, 3, dtype=torch.bool)),
         TypeError, "rgb must be uint8"),
        (lambda: vb.decode_depth([[[0, 0, 0]]]), TypeError, "rgb must be a torch.Tensor"),
        (lambda: vb.decode_depth(np.zeros((2, 2, 3), np.int32)), TypeError, "rgb must be uint8"),
        (lambda: vb.decode_depth(GOOD, layout="nhwc"), ValueError, "layout must be one of"),
        (lambda: vb.decode_depth(GOOD, layout="chw"), ValueError, "layout='chw' needs 3 channels"),
        (lambda: vb.decode_depth(GOOD, lam=float("nan")), ValueError, "lam must be finite"),
        (lambda: vb.decode_depth(GOOD, lam=-1.0), ValueError, "lam must be < -1"),
        (lambda: vb.decode_depth(GOOD, c=0.0), ValueError, "c must be > 0"),
        (lambda: vb.decode_depth(GOOD, c=float("inf")), ValueError, "c must be finite"),
        (lambda: vb.decode_depth(GOOD, lam="x"), TypeError, "lam must be a real number"),
        (lambda: vb.decode_depth(GOOD, max_depth=-1), ValueError, "max_depth must be >= 0"),
        (lambda: vb.power_transform(1.0, c=-2), ValueError, "c must be > 0"),
        (lambda: vb.decode_normals(GOOD, convention="ros"), ValueError, "convention must be"),
        (lambda: vb.decode_normals(GOOD, out_dtype=torch.int32), ValueError, "out_dtype must be"),
        (lambda: vb.decode_segmentation(GOOD, torch.zeros(4, 4)),
         ValueError, r"palette must have shape \(K, 3\)"),
        (lambda: vb.decode_segmentation(GOOD, torch.zeros(0, 3)), ValueError, "1 <= K <= 65535"),
        (lambda: vb.decode_segmentation(GOOD, torch.zeros(65536, 3)),
         ValueError, "1 <= K <= 65535"),
        (lambda: vb.decode_segmentation(GOOD, torch.full((2, 3), 300.0)),
         ValueError, "palette values"),
        (lambda: vb.decode_segmentation(GOOD, torch.full((2, 3), float("nan"))),
         ValueError, "palette values"),
        (lambda: vb.decode_segmentation(GOOD, torch.zeros(2, 3, dtype=torch.complex64)),
         TypeError, "palette must hold"),
        (lambda: vb.decode_segmentation(GOOD, PALETTE, ignore_index=2),
         ValueError, "ignore_index=2 is a valid"),
        (lambda: vb.decode_segmentation(GOOD, PALETTE, ignore_index=2.5),
         TypeError, "ignore_index must be an int"),
        (lambda: vb.decode_segmentation(GOOD, PALETTE, out_dtype=torch.float32),
         ValueError, "out_dtype must be"),
        (lambda: vb.decode_segmentation(GOOD, PALETTE, max_distance=float("nan")),
         ValueError, "max_distance must be finite"),
        (lambda: vb.decode_depth(GOOD, out=np.zeros((1, 2, 2), np.float32)),
         ValueError, "out must be a torch.Tensor"),
        (lambda: vb.decode_depth(GOOD, backend=3), TypeError, "backend must be a string"),
        (lambda: vb.encode_depth(torch.ones(2, 2), dtype=torch.int32),
         TypeError, "dtype must be uint8"),
        (lambda: vb.encode_depth(torch.ones(2, 2), layout="auto"),
         ValueError, "layout must be 'hwc' or 'chw'"),
        (lambda: vb.encode_depth(torch.ones(2, 2), negative="abs"), ValueError, "negative must be"),
        (lambda: vb.encode_segmentation(torch.zeros(2, 2), PALETTE),
         TypeError, "labels must be an integer"),
        (lambda: vb.encode_segmentation(torch.zeros(2, 2, dtype=torch.long), PALETTE,
                                        ignore_color=(0, 0)),
         ValueError, "ignore_color"),
        (lambda: vb.hilbert_walk(torch.tensor([float("nan")]), dtype=torch.uint8),
         ValueError, "NaN"),
    ],
)
def test_bad_input_names_the_argument(call, error, match):
    with pytest.raises(error, match=match):
        call()


@pytest.mark.parametrize("backend", ["torch", "auto"])
def test_decoders_trace_into_one_graph(backend):
    """torch.compile(fullgraph=True) must see no graph break in the front end. The "eager"
    compiler backend checks the capture without paying for code generation."""
    palette = torch.randint(0, 256, (19, 3), generator=torch.Generator().manual_seed(0))
    calls = {
        "depth": lambda x: vb.decode_depth(x, max_depth=50.0, return_distance=True,
                                           backend=backend),
        "t": lambda x: vb.hilbert_project(x, backend=backend),
        "normals": lambda x: vb.decode_normals(x, return_norm=True, backend=backend),
        "labels": lambda x: vb.decode_segmentation(x, palette, max_distance=20,
                                                   out_dtype=torch.int32, backend=backend),
    }
    rgb = random_rgb((2, 6, 5, 3), torch.uint8, seed=33)
    for name, call in calls.items():
        torch._dynamo.reset()
        compiled = torch.compile(call, fullgraph=True, backend="eager")
        got, want = compiled(rgb), call(rgb)
        for g, w in zip(got if isinstance(got, tuple) else (got,),
                        want if isinstance(want, tuple) else (want,)):
            assert torch.equal(g, w), name


_EAGER_SCRIPT = """
import sys
import torch
import vbkernels as vb
rgb = torch.zeros(1, 4, 5, 3, dtype=torch.uint8)
palette = torch.tensor([[0, 0, 0], [255, 255, 255]])
for name in vb.available_backends():
    if name == "triton":
        continue  # needs a GPU or the interpreter, which CI runs in its own tests
    vb.decode_depth(rgb, backend=name)
    vb.decode_normals(rgb, backend=name)
    vb.decode_segmentation(rgb, palette, backend=name)
    vb.encode_depth(torch.ones(2, 2), backend=name)
vb.decode_instances(rgb, backend="torch")
print(sorted(m for m in ("torch._dynamo", "torch._inductor", "sympy") if m in sys.modules))
"""


def test_eager_calls_do_not_import_the_compiler():
    """Calling a torch custom op imports torch._dynamo, torch._inductor and sympy (about a
    second on the first call); eager calls go straight to the launchers instead."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(root)}
    env.pop("TRITON_INTERPRET", None)
    done = subprocess.run([sys.executable, "-c", _EAGER_SCRIPT], env=env, cwd=root,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_compiled_calls_use_the_registered_custom_op():
    """Under torch.compile the fast backends' ops stay opaque custom ops (no graph break)."""
    if "cpu" not in vb.available_backends():
        pytest.skip("the compiled cpu backend is not built here")
    rgb = random_rgb((1, 3, 4, 3), torch.uint8, seed=34)
    graphs = []

    def keep(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    torch._dynamo.reset()
    compiled = torch.compile(lambda x: vb.decode_depth(x, backend="cpu"), fullgraph=True,
                             backend=keep)
    assert torch.equal(compiled(rgb), vb.decode_depth(rgb, backend="cpu"))
    assert "vbkernels_cpu.decode_depth" in graphs[0].code


def test_float_image_in_another_range_warns_once_per_call_site():
    """issue 24, item 2: decode_depth(rgb.float()) with 0..255 values gave +inf for most
    pixels, silently. 0..255 and [-1, 1] floats warn (once per line, at the caller's line);
    [0, 1] floats a little outside (random_rgb's, clamped by contract) and uint8 do not."""
    import warnings

    from tests.conftest import random_rgb

    rgb = random_rgb((2, 40, 50, 3), torch.uint8, seed=3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        for _ in range(3):
            vb.decode_depth(rgb.float())  # the 0..255 mistake
        vb.decode_normals(rgb.numpy() / 127.5 - 1.0)  # a generator's [-1, 1] output
        vb.decode_depth(random_rgb((2, 40, 50, 3), torch.float32, seed=4))
        vb.decode_segmentation(random_rgb((40, 50, 3), torch.float64, seed=5), "voc")
        vb.decode_depth(rgb)
    assert [str(w.message).split(",")[0] for w in caught] == [
        "rgb is a float image with values above 1.5", "rgb is a float image with values below -0.5"]
    assert all(w.filename == __file__ for w in caught), [w.filename for w in caught]
    assert "divide by 255" in str(caught[0].message)


def test_float_range_check_reads_no_device_values():
    """The check looks at CPU data only, and not under torch.func or torch.compile, where
    reading a value would sync the device or break the graph (docs/format.md, Images)."""
    import warnings

    from vbkernels._checks import warn_float_range

    meta = torch.empty(1, 4, 4, 3, device="meta")  # any value read would raise
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_float_range(meta)
        torch.func.vmap(vb.decode_depth)(torch.full((2, 3, 4, 5, 3), 200.0))
