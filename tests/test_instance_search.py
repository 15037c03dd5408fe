"""decode_instances' device path (``vbkernels/triton/instance_search.py``): bit-identical to
the torch reference, at most 2 host syncs per batch, and picked without a flag.

Without a GPU the kernels run through the Triton interpreter on CPU tensors (tiny images:
the interpreter is slow); with one, on CUDA tensors.
"""

from __future__ import annotations

import os
import sys
import textwrap
import warnings

import numpy as np
import pytest
import torch

from tests import instance_generator as gen
from tests.conftest import DEVICES
from tests.helpers import compile_for_sm90
from vbkernels import instances
from vbkernels._dispatch import BackendUnavailable, load_backend
from vbkernels.instances import decode_instances

try:
    TRITON = load_backend("triton")
except BackendUnavailable as exc:
    pytest.skip(f"triton backend unavailable: {exc}", allow_module_level=True)

search = pytest.importorskip("vbkernels.triton.instance_search")
DEVICE = sorted(TRITON.devices)[0]  # "cpu" under the interpreter, else "cuda"


def _same(got, want):
    for name, x, y in zip(("labels", "palette", "counts"), got, want):
        x, y = torch.as_tensor(x).cpu(), torch.as_tensor(y).cpu()
        assert x.dtype == y.dtype and x.shape == y.shape, name
        assert torch.equal(x, y), name


@pytest.fixture(scope="module")
def batch():
    """Three 32 x 48 images: clean, JPEG-smeared, and 4 x 4 patches of random colours (many
    histogram peaks, chains of close colours, instances dropped under min_pixels)."""
    clean = gen.generate(3, height=32, width=48, max_instances=6).rgb
    smeared = gen.jpeg(gen.generate(7, height=32, width=48, max_instances=6).rgb, 90)
    patches = torch.randint(0, 256, (8, 12, 3), dtype=torch.uint8,
                            generator=torch.Generator().manual_seed(5))
    patches = patches.repeat_interleave(4, dim=0).repeat_interleave(4, dim=1).numpy()
    return torch.from_numpy(np.stack([clean, smeared, patches]))


class HostReads:
    """Counts reads of tensor values by the host (``item``, ``tolist``, ``bool()``,
    ``int()``, ``.cpu()``, ...) made from inside ``instances._decode``, i.e. after argument
    parsing, outside Triton's own launch machinery (the interpreter copies arguments); and
    the calls of ``instance_search.host_read``, the device path's one sanctioned read."""

    METHODS = ("item", "tolist", "__bool__", "__int__", "__float__", "__index__", "cpu",
               "numpy", "nonzero")

    def __init__(self, monkeypatch):
        self.reads: list[str] = []
        self.sanctioned = 0
        triton_dir = os.path.dirname(sys.modules["triton"].__file__)
        decode_code = instances._decode.__code__

        def counted(name, method):
            def wrapper(self_, *args, **kwargs):
                frame = sys._getframe(1)
                inside = False
                while frame is not None:
                    if frame.f_code.co_filename.startswith(triton_dir):
                        inside = False
                        break
                    inside = inside or frame.f_code is decode_code
                    frame = frame.f_back
                if inside:
                    self.reads.append(name)
                return method(self_, *args, **kwargs)
            return wrapper

        for name in self.METHODS:
            monkeypatch.setattr(torch.Tensor, name, counted(name, getattr(torch.Tensor, name)))
        read = search.host_read

        def host_read(values):
            self.sanctioned += 1
            return read(values)

        monkeypatch.setattr(search, "host_read", host_read)


# name: (keyword arguments, images of the batch used); the interpreter's time grows with
# the colours found, so the option that finds ~90 in the patch image leaves it out.
OPTIONS = {
    "defaults": ({}, 3),
    "no-background-no-max": ({"background": None, "max_distance": None}, 3),
    "drops-small": ({"min_pixels": 60, "merge_distance": 6.0, "max_distance": 20.0}, 3),
    "white-background": ({"background": (255, 255, 255), "min_pixels": 1,
                          "max_distance": 25.0}, 2),
}


@pytest.mark.parametrize("name", list(OPTIONS))
def test_device_path_identical_to_reference_with_at_most_two_host_reads(batch, monkeypatch,
                                                                        name):
    kwargs, images = OPTIONS[name]
    rgb = batch[:images]
    want = decode_instances(rgb, backend="torch", **kwargs)
    reads = HostReads(monkeypatch)
    got = decode_instances(rgb.to(DEVICE), backend="triton", **kwargs)
    _same(got, want)
    assert reads.reads == ["tolist"] * reads.sanctioned  # nothing but host_read reads
    # One read sizes the palette; a batch that drops a small instance needs one more.
    assert reads.sanctioned == (2 if name == "drops-small" else 1), reads.sanctioned
    assert int(want.counts.sum()) > 0


