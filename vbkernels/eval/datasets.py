"""Benchmark ground truth in each dataset's native on-disk layout: presets, readers, samples.

A preset is data: where the ground-truth files are, how a ground-truth path maps to its RGB
path (the name a prediction is paired by), how to read one file into values and a valid
mask, and the anchor file whose layout it follows. ``list_samples(preset, root, split)``
gives the samples; ``read_ground_truth(preset, sample)`` gives ``(values, valid)`` with

- depth: float32 ``(H, W)`` metres, ``valid`` where the file holds a measurement;
- normals: float32 ``(H, W, 3)`` in the dataset's frame, as the anchor reads them (DSINE:
  ``2 c / 255 - 1``, not renormalised), ``valid`` likewise;
- seg: int64 ``(H, W)`` class ids (ignore 255 already applied), ``valid`` where not ignored.

Split files use the anchors' ``filename_list_*.txt`` format: one sample a line, the RGB path,
the ground-truth path, then optional extra paths (a focal length, a filled depth), all
relative to the dataset root; ``None`` as ground truth (KITTI) means the sample has none
and is not expected.

``write_fixture(name, root, n=...)`` writes a tiny dataset in a preset's layout (ground
truth, RGB stand-ins and a split file) for tests and examples; see :class:`Fixture`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from vbkernels.files import npy_bytes, png16_bytes, png_bytes, write_atomic
from vbkernels.metrics import cityscapes_to_train_ids, reduce_zero_label

SPLIT_NAME = "filename_list_test.txt"  # what write_fixture names its split file


class DatasetError(ValueError):
    """Ground truth that cannot be used as the preset says; the message names the file."""


@dataclass(frozen=True)
class Sample:
    """One benchmark sample. ``name`` is its RGB path relative to the dataset root (POSIX),
    the key predictions are paired by; ``gt`` the ground-truth file; ``extras`` any further
    paths of its split line (e.g. a mask file)."""

    name: str
    gt: Path
    extras: tuple = ()


@dataclass(frozen=True)
class DatasetPreset:
    name: str
    task: str                          # "depth", "normals" or "seg"
    source: str                        # the anchor file whose layout and reading it follows
    description: str
    gt_glob: str                       # ground-truth files under the root (no split file)
    rgb_from_gt: Callable[[str], str]  # relative GT path -> relative RGB path
    reader: Callable                   # (preset, sample) -> (values, valid)
    depth_range: tuple = (1e-3, None)  # valid ground truth range, metres
    crop: str = "none"                 # the crop the dataset is usually scored with
    num_classes: int | None = None
    palette: str | None = None
    options: dict = field(default_factory=dict)
    gt_from_rgb: Callable[[str], str] | None = None  # split lines that list only the RGB


# ------------------------------------------------------------------------------ readers


def _read_png(path: Path, what: str) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as image:
            return np.array(image)
    except FileNotFoundError:
        raise DatasetError(f"{path}: ground-truth file not found") from None
    except Exception as exc:  # noqa: BLE001 - any Pillow error is this file's problem
        raise DatasetError(f"{path}: cannot read the {what} ({exc})") from None


def read_depth_png(preset: DatasetPreset, sample: Sample):
    """16-bit PNG depth: ``value / scale`` metres, 0 invalid (NYUv2 and ScanNet in mm,
    scale 1000; KITTI ``/256``). An 8-bit or colour file is refused: it is not depth."""
    raw = _read_png(sample.gt, "16-bit depth PNG")
    if raw.ndim != 2 or raw.dtype not in (np.uint16, np.int32, np.uint32):
        raise DatasetError(
            f"{sample.gt}: expected a single-channel 16-bit depth PNG "
            f"({preset.options['unit']}), got {raw.dtype} with shape {raw.shape}")
    depth = raw.astype(np.float32) / np.float32(preset.options["scale"])
    return depth, raw > 0


def read_depth_raw_float(preset: DatasetPreset, sample: Sample):
    """ETH3D: raw little-endian float32 depth without a header, inf invalid. The shape is
    the RGB image's when that file is present (fixtures), else 4032 x 6048 (ETH3D's DSLR)."""
    data = np.fromfile(sample.gt, dtype="<f4") if sample.gt.exists() else None
    if data is None:
        raise DatasetError(f"{sample.gt}: ground-truth file not found")
    h, w = preset.options["size"]
    rgb = Path(sample.extras[0]) if sample.extras else None  # list_samples puts it first
    if rgb is not None and rgb.is_file():
        from PIL import Image

        with Image.open(rgb) as image:
            w, h = image.size
    if data.size != h * w:
        raise DatasetError(f"{sample.gt}: {data.size} float32 values do not make a {h}x{w} "
                           "ETH3D depth map")
    depth = data.reshape(h, w)
    return depth, np.isfinite(depth) & (depth > 0)


def read_depth_npy_with_mask(preset: DatasetPreset, sample: Sample):
    """DIODE: ``*_depth.npy`` (H, W, 1) metres and ``*_depth_mask.npy`` beside it."""
    depth = _load_npy(sample.gt).astype(np.float32)
    if depth.ndim == 3 and depth.shape[-1] == 1:
        depth = depth[..., 0]
    mask_path = Path(str(sample.gt).replace("_depth.npy", "_depth_mask.npy"))
    mask = _load_npy(mask_path)
    if mask.shape != depth.shape:
        raise DatasetError(f"{mask_path}: mask shape {mask.shape} differs from the depth's "
                           f"{depth.shape}")
    return depth, (mask > 0) & (depth > 0)


def read_depth_ibims(preset: DatasetPreset, sample: Sample):
    """iBims-1: 16-bit PNG depth (``value / 65535 * 50`` m) plus invalid and transparent
    masks (``mask_invalid``, ``mask_transp`` PNGs: 1 keeps the pixel)."""
    depth, valid = read_depth_png(preset, sample)
    for name in ("mask_invalid", "mask_transp"):
        path = Path(str(sample.gt).replace("/depth/", f"/{name}/"))
        if path.exists():
            valid &= _read_png(path, name) > 0
    return depth, valid


def _load_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise DatasetError(f"{path}: ground-truth file not found") from None
    except Exception as exc:  # noqa: BLE001
        raise DatasetError(f"{path}: cannot read the .npy file ({exc})") from None


def read_normals_png(preset: DatasetPreset, sample: Sample):
    """DSINE's normal ground truth: 8-bit RGB PNG, ``n = 2 c / 255 - 1``, valid where the
    raw pixel is not black (0, 0, 0)."""
    raw = _read_png(sample.gt, "8-bit normal PNG")
    if raw.dtype != np.uint8 or raw.ndim != 3 or raw.shape[-1] < 3:
        raise DatasetError(f"{sample.gt}: expected an 8-bit RGB normal PNG, got {raw.dtype} "
                           f"with shape {raw.shape}")
    raw = raw[..., :3]
    normals = raw.astype(np.float32) / 255.0 * 2.0 - 1.0
    return normals, raw.sum(-1) > 0


def read_cityscapes_labels(preset: DatasetPreset, sample: Sample):
    """gtFine ``*_labelIds.png`` mapped to train ids in the loader (as cityscapesScripts'
    createTrainIdLabelImgs and MMSegmentation do), or ``*_labelTrainIds.png`` as they are."""
    raw = _read_label_png(sample.gt)
    if sample.gt.name.endswith("_labelTrainIds.png"):
        bad = (raw >= preset.num_classes) & (raw != 255)
        if bad.any():
            raise DatasetError(f"{sample.gt}: train id {int(raw[bad][0])} is not in 0..18 or "
                               "255 (is this a labelIds file?)")
        labels = raw.astype(np.int64)
    else:
        if raw.max() > 33:
            raise DatasetError(f"{sample.gt}: labelId {int(raw.max())} is above 33")
        labels = cityscapes_to_train_ids(raw).astype(np.int64)
    return labels, labels != 255


def read_ade20k_labels(preset: DatasetPreset, sample: Sample):
    """ADEChallengeData2016 annotations 0..150 with ``reduce_zero_label``: 0 ('other')
    becomes 255 (ignored) and every class id drops by one (MMSegmentation's
    LoadAnnotations(reduce_zero_label=True))."""
    raw = _read_label_png(sample.gt).astype(np.int64)
    if raw.max() > 150:
        raise DatasetError(f"{sample.gt}: annotation value {int(raw.max())} is above 150")
    labels = reduce_zero_label(raw)
    return labels, labels != 255


def _read_label_png(path: Path) -> np.ndarray:
    raw = _read_png(path, "label PNG")
    if raw.ndim != 2:
        raise DatasetError(f"{path}: expected a single-channel label PNG, got shape {raw.shape}")
    return raw


# --------------------------------------------------------------------- path conventions


@dataclass(frozen=True)
class _Sub:
    """``re.sub(pattern, replacement, gt)``: a ground-truth path to its RGB path (a class,
    not a lambda, so presets pickle into worker processes)."""

    pattern: str
    replacement: str

    def __call__(self, gt: str) -> str:
        return re.sub(self.pattern, self.replacement, gt)


def _kitti_rgb(gt: str) -> str:
    """``DRIVE/proj_depth/groundtruth/image_02/F.png`` ->
    ``DATE/DRIVE/image_02/data/F.png`` (Marigold's kitti split, BTS's layout)."""
    parts = PurePosixPath(gt).parts
    if len(parts) < 5:
        raise DatasetError(f"{gt}: not a KITTI DRIVE/proj_depth/groundtruth/image_0X/F.png path")
    drive, camera, name = parts[-5], parts[-2], parts[-1]
    return f"{drive[:10]}/{drive}/{camera}/data/{name}"


def _eth3d_rgb(gt: str) -> str:
    """``SCENE/ground_truth_depth/dslr_images/N.JPG`` -> ``SCENE/images/dslr_images/N.JPG``;
    in Marigold's layout ``depth/SCENE_dslr_depth/SCENE/ground_truth_depth/...`` ->
    ``rgb/SCENE/images/dslr_images/N.JPG``."""
    parts = PurePosixPath(gt).parts
    if "ground_truth_depth" not in parts:
        raise DatasetError(f"{gt}: not an ETH3D SCENE/ground_truth_depth/dslr_images/ path")
    i = parts.index("ground_truth_depth")
    rest = "/".join(("images", *parts[i + 1:]))
    if parts[0] == "depth" and i >= 2:
        return f"rgb/{parts[i - 1]}/{rest}"
    return "/".join((*parts[:i], rest))


def _cityscapes_rgb(gt: str) -> str:
    path = PurePosixPath(gt)
    parts = list(path.parts)
    if "gtFine" in parts:
        parts[parts.index("gtFine")] = "leftImg8bit"
    name = re.sub(r"_gtFine_label(Train)?Ids\.png$", "_leftImg8bit.png", path.name)
    return str(PurePosixPath(*parts[:-1], name))


def _ade_rgb(gt: str) -> str:
    path = PurePosixPath(gt)
    parts = list(path.parts)
    if "annotations" in parts:
        parts[parts.index("annotations")] = "images"
    return str(PurePosixPath(*parts[:-1], path.stem + ".jpg"))


# ------------------------------------------------------------------------------ presets

PRESETS: dict[str, DatasetPreset] = {}


def _add(preset: DatasetPreset) -> None:
    PRESETS[preset.name] = preset


_add(DatasetPreset(
    "nyuv2", "depth", "prs-eth/Marigold src/dataset/nyu_dataset.py, "
    "data_split/nyu/labeled/filename_list_test.txt",
    "NYUv2 labelled test split (654): test/SCENE/rgb_N.png, depth_N.png (uint16 mm)",
    "**/depth_*.png", _Sub(r"(^|/)depth_([^/]*)$", r"\1rgb_\2"), read_depth_png,
    depth_range=(1e-3, 10.0), crop="eigen",
    options={"scale": 1000.0, "unit": "millimetres"}))
_add(DatasetPreset(
    "kitti-eigen", "depth", "prs-eth/Marigold src/dataset/kitti_dataset.py, "
    "data_split/kitti/eigen_test_files_with_gt.txt",
    "KITTI Eigen test split: DRIVE/proj_depth/groundtruth/image_02/F.png (uint16 / 256)",
    "*/proj_depth/groundtruth/image_0[23]/*.png", _kitti_rgb, read_depth_png,
    depth_range=(1e-3, 80.0), crop="kb+garg",
    options={"scale": 256.0, "unit": "metres x 256"}))
_add(DatasetPreset(
    "scannet", "depth", "prs-eth/Marigold src/dataset/scannet_dataset.py, "
    "data_split/scannet/scannet_val_sampled_list_800_1.txt",
    "ScanNet: SCENE/color/N.jpg, SCENE/depth/N.png (uint16 mm)",
    "*/depth/*.png", _Sub(r"/depth/([^/]*)\.png$", r"/color/\1.jpg"),
    read_depth_png, depth_range=(1e-3, 10.0),
    options={"scale": 1000.0, "unit": "millimetres"}))
_add(DatasetPreset(
    "eth3d", "depth", "prs-eth/Marigold src/dataset/eth3d_dataset.py, "
    "data_split/eth3d/eth3d_filename_list.txt",
    "ETH3D: SCENE/images/dslr_images/N.JPG, SCENE/ground_truth_depth/dslr_images/N.JPG "
    "(raw float32, inf invalid)",
    "**/ground_truth_depth/dslr_images/*", _eth3d_rgb,
    read_depth_raw_float, depth_range=(1e-5, None), options={"size": (4032, 6048)}))
for _name, _glob, _which in (("diode", "**/*_depth.npy", "all"),
                              ("diode-indoors", "**/indoors/**/*_depth.npy", "indoors"),
                              ("diode-outdoor", "**/outdoor/**/*_depth.npy", "outdoor")):
    _add(DatasetPreset(
        _name, "depth", "prs-eth/Marigold src/dataset/diode_dataset.py, "
        f"data_split/diode/diode_val_{_which}_filename_list.txt",
        f"DIODE val ({_which}): .../N.png, N_depth.npy, N_depth_mask.npy",
        _glob, _Sub(r"_depth\.npy$", ".png"), read_depth_npy_with_mask,
        depth_range=(0.6, 350.0)))
_add(DatasetPreset(
    "ibims", "depth", "the iBims-1 core release's raw layout (ibims1_core_raw: rgb/, depth/, "
    "mask_invalid/, mask_transp/; depth = value / 65535 * 50 m)",
    "iBims-1: rgb/N.png, depth/N.png (uint16, 50 m = 65535), mask_invalid/, mask_transp/",
    "**/depth/*.png", _Sub(r"(^|/)depth/", r"\1rgb/"), read_depth_ibims,
    depth_range=(1e-3, 50.0), options={"scale": 65535.0 / 50.0, "unit": "65535 = 50 m"}))
for _name, _example in (("nyuv2-normals", "test/000000"),
                       ("scannet-normals", "scene0532_00/000000")):
    _scene = _name.split("-")[0]
    _add(DatasetPreset(
        _name, "normals", f"baegwangbin/DSINE data/datasets/{_scene}/__init__.py "
        f"(get_sample), data/datasets/{_scene}/split/test.txt; utils/utils.py",
        f"DSINE's dsine_eval/{_scene}: {_example}_img.png, {_example}_normal.png (8-bit)",
        "**/*_normal.png", _Sub(r"_normal\.png$", "_img.png"), read_normals_png,
        options={"frame": "dsine"}, gt_from_rgb=_Sub(r"_img\.[A-Za-z]+$", "_normal.png")))
_add(DatasetPreset(
    "cityscapes", "seg", "mcordts/cityscapesScripts helpers/labels.py; open-mmlab/"
    "mmsegmentation mmseg/datasets/cityscapes.py",
    "Cityscapes val: leftImg8bit/val/CITY/X_leftImg8bit.png, gtFine/val/CITY/"
    "X_gtFine_labelIds.png (or _labelTrainIds.png)",
    "**/*_gtFine_labelIds.png", _cityscapes_rgb, read_cityscapes_labels,
    num_classes=19, palette="cityscapes",
    options={"fallback_glob": "**/*_gtFine_labelTrainIds.png"}))
_add(DatasetPreset(
    "ade20k", "seg", "open-mmlab/mmsegmentation mmseg/datasets/ade.py "
    "(reduce_zero_label=True)",
    "ADEChallengeData2016: images/validation/X.jpg, annotations/validation/X.png (0..150)",
    "**/annotations/**/*.png", _ade_rgb, read_ade20k_labels, num_classes=150,
    palette="ade20k"))


def get_preset(name: str) -> DatasetPreset:
    if isinstance(name, DatasetPreset):
        return name
    if name not in PRESETS:
        raise ValueError(f"dataset must be one of {', '.join(PRESETS)} (or 'folder'), "
                         f"got {name!r}")
    return PRESETS[name]


def read_folder(preset: DatasetPreset, sample: Sample):
    """The ``folder`` preset's reader (see :func:`folder_preset`)."""
    options = preset.options
    gt_suffix, mask_suffix = options["gt_suffix"], options.get("mask_suffix")
    if preset.task == "depth":
        if gt_suffix.endswith(".npy"):
            values = _load_npy(sample.gt).astype(np.float32)
            valid = np.isfinite(values) & (values > 0)
        else:
            values, valid = read_depth_png(preset, sample)
    elif preset.task == "normals":
        values, valid = read_normals_png(preset, sample)
    else:
        values = _read_label_png(sample.gt).astype(np.int64)
        valid = values != 255
    if mask_suffix:
        mask_path = Path(str(sample.gt)[: -len(gt_suffix)] + mask_suffix)
        mask = _load_npy(mask_path) if mask_suffix.endswith(".npy") else _read_png(
            mask_path, "mask")
        valid = valid & (mask > 0)
    return values, valid


