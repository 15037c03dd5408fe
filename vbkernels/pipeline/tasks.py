"""What each decode task computes and writes: ``build_task(name, **options) -> Task``.

A task is plain, picklable data (its options), so the same object runs the decode on the
device in the main process (or a Ray actor) and encodes outputs in worker processes.

========== ============================== ============================================
task       npy / png                      preview
========== ============================== ============================================
depth      NAME.depth.npy  float32 metres NAME.depth.preview.png (colormap + colourbar)
           NAME.depth.png  uint16 depth PNG (``round(depth_m * png_scale)``, 0 invalid)
           NAME.ply        point cloud coloured by the input (needs intrinsics or fov)
normals    NAME.normals.npy float32 (H,W,3) NAME.normals.preview.png (normals as RGB)
seg        NAME.seg.npy    uint8 (K <= 256) NAME.seg.preview.png (palette colours)
                           else int32
           NAME.seg.png    label PNG: 8-bit when every label fits in uint8, else 16-bit
depth,     NAME.<task>.distance.npy float32, 0..255 units (the ``distance`` kind, not a
normals,   default): each pixel's distance to the encoding (the depth walk, the sphere of
seg        unit normals, the nearest palette colour)
instances  NAME.instances.npy int32       NAME.instances.preview.png
           NAME.instances.png uint16 (-1 'near no colour' written as 65535)
colormap   NAME.colormap.npy float32      NAME.colormap.preview.png (values repainted
           NAME.colormap.distance.npy     with the colormap, a colour bar of values)
           float32, 0..255 units (the ``distance`` kind, not a default)
========== ============================== ============================================
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from vbkernels.files import npy_bytes, png_bytes

OUTPUT_KINDS = ("npy", "png", "preview")
_KIND_ALIASES = {"png16": "png"}


def _previews():
    """The preview drawing functions (imported on first use: they need matplotlib)."""
    from vbkernels.cli import previews

    return previews


# The per-input check of how far the pixels are from the encoding (``Task.warning``) reads
# the distance of every 4th row and column: 1/16 of the pixels, plenty for a median.
_SAMPLE_STEP = 4


def _median_distance(sample: torch.Tensor) -> torch.Tensor:
    """(N,) median of each frame's (H', W') distances, on their device (no host read)."""
    if sample[0].numel() == 0:
        return torch.zeros(sample.shape[0], dtype=torch.float32, device=sample.device)
    return sample.flatten(1).float().nanmedian(dim=1).values


