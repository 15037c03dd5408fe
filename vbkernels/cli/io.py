"""Finding inputs, streaming their frames, and writing outputs atomically.

Inputs are image files (Pillow), videos (PyAV), directories (searched recursively for
files with a known extension) and glob patterns. Frames are read one at a time, so a video
is never held in memory whole. Every output is written to a temporary file in the target
directory and then renamed onto its final name, so an interrupted run never leaves a
half-written file; without ``overwrite`` an existing file is never replaced.
"""

from __future__ import annotations

import glob
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"})
VIDEO_SUFFIXES = frozenset({".mp4", ".mkv", ".webm", ".mov", ".avi"})


class OutputExists(FileExistsError):
    """An output file is already there and the caller did not ask to overwrite it."""


@dataclass(frozen=True)
class Source:
    path: Path
    kind: str        # "image" or "video"
    stem: Path       # output name without suffix, relative to the output directory


@dataclass(frozen=True)
class Frame:
    source: Source
    index: int       # frame number within the source (0 for an image)
    rgb: np.ndarray  # (H, W, 3) uint8


def expand_inputs(inputs) -> tuple[list[Source], list[tuple[str, str]]]:
    """Sources for the given paths, directories and globs, plus (input, error) pairs.

    A directory contributes its image and video files (recursively, sorted) with output
    names relative to it; a file or glob match contributes its name without suffix.
    """
    sources, errors = [], []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and _kind(p) is not None)
            if not found:
                errors.append((str(item), "directory holds no image or video files"))
            sources += [Source(p, _kind(p), p.relative_to(path).with_suffix("")) for p in found]
        elif path.is_file():
            # A named file with an unknown suffix is tried as an image: Pillow sniffs content.
            sources.append(Source(path, _kind(path) or "image", Path(path.stem)))
        elif glob.has_magic(str(item)):
            matches = sorted(Path(p) for p in glob.glob(str(item), recursive=True))
            files = [p for p in matches if p.is_file() and _kind(p) is not None]
            if not files:
                errors.append((str(item), "pattern matches no image or video files"))
            sources += [Source(p, _kind(p), Path(p.stem)) for p in files]
        else:
            errors.append((str(item), "no such file or directory"))
    return sources, errors


def _kind(path: Path) -> str | None:
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return "image"
    if suffix in VIDEO_SUFFIXES:
        return "video"
    return None


def frame_count(source: Source) -> int | None:
    """Frames in ``source`` when the container says so cheaply, else None."""
    if source.kind == "image":
        return 1
    try:
        import av
    except ImportError:
        return None
    try:
        with av.open(str(source.path)) as container:
            frames = container.streams.video[0].frames
    except Exception:  # noqa: BLE001 - a broken file is reported when it is read
        return None
    return frames or None


def read_frames(source: Source) -> Iterator[np.ndarray]:
    """(H, W, 3) uint8 frames of ``source``, one at a time."""
    if source.kind == "image":
        yield read_image(source.path)
    else:
        yield from read_video(source.path)


def read_image(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()
            if img.mode not in ("RGB", "RGBA", "L", "P", "LA", "CMYK", "YCbCr"):
                raise ValueError(f"image mode {img.mode!r} is not 8-bit colour")
            return np.asarray(img.convert("RGB")).copy()
    except UnidentifiedImageError:
        raise ValueError("not an image Pillow can read") from None


def read_video(path: Path) -> Iterator[np.ndarray]:
    try:
        import av
    except ImportError:
        raise RuntimeError("reading videos needs PyAV: pip install av") from None
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise ValueError("file has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"  # let FFmpeg decode on several threads
        for frame in container.decode(stream):
            yield frame.to_ndarray(format="rgb24")


def iter_frames(sources, on_error: Callable[[Source, Exception], None]) -> Iterator[Frame]:
    """Frames of every source in order; a source that fails to read is reported to
    ``on_error`` and the rest go on (frames it yielded before failing are kept)."""
    for source in sources:
        try:
            for index, rgb in enumerate(read_frames(source)):
                yield Frame(source, index, rgb)
        except Exception as exc:  # noqa: BLE001 - any decoder error is one bad file
            on_error(source, exc)


def batched(frames: Iterator[Frame], batch_size: int) -> Iterator[list[Frame]]:
    """Consecutive frames of one shape, at most ``batch_size`` per batch."""
    batch: list[Frame] = []
    for frame in frames:
        if batch and (len(batch) == batch_size or frame.rgb.shape != batch[0].rgb.shape):
            yield batch
            batch = []
        batch.append(frame)
    if batch:
        yield batch


# ------------------------------------------------------------------------- atomic writes


def write_atomic(path: Path, data: bytes, *, overwrite: bool) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same directory.

    Without ``overwrite`` an existing ``path`` raises :class:`OutputExists` and is left
    untouched; the check and the rename are one step (a hard link) where the file system
    allows it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
        if overwrite:
            os.replace(tmp, path)
            return
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise OutputExists(f"{path} exists (pass --overwrite to replace it)") from None
        except OSError:
            # No hard links here (some network and FAT file systems): check, then rename.
            if path.exists():
                raise OutputExists(f"{path} exists (pass --overwrite to replace it)") from None
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def png_bytes(array: np.ndarray) -> bytes:
    """PNG of an (H, W) uint8/uint16 or (H, W, 3) uint8 array (uint16 -> 16-bit grey)."""
    from PIL import Image

    if array.dtype == np.uint16:
        if array.ndim != 2:
            raise ValueError(f"16-bit PNGs are single-channel, got shape {array.shape}")
        # frombytes with an explicit little-endian mode behaves the same in every Pillow.
        img = Image.frombytes("I;16", (array.shape[1], array.shape[0]),
                              np.ascontiguousarray(array, dtype="<u2").tobytes())
    elif array.dtype == np.uint8 and array.ndim in (2, 3):
        img = Image.fromarray(np.ascontiguousarray(array))
    else:
        raise ValueError(f"png_bytes takes uint8 or uint16 arrays, got {array.dtype} {array.shape}")
    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    return buffer.getvalue()

