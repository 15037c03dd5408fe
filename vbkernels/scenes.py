"""Procedural street scenes with exact ground truth, and a generator/codec degradation.

:func:`make_scenes` ray-casts a small street per image with a pinhole camera: a ground
plane (road in the middle, sidewalk either side), two side walls, a back wall with sky
above it, and boxes (vehicles) and spheres (people) standing on the ground. Every pixel
gets the exact metric depth, surface normal, Cityscapes train id and object id of the
first surface its ray hits, so decoders can be scored against the truth. Everything is
vectorised over images, pixels and objects; the random scene layout is drawn on the CPU
from ``seed``, so a seed gives the same scenes on every device.

:func:`degrade` does to encoded images what an image generator and a codec would: a slight
blur, JPEG compression (Pillow) and optionally H.264 (PyAV).

Conventions
-----------
- ``depth`` is the z-depth (distance along the optical axis, as in KITTI and NYUv2), in
  metres, float32, finite and > 0 everywhere. The sky is a camera-facing plane at
  :data:`SKY_DEPTH` metres.
- ``normals`` are unit vectors in the OpenGL camera frame (+x right, +y up, +z toward the
  camera), float32; every visible surface faces the camera, so ``dot(n, ray) < 0``.
- ``semantic`` holds Cityscapes train ids (0 road, 1 sidewalk, 2 building, 3 wall,
  8 vegetation, 10 sky, 11 person, 13 car, 14 truck, 15 bus), int64.
- ``instance`` is 0 for stuff (ground, walls, sky) and 1..M for the visible objects of each
  image, numbered in the order the objects were drawn, without gaps, int64.
"""

from __future__ import annotations

import io
import math

import numpy as np
import torch

__all__ = ["make_scenes", "degrade", "SKY_DEPTH", "CLASS_IDS"]

SKY_DEPTH = 250.0

# Cityscapes train ids of the classes the scenes use.
CLASS_IDS = {
    "road": 0, "sidewalk": 1, "building": 2, "wall": 3, "vegetation": 8, "sky": 10,
    "person": 11, "car": 13, "truck": 14, "bus": 15,
}
_SIDE_WALL_CLASSES = (CLASS_IDS["building"], CLASS_IDS["wall"], CLASS_IDS["vegetation"])
_BOX_CLASSES = (CLASS_IDS["car"], CLASS_IDS["truck"], CLASS_IDS["bus"])
_N_BOXES = 5
_N_SPHERES = 3