@dataclass(frozen=True)
class Task:
    """Base of the five tasks. ``decode`` maps an (N, H, W, 3) uint8 batch on its device to
    a dict of (N, ...) tensors; ``encode`` turns one frame's arrays into file contents;
    ``warning`` says, from one frame's arrays, when the input looks like something else."""

    name: ClassVar[str]
    kinds: ClassVar[dict[str, str]]  # output kind -> file suffix
    default_kinds: ClassVar[tuple[str, ...]]
    backend: str = "auto"
    # Decode the full per-pixel distance map too (for the "distance" output kind): set by
    # for_kinds, so a run that does not write it does not compute or copy it.
    with_distance: bool = False

    def for_kinds(self, kinds=None) -> Task:
        """This task set up for the output ``kinds`` (the full distance map only when the
        ``distance`` kind is among them). The engines call it with their kinds."""
        wanted = "distance" in self.check_kinds(kinds)
        return self if wanted == self.with_distance else dataclasses.replace(
            self, with_distance=wanted)

    def warning(self, arrays: dict[str, np.ndarray]) -> str | None:
        """A one-line warning about one frame's input (e.g. most pixels far from the
        encoding: the wrong task or palette), or None."""
        return None

    def suffixes(self, kinds=None) -> list[str]:
        """File suffixes (``.depth.npy`` ...) of the chosen output kinds, in a fixed order."""
        return [self.kinds[k] for k in self.check_kinds(kinds)]

    def all_suffixes(self) -> list[str]:
        return list(self.kinds.values())

    def check_kinds(self, kinds=None) -> tuple[str, ...]:
        """Normalise an output choice (names or a comma list) against this task's kinds."""
        if kinds is None:
            return self.default_kinds
        if isinstance(kinds, str):
            kinds = [k for k in kinds.split(",") if k.strip()]
        chosen = {_KIND_ALIASES.get(k.strip(), k.strip()) for k in kinds}
        unknown = sorted(chosen - set(self.kinds))
        if unknown or not chosen:
            raise ValueError(f"outputs for {self.name} must be a non-empty choice of "
                             f"{', '.join(self.kinds)}, got {','.join(kinds) or 'nothing'}")
        return tuple(k for k in self.kinds if k in chosen)

    def decode(self, rgb: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def encode(self, arrays: dict[str, np.ndarray], kinds=None) -> dict[str, bytes]:
        """``{suffix: file bytes}`` for one frame's decoded arrays (host NumPy)."""
        chosen = self.check_kinds(kinds)
        return {self.kinds[k]: self._encode_one(k, arrays) for k in chosen}

    def _encode_one(self, kind: str, arrays: dict[str, np.ndarray]) -> bytes:
        raise NotImplementedError


class _DistanceCheck:
    """Depth, normals and seg: a ``distance`` output and the per-input warning when the
    median pixel is far from the encoding (docs/format.md, Checking inputs).

    ``far`` (0..255 units) comes from measurements (docs/format.md): the median distance of
    encoded scenes after JPEG q50 or H.264 stays at or under 2 (walk, palette) or 1
    (sphere), and that of colormap, normal, depth or segmentation images decoded as the
    wrong task is 24 or more (walk, palette) and 7 or more (sphere), except jet, which
    runs along the depth walk for half its length."""

    far: ClassVar[float]
    encoding: ClassVar[str]  # what the distance is measured to, for the message
    hint: ClassVar[str]

    def _distance_outputs(self, distance: torch.Tensor | None, sample: torch.Tensor) -> dict:
        """The check's per-frame median, and the full map when it was decoded."""
        outputs = {"median_distance": _median_distance(sample)}
        if distance is not None:
            outputs["distance"] = distance
        return outputs

    def warning(self, arrays):
        median = arrays.get("median_distance")
        if median is None or not float(median) > self.far:
            return None
        return (f"median distance {float(median):.0f}/255 from the {self.encoding} "
                f"(over {self.far:g} means most pixels are not this encoding): {self.hint}")

    def _distance_npy(self, arrays) -> bytes:
        if "distance" not in arrays:
            raise ValueError("the distance output needs the task set up for it: "
                             "task.for_kinds(kinds)")
        return npy_bytes(arrays["distance"])


@dataclass(frozen=True)
class _PointCloud:
    """The ``ply`` output of the depth and colormap tasks: the decoded values as z-depth,
    back-projected with a camera, coloured by the input frame, thinned on request."""

    # The camera: (fx, fy, cx, cy), or a horizontal field of view in degrees for an assumed
    # pinhole camera centred on the image (see camera()).
    intrinsics: tuple | None = None
    fov: float | None = None
    ply_max_depth: float | None = None     # drop points whose depth is beyond this
    ply_max_distance: float | None = None  # drop points whose colour is this far off the encoding
    ply_stride: int = 1                    # keep every Nth row and column
    ply_voxel: float | None = None         # one point per voxel of this size (mean)

    @property
    def has_camera(self) -> bool:
        return self.intrinsics is not None or self.fov is not None

    def camera(self, height: int, width: int) -> tuple:
        """(fx, fy, cx, cy) for an image of this size. From ``fov``: square pixels,
        ``fx = fy = W / (2 tan(fov / 2))`` and the principal point at the image centre,
        ``((W - 1) / 2, (H - 1) / 2)`` in OpenCV's frame (pixel centres at integers)."""
        if self.intrinsics is not None:
            return self.intrinsics
        if self.fov is None:
            raise ValueError("the ply output needs intrinsics or fov")
        f = width / (2.0 * math.tan(math.radians(self.fov) / 2.0))
        return (f, f, (width - 1) / 2.0, (height - 1) / 2.0)

    def _ply(self, depth: np.ndarray, rgb, distance) -> bytes:
        """Back-project the full frame (so the camera is the frame's), then keep what the
        cut-offs and the stride keep, then voxel-downsample."""
        from vbkernels.points import depth_to_points, ply_bytes, voxel_downsample

        if rgb is None:
            raise ValueError("the ply output needs intrinsics or fov")
        points = depth_to_points(depth, self.camera(*depth.shape))
        keep = np.isfinite(points).all(axis=-1)
        with np.errstate(invalid="ignore"):
            if self.ply_max_depth is not None:
                keep &= depth <= self.ply_max_depth
            if self.ply_max_distance is not None:
                keep &= distance <= self.ply_max_distance
        step = self.ply_stride
        keep = keep[::step, ::step]
        points, colours = points[::step, ::step][keep], np.asarray(rgb)[::step, ::step][keep]
        if self.ply_voxel is not None:
            points, colours = voxel_downsample(points, self.ply_voxel, colors=colours)
        return ply_bytes(points, colors=colours)


@dataclass(frozen=True)
class DepthTask(_DistanceCheck, _PointCloud, Task):
    name: ClassVar[str] = "depth"
    kinds: ClassVar[dict[str, str]] = {"npy": ".depth.npy", "png": ".depth.png",
                                       "preview": ".depth.preview.png", "ply": ".ply",
                                       "distance": ".depth.distance.npy"}
    default_kinds: ClassVar[tuple[str, ...]] = ("npy", "png")
    far: ClassVar[float] = 16.0
    encoding: ClassVar[str] = "depth walk"
    hint: ClassVar[str] = "is this a colormap image? try `vbkernels decode colormap`"
    lam: float = -3.0
    c: float = 10 / 3
    max_depth: float | None = None
    png_scale: float = 1000.0
    vmin: float | None = None
    vmax: float | None = None
    dtype: str = "float32"  # of the .npy output: float32, or float16 (half the bytes)

    def decode(self, rgb):
        import vbkernels

        def decode(image, with_distance):
            return vbkernels.decode_depth(image, lam=self.lam, c=self.c,
                                          max_depth=self.max_depth,
                                          return_distance=with_distance, backend=self.backend)

        # The full distance map for the distance output, and for the point cloud's cut-off.
        if self.with_distance or (self.has_camera and self.ply_max_distance is not None):
            depth, distance = decode(rgb, True)
            sample = distance[:, ::_SAMPLE_STEP, ::_SAMPLE_STEP]
        else:
            depth, distance = decode(rgb, False), None
            sample = decode(rgb[:, ::_SAMPLE_STEP, ::_SAMPLE_STEP], True)[1]
        outputs = {"depth": depth, **self._distance_outputs(distance, sample)}
        if self.has_camera:  # the point cloud is coloured by the input frame
            outputs["rgb"] = rgb
        return outputs

    def _encode_one(self, kind, arrays):
        depth = arrays["depth"]
        if kind == "npy":
            return npy_bytes(depth.astype(self.dtype, copy=False))
        if kind == "distance":
            return self._distance_npy(arrays)
        if kind == "ply":
            return self._ply(depth, arrays.get("rgb"), arrays.get("distance"))
        if kind == "png":  # zlib level 1: depth of generated frames is noise-like (see png_bytes)
            return png_bytes(depth_to_png16(depth, self.png_scale), compress_level=1)
        scale = {k: v for k, v in (("vmin", self.vmin), ("vmax", self.vmax)) if v is not None}
        return _previews().depth_preview_png(depth, **scale)


@dataclass(frozen=True)
class NormalsTask(_DistanceCheck, Task):
    name: ClassVar[str] = "normals"
    kinds: ClassVar[dict[str, str]] = {"npy": ".normals.npy", "preview": ".normals.preview.png",
                                       "distance": ".normals.distance.npy"}
    default_kinds: ClassVar[tuple[str, ...]] = ("npy",)
    far: ClassVar[float] = 6.0
    encoding: ClassVar[str] = "sphere of unit normals"
    hint: ClassVar[str] = ("is this a normal map? (depth, colormap and segmentation images "
                           "are not)")
    convention: str = "opengl"
    dtype: str = "float32"  # of the .npy output: float32, or float16 (half the bytes)

    def decode(self, rgb):
        import vbkernels

        def decode(image):
            return vbkernels.decode_normals(image, convention=self.convention, return_norm=True,
                                            backend=self.backend)

        # A colour's distance from the sphere of radius 127.5 around mid-grey that unit
        # normals are painted on: |‖p - 127.5‖ - 127.5| = 127.5 |‖n‖ - 1| in 0..255 units.
        normals, norm = decode(rgb)

        def distance(norms):
            return (norms - 1.0).abs_().mul_(127.5)

        sample = distance(norm[:, ::_SAMPLE_STEP, ::_SAMPLE_STEP].clone())
        full = distance(norm) if self.with_distance else None
        return {"normals": normals, **self._distance_outputs(full, sample)}

    def _encode_one(self, kind, arrays):
        import vbkernels

        normals = arrays["normals"]
        if kind == "npy":
            return npy_bytes(normals.astype(self.dtype, copy=False))
        if kind == "distance":
            return self._distance_npy(arrays)
        colours = vbkernels.encode_normals(torch.from_numpy(normals), convention=self.convention)
        return png_bytes(colours.numpy())


@dataclass(frozen=True)
class SegTask(_DistanceCheck, Task):
    name: ClassVar[str] = "seg"
    kinds: ClassVar[dict[str, str]] = {"npy": ".seg.npy", "png": ".seg.png",
                                       "preview": ".seg.preview.png",
                                       "distance": ".seg.distance.npy"}
    default_kinds: ClassVar[tuple[str, ...]] = ("npy", "png")
    far: ClassVar[float] = 16.0
    encoding: ClassVar[str] = "palette's colours"
    hint: ClassVar[str] = ("painted with another palette (see --palette)? or not a "
                           "segmentation image?")
    palette: Any = None  # a vbkernels.palettes.Palette
    max_distance: float | None = None

    @property
    def label_dtype(self) -> torch.dtype:
        largest = max(len(self.palette) - 1, self.palette.ignore_index)
        return torch.uint8 if largest <= 255 else torch.int32

    def decode(self, rgb):
        import vbkernels

        # The Palette itself, so pixels painted in its ignore colour decode to its ignore
        # index (encode -> decode round-trips every label).
        def decode(image):
            return vbkernels.decode_segmentation(
                image, self.palette, max_distance=self.max_distance,
                out_dtype=self.label_dtype, return_distance=True, backend=self.backend)

        if self.with_distance:
            labels, distance = decode(rgb)
            sample = distance[:, ::_SAMPLE_STEP, ::_SAMPLE_STEP]
        else:  # the labels without distances, the check's distances on the sample only
            labels, distance = vbkernels.decode_segmentation(
                rgb, self.palette, max_distance=self.max_distance,
                out_dtype=self.label_dtype, backend=self.backend), None
            sample = decode(rgb[:, ::_SAMPLE_STEP, ::_SAMPLE_STEP])[1]
        return {"labels": labels, **self._distance_outputs(distance, sample)}

    def _encode_one(self, kind, arrays):
        labels = arrays["labels"]
        if kind == "npy":
            return npy_bytes(labels)
        if kind == "distance":
            return self._distance_npy(arrays)
        if kind == "png":
            return png_bytes(labels_to_png(labels))
        return _previews().seg_preview_png(labels, self.palette)


@dataclass(frozen=True)
class InstancesTask(Task):
    name: ClassVar[str] = "instances"
    kinds: ClassVar[dict[str, str]] = {"npy": ".instances.npy", "png": ".instances.png",
                                       "preview": ".instances.preview.png"}
    default_kinds: ClassVar[tuple[str, ...]] = ("npy", "png")
    max_distance: float | None = 40.0
    min_pixels: int = 64
    background: tuple | None = (0, 0, 0)
    merge_distance: float | None = None
    split_components: bool = False

    def decode(self, rgb):
        from vbkernels.instances import decode_instances

        labels, colours, _ = decode_instances(
            rgb, background=self.background, max_distance=self.max_distance,
            min_pixels=self.min_pixels, merge_distance=self.merge_distance,
            split_components=self.split_components, backend=self.backend)
        return {"labels": labels, "colours": colours}

    def _encode_one(self, kind, arrays):
        labels = arrays["labels"]
        if kind == "npy":
            return npy_bytes(labels)
        if kind == "png":
            return png_bytes(labels.astype(np.uint16))
        return _previews().instance_preview_png(labels)


# A decoded colormap position within one colour step of either end of the map: the colour
# of values at or beyond vmin or vmax when painted (plt.imsave clips them to the ends).
_END_STEP = 1.0 / 255.0
_ENDS_SHARE = 0.5  # warn when more than half of a frame's pixels sit at the ends


@dataclass(frozen=True)
class ColormapTask(_PointCloud, Task):
    name: ClassVar[str] = "colormap"
    kinds: ClassVar[dict[str, str]] = {"npy": ".colormap.npy",
                                       "distance": ".colormap.distance.npy",
                                       "preview": ".colormap.preview.png", "ply": ".ply"}
    default_kinds: ClassVar[tuple[str, ...]] = ("npy",)
    colormap: Any = None  # a vbkernels.colormaps.ColormapTable
    vmin: float = 0.0
    vmax: float = 1.0
    scale: str = "linear"
    max_distance: float | None = None

    def decode(self, rgb):
        import vbkernels

        # The painted bytes are all the decoder reads of a colormap (its polyline), and
        # as a uint8 array they resolve to exactly this table again.
        values, distance = vbkernels.decode_colormap(
            rgb, self.colormap.painted, vmin=self.vmin, vmax=self.vmax, scale=self.scale,
            max_distance=self.max_distance, return_distance=True, backend=self.backend)
        outputs = {"values": values, "distance": distance, "ends": self._ends_share(values)}
        if self.has_camera:  # the point cloud is coloured by the input frame
            outputs["rgb"] = rgb
        return outputs

    def _ends_share(self, values: torch.Tensor) -> torch.Tensor:
        """(N,) share of each frame's pixels within one colour step of either end of the
        map, on the device (no host read). NaN (rejected) pixels count as not at an end."""
        low, high, v = self.vmin, self.vmax, values.double()
        if self.scale == "log":
            low, high, v = math.log(low), math.log(high), v.log()
        elif self.scale == "inverse":
            low, high, v = 1.0 / low, 1.0 / high, 1.0 / v
        position = (v - low) / (high - low)
        ends = (position < _END_STEP) | (position > 1.0 - _END_STEP)
        if values[0].numel() == 0:
            return torch.zeros(values.shape[0], dtype=torch.float64, device=values.device)
        return ends.flatten(1).double().mean(dim=1)

    def warning(self, arrays):
        share = arrays.get("ends")
        if share is None or not float(share) > _ENDS_SHARE:
            return None
        return (f"{float(share):.0%} of the pixels decode to the ends of the colormap, "
                f"vmin={self.vmin:g} or vmax={self.vmax:g} ({self.scale}): was it painted "
                "with a wider range (values beyond vmin/vmax are clipped to the end "
                "colours)? set --vmin/--vmax to the range it was painted with")

    def range_note(self) -> str:
        """What the summary says about the value range (the defaults are 0..1)."""
        return (f"colormap values span vmin={self.vmin:g} .. vmax={self.vmax:g} ({self.scale} "
                "scale; --vmin/--vmax set the range the images were painted with)")

    def _encode_one(self, kind, arrays):
        if kind == "npy":
            return npy_bytes(arrays["values"])
        if kind == "distance":
            return npy_bytes(arrays["distance"])
        if kind == "ply":
            return self._ply(arrays["values"], arrays.get("rgb"), arrays["distance"])
        return _previews().colormap_preview_png(
            arrays["values"], self.colormap, vmin=self.vmin, vmax=self.vmax, scale=self.scale,
            label=f"{self.vmin:g}..{self.vmax:g} ({self.scale})")


TASKS = {task.name: task for task in (DepthTask, NormalsTask, SegTask, InstancesTask,
                                      ColormapTask)}


def build_task(name: str, **options) -> Task:
    """The task ``name`` (depth, normals, seg, instances, colormap) with the CLI's options,
    checked.

    Options: ``backend`` for all; depth ``lam, c, max_depth, png_scale, vmin, vmax``;
    depth and colormap, for the ``ply`` output: ``intrinsics`` (fx, fy, cx, cy), ``fov``
    (degrees, in (0, 180)), ``ply_max_depth``, ``ply_max_distance`` (0..255 units off the
    walk or colormap), ``ply_stride`` (int >= 1), ``ply_voxel`` (> 0);
    normals ``convention``; seg ``palette`` (a name, file or Palette), ``max_distance``;
    instances ``max_distance, min_pixels, background, merge_distance, split_components``;
    colormap ``colormap`` (see :func:`load_colormap`), ``vmin, vmax, scale, max_distance``.
    A bad value is a ``ValueError`` naming the option; an unknown option a ``TypeError``.
    """
    from vbkernels._dispatch import BACKEND_NAMES

    if name not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}, got {name!r}")
    backend = options.get("backend", "auto")
    if backend not in ("auto", *BACKEND_NAMES):
        raise ValueError(f"backend must be one of {('auto', *BACKEND_NAMES)}, got {backend!r}")
    options = _dtype_option(name, dict(options))
    checks = {"depth": _depth_options, "seg": _seg_options, "instances": _instance_options,
              "colormap": _colormap_options}
    options = checks.get(name, lambda o: o)(dict(options))
    return TASKS[name](**options)


