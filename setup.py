"""Build hooks; metadata is in pyproject.toml.

1. The ``cpu`` backend: ``csrc/cpu/*.cpp`` (which include ``csrc/vbk_math.cuh``, the per-pixel
   math the CUDA kernels use too) compiled with g++ -O3 -fopenmp into ``vbkernels/_vbk_cpu*.so``,
   a plain shared library loaded through ctypes (no torch needed to build it). No
   ``-march=native``: the hot loops carry AVX2 + baseline clones picked at load time, so a
   wheel runs on any x86-64. The extension is optional: without a compiler, or when the build
   fails, the install still succeeds and ``backend="auto"`` uses the torch reference.
2. The CUDA sources: ``csrc/`` is copied into the package as ``vbkernels/_csrc`` so wheels
   carry the ``.cu`` files the ``cuda`` backend compiles at run time with NVRTC (a source
   checkout or an editable install reads ``csrc/`` in place).

Works for ``pip install .``, ``pip install -e .`` and ``python setup.py build_ext --inplace``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
CSRC = "csrc"
# What the cuda backend needs at run time (and the CPU sources, for reference).
CSRC_PATTERNS = ("*.cu", "*.cuh", "cpu/*.cpp", "cpu/*.h")

CPU_LIBRARY = Extension(
    "vbkernels._vbk_cpu",
    sources=sorted(f"{CSRC}/cpu/{p.name}" for p in (ROOT / CSRC / "cpu").glob("*.cpp")),
    depends=sorted(str(p.relative_to(ROOT)) for p in (ROOT / CSRC).rglob("*.h*")),
    language="c++",
    extra_compile_args=[
        "-std=c++17", "-O3", "-fopenmp", "-fvisibility=hidden", "-ffp-contract=off",
    ],
    extra_link_args=["-fopenmp"],
    optional=True,
)


class BuildCpuLibrary(build_ext):
    """build_ext that says plainly when the optional CPU library was not built."""

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:  # noqa: BLE001 - any failure only disables the cpu backend
            self.warn(
                f"vbkernels: the cpu backend was not built ({exc}); install g++ with OpenMP "
                "and reinstall to enable it. backend='auto' uses the torch reference meanwhile."
            )


class BuildPyWithSources(build_py):
    """build_py that also ships csrc/ inside the package as vbkernels/_csrc."""

    def run(self) -> None:
        super().run()
        target = Path(self.build_lib) / "vbkernels" / "_csrc"
        for pattern in CSRC_PATTERNS:
            for source in (ROOT / CSRC).glob(pattern):
                destination = target / source.relative_to(ROOT / CSRC)
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, destination)


setup(
    ext_modules=[CPU_LIBRARY],
    cmdclass={"build_ext": BuildCpuLibrary, "build_py": BuildPyWithSources},
)
