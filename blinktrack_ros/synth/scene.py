"""Layered scenes: a mirror-tiled background and polygon cut-outs, each with its own motion.

Pixel centres are at integer coordinates (OpenCV convention) in both texture and image space;
layer k maps texture xy to image xy by its trajectory's affine map at time t.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy.ndimage import map_coordinates

from blinktrack_ros.synth.config import REFERENCE_WIDTH, SequenceConfig
from blinktrack_ros.synth.motion import (
    SimilarityTrajectory,
    apply_affine,
    invert_affine,
    random_trajectory,
)

SUPERSAMPLE = 4  # outline rasterisation supersampling (anti-aliased alpha edges)


@dataclass(frozen=True)
class Layer:
    """One scene layer.

    Attributes:
        texture: (h, w) float32 grey values in [0, 1].
        alpha: (h, w) float32 coverage in [0, 1], or None for the opaque, mirror-tiled background.
        trajectory: texture -> image similarity motion.
    """

    texture: np.ndarray
    alpha: np.ndarray | None
    trajectory: SimilarityTrajectory


@dataclass(frozen=True)
class Scene:
    """Layers back to front (index 0 = background); image size in pixels."""

    layers: tuple[Layer, ...]
    width: int
    height: int


def _scaled(texture: np.ndarray, min_side: int) -> np.ndarray:
    """Resize so the shorter side is min_side (area filter when shrinking)."""
    h, w = texture.shape
    f = min_side / min(h, w)
    interp = cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR
    size = (max(1, round(w * f)), max(1, round(h * f)))
    return cv2.resize(texture, size, interpolation=interp)


def outline_alpha(rng: np.random.Generator, size: int, smooth: bool) -> np.ndarray:
    """(size, size) float32 alpha of a random star-shaped outline centred in the square."""
    n = SUPERSAMPLE * size
    c, R = (n - 1) / 2, 0.45 * n
    if smooth:
        phi = np.linspace(0, 2 * np.pi, 256, endpoint=False)
        k = np.arange(2, 6)[:, None]
        amp = rng.uniform(0, 0.25, (4, 1)) / (k - 1)
        r = R * (0.75 + (amp * np.cos(k * phi + rng.uniform(0, 2 * np.pi, (4, 1)))).sum(0))
    else:
        m = int(rng.integers(4, 10))
        phi = np.sort(rng.uniform(0, 2 * np.pi, m))
        r = R * rng.uniform(0.5, 1.0, m)
    pts = np.stack([c + r * np.cos(phi), c + r * np.sin(phi)], 1)
    canvas = np.zeros((n, n), np.uint8)
    cv2.fillPoly(canvas, [np.round(pts * 16).astype(np.int32)], 255, cv2.LINE_AA, shift=4)
    alpha = cv2.resize(canvas.astype(np.float32) / 255, (size, size),
                       interpolation=cv2.INTER_AREA)
    return cv2.GaussianBlur(alpha, (0, 0), 0.6)


def _random_crop(rng: np.random.Generator, texture: np.ndarray, size: int) -> np.ndarray:
    """A (size, size) crop (reflect-padded when the texture is smaller)."""
    h, w = texture.shape
    if h < size or w < size:
        texture = cv2.copyMakeBorder(texture, 0, max(0, size - h), 0, max(0, size - w),
                                     cv2.BORDER_REFLECT_101)
        h, w = texture.shape
    y0, x0 = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
    return np.ascontiguousarray(texture[y0:y0 + size, x0:x0 + size])


def make_scene(config: SequenceConfig, textures: tuple[np.ndarray, ...],
               rng: np.random.Generator) -> Scene:
    """Draw a background and n_objects foreground cut-outs with random motions."""
    W, H = config.width, config.height
    span = max(W, H)
    speed_scale = W / REFERENCE_WIDTH
    picks = rng.permutation(len(textures))
    centre = np.array([(W - 1) / 2, (H - 1) / 2])
    bg = _scaled(textures[picks[0]], span)
    bg_traj = random_trajectory(
        rng, config.camera, config.duration_s, centre, np.array([centre - span / 4,
                                                                 centre + span / 4]),
        anchor=np.array([(bg.shape[1] - 1) / 2, (bg.shape[0] - 1) / 2]),
        speed_scale=speed_scale, start_angle=rng.uniform(-0.2, 0.2))
    layers = [Layer(bg, None, bg_traj)]
    n_obj = int(rng.integers(config.n_objects[0], config.n_objects[1] + 1))
    for i in range(n_obj):
        size = max(8, int(rng.uniform(*config.object_size) * min(W, H)))
        source = _scaled(textures[picks[1 + i % (len(picks) - 1)]], span)
        texture = _random_crop(rng, source, size)
        alpha = outline_alpha(rng, size, smooth=bool(rng.random() < config.smooth_outline_prob))
        start = rng.uniform([0.1 * W, 0.1 * H], [0.9 * W, 0.9 * H])
        heading = centre + rng.normal(0, 0.1 * span, 2) if rng.random() < config.cross_prob \
            else None
        traj = random_trajectory(
            rng, config.objects, config.duration_s, start,
            np.array([[-0.1 * W, -0.1 * H], [1.1 * W, 1.1 * H]]),
            anchor=np.array([(size - 1) / 2, (size - 1) / 2]), speed_scale=speed_scale,
            heading_xy=heading, start_angle=rng.uniform(-np.pi, np.pi))
        layers.append(Layer(texture, alpha, traj))
    return Scene(tuple(layers), W, H)


def _warp_box(layer: Layer, A: np.ndarray, W: int, H: int):
    """Integer image box (x0, y0, x1, y1) that can receive the layer, or None if off-image."""
    h, w = layer.texture.shape
    corners = apply_affine(A, np.array([[-1, -1], [w, -1], [-1, h], [w, h]], np.float64))
    x0, y0 = np.floor(corners.min(0)).astype(int)
    x1, y1 = np.ceil(corners.max(0)).astype(int) + 1
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, W), min(y1, H)
    return None if x0 >= x1 or y0 >= y1 else (x0, y0, x1, y1)


def render(scene: Scene, t_s: float) -> np.ndarray:
    """Composite all layers back to front at time t_s: (H, W) float32 in [0, 1]."""
    W, H = scene.width, scene.height
    bg = scene.layers[0]
    image = cv2.warpAffine(bg.texture, bg.trajectory.matrices(t_s)[0], (W, H),
                           flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    for layer in scene.layers[1:]:
        A = layer.trajectory.matrices(t_s)[0]
        box = _warp_box(layer, A, W, H)
        if box is None:
            continue
        x0, y0, x1, y1 = box
        A_box = A.copy()
        A_box[:, 2] -= (x0, y0)  # render straight into the box's pixels
        size = (x1 - x0, y1 - y0)
        tex = cv2.warpAffine(layer.texture, A_box, size, flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_REPLICATE)
        alpha = cv2.warpAffine(layer.alpha, A_box, size, flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        view = image[y0:y1, x0:x1]
        view += alpha * (tex - view)
    return image


def layer_alpha_images(scene: Scene, t_s: float) -> np.ndarray:
    """(L, H, W) float32 warped alpha of every layer at t_s (background all ones)."""
    W, H = scene.width, scene.height
    out = np.ones((len(scene.layers), H, W), np.float32)
    for k, layer in enumerate(scene.layers[1:], start=1):
        out[k] = cv2.warpAffine(layer.alpha, layer.trajectory.matrices(t_s)[0], (W, H),
                                flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                                borderValue=0)
    return out


def alpha_at(layer: Layer, A_inv: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Bilinear alpha of layer at image points.

    Args:
        layer: the layer (background: all ones).
        A_inv: (S, 2, 3) image -> texture maps at S times.
        xy: (S, N, 2) image points.

    Returns:
        (S, N) alpha in [0, 1]; 0 outside the layer's texture.
    """
    if layer.alpha is None:
        return np.ones(xy.shape[:2])
    uv = np.einsum("sij,snj->sni", A_inv[:, :, :2], xy) + A_inv[:, None, :, 2]
    coords = np.stack([uv[..., 1].ravel(), uv[..., 0].ravel()])  # row, col
    vals = map_coordinates(layer.alpha, coords, order=1, mode="constant", cval=0.0)
    return vals.reshape(xy.shape[:2])


def layer_inverse_maps(layer: Layer, times_s: np.ndarray) -> np.ndarray:
    """(S, 2, 3) image -> texture maps of layer at times (S,)."""
    return invert_affine(layer.trajectory.matrices(times_s))
