"""``vbkernels.eval``: score generated images against a benchmark's ground truth.

- :mod:`.datasets`: presets (the anchors' on-disk layouts), readers, split files and
  fixture writers; :mod:`.pairing`: which prediction is which sample;
- :mod:`.protocols`: every choice the anchors make differently, as data;
- :mod:`.run`: decode through the pipeline and score on the device (``evaluate``);
- :mod:`.outputs`: ``metrics.json``, ``metrics.md``, ``per_image.csv``, ``plots/``;
- :mod:`.suite`: several datasets from a TOML file, with the N-dataset average rows.
"""

from .datasets import (
           PRESETS,
           DatasetError,
           Fixture,
           folder_preset,
           get_preset,
           list_samples,
           write_fixture,
)
from .outputs import write_outputs
from .protocols import PROTOCOLS, Settings, resolve
from .run import EvalError, EvalResult, evaluate

__all__ = ["PRESETS", "PROTOCOLS", "DatasetError", "EvalError", "EvalResult", "Fixture",
           "Settings", "evaluate", "folder_preset", "get_preset", "list_samples", "resolve",
           "write_fixture", "write_outputs"]
