"""Whole-clip outputs of a video, made after its frames are written: one stacked ``.npy``
per output kind (``--stack``) and a contact sheet of its previews (``--contact-sheet``).

The per-frame files stay (the resume rule of ``manifest.is_done`` is about them); these
are built from the frames the manifest's newest ``ok`` row lists for the video, so frames
of an older run with another ``--frames`` choice are never mixed in. Each file is written
to a temporary name and renamed.
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path

import numpy as np

from vbkernels.files import tmp_name, write_atomic

from .manifest import input_key, read_manifest
from .sources import Source, output_stem

CONTACT_SHEET_FRAMES = 16  # at most this many previews, evenly spaced over the clip
CONTACT_SHEET_SUFFIX = ".contact.png"


def clip_base(source: Source, outdir: Path, keep_suffix: bool) -> Path:
    """``OUT/clip``: the video's folder of frames, and the stem of its whole-clip files."""
    return output_stem(source, 0, outdir, keep_suffix=keep_suffix).parent


def listed_frames(source: Source, outdir: Path, suffix: str, manifest=None) -> list[Path]:
    """The video's frame files ending in ``suffix`` that its newest ok row lists, in frame
    order (their names are zero-padded frame numbers)."""
    manifest = read_manifest(outdir) if manifest is None else manifest
    row = manifest.get(input_key(source.path))
    if row is None:
        return []
    return sorted(Path(outdir) / name for name in row.outputs if name.endswith(suffix))


def stack_frames(paths: list[Path], target: Path) -> tuple[int, ...]:
    """Write the ``.npy`` files ``paths`` (one frame each, same shape and dtype) as one
    ``(T, ...)`` array at ``target``, a frame at a time (memory: one frame); its shape."""
    first = np.load(paths[0], mmap_mode="r")
    shape = (len(paths),) + first.shape
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_name(target)
    try:
        stacked = np.lib.format.open_memmap(tmp, mode="w+", dtype=first.dtype, shape=shape)
        for index, path in enumerate(paths):
            frame = np.load(path, mmap_mode="r")
            if frame.shape != first.shape or frame.dtype != first.dtype:
                raise ValueError(f"{path}: shape {frame.shape} {frame.dtype}, but the first "
                                 f"frame is {first.shape} {first.dtype}")
            stacked[index] = frame
        stacked.flush()
        del stacked
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()
    return shape


def stack_video(source: Source, outdir: Path, suffixes, *, keep_suffix: bool = False,
                manifest=None) -> list[tuple[Path, tuple[int, ...]]]:
    """``OUT/clip<suffix>`` (e.g. ``out/clip.depth.npy``, shape ``(T, H, W)``) for each
    ``.npy`` suffix; ``(path, shape)`` of each file written."""
    base = clip_base(source, outdir, keep_suffix)
    written = []
    for suffix in suffixes:
        if not suffix.endswith(".npy"):
            continue
        frames = listed_frames(source, outdir, suffix, manifest)
        if frames:
            target = base.with_name(base.name + suffix)
            written.append((target, stack_frames(frames, target)))
    return written


def contact_sheet_png(previews: list[tuple[int, bytes]], *, columns: int | None = None) -> bytes:
    """One PNG of ``(frame number, preview PNG bytes)`` tiles in a grid, each tile labelled
    with its frame number, tiles of another size scaled to the first's."""
    from PIL import Image, ImageDraw

    tiles = [(number, Image.open(io.BytesIO(data)).convert("RGB")) for number, data in previews]
    width, height = tiles[0][1].size
    columns = columns or math.ceil(math.sqrt(len(tiles)))
    rows = math.ceil(len(tiles) / columns)
    label = 12  # pixels of caption above each tile
    sheet = Image.new("RGB", (columns * width, rows * (height + label)), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (number, tile) in enumerate(tiles):
        x, y = (i % columns) * width, (i // columns) * (height + label)
        if tile.size != (width, height):
            tile = tile.resize((width, height))
        sheet.paste(tile, (x, y + label))
        draw.text((x + 2, y), f"frame {number}", fill="black")
    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG")
    return buffer.getvalue()


def video_contact_sheet(source: Source, outdir: Path, suffix: str, *,
                        keep_suffix: bool = False, manifest=None,
                        frames: int = CONTACT_SHEET_FRAMES) -> Path | None:
    """``OUT/clip<task>.contact.png`` from up to ``frames`` of the video's preview PNGs
    (``suffix``, e.g. ``.depth.preview.png``), evenly spaced; None without previews."""
    listed = listed_frames(source, outdir, suffix, manifest)
    if not listed:
        return None
    shown = min(frames, len(listed))
    picks = sorted({round(i * (len(listed) - 1) / max(shown - 1, 1)) for i in range(shown)})
    previews = [(int(listed[i].name.split(".")[0]), listed[i].read_bytes()) for i in picks]
    base = clip_base(source, outdir, keep_suffix)
    task_suffix = suffix.removesuffix(".preview.png")  # ".depth"
    target = base.with_name(base.name + task_suffix + CONTACT_SHEET_SUFFIX)
    write_atomic(target, contact_sheet_png(previews), overwrite=True)
    return target


# ------------------------------------------------------------------ --frames START:STOP:STEP


def parse_frames(text: str) -> slice:
    """``START:STOP:STEP`` (each part optional, ``STOP`` exclusive, as a Python slice) ->
    a slice of non-negative ints; ``ValueError`` naming the form otherwise."""
    parts = text.split(":")
    try:
        if len(parts) > 3 or len(parts) < 2:
            raise ValueError
        numbers = [int(p) if p.strip() else None for p in parts] + [None] * (3 - len(parts))
    except ValueError:
        raise ValueError(f"frames must be START:STOP:STEP (e.g. 0:100:5, ::2, 30:), got "
                         f"{text!r}") from None
    start, stop, step = numbers
    if any(n is not None and n < 0 for n in numbers) or step == 0:
        raise ValueError(f"frames: START, STOP >= 0 and STEP >= 1, got {text!r}")
    return slice(start, stop, step)


def select_frames(frames, chosen: slice | None):
    """The frames of a video that ``chosen`` picks (all for None), reading no further than
    its STOP; the underlying reader is closed when this generator is."""
    if chosen is None:
        yield from frames
        return
    start, stop, step = chosen.start or 0, chosen.stop, chosen.step or 1
    try:
        for index, frame in enumerate(frames):
            if stop is not None and index >= stop:
                return
            if index >= start and (index - start) % step == 0:
                yield frame
    finally:
        close = getattr(frames, "close", None)
        if close is not None:
            close()


def frame_numbers(chosen: slice | None):
    """The video frame numbers, in order, of the frames ``select_frames`` yields (output
    names carry them, so frame 30 is ``000030`` whatever was skipped)."""
    import itertools

    if chosen is None:
        return itertools.count()
    return itertools.count(chosen.start or 0, chosen.step or 1)


def selected_count(count: int | None, chosen: slice | None) -> int | None:
    """How many of ``count`` frames ``chosen`` picks."""
    if count is None or chosen is None:
        return count
    return len(range(count)[chosen])
