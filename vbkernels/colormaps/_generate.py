"""Write ``tables.npz``: the built-in colormaps' lookup tables, taken once from matplotlib.

Run ``python -m vbkernels.colormaps._generate`` (needs matplotlib) to regenerate the file;
the package reads it with NumPy alone, so matplotlib is not needed at run time.
``tests/test_colormap.py`` checks the shipped tables against the installed matplotlib.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import BASE_NAMES


def generate(path: Path) -> None:
    import matplotlib
    from matplotlib import colormaps

    tables = {}
    for base in BASE_NAMES:
        for name in (base, base + "_r"):
            cmap = colormaps[name]
            # The float table matplotlib looks values up in (``cmap(i)`` for entry i);
            # ``_r`` maps are stored as matplotlib builds them, since reversing a segmented
            # map's functions does not reproduce the reversed table bit for bit.
            tables[name] = cmap(np.arange(cmap.N))[:, :3].astype(np.float64)
    tables["__matplotlib_version__"] = np.array(matplotlib.__version__)
    np.savez_compressed(path, **tables)


if __name__ == "__main__":
    generate(Path(__file__).resolve().parent / "tables.npz")