FLOAT_DTYPES = ("float32", "float16")


def _dtype_option(name: str, options: dict) -> dict:
    """``dtype`` of the float outputs: depth and normals only (labels keep theirs)."""
    dtype = options.pop("dtype", None)
    dtype = None if dtype is None else str(dtype).removeprefix("torch.")
    if dtype is not None and dtype not in FLOAT_DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(FLOAT_DTYPES)}, got {dtype!r}")
    if name in ("depth", "normals") and dtype is not None:
        options["dtype"] = dtype
    elif dtype not in (None, "float32"):
        raise ValueError(f"dtype {dtype} is for depth and normals outputs, not {name}")
    return options


def _depth_options(options: dict) -> dict:
    from vbkernels._checks import optional_positive, power_params

    options["lam"], options["c"] = power_params(options.get("lam", -3.0),
                                                options.get("c", 10 / 3))
    options["max_depth"] = optional_positive(options.get("max_depth"), "max_depth")
    scale = options.get("png_scale", 1000.0)
    if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
        raise ValueError(f"png_scale must be a finite number > 0, got {scale!r}")
    vmin, vmax = options.get("vmin"), options.get("vmax")
    if vmin is not None and vmax is not None and not vmin < vmax:
        raise ValueError(f"vmin must be below vmax, got vmin={vmin}, vmax={vmax}")
    return _camera_options(options)


