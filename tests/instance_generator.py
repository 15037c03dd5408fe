"""Synthetic instance-segmentation images in the Vision Banana convention, plus metrics.

Every image has a black background and 1..40 overlapping objects (ellipses, rotated
rectangles, random polygons), each painted in its own random colour. Colours are at least
``MIN_COLOUR_DISTANCE`` apart from each other and from black, as a generator that gives every
instance a distinct colour would paint them. Edges are anti-aliased by rendering at
``supersample`` times the resolution and averaging, so boundary pixels are mixtures of two
colours: the case the paper names as the weak point of colour clustering.

The ground-truth mask of an instance is the set of pixels where it covers most of the
sub-samples. The *oracle* knows every true colour and gives each pixel the nearest one: the
best a colour-only decoder can do, against which ``decode_instances`` is measured.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

MIN_COLOUR_DISTANCE = 60.0
# Objects left with fewer visible pixels than this are removed and the image re-rendered:
# an object hidden under others is not an instance anyone can find, oracle included.
MIN_VISIBLE_PIXELS = 96


@dataclass
class InstanceImage:
    rgb: np.ndarray  # (H, W, 3) uint8, anti-aliased
    labels: np.ndarray  # (H, W) int32 ground truth: 0 background, 1..K instances
    colours: np.ndarray  # (K, 3) uint8, colour of instance k+1


def random_colours(rng: np.random.Generator, count: int) -> np.ndarray:
    """``count`` uint8 colours pairwise >= MIN_COLOUR_DISTANCE apart and as far from black."""
    chosen = [np.zeros(3)]
    while len(chosen) < count + 1:
        for _ in range(10_000):
            colour = rng.integers(0, 256, size=3).astype(np.float64)
            if min(np.linalg.norm(colour - c) for c in chosen) >= MIN_COLOUR_DISTANCE:
                chosen.append(colour)
                break
        else:  # the cube is full for this sequence: start again
            chosen = [np.zeros(3)]
    return np.array(chosen[1:], dtype=np.uint8)


def _polygon_mask(x: np.ndarray, y: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    """Even-odd rule point-in-polygon test for sample coordinates ``x``, ``y``."""
    inside = np.zeros(x.shape, dtype=bool)
    for (x0, y0), (x1, y1) in zip(vertices, np.roll(vertices, -1, axis=0)):
        crosses = (y0 > y) != (y1 > y)
        with np.errstate(divide="ignore", invalid="ignore"):
            x_cross = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
        inside ^= crosses & (x < x_cross)
    return inside


def _random_shape(rng, x, y, height, width):
    """Boolean coverage of one random shape on the sample grid ``x``, ``y`` (pixel units)."""
    cx, cy = rng.uniform(0, width), rng.uniform(0, height)
    size = rng.uniform(5, 0.35 * min(height, width))
    kind = rng.integers(3)
    angle = rng.uniform(0, np.pi)
    if kind == 0:  # ellipse
        a, b = size, size * rng.uniform(0.3, 1.0)
        u = (x - cx) * np.cos(angle) + (y - cy) * np.sin(angle)
        v = -(x - cx) * np.sin(angle) + (y - cy) * np.cos(angle)
        return (u / a) ** 2 + (v / b) ** 2 <= 1.0
    if kind == 1:  # rotated rectangle
        a, b = size, size * rng.uniform(0.3, 1.0)
        u = (x - cx) * np.cos(angle) + (y - cy) * np.sin(angle)
        v = -(x - cx) * np.sin(angle) + (y - cy) * np.cos(angle)
        return (np.abs(u) <= a) & (np.abs(v) <= b)
    # star-shaped polygon: vertices at sorted random angles and random radii
    count = rng.integers(3, 9)
    angles = np.sort(rng.uniform(0, 2 * np.pi, size=count))
    radii = size * rng.uniform(0.4, 1.0, size=count)
    vertices = np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], axis=1)
    return _polygon_mask(x, y, vertices)


def _render(shapes, colours, height, width, supersample):
    """Paint ``shapes`` in order (later on top); return anti-aliased rgb and majority labels."""
    top = np.zeros(shapes[0].shape if shapes else (height * supersample, width * supersample),
                   dtype=np.int32)
    for index, shape in enumerate(shapes):
        top[shape] = index + 1
    palette = np.concatenate([np.zeros((1, 3)), colours.astype(np.float64)])
    blocks = top.reshape(height, supersample, width, supersample).transpose(0, 2, 1, 3)
    blocks = blocks.reshape(height, width, supersample * supersample)
    rgb = palette[blocks].mean(axis=2)
    votes = np.stack([(blocks == k).sum(axis=2) for k in range(len(shapes) + 1)], axis=-1)
    return np.rint(rgb).astype(np.uint8), votes.argmax(axis=-1).astype(np.int32)


def generate(seed: int, height: int = 96, width: int = 128, max_instances: int = 40,
             supersample: int = 4) -> InstanceImage:
    """One reproducible image with 1..``max_instances`` visible objects."""
    rng = np.random.default_rng(seed)
    count = int(rng.integers(1, max_instances + 1))
    offsets = (np.arange(supersample) + 0.5) / supersample
    y = (np.arange(height)[:, None] + offsets[None, :]).reshape(-1)
    x = (np.arange(width)[:, None] + offsets[None, :]).reshape(-1)
    x, y = np.meshgrid(x, y)
    shapes = [_random_shape(rng, x, y, height, width) for _ in range(count)]
    colours = random_colours(rng, count)
    while True:
        rgb, labels = _render(shapes, colours, height, width, supersample)
        visible = np.bincount(labels.ravel(), minlength=len(shapes) + 1)[1:]
        keep = visible >= MIN_VISIBLE_PIXELS
        if keep.all() or not keep.any():
            break
        shapes = [s for s, k in zip(shapes, keep) if k]
        colours = colours[keep]
    if not keep.any():  # every object was hidden: fall back to one large ellipse
        return generate(seed + 1_000_003, height, width, max_instances, supersample)
    return InstanceImage(rgb=rgb, labels=labels, colours=colours)


def jpeg(rgb: np.ndarray, quality: int) -> np.ndarray:
    """Round trip through a JPEG at ``quality`` (Pillow defaults: 4:2:0 chroma subsampling)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    return np.asarray(Image.open(buffer).convert("RGB")).copy()


