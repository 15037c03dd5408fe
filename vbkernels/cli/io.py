"""The command line's file helpers, kept under their old import path.

Reading, naming and the resume rule live in :mod:`vbkernels.pipeline`; atomic writes and
encodings in :mod:`vbkernels.files` (library code imports those, never the CLI).
"""

from vbkernels.files import OutputExists, npy_bytes, png_bytes, write_atomic
from vbkernels.pipeline.sources import (
                                        IMAGE_SUFFIXES,
                                        VIDEO_SUFFIXES,
                                        Source,
                                        expand_inputs,
                                        frame_count,
                                        read_frames,
                                        read_image,
                                        read_video,
)

__all__ = ["IMAGE_SUFFIXES", "VIDEO_SUFFIXES", "OutputExists", "Source", "expand_inputs",
           "frame_count", "npy_bytes", "png_bytes", "read_frames", "read_image", "read_video",
           "write_atomic"]
