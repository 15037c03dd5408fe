"""Optional GPU-side input decode: JPEG through nvJPEG (``torchvision.io.decode_jpeg``) and
video through NVDEC (``torchcodec.decoders.VideoDecoder``), so such frames reach the
decoder without a trip through host memory. PNG and WebP have no GPU decoder; they stay on
the CPU workers. Used automatically on CUDA when the packages import (``gpu_input=True``);
the functions also run on CPU devices, which is how the tests check them.

nvJPEG's IDCT is not libjpeg's: a JPEG decoded on the GPU can differ from Pillow's pixels
by a unit here and there, and so can the decoded depth. Turn it off for outputs that must
match a CPU run bit for bit.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from .sources import JPEG_SUFFIXES, Source


def jpeg_decoder_available() -> bool:
    try:
        from torchvision.io import decode_jpeg  # noqa: F401
    except ImportError:
        return False
    return True


def video_decoder_available() -> bool:
    try:
        from torchcodec.decoders import VideoDecoder  # noqa: F401
    except ImportError:
        return False
    return True


def on_device(source: Source, device: torch.device, enabled: bool) -> bool:
    """Whether ``source`` is decoded on ``device`` rather than by the CPU workers."""
    if not enabled or device.type != "cuda":
        return False
    if source.kind == "video":
        return video_decoder_available()
    return source.name.suffix.lower() in JPEG_SUFFIXES and jpeg_decoder_available()


def decode_jpeg_bytes(data: bytes, device: torch.device) -> torch.Tensor:
    """(H, W, 3) uint8 on ``device`` from a JPEG file's bytes."""
    from torchvision.io import ImageReadMode, decode_jpeg

    encoded = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    chw = decode_jpeg(encoded, mode=ImageReadMode.RGB, device=device)
    return chw.permute(1, 2, 0)


def video_frames_on(path, device: torch.device) -> Iterator[torch.Tensor]:
    """(H, W, 3) uint8 frames on ``device``, one at a time, through torchcodec; ``path``
    may also be the file's bytes (the Ray engine's actors get bytes)."""
    from torchcodec.decoders import VideoDecoder

    source = path if isinstance(path, bytes) else str(path)
    decoder = VideoDecoder(source, device=str(device), dimension_order="NHWC")
    for index in range(len(decoder)):
        yield decoder[index]
