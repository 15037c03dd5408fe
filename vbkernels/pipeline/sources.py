"""Finding inputs, reading their frames, and naming their outputs.

Inputs are image files (Pillow), videos (PyAV), directories (searched recursively for
files with a known extension) and glob patterns. A video is read one frame at a time, so
it is never held in memory whole. ``frames_from_bytes`` reads the same formats from bytes
in memory, for engines that hand over file contents rather than paths.
"""

from __future__ import annotations

import glob
import io
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import BinaryIO

import numpy as np

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"})
VIDEO_SUFFIXES = frozenset({".mp4", ".mkv", ".webm", ".mov", ".avi"})
JPEG_SUFFIXES = frozenset({".jpg", ".jpeg"})


@dataclass(frozen=True)
class Source:
    """One input file. ``name`` is its output name relative to the output directory,
    suffix included (``sub/a.png`` for ``DIR/sub/a.png`` given as ``DIR``). ``path`` is a
    local ``Path``, or a URI string (``s3://...``) for engines that read the bytes
    themselves and pass them to ``frames_from_bytes``."""

    path: Path | str
    kind: str          # "image" or "video"
    name: PurePath

    @classmethod
    def from_name(cls, path: Path | str, name: str | PurePath | None = None) -> Source:
        """A source whose kind comes from its suffix (unknown suffixes: tried as images);
        ``name`` defaults to the file name."""
        name = PurePath(name) if name is not None else PurePath(str(path).rsplit("/", 1)[-1])
        return cls(path, source_kind(name) or "image", name)

    @property
    def stem(self) -> PurePath:
        return self.name.with_suffix("")


def source_kind(name: str | PurePath) -> str | None:
    """"image" or "video" from a file name's suffix, None for anything else."""
    suffix = PurePath(name).suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return "image"
    if suffix in VIDEO_SUFFIXES:
        return "video"
    return None


def file_uri_path(uri: str) -> Path:
    """The local path of a ``file://`` URI (``file:///data/a.png`` -> ``/data/a.png``,
    percent-escapes decoded); ``ValueError`` for a URI that names another host."""
    parsed = urllib.parse.urlsplit(uri)
    if parsed.scheme.lower() != "file":
        raise ValueError(f"not a file:// URI: {uri!r}")
    if parsed.netloc not in ("", "localhost"):
        raise ValueError(f"{uri!r} names the host {parsed.netloc!r}; a file:// URI must be a "
                         f"local path (file:///path)")
    return Path(urllib.request.url2pathname(parsed.path))


def expand_inputs(inputs) -> tuple[list[Source], list[tuple[str, str]]]:
    """Sources for the given paths, directories, globs and ``file://`` URIs, plus (input,
    error) pairs.

    A directory contributes its image and video files (recursively, sorted) with output
    names relative to it; a file or glob match contributes its file name. A ``file://``
    URI is its local path (as the Ray engine reads it); other URIs (``s3://``) are errors
    here: only the Ray engine reads them.
    """
    sources, errors = [], []
    for item in inputs:
        text = str(item)
        if "://" in text:
            if not text.lower().startswith("file://"):
                errors.append((text, f"{text.split('://', 1)[0]}:// inputs are read by the "
                               "Ray engine only (--engine ray); this engine reads local files"))
                continue
            try:
                item = file_uri_path(text)
            except ValueError as exc:
                errors.append((text, str(exc)))
                continue
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and source_kind(p))
            if not found:
                errors.append((str(item), "directory holds no image or video files"))
            sources += [Source(p, source_kind(p), PurePath(p.relative_to(path))) for p in found]
        elif path.is_file():
            # A named file with an unknown suffix is tried as an image: Pillow sniffs content.
            sources.append(Source(path, source_kind(path) or "image", PurePath(path.name)))
        elif glob.has_magic(str(item)):
            matches = glob_files(str(item))
            files = [p for p in matches if p.is_file() and source_kind(p)]
            if not files:
                errors.append((str(item), "pattern matches no image or video files"))
            sources += [Source(p, source_kind(p), PurePath(p.name)) for p in files]
        else:
            errors.append((str(item), "no such file or directory"))
    return sources, errors


