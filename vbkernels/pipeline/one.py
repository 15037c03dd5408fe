"""One input file from start to finish in the calling process: read (path or bytes) ->
batches on the device -> encode -> atomic writes -> its manifest row.

This is what a distributed engine's worker (e.g. a Ray Data actor handed
``read_binary_files`` rows) calls per file; the local engine spreads the same stages over
a process pool instead. Outputs and names are identical either way.
"""

from __future__ import annotations

from pathlib import Path

from .device import BatchDecoder, resolve_device
from .local import write_frame
from .manifest import ManifestRow, relative_output
from .sources import Source, frames_from_bytes, output_stem, read_frames


def decode_file(task, source: Source, outdir: Path, *, data: bytes | None = None, kinds=None,
                device="auto", batch_size: int = 16, keep_suffix: bool = False,
                decoder: BatchDecoder | None = None) -> ManifestRow:
    """Decode every frame of ``source`` (from ``data`` when given, else from its path)
    and write its outputs under ``outdir``; returns the ``ok`` or ``failed`` row (a bad
    file is a row, not an exception). Pass a ``decoder`` to reuse its CUDA streams."""
    outdir = Path(outdir)
    kinds = task.check_kinds(kinds)
    task = task.for_kinds(kinds)  # e.g. the full distance map for the distance output
    decoder = decoder or BatchDecoder(task, resolve_device(device))
    frames = (frames_from_bytes(data, str(source.name)) if data is not None
              else read_frames(source))
    outputs: list[str] = []
    count = 0
    try:
        batch: list = []
        for rgb in frames:
            if batch and (len(batch) == batch_size or rgb.shape != batch[0].shape):
                count = _write_batch(task, decoder, batch, source, count, outdir, kinds,
                                     keep_suffix, outputs)
                batch = []
            batch.append(rgb)
        if batch:
            count = _write_batch(task, decoder, batch, source, count, outdir, kinds,
                                 keep_suffix, outputs)
    except Exception as exc:  # noqa: BLE001 - one bad file is one failed row
        return ManifestRow(str(source.path), count, sorted(outputs), "failed",
                           f"{type(exc).__name__}: {exc}")
    if count == 0:
        return ManifestRow(str(source.path), 0, [], "failed", "no frames")
    return ManifestRow(str(source.path), count, sorted(outputs), "ok")


def _write_batch(task, decoder, batch, source, first, outdir, kinds, keep_suffix,
                 outputs) -> int:
    arrays = decoder.submit(batch).result()
    for i in range(len(batch)):
        stem = output_stem(source, first + i, outdir, keep_suffix=keep_suffix)
        written = write_frame(task, {k: v[i] for k, v in arrays.items()}, stem, kinds)
        outputs += [relative_output(p, outdir) for p in written]
    return first + len(batch)