def make_scenes(n: int, height: int, width: int, *, seed: int = 0, device="cpu") -> dict:
    """Ray-cast ``n`` random street scenes of ``height x width`` pixels.

    Returns a dict of torch tensors on ``device``: ``depth`` (n, H, W) float32 metres,
    ``normals`` (n, H, W, 3) float32 unit vectors (OpenGL camera frame), ``semantic``
    (n, H, W) int64 Cityscapes train ids in [0, 19), ``instance`` (n, H, W) int64 (0 =
    stuff, 1..M objects), and the camera each image was rendered with: ``intrinsics``
    (n, 3, 3) float32 pinhole matrices in pixels (``[[f, 0, cx], [0, f, cy], [0, 0, 1]]``,
    OpenCV's pixel convention: pixel (u, v) at integer coordinates, so
    ``cx = (W - 1) / 2``, ``cy = (H - 1) / 2``), which ``depth_to_points(depth,
    scenes["intrinsics"])`` takes as they are, and ``fov`` (n,) float32, the horizontal
    field of view in degrees (drawn in [55, 75]). The same ``seed`` gives the same scenes.
    """
    for name, value in (("n", n), ("height", height), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be a non-negative int, got {value!r}")
    device = torch.device(device)
    params = _draw_layout(n, seed)
    params = {key: value.to(device) for key, value in params.items()}
    rays = _camera_rays(params, height, width)  # (n, P, 3) world directions, camera z = -1
    hits = [
        _hit_ground(rays, params),
        _hit_side_walls(rays, params),
        _hit_back_wall(rays, params),
        _hit_sky(rays, params),
        _hit_boxes(rays, params),
        _hit_spheres(rays, params),
    ]
    t = torch.cat([h[0] for h in hits], dim=2)          # (n, P, S) ray parameter = z-depth
    normal_w = torch.cat([h[1] for h in hits], dim=2)   # (n, P, S, 3) world normals
    semantic = torch.cat([h[2] for h in hits], dim=2)   # (n, P, S)
    object_id = torch.cat([h[3] for h in hits], dim=2)  # (n, P, S), 0 for stuff

    first = t.argmin(dim=2, keepdim=True)
    depth = t.gather(2, first).squeeze(2)
    normal_w = normal_w.gather(2, first.unsqueeze(-1).expand(-1, -1, -1, 3)).squeeze(2)
    normals = torch.einsum("nij,npi->npj", params["rotation"], normal_w)  # R^T n
    normals = normals / normals.norm(dim=-1, keepdim=True)
    semantic = semantic.gather(2, first).squeeze(2)
    instance = _renumber_visible(object_id.gather(2, first).squeeze(2))
    shape = (n, height, width)
    return {
        "depth": depth.reshape(shape).contiguous(),
        "normals": normals.reshape(shape + (3,)).contiguous(),
        "semantic": semantic.reshape(shape).contiguous(),
        "instance": instance.reshape(shape).contiguous(),
        "intrinsics": _intrinsics(params["fov"], height, width),
        "fov": torch.rad2deg(params["fov"]),
    }


def _intrinsics(fov: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(n, 3, 3) pinhole matrices of the cameras ``_camera_rays`` casts from: its pixel
    centres sit at ``u + 0.5 - W/2`` focal units from the axis, i.e. principal point
    ``(W - 1) / 2`` in OpenCV's integer pixel coordinates."""
    focal = (width / 2) / torch.tan(fov / 2)
    matrices = torch.zeros(fov.shape + (3, 3), dtype=torch.float32, device=fov.device)
    matrices[:, 0, 0] = focal
    matrices[:, 1, 1] = focal
    matrices[:, 0, 2] = (width - 1) / 2
    matrices[:, 1, 2] = (height - 1) / 2
    matrices[:, 2, 2] = 1.0
    return matrices


def _draw_layout(n: int, seed: int) -> dict:
    """Random scene parameters, drawn on the CPU so a seed means the same scene anywhere."""
    gen = torch.Generator().manual_seed(int(seed))

    def uniform(low, high, *shape):
        return low + (high - low) * torch.rand((n,) + shape, generator=gen, dtype=torch.float64)

    def choice(options, *shape):
        index = torch.randint(len(options), (n,) + shape, generator=gen)
        return torch.tensor(options, dtype=torch.int64)[index]

    road_half = uniform(3.0, 6.0)
    street_half = road_half + uniform(1.5, 5.0)
    depth_back = uniform(30.0, 90.0)
    box_half = torch.stack(
        [uniform(0.8, 1.5, _N_BOXES), uniform(0.7, 1.8, _N_BOXES), uniform(1.8, 5.0, _N_BOXES)],
        dim=-1)
    p = {
        "cam_height": uniform(1.2, 1.8),
        "pitch": uniform(-8.0, 2.0) * math.pi / 180,  # negative: looking slightly down
        "fov": uniform(55.0, 75.0) * math.pi / 180,   # horizontal field of view
        "road_half": road_half,
        "wall_x": torch.stack([-street_half, street_half], dim=1),
        "wall_top": uniform(6.0, 25.0, 2),
        "wall_class": choice(_SIDE_WALL_CLASSES, 2),
        "back_z": depth_back,
        "back_top": uniform(8.0, 40.0),
        # Objects stand on the ground inside the street, between the camera and the back wall.
        "box_x": uniform(-1.0, 1.0, _N_BOXES) * (street_half[:, None] - 1.5),
        "box_half": box_half,
        # The near face is 3 m or more in front of the camera, the far face before the wall.
        "box_z": 3.0 + box_half[..., 2] + uniform(0.0, 1.0, _N_BOXES) * (
            depth_back[:, None] - 6.0 - 2 * box_half[..., 2]),
        "box_class": choice(_BOX_CLASSES, _N_BOXES),
        "sphere_x": uniform(-1.0, 1.0, _N_SPHERES) * (street_half[:, None] - 0.8),
        "sphere_z": 3.0 + uniform(0.0, 1.0, _N_SPHERES) * (depth_back[:, None] - 8.0),
        "sphere_r": uniform(0.3, 0.9, _N_SPHERES),
    }
    p["rotation"] = _pitch_rotation(p["pitch"])
    return {key: (v.float() if v.is_floating_point() else v) for key, v in p.items()}


def _pitch_rotation(pitch: torch.Tensor) -> torch.Tensor:
    """(n, 3, 3) camera-to-world rotations about the x axis (positive pitch looks up)."""
    cos, sin = torch.cos(pitch), torch.sin(pitch)
    zero, one = torch.zeros_like(pitch), torch.ones_like(pitch)
    rows = [
        torch.stack([one, zero, zero], dim=-1),
        torch.stack([zero, cos, -sin], dim=-1),
        torch.stack([zero, sin, cos], dim=-1),
    ]
    return torch.stack(rows, dim=-2)


def _camera_rays(p: dict, height: int, width: int) -> torch.Tensor:
    """World ray directions through pixel centres, scaled so that the camera-frame z is -1.

    With that scaling a hit at ray parameter ``t`` lies at z-depth ``t``.
    """
    device = p["fov"].device
    focal = (width / 2) / torch.tan(p["fov"] / 2)  # (n,)
    u = torch.arange(width, device=device, dtype=torch.float32) + 0.5 - width / 2
    v = torch.arange(height, device=device, dtype=torch.float32) + 0.5 - height / 2
    vv, uu = torch.meshgrid(v, u, indexing="ij")
    x = uu.reshape(1, -1) / focal[:, None]
    y = -vv.reshape(1, -1) / focal[:, None]
    d_cam = torch.stack([x, y, -torch.ones_like(x)], dim=-1)  # (n, P, 3)
    return torch.einsum("nij,npj->npi", p["rotation"], d_cam)


def _no_hit_like(t: torch.Tensor, hit: torch.Tensor) -> torch.Tensor:
    return torch.where(hit & (t > 1e-4), t, torch.full_like(t, math.inf))


def _constant_normal(t: torch.Tensor, normal) -> torch.Tensor:
    return torch.tensor(normal, dtype=t.dtype, device=t.device).expand(t.shape + (3,))


def _safe(d: torch.Tensor) -> torch.Tensor:
    """Direction components bounded away from zero so 1/d is finite and keeps its sign."""
    return torch.where(d >= 0, d.clamp(min=1e-12), d.clamp(max=-1e-12))


def _hit_ground(rays: torch.Tensor, p: dict):
    dy = rays[..., 1]
    t = -p["cam_height"][:, None] / _safe(dy)
    t = _no_hit_like(t, dy < 0)
    x_hit = t * rays[..., 0]
    on_road = x_hit.abs() < p["road_half"][:, None]
    semantic = torch.where(on_road, CLASS_IDS["road"], CLASS_IDS["sidewalk"])
    t = t.unsqueeze(2)
    return t, _constant_normal(t, (0.0, 1.0, 0.0)), semantic.unsqueeze(2), torch.zeros_like(
        semantic).unsqueeze(2)


def _hit_side_walls(rays: torch.Tensor, p: dict):
    dx = rays[..., 0:1]                               # (n, P, 1)
    wall_x = p["wall_x"][:, None, :]                  # (n, 1, 2): left, right
    t = wall_x / _safe(dx)
    y_hit = t * rays[..., 1:2] + p["cam_height"][:, None, None]
    hit = (t > 0) & (y_hit < p["wall_top"][:, None, :])
    t = _no_hit_like(t, hit)
    # The left wall faces +x, the right wall faces -x.
    normal = torch.zeros(t.shape + (3,), dtype=t.dtype, device=t.device)
    normal[..., 0, 0] = 1.0
    normal[..., 1, 0] = -1.0
    semantic = p["wall_class"][:, None, :].expand(t.shape)
    return t, normal, semantic, torch.zeros_like(semantic)


def _hit_back_wall(rays: torch.Tensor, p: dict):
    dz = rays[..., 2]
    t = p["back_z"][:, None] / _safe(-dz)
    y_hit = t * rays[..., 1] + p["cam_height"][:, None]
    t = _no_hit_like(t, (dz < 0) & (y_hit < p["back_top"][:, None])).unsqueeze(2)
    semantic = torch.full(t.shape, CLASS_IDS["building"], dtype=torch.int64, device=t.device)
    return t, _constant_normal(t, (0.0, 0.0, 1.0)), semantic, torch.zeros_like(semantic)


def _hit_sky(rays: torch.Tensor, p: dict):
    # A camera-facing plane at SKY_DEPTH; the normal is the camera's +z seen in the world.
    t = torch.full(rays.shape[:2] + (1,), SKY_DEPTH, dtype=rays.dtype, device=rays.device)
    toward_camera = p["rotation"][:, :, 2]            # R @ (0, 0, 1)
    normal = toward_camera[:, None, None, :].expand(t.shape + (3,))
    semantic = torch.full(t.shape, CLASS_IDS["sky"], dtype=torch.int64, device=t.device)
    return t, normal, semantic, torch.zeros_like(semantic)


def _hit_boxes(rays: torch.Tensor, p: dict):
    """Slab test against axis-aligned boxes standing on the ground."""
    half = p["box_half"]                                               # (n, B, 3)
    centre = torch.stack(
        [p["box_x"], half[..., 1] - p["cam_height"][:, None], -p["box_z"]], dim=-1)
    inv_d = 1.0 / _safe(rays)[:, :, None, :]                           # (n, P, 1, 3)
    t_lo = (centre - half)[:, None] * inv_d
    t_hi = (centre + half)[:, None] * inv_d
    t_enter_axis = torch.minimum(t_lo, t_hi)                           # (n, P, B, 3)
    t_near, axis = t_enter_axis.max(dim=-1)
    t_far = torch.maximum(t_lo, t_hi).min(dim=-1).values
    t = _no_hit_like(t_near, t_near <= t_far)
    # The entry face's normal points against the ray along the entry axis.
    sign = -torch.sign(rays[:, :, None, :].expand_as(t_enter_axis).gather(-1, axis[..., None]))
    normal = torch.zeros_like(t_enter_axis).scatter(-1, axis[..., None], sign)
    semantic = p["box_class"][:, None, :].expand(t.shape)
    ids = torch.arange(1, half.shape[1] + 1, device=t.device).expand(t.shape)
    return t, normal, semantic, ids


def _hit_spheres(rays: torch.Tensor, p: dict):
    radius = p["sphere_r"]                                             # (n, S)
    centre = torch.stack(
        [p["sphere_x"], radius - p["cam_height"][:, None], -p["sphere_z"]], dim=-1)
    d = rays[:, :, None, :]                                            # (n, P, 1, 3)
    a = (d * d).sum(-1)
    b = (d * centre[:, None]).sum(-1)
    c = (centre * centre).sum(-1)[:, None] - (radius * radius)[:, None]
    disc = b * b - a * c
    t = (b - disc.clamp(min=0).sqrt()) / a
    t = _no_hit_like(t, disc >= 0)
    hit_point = t.clamp(max=1e6)[..., None] * d
    normal = (hit_point - centre[:, None]) / radius[:, None, :, None]
    semantic = torch.full(t.shape, CLASS_IDS["person"], dtype=torch.int64, device=t.device)
    ids = torch.arange(1, radius.shape[1] + 1, device=t.device).expand(t.shape) + _N_BOXES
    return t, normal, semantic, ids


def _renumber_visible(object_id: torch.Tensor) -> torch.Tensor:
    """Map each image's visible object ids to 1..M in drawing order; 0 stays 0."""
    n = object_id.shape[0]
    n_ids = _N_BOXES + _N_SPHERES + 1
    seen = torch.zeros((n, n_ids), dtype=torch.int64, device=object_id.device)
    seen.scatter_(1, object_id, 1)
    seen[:, 0] = 0
    new_id = seen.cumsum(dim=1) * seen
    return new_id.gather(1, object_id)


# --------------------------------------------------------------------------- degradation


def degrade(rgb_uint8, *, jpeg_quality: int | None = 90, blur_sigma: float = 0.5,
            h264: bool = False, h264_crf: int = 23):
    """Blur, JPEG- and optionally H.264-compress a batch of uint8 RGB images.

    ``rgb_uint8`` is ``(N, H, W, 3)`` or ``(H, W, 3)`` uint8, a torch tensor or NumPy array;
    the result has the same type, shape and device. ``blur_sigma`` (pixels, 0 = none) stands
    for a generator's soft edges, ``jpeg_quality`` (1..95, None = none) for saving as JPEG,
    and ``h264=True`` encodes the batch as one H.264 clip (yuv420p, ``h264_crf``) with PyAV
    and decodes it back, as a video pipeline would. Deterministic for the same input.
    """
    is_numpy = isinstance(rgb_uint8, np.ndarray)
    frames = torch.from_numpy(rgb_uint8) if is_numpy else rgb_uint8
    if not isinstance(frames, torch.Tensor):
        raise TypeError(
            f"rgb_uint8 must be a torch tensor or NumPy array, got {type(rgb_uint8).__name__}")
    if frames.dtype != torch.uint8 or frames.ndim not in (3, 4) or frames.shape[-1] != 3:
        raise ValueError(
            f"rgb_uint8 must be uint8 of shape (N, H, W, 3) or (H, W, 3), got {frames.dtype} "
            f"{tuple(frames.shape)}")
    if jpeg_quality is not None and not 1 <= int(jpeg_quality) <= 100:
        raise ValueError(f"jpeg_quality must be in 1..100 or None, got {jpeg_quality!r}")
    if not blur_sigma >= 0:
        raise ValueError(f"blur_sigma must be >= 0, got {blur_sigma!r}")
    device, single = frames.device, frames.ndim == 3
    batch = frames.unsqueeze(0) if single else frames
    batch = batch.cpu()
    if blur_sigma > 0:
        batch = _gaussian_blur(batch, blur_sigma)
    if jpeg_quality is not None:
        batch = torch.stack([_jpeg_round_trip(frame, int(jpeg_quality)) for frame in batch]) \
            if len(batch) else batch
    if h264 and len(batch):
        batch = _h264_round_trip(batch, h264_crf)
    out = (batch[0] if single else batch).to(device)
    return out.numpy() if is_numpy else out


def _gaussian_blur(batch: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = max(1, math.ceil(3 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    kernel = kernel / kernel.sum()
    img = batch.permute(0, 3, 1, 2).float().reshape(-1, 1, *batch.shape[1:3])
    if img.shape[-1] > radius and img.shape[-2] > radius:
        img = torch.nn.functional.pad(img, (radius, radius, radius, radius), mode="reflect")
    else:  # reflect padding needs more pixels than the radius
        img = torch.nn.functional.pad(img, (radius, radius, radius, radius), mode="replicate")
    img = torch.nn.functional.conv2d(img, kernel.view(1, 1, 1, -1))
    img = torch.nn.functional.conv2d(img, kernel.view(1, 1, -1, 1))
    img = img.reshape(batch.shape[0], 3, *batch.shape[1:3]).permute(0, 2, 3, 1)
    return img.round().clamp(0, 255).to(torch.uint8)


def _jpeg_round_trip(frame: torch.Tensor, quality: int) -> torch.Tensor:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(frame.numpy()).save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    with Image.open(buffer) as img:
        return torch.from_numpy(np.asarray(img.convert("RGB")).copy())


def _h264_round_trip(batch: torch.Tensor, crf: int) -> torch.Tensor:
    try:
        import av
    except ImportError:
        raise RuntimeError("degrade(h264=True) needs PyAV: pip install av") from None
    n, height, width, _ = batch.shape
    # yuv420p needs even sizes: pad by edge replication, crop after decoding.
    pad_h, pad_w = height % 2, width % 2
    frames = batch.numpy()
    if pad_h or pad_w:
        frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(int(crf)), "preset": "veryfast"}
        for array in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    buffer.seek(0)
    with av.open(buffer, mode="r") as container:
        from vbkernels.pipeline.sources import frame_rgb

        decoded = [frame_rgb(f) for f in container.decode(video=0)]
    if len(decoded) != n:
        raise RuntimeError(f"H.264 round trip returned {len(decoded)} frames for {n}")
    return torch.from_numpy(np.stack(decoded)[:, :height, :width].copy())