def glob_files(pattern: str) -> list[Path]:
    """Sorted matches of a glob pattern, ``**`` matching any number of folders. ``**``
    does not descend into symlinked folders (``glob.glob`` does, and a symlink loop then
    yields every file again under each of up to 40 nested names). As with ``glob.glob``,
    names starting with a dot are left out unless the pattern has a part starting with
    one."""
    if "**" not in pattern:
        return sorted(Path(p) for p in glob.glob(pattern, recursive=True))
    parts = PurePath(pattern).parts
    first_magic = next(i for i, part in enumerate(parts) if glob.has_magic(part))
    root = Path(*parts[:first_magic]) if first_magic else Path(".")
    rest = parts[first_magic:]
    dots_asked = any(part.startswith(".") for part in rest)
    found = [path for path in root.glob(str(PurePath(*rest)))
             if dots_asked or not any(name.startswith(".")
                                      for name in path.relative_to(root).parts)]
    return sorted(found)


def output_stem(source: Source, index: int, outdir: Path, *, keep_suffix: bool = False) -> Path:
    """Output path without suffix of frame ``index`` of ``source``.

    An image ``a.png`` gives ``OUT/a`` (``OUT/a.png`` with ``keep_suffix``, so ``a.png``
    and ``a.jpg`` do not collide); frame 7 of a video ``clip.mp4`` gives
    ``OUT/clip/000007`` (``OUT/clip.mp4/000007``).
    """
    base = Path(outdir) / (source.name if keep_suffix else source.stem)
    return base / f"{index:06d}" if source.kind == "video" else base


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


def frames_from_bytes(data: bytes, name: str) -> Iterator[np.ndarray]:
    """(H, W, 3) uint8 frames of a file's contents; ``name`` (its path or file name)
    tells an image from a video by suffix, as ``expand_inputs`` does."""
    if source_kind(name) == "video":
        yield from read_video(io.BytesIO(data))
    else:
        yield read_image(io.BytesIO(data))


def read_image(path: Path | BinaryIO, max_pixels: int | str | None = "pillow") -> np.ndarray:
    """One image file (or open binary file) as (H, W, 3) uint8; every image read of the
    pipeline goes through here. PNGs take the fast exact route of :mod:`.png`, everything
    else Pillow, both reading the file in pieces. ``ValueError`` for anything that is not
    an 8-bit image or has more than ``max_pixels`` pixels (``"pillow"``: Pillow's own
    decompression-bomb limit; see :func:`.png.pixel_limit`; the caller names the file)."""
    from .png import read_image as read_any

    return read_any(path, name="", max_pixels=max_pixels)


_REFORMAT_THREADS = True  # False once PyAV turned down ``threads=`` (PyAV < 14)


def frame_rgb(frame) -> np.ndarray:
    """A decoded PyAV video frame as (H, W, 3) uint8 RGB, converted by swscale on ONE
    thread. PyAV keeps one converter per Python thread; with FFmpeg's slice threads in it, a
    process forked from another thread (the worker pool replaces a dead worker from its own
    thread) frees that converter in the child, where its threads do not exist, and hangs
    for ever (see ``vbkernels.pipeline.workers``). A one-thread converter frees safely; the
    conversion is a small part of a frame's decode."""
    global _REFORMAT_THREADS
    if _REFORMAT_THREADS:
        try:
            return frame.to_ndarray(format="rgb24", threads=1)
        except TypeError:  # an older PyAV without the argument (and without slice threads)
            _REFORMAT_THREADS = False
    return frame.to_ndarray(format="rgb24")


def read_video(path: Path | BinaryIO) -> Iterator[np.ndarray]:
    """Frames of a video file (or open binary file) through PyAV, FFmpeg threads on.

    A video is complete when its stream ends cleanly AND, where the container declares a
    frame count (MP4/MOV do, MKV/WebM usually do not), exactly that many frames decoded.
    Otherwise, after the frames that did decode, a ``ValueError`` says it is damaged or
    cut short, so the pipeline fails it rather than record it as done. Both checks are
    needed because with frame threading FFmpeg drops a frame that fails to decode without
    an error (PyAV raises only with threading off): a packet the demuxer marks corrupt (a
    file cut mid-packet) raises at once, and a frame lost to a decode error shows in the
    count.
    """
    try:
        import av
    except ImportError:
        raise RuntimeError("reading videos needs PyAV: pip install av") from None
    with av.open(path if not isinstance(path, Path) else str(path)) as container:
        if not container.streams.video:
            raise ValueError("file has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"  # let FFmpeg decode on several threads
        declared = stream.frames  # 0: the container does not say
        count = 0
        for packet in container.demux(stream):
            if packet.is_corrupt:
                raise ValueError(f"video data is damaged or cut short (a corrupt packet "
                                 f"after {count} decoded frames)")
            for frame in stream.decode(packet):
                count += 1
                yield frame_rgb(frame)
        if declared and count != declared:
            raise ValueError(f"video is damaged or cut short: {count} frames decoded, its "
                             f"container declares {declared}")