def folder_preset(task: str, *, gt_suffix: str = ".png", scale: float = 1000.0,
                  depth_range=(1e-3, None), mask_suffix: str | None = None,
                  num_classes: int | None = None, palette: str | None = None,
                  frame: str = "opengl") -> DatasetPreset:
    """The generic layout: ground-truth files ``STEM{gt_suffix}`` anywhere under the root,
    paired with predictions by stem (``--match stem``). Depth from a 16-bit ``.png``
    (``value / scale`` metres, 0 invalid) or a ``.npy`` (metres); normals from DSINE-style
    8-bit PNGs in ``frame``; labels from a label PNG (255 ignored). An optional
    ``STEM{mask_suffix}`` file (PNG or ``.npy``; nonzero keeps a pixel) per sample."""
    if task not in ("depth", "normals", "seg"):
        raise ValueError(f"task must be depth, normals or seg, got {task!r}")
    if task == "seg" and not num_classes:
        raise ValueError("the folder preset needs num_classes for segmentation")
    return DatasetPreset(
        "folder", task, "generic (vbkernels)", f"any folder of *{gt_suffix} ({task})",
        f"**/*{gt_suffix}", _Sub(re.escape(gt_suffix) + "$", ".png"), read_folder,
        depth_range=tuple(depth_range), num_classes=num_classes, palette=palette,
        options={"scale": scale, "unit": f"value / {scale} m", "frame": frame,
                 "match": "stem", "gt_suffix": gt_suffix, "mask_suffix": mask_suffix})