def _camera_options(options: dict) -> dict:
    from vbkernels._checks import finite_float, optional_positive

    for key in ("ply_max_depth", "ply_max_distance"):
        options[key] = optional_positive(options.get(key), key)
    stride = options.get("ply_stride", 1)
    if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
        raise ValueError(f"ply_stride must be an integer >= 1, got {stride!r}")
    voxel = options.get("ply_voxel")
    if voxel is not None and not finite_float(voxel, "ply_voxel") > 0:
        raise ValueError(f"ply_voxel must be > 0, got {voxel!r}")

    intrinsics, fov = options.get("intrinsics"), options.get("fov")
    if intrinsics is not None and fov is not None:
        raise ValueError("give intrinsics or fov, not both")
    if intrinsics is not None:
        intrinsics = tuple(intrinsics)
        if len(intrinsics) != 4:
            raise ValueError(f"intrinsics must be fx,fy,cx,cy, got {len(intrinsics)} values")
        intrinsics = tuple(finite_float(v, "intrinsics") for v in intrinsics)
        if not (intrinsics[0] > 0 and intrinsics[1] > 0):
            raise ValueError(f"intrinsics: focal lengths fx, fy must be > 0, got {intrinsics}")
        options["intrinsics"] = intrinsics
    if fov is not None:
        fov = finite_float(fov, "fov")
        if not 0 < fov < 180:
            raise ValueError(f"fov must be in (0, 180) degrees, got {fov}")
        options["fov"] = fov
    return options


