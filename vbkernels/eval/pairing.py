"""Which prediction belongs to which ground-truth sample.

``match="path"`` (default): a prediction pairs with a sample when its path relative to the
PRED folder, without suffix, equals the sample's RGB path relative to the dataset root,
without suffix (``test/bathroom/rgb_0001.jpg`` pairs with ``test/bathroom/rgb_0001.png``;
the suffixes that ``vbkernels decode`` adds, ``.depth.npy`` ..., are dropped too).
``match="stem"``: by file stem alone (an error if two samples or two predictions share one).
``match="order"``: the predictions' frames in order (a video's frame i, or the sorted
files) pair with the samples in split order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from vbkernels.pipeline import Source, expand_inputs, frame_count

MATCHES = ("path", "stem", "order")
PRED_FORMATS = ("image", "npy", "png16")
_DECODE_SUFFIX = re.compile(r"\.(depth|normals|seg|colormap)$")


@dataclass(frozen=True)
class Prediction:
    """One prediction frame: a file (``frame`` 0) or frame ``frame`` of a video."""

    source: Source
    frame: int = 0

    @property
    def name(self) -> str:
        base = self.source.name.as_posix()
        return base if self.source.kind == "image" else f"{base}#{self.frame}"


@dataclass
class Pairing:
    pairs: list = field(default_factory=list)     # (Sample, Prediction)
    missing: list = field(default_factory=list)   # samples without a prediction
    unused: list = field(default_factory=list)    # prediction names no sample wanted
    errors: list = field(default_factory=list)    # (input, message) from listing


def list_predictions(inputs, pred_format: str = "image") -> tuple[list[Source], list]:
    """Prediction sources of the PRED arguments: images and videos through the pipeline's
    ``expand_inputs``; ``npy`` lists ``*.npy`` files (a directory recursively, names
    relative to it)."""
    if pred_format not in PRED_FORMATS:
        raise ValueError(f"pred-format must be one of {', '.join(PRED_FORMATS)}, "
                         f"got {pred_format!r}")
    if pred_format != "npy":
        return expand_inputs(inputs)
    sources, errors = [], []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*.npy") if p.is_file())
            if not found:
                errors.append((str(item), "directory holds no .npy files"))
            sources += [Source(p, "image", p.relative_to(path)) for p in found]
        elif path.is_file():
            sources.append(Source(path, "image", PurePosixPath(path.name)))
        else:
            errors.append((str(item), "no such file or directory"))
    return sources, errors


def key_of(name: str, match: str) -> str:
    """The pairing key of a relative path: without suffix (and decode suffix); only the
    stem for ``match="stem"``."""
    path = PurePosixPath(name)
    stem = _DECODE_SUFFIX.sub("", path.with_suffix("").as_posix())
    return PurePosixPath(stem).name if match == "stem" else stem


def pair(sources: list[Source], samples: list, match: str = "path") -> Pairing:
    """Pair prediction sources with samples (see the module docstring)."""
    if match not in MATCHES:
        raise ValueError(f"match must be one of {', '.join(MATCHES)}, got {match!r}")
    result = Pairing()
    if match == "order":
        predictions = [Prediction(s, i) for s in sources for i in range(_frames(s))]
        result.pairs = list(zip(samples, predictions))
        result.missing = samples[len(predictions):]
        result.unused = [p.name for p in predictions[len(samples):]]
        return result
    by_key: dict[str, Prediction] = {}
    for source in sources:
        if source.kind != "image":
            result.errors.append((str(source.path), "a video pairs only with --match order"))
            continue
        key = key_of(source.name.as_posix(), match)
        if key in by_key:
            raise ValueError(f"predictions {by_key[key].source.path} and {source.path} both "
                             f"pair with '{key}' (--match {match})")
        by_key[key] = Prediction(source)
    wanted = set()
    for sample in samples:
        key = key_of(sample.name, match)
        if key in wanted:
            raise ValueError(f"two samples share the key '{key}' (--match {match}); "
                             "use --match path")
        wanted.add(key)
        if key in by_key:
            result.pairs.append((sample, by_key[key]))
        else:
            result.missing.append(sample)
    result.unused = [p.name for k, p in by_key.items() if k not in wanted]
    return result


def _frames(source: Source) -> int:
    if source.kind == "image":
        return 1
    count = frame_count(source)
    if count is None:
        raise ValueError(f"{source.path}: cannot count the video's frames")
    return count