def oracle_labels(rgb: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """Nearest true colour (black = 0, colour k = k+1) for every pixel; ties to the lower."""
    palette = np.concatenate([np.zeros((1, 3)), colours.astype(np.float64)])
    dist2 = ((rgb[..., None, :].astype(np.float64) - palette) ** 2).sum(axis=-1)
    return dist2.argmin(axis=-1).astype(np.int32)


@dataclass
class MatchStats:
    true_positives: int = 0
    predicted: int = 0
    ground_truth: int = 0
    matched_iou_sum: float = 0.0

    def add(self, predicted: np.ndarray, truth: np.ndarray) -> None:
        """Match instances (labels >= 1) of one image at IoU >= 0.5, greedily by IoU."""
        pred_ids = [p for p in np.unique(predicted) if p >= 1]
        true_ids = [t for t in np.unique(truth) if t >= 1]
        self.predicted += len(pred_ids)
        self.ground_truth += len(true_ids)
        pairs = []
        for p in pred_ids:
            pred_mask = predicted == p
            for t in np.unique(truth[pred_mask]):
                if t < 1:
                    continue
                true_mask = truth == t
                iou = (pred_mask & true_mask).sum() / (pred_mask | true_mask).sum()
                if iou >= 0.5:
                    pairs.append((iou, p, t))
        used_pred, used_true = set(), set()
        for iou, p, t in sorted(pairs, reverse=True):
            if p in used_pred or t in used_true:
                continue
            used_pred.add(p)
            used_true.add(t)
            self.true_positives += 1
            self.matched_iou_sum += float(iou)

    @property
    def f1(self) -> float:
        total = self.predicted + self.ground_truth
        return 2 * self.true_positives / total if total else 1.0

    @property
    def mean_iou(self) -> float:
        return self.matched_iou_sum / self.true_positives if self.true_positives else 0.0