def _seg_options(options: dict) -> dict:
    from vbkernels._checks import optional_positive
    from vbkernels.palettes import load_palette

    options["palette"] = load_palette(options.get("palette", "cityscapes"))
    options["max_distance"] = optional_positive(options.get("max_distance"), "max_distance")
    return options


def _instance_options(options: dict) -> dict:
    from vbkernels._checks import optional_positive

    for key in ("max_distance", "merge_distance"):
        if key in options:
            options[key] = optional_positive(options[key], key)
    min_pixels = options.get("min_pixels", 64)
    if isinstance(min_pixels, bool) or not isinstance(min_pixels, int) or min_pixels < 1:
        raise ValueError(f"min_pixels must be an integer >= 1, got {min_pixels!r}")
    background = options.get("background", (0, 0, 0))
    if background is not None:
        background = tuple(background)
        if len(background) != 3 or not all(0 <= v <= 255 for v in background):
            raise ValueError(f"background must be 3 values in 0..255 or None, got {background}")
        options["background"] = background
    return options


def _colormap_options(options: dict) -> dict:
    from vbkernels.colormap import _max_distance, _scale_params

    options["colormap"] = load_colormap(options.get("colormap"))
    options["vmin"], options["vmax"] = _scale_params(
        options.get("vmin", 0.0), options.get("vmax", 1.0), options.get("scale", "linear"))
    options["max_distance"] = _max_distance(options.get("max_distance"))
    return _camera_options(options)


