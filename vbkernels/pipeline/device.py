"""The decode stage: same-size frames in, decoded arrays out, overlapped on CUDA.

``BatchDecoder.submit(frames)`` starts a batch and returns a ``PendingBatch`` whose
``result()`` gives host NumPy arrays. On CUDA the batch is stacked straight into a pinned
host buffer, copied to the device on a side stream (so it uploads while the previous batch
still decodes on the compute stream), decoded, and copied back into pinned memory on a
second side stream (overlapping the next decode); only ``result()`` waits. Keep one batch
pending while submitting the next to get the overlap. On CPU the same calls run synchronously.

Frames may also be tensors already on the device (decoded there by nvJPEG or NVDEC):
those are stacked on the device and skip the upload.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``ValueError`` for a device that is not
    a torch device or not available here."""
    if isinstance(device, torch.device):
        chosen = device
    elif device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            chosen = torch.device(device)
        except RuntimeError:
            raise ValueError(f"device must be a torch device, got {device!r}") from None
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device: CUDA is not available on this machine")
    return chosen


class PendingBatch:
    """A batch in flight; ``result()`` waits for it and returns ``{name: (N, ...) array}``."""

    def __init__(self, outputs: dict[str, torch.Tensor], done=None):
        self._outputs = outputs
        self._done = done  # a CUDA event recorded after the device-to-host copies

    def result(self) -> dict[str, np.ndarray]:
        if self._done is not None:
            self._done.synchronize()
        return {name: value.numpy() for name, value in self._outputs.items()}


class BatchDecoder:
    """Runs ``task.decode`` on ``device`` for batches of same-size frames."""

    def __init__(self, task, device: torch.device):
        self.task = task
        self.device = device
        self._cuda = device.type == "cuda"
        self._copy_stream = torch.cuda.Stream(device) if self._cuda else None
        self._download_stream = torch.cuda.Stream(device) if self._cuda else None

    def submit(self, frames: Sequence) -> PendingBatch:
        """Start decoding ``frames`` ((H, W, 3) uint8 arrays, or tensors on the device)."""
        if not self._cuda:
            return self._decode(self._stack(frames))
        with torch.cuda.device(self.device):  # streams and kernels of *this* GPU
            on_device = isinstance(frames[0], torch.Tensor)
            return self._decode(self._stack(frames) if on_device else self._upload(frames))

    def _stack(self, frames) -> torch.Tensor:
        if isinstance(frames[0], torch.Tensor):  # decoded on the device already
            return torch.stack([f.to(self.device) for f in frames])
        return torch.from_numpy(np.stack(frames))

    def _upload(self, frames) -> torch.Tensor:
        host = torch.empty((len(frames), *frames[0].shape), dtype=torch.uint8, pin_memory=True)
        np.stack(frames, out=host.numpy())
        compute = torch.cuda.current_stream(self.device)
        with torch.cuda.stream(self._copy_stream):
            rgb = host.to(self.device, non_blocking=True)
        # The decode waits for the upload, and the device allocator must not hand ``rgb``
        # out again before the compute stream is done with it. (The pinned host allocator
        # records the copy itself, so ``host`` is not reused before the upload ends.)
        compute.wait_stream(self._copy_stream)
        rgb.record_stream(compute)
        return rgb

    def _decode(self, rgb: torch.Tensor) -> PendingBatch:
        outputs = self.task.decode(rgb)
        if rgb.device.type != "cuda":
            return PendingBatch({k: v.cpu() for k, v in outputs.items()})
        # Download on the other side stream, after the decode, so it overlaps the next
        # batch's decode instead of queueing in front of it.
        self._download_stream.wait_stream(torch.cuda.current_stream(rgb.device))
        host = {}
        with torch.cuda.stream(self._download_stream):
            for name, value in outputs.items():
                host[name] = torch.empty(value.shape, dtype=value.dtype, pin_memory=True)
                host[name].copy_(value, non_blocking=True)
                value.record_stream(self._download_stream)
            done = torch.cuda.Event()
            done.record(self._download_stream)
        return PendingBatch(host, done)


def batch_key(frame) -> tuple:
    """Frames that may share a batch: the same shape, and both host arrays or both tensors
    (already on the device)."""
    return tuple(frame.shape), not isinstance(frame, np.ndarray)


def same_shape_batches(items, batch_size: int):
    """Consecutive items ``(..., ..., frame)`` in runs of one :func:`batch_key`, at most
    ``batch_size`` each, in order (so names never depend on the batching)."""
    batch: list = []
    key = None
    for item in items:
        item_key = batch_key(item[2])
        if batch and (len(batch) == batch_size or item_key != key):
            yield batch
            batch = []
        batch.append(item)
        key = item_key
    if batch:
        yield batch