def test_device_path_float_channels_first_with_nan(batch):
    rgb = (batch[:2].double() / 255).float()
    rgb[0, 3, 5, 1] = float("nan")
    rgb[1, 31, 47] = float("nan")  # the last pixel: no right or lower neighbour
    rgb = rgb.permute(0, 3, 1, 2)
    want = decode_instances(rgb, layout="chw", backend="torch", min_pixels=16)
    _same(decode_instances(rgb.to(DEVICE), layout="chw", backend="triton", min_pixels=16),
          want)


def test_device_path_more_candidates_than_buffer_rows():
    """560 patches of 2 x 2 random colours: 534 histogram peaks, most of equal strength, so
    the first MAX_CANDIDATES (512) by strength and then bin order must match the reference's
    stable sort exactly; long merge chains at merge_distance 60."""
    patches = torch.randint(0, 256, (1, 20, 28, 3), dtype=torch.uint8,
                            generator=torch.Generator().manual_seed(5))
    rgb = patches.repeat_interleave(2, dim=1).repeat_interleave(2, dim=2)
    kwargs = {"min_pixels": 2, "merge_distance": 60.0, "max_distance": 50.0}
    want = decode_instances(rgb, backend="torch", **kwargs)
    assert int(want.counts) > 20
    _same(decode_instances(rgb.to(DEVICE), backend="triton", **kwargs), want)


def test_host_read_counter_sees_the_reference_path(batch, monkeypatch):
    """The counter is not blind: the torch orchestration reads the device many times."""
    reads = HostReads(monkeypatch)
    decode_instances(batch[:1], backend="torch")
    assert len(reads.reads) > 2 and reads.sanctioned == 0


def test_path_chosen_by_backend():
    assert TRITON.label_instances is not None
    assert load_backend("torch").label_instances is None
    try:
        cpu = load_backend("cpu")
    except BackendUnavailable:
        return
    assert cpu.label_instances is None and cpu.search_colours is not None


@pytest.mark.skipif("cuda" not in DEVICES, reason="needs a CUDA device")
def test_host_syncs_on_cuda(batch):
    """On a GPU, torch's sync debug mode sees every synchronizing call: at most 2."""
    rgb = batch.cuda()
    for kwargs, most in (({}, 1), (OPTIONS["drops-small"][0], 2)):
        decode_instances(rgb, backend="triton", **kwargs)  # compile first
        torch.cuda.synchronize()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                got = decode_instances(rgb, backend="triton", **kwargs)
            finally:
                torch.cuda.set_sync_debug_mode("default")
        syncs = [w for w in caught if "synchroniz" in str(w.message)]
        assert len(syncs) <= most, [str(w.message) for w in syncs]
        _same(got, decode_instances(batch, backend="torch", **kwargs))


_COMPILE_SCRIPT = textwrap.dedent("""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    from vbkernels.triton import instance_search as s

    INT64 = {"count_all", "count_flat", "sum_flat", "keys", "top_keys", "pixels", "flat",
             "sums", "counts", "palette", "found"}
    POINTERS = INT64 | {"colours", "scratch", "centres", "num", "out", "out_num", "full",
                        "num_full", "dropped", "num_dropped", "small", "lut", "reordered",
                        "labels"}
    CASES = [(s.peaks_kernel, dict(BLOCK=s.BIN_BLOCK)), (s.merge_kernel, dict(C=512)),
             (s.stats_kernel, dict(C=512, BLOCK=s.BIN_BLOCK)),
             (s.refine_kernel, dict(C=512, FINAL=True)),
             (s.refine_kernel, dict(C=512, FINAL=False)), (s.settle_kernel, dict(C=512)),
             (s.relabel_kernel, dict(LANES=64, SPAN=16))]
    for fn, constexprs in CASES:
        sig = {n: "constexpr" if n in constexprs else
               ("*i64" if n in INT64 else "*i32") if n in POINTERS else "i32"
               for n in fn.arg_names}
        warps = s.IMAGE_WARPS if "BLOCK" not in constexprs and "C" in constexprs else 4
        triton.compile(ASTSource(fn, sig, constexprs), target=GPUTarget("cuda", 90, 32),
                       options={"num_warps": warps})
        print("compiled", fn.__name__)
""")


@pytest.mark.skipif("cuda" in DEVICES, reason="on a GPU the tests above compile the kernels")
def test_kernels_compile_for_sm90_without_a_gpu():
    """The interpreter accepts code the GPU compiler rejects: compile every kernel."""
    assert compile_for_sm90(_COMPILE_SCRIPT).count("compiled") == 7