def load_colormap(spec) -> Any:
    """The :class:`~vbkernels.colormaps.ColormapTable` that ``spec`` names: a built-in name
    (``vbkernels.colormaps.BUILTIN_COLORMAPS``), another matplotlib colormap name when
    matplotlib is installed, a ``.npy`` file of an (N, 3) array (uint8, or float in
    [0, 1]), or a ``.csv`` file with one ``r,g,b`` colour a line (``#`` comments allowed):
    0..255 integers, or floats in [0, 1] when no value is above 1. Anything else (or an
    unreadable file) is a ``ValueError`` naming the choices."""
    from pathlib import Path

    from vbkernels.colormaps import BUILTIN_COLORMAPS, colormap_table

    if not isinstance(spec, (str, Path)):
        return colormap_table(spec)  # an array or a matplotlib Colormap
    path = Path(spec)
    if isinstance(spec, str) and spec in BUILTIN_COLORMAPS:
        return colormap_table(spec)
    if path.suffix.lower() in (".csv", ".npy") and path.is_file():
        try:
            return colormap_table(_colours_from_file(path))
        except (OSError, ValueError, TypeError) as exc:
            raise ValueError(f"colormap file {str(path)!r}: {exc}") from None
    named = _matplotlib_colormap(str(spec))
    if named is not None:
        return colormap_table(named)
    raise ValueError(f"colormap must be one of {', '.join(BUILTIN_COLORMAPS)}, a matplotlib "
                     f"colormap name, or an existing .csv/.npy file of colours, got {str(spec)!r}")