# ------------------------------------------------------------------------------ samples


def list_samples(preset: DatasetPreset, root, split=None) -> list[Sample]:
    """The samples of ``root`` in ``preset``'s layout: the lines of ``split`` (paths
    relative to ``root``), or every ground-truth file found when there is no split."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: the --gt-root directory does not exist")
    if split is not None:
        return _samples_from_split(preset, root, Path(split))
    found = sorted(root.glob(preset.gt_glob))
    if not found and preset.options.get("fallback_glob"):
        found = sorted(root.glob(preset.options["fallback_glob"]))
    found = [p for p in found if p.is_file() and not _is_mask(preset, p)]
    if not found:
        raise DatasetError(f"{root}: no ground-truth files matching {preset.gt_glob} "
                           f"(the {preset.name} layout: {preset.description})")
    samples = []
    for path in found:
        rel = path.relative_to(root).as_posix()
        rgb = preset.rgb_from_gt(rel)
        samples.append(Sample(rgb, path, (root / rgb,)))
    return samples


def _is_mask(preset, path: Path) -> bool:
    suffix = preset.options.get("mask_suffix")
    return bool(suffix) and path.name.endswith(suffix)


def _samples_from_split(preset: DatasetPreset, root: Path, split: Path) -> list[Sample]:
    try:
        lines = split.read_text().splitlines()
    except OSError as exc:
        raise DatasetError(f"{split}: cannot read the split file ({exc.strerror})") from None
    samples = []
    for number, line in enumerate(lines, 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) < 2 and preset.gt_from_rgb is not None:  # DSINE: the RGB path only
            fields.append(preset.gt_from_rgb(fields[0]))
        if len(fields) < 2:
            raise DatasetError(f"{split}:{number}: expected 'RGB_PATH GT_PATH [EXTRA...]', "
                               f"got {line!r}")
        if fields[1] == "None":  # KITTI: listed, but without ground truth
            continue
        gt = root / fields[1]
        if not gt.is_file():
            raise DatasetError(f"{split}:{number}: ground truth {gt} does not exist")
        extras = tuple(root / f if not _is_number(f) else f for f in fields[2:])
        samples.append(Sample(fields[0], gt, (root / fields[0], *extras)))
    if not samples:
        raise DatasetError(f"{split}: the split file lists no sample with ground truth")
    return samples


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_ground_truth(preset: DatasetPreset, sample: Sample):
    """``(values, valid)`` of one sample, as the module docstring describes."""
    return preset.reader(preset, sample)


def split_lines_sha256(split) -> str | None:
    import hashlib

    if split is None:
        return None
    return hashlib.sha256(Path(split).read_bytes()).hexdigest()


# ----------------------------------------------------------------------------- fixtures


@dataclass
class Fixture:
    """What ``write_fixture`` wrote: the root, the split file, the samples and their true
    values (depth metres / unit normals in the dataset frame / class ids, 255 ignored)."""

    preset: DatasetPreset
    root: Path
    split: Path
    samples: list
    values: list
    valid: list


_FIXTURE_SIZES = {"nyuv2": (480, 640), "kitti-eigen": (375, 1242)}


def write_fixture(name: str, root, *, n: int = 4, size: tuple | None = None,
                  seed: int = 0) -> Fixture:
    """A tiny dataset in preset ``name``'s layout under ``root``: ``n`` samples of ``size``
    (default 48 x 64; NYUv2 480 x 640 and KITTI 375 x 1242, the sizes their crops need),
    ground truth in the native file format, grey RGB stand-ins, and a split file
    ``root/filename_list_test.txt``. Depth is smooth with holes (KITTI: sparse, 5 % of
    pixels), normals unit with black holes, labels with some ignored pixels."""
    preset = get_preset(name)
    root = Path(root)
    rng = np.random.default_rng(seed)
    h, w = size or _FIXTURE_SIZES.get(name, (48, 64))
    lines, samples, values, valids = [], [], [], []
    for i in range(n):
        rgb_rel, gt_rel, value, valid, data = _fixture_sample(preset, i, h, w, rng)
        write_atomic(root / gt_rel, data, overwrite=True)
        write_atomic(root / rgb_rel, _stand_in_rgb(h, w, rgb_rel), overwrite=True)
        lines.append(f"{rgb_rel} {gt_rel}")
        samples.append(Sample(rgb_rel, root / gt_rel, (root / rgb_rel,)))
        values.append(value)
        valids.append(valid)
    split = root / SPLIT_NAME
    write_atomic(split, ("\n".join(lines) + "\n").encode(), overwrite=True)
    fixture = Fixture(preset, root, split, samples, values, valids)
    if name.startswith("diode"):
        _write_diode_masks(fixture)
    return fixture


def _stand_in_rgb(h: int, w: int, name: str) -> bytes:
    """A grey image in the format its name says (JPEG or PNG)."""
    grey = np.full((h, w, 3), 128, np.uint8)
    if Path(name).suffix.lower() not in (".jpg", ".jpeg"):
        return png_bytes(grey)
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(grey).save(buffer, format="JPEG")
    return buffer.getvalue()


def _smooth_depth(h, w, rng, low, high):
    yy, xx = np.meshgrid(np.linspace(0, 1, h), np.linspace(0, 1, w), indexing="ij")
    a, b, c = rng.uniform(0.5, 2.0, 3)
    field_ = 0.5 + 0.5 * np.sin(a * 3 * xx + b * 2 * yy + c) * np.cos(b * xx - a * yy)
    return (low + (high - low) * np.clip(field_, 0, 1)).astype(np.float32)


def _fixture_sample(preset: DatasetPreset, i: int, h: int, w: int, rng):
    name = preset.name
    if name in ("nyuv2", "scannet", "ibims", "kitti-eigen"):
        high = {"kitti-eigen": 79.0}.get(name, 9.5)
        depth = _smooth_depth(h, w, rng, 0.5 if high < 20 else 3.0, high)
        scale = preset.options["scale"]
        raw = np.round(depth * scale).astype(np.uint16)
        valid = rng.random((h, w)) < (0.05 if name == "kitti-eigen" else 0.97)
        raw[~valid] = 0
        depth = raw.astype(np.float32) / np.float32(scale)
        paths = {"nyuv2": (f"test/scene_{i:02d}/rgb_{i:04d}.png",
                           f"test/scene_{i:02d}/depth_{i:04d}.png"),
                 "scannet": (f"scene{i:04d}_00/color/{i:06d}.jpg",
                             f"scene{i:04d}_00/depth/{i:06d}.png"),
                 "ibims": (f"rgb/img_{i:03d}.png", f"depth/img_{i:03d}.png")}
        if name == "kitti-eigen":
            drive = f"2011_09_26_drive_{i + 1:04d}_sync"
            paths[name] = (f"2011_09_26/{drive}/image_02/data/{i:010d}.png",
                           f"{drive}/proj_depth/groundtruth/image_02/{i:010d}.png")
        rgb_rel, gt_rel = paths[name]
        return rgb_rel, gt_rel, depth, valid, png16_bytes(raw)
    if name == "eth3d":
        depth = _smooth_depth(h, w, rng, 1.0, 30.0)
        valid = rng.random((h, w)) < 0.8
        stored = np.where(valid, depth, np.inf).astype("<f4")
        return (f"scene{i}/images/dslr_images/DSC_{i:04d}.JPG",
                f"scene{i}/ground_truth_depth/dslr_images/DSC_{i:04d}.JPG",
                np.where(valid, depth, np.inf).astype(np.float32), valid, stored.tobytes())
    if name.startswith("diode"):
        depth = _smooth_depth(h, w, rng, 1.0, 9.0)
        valid = rng.random((h, w)) < 0.95
        where = "outdoor" if name == "diode-outdoor" or (name == "diode" and i % 2) else \
            "indoors"
        stem = f"val/{where}/scene_{i:05d}/scan_00001/{i:05d}_00001_{where}_000_010"
        return (f"{stem}.png", f"{stem}_depth.npy", depth, valid, npy_bytes(depth[..., None]))
    if preset.task == "normals":
        normals = rng.normal(size=(h, w, 3)).astype(np.float32)
        normals[..., 2] = np.abs(normals[..., 2]) + 1.0
        normals /= np.linalg.norm(normals, axis=-1, keepdims=True)
        raw = np.clip(np.round((normals + 1) / 2 * 255), 0, 255).astype(np.uint8)
        valid = rng.random((h, w)) < 0.9
        raw[~valid] = 0
        valid = raw.sum(-1) > 0
        stored = raw.astype(np.float32) / 255 * 2 - 1
        rel = f"test/{i:06d}" if preset.name == "nyuv2-normals" else f"scene{i:04d}_00/{i:06d}"
        return f"{rel}_img.png", f"{rel}_normal.png", stored, valid, png_bytes(raw)
    if name == "cityscapes":
        ids = rng.choice(np.array([0, 7, 8, 11, 21, 23, 24, 26, 33], np.uint8), size=(h, w))
        labels = cityscapes_to_train_ids(ids).astype(np.int64)
        stem = f"val/city/city_{i:06d}_000019"
        return (f"leftImg8bit/{stem}_leftImg8bit.png", f"gtFine/{stem}_gtFine_labelIds.png",
                labels, labels != 255, png_bytes(ids))
    if name == "ade20k":
        raw = rng.integers(0, 6, size=(h, w)).astype(np.uint8)
        labels = np.where(raw == 0, 255, raw.astype(np.int64) - 1)
        stem = f"ADE_val_{i + 1:08d}"
        return (f"images/validation/{stem}.jpg", f"annotations/validation/{stem}.png",
                labels, labels != 255, png_bytes(raw))
    raise ValueError(f"write_fixture has no writer for the {name} preset")


def _write_diode_masks(fixture: Fixture) -> None:
    """DIODE's ``*_depth_mask.npy`` files next to the depth."""
    for sample, valid in zip(fixture.samples, fixture.valid):
        path = Path(str(sample.gt).replace("_depth.npy", "_depth_mask.npy"))
        write_atomic(path, npy_bytes(valid.astype(np.float32)), overwrite=True)
