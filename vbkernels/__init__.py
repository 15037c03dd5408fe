"""vbkernels: decode "perception as image generation" outputs into depth, normals and labels.

Public API (docs/format.md, Public API). Every decoder takes uint8 or float images in channels-last
``(..., H, W, 3)`` or channels-first ``(..., 3, H, W)`` layout, as torch tensors (any device,
any strides) or NumPy arrays, and returns the same kind of object.
"""

from . import _dispatch
from ._api import (
    decode_depth,
    decode_normals,
    decode_segmentation,
    encode_depth,
    encode_normals,
    encode_segmentation,
    hilbert_project,
    hilbert_walk,
    inverse_power_transform,
    power_transform,
    segmentation_logits,
)
from ._dispatch import available_backends
from .colormap import decode_colormap, encode_colormap
from .instances import Instances, decode_instances
from .points import (
    depth_to_points,
    normal_consistency,
    normals_from_depth,
    voxel_downsample,
    write_ply,
)
from .video import encode_video

# Load the backends now rather than at the first call: torch.compile cannot trace imports.
# Set TRITON_INTERPRET=1 before importing vbkernels to run the Triton kernels on CPU.
_dispatch.load_all()

__version__ = "0.1.0"

__all__ = [
    "Instances",
    "available_backends",
    "decode_colormap",
    "decode_instances",
    "decode_depth",
    "decode_normals",
    "decode_segmentation",
    "depth_to_points",
    "encode_colormap",
    "encode_depth",
    "encode_normals",
    "encode_segmentation",
    "encode_video",
    "hilbert_project",
    "hilbert_walk",
    "inverse_power_transform",
    "normal_consistency",
    "normals_from_depth",
    "power_transform",
    "voxel_downsample",
    "write_ply",
    "segmentation_logits",
]