def _colours_from_file(path) -> np.ndarray:
    if path.suffix.lower() == ".npy":
        return np.load(path, allow_pickle=False)
    colours = np.loadtxt(path, delimiter=",", ndmin=2, dtype=np.float64)
    if colours.size and colours.max() > 1:  # 0..255 units: they must be whole bytes
        if not (np.all(colours == np.round(colours)) and colours.min() >= 0
                and colours.max() <= 255):
            raise ValueError("colours above 1 are read as 0..255 and must be integers in "
                             "0..255")
        return colours.astype(np.uint8)
    return colours


def _matplotlib_colormap(name: str):
    try:
        from matplotlib import colormaps
    except ImportError:
        return None
    return colormaps[name] if name in colormaps else None


# ------------------------------------------------------------------- output conversions


def depth_to_png16(depth: np.ndarray, scale: float) -> np.ndarray:
    """uint16 ``round(depth * scale)``; 0 (invalid) for NaN, inf and values past 65535."""
    with np.errstate(invalid="ignore"):
        rounded = np.rint(np.asarray(depth, dtype=np.float64) * scale)
        valid = np.isfinite(rounded) & (rounded >= 0) & (rounded <= 65535)
    return np.where(valid, rounded, 0).astype(np.uint16)


def labels_to_png(labels: np.ndarray) -> np.ndarray:
    """Label PNG pixels: uint8 when every label fits, else uint16."""
    return labels.astype(np.uint8) if labels.max(initial=0) <= 255 else labels.astype(np.uint16)
