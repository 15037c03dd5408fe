"""Draw the README's evaluation figures into docs/images/ (``vbkernels eval``'s plots/).

    python docs/make_eval_images.py     # needs matplotlib; about a minute on one core

Ground truth: four procedural street scenes (``vbkernels.scenes``) written in the NYUv2
layout (16-bit millimetre PNGs, depth beyond 10 m left out as NYUv2's range does).
Predictions: the same depth x1.03, painted on the walk and saved as JPEG quality 80, as a
generator and a codec would hand them over. ``vbkernels eval depth`` scores them with the
default protocol and its plots are copied here:

- ``eval_worst.png``: the two worst images (by AbsRel) beside their ground truth and error;
- ``eval_histogram.png``: the per-pixel ln(prediction / ground truth) histogram.
"""

from __future__ import annotations

import io
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

import vbkernels as vb
from vbkernels.eval import evaluate, write_outputs
from vbkernels.files import png16_bytes, write_atomic
from vbkernels.scenes import make_scenes

IMAGES = Path(__file__).resolve().parent / "images"


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="vbk-eval-doc-"))
    try:
        depth = make_scenes(4, 480, 640, seed=1)["depth"].numpy()
        lines = []
        for i, d in enumerate(depth):
            raw = np.where(d < 10.0, np.round(d * 1000), 0).astype(np.uint16)
            rgb_rel, gt_rel = f"test/s{i}/rgb_{i:04d}.png", f"test/s{i}/depth_{i:04d}.png"
            write_atomic(work / "NYU" / gt_rel, png16_bytes(raw), overwrite=True)
            lines.append(f"{rgb_rel} {gt_rel}")
            painted = vb.encode_depth((d * 1.03).astype(np.float32))
            buffer = io.BytesIO()
            Image.fromarray(painted).save(buffer, format="JPEG", quality=80)
            write_atomic(work / "gen" / rgb_rel.replace(".png", ".jpg"), buffer.getvalue(),
                         overwrite=True)
        result = evaluate("depth", [work / "gen"], dataset="nyuv2", gt_root=work / "NYU",
                          worst_k=2)
        write_outputs(result, work / "out")
        print((work / "out" / "metrics.md").read_text())
        shutil.copy(work / "out" / "plots" / "worst.png", IMAGES / "eval_worst.png")
        shutil.copy(work / "out" / "plots" / "error_histogram.png",
                    IMAGES / "eval_histogram.png")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
