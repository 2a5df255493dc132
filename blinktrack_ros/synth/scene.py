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
    CameraRotation,
    SimilarityTrajectory,
    apply_affine,
    apply_homography,
    invert_affine,
    random_camera_rotation,
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
    """Layers back to front (index 0 = background); image size in pixels.

    Layers move on a world plane (their similarity maps give world-plane pixels); `camera`, when
    set, rotates the camera so the image is the world plane seen through the homography
    K R(t) K^-1 (None: image = world plane).
    """

    layers: tuple[Layer, ...]
    width: int
    height: int
    camera: CameraRotation | None = None

    def camera_maps(self, times_s) -> np.ndarray | None:
        """(S, 3, 3) world -> image homographies at times (None without a camera rotation)."""
        return None if self.camera is None else self.camera.homographies(times_s)

    def to_image(self, times_s, world_xy: np.ndarray) -> np.ndarray:
        """World-plane points (S, N, 2) at times (S,) -> image points (S, N, 2)."""
        if self.camera is None:
            return world_xy
        return apply_homography(self.camera.homographies(times_s), world_xy)

    def to_world(self, t_s: float, image_xy: np.ndarray) -> np.ndarray:
        """Image points (N, 2) at one time -> world-plane points (N, 2)."""
        if self.camera is None:
            return image_xy
        return apply_homography(np.linalg.inv(self.camera.homographies(t_s)[0]), image_xy)


def _full_map(Hc: np.ndarray | None, A: np.ndarray) -> np.ndarray | None:
    """(3, 3) texture -> image map of the affine A (2, 3) under the camera map Hc (or None)."""
    if Hc is None:
        return None
    return Hc @ np.vstack([A, [0.0, 0.0, 1.0]])


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
    camera = None
    shake = config.camera_shake
    if shake is not None and shake.angular_speed_deg_s[1] > 0:
        from blinktrack_ros.synth.sequence import intrinsics

        profile = shake.profiles[int(rng.integers(len(shake.profiles)))]
        camera = random_camera_rotation(
            rng, profile, np.deg2rad(rng.uniform(*shake.angular_speed_deg_s)), shake.roll_ratio,
            np.deg2rad(shake.max_angle_deg), intrinsics(W, H))
    return Scene(tuple(layers), W, H, camera)


def _warp_box(layer: Layer, A: np.ndarray, W: int, H: int):
    """Integer image box (x0, y0, x1, y1) that can receive the layer, or None if off-image.

    A: (2, 3) affine or (3, 3) homography texture -> image.
    """
    h, w = layer.texture.shape
    box = np.array([[-1, -1], [w, -1], [-1, h], [w, h]], np.float64)
    corners = apply_affine(A, box) if A.shape[0] == 2 else apply_homography(A, box)
    if not np.all(np.isfinite(corners)):
        return 0, 0, W, H
    x0, y0 = np.floor(corners.min(0)).astype(int)
    x1, y1 = np.ceil(corners.max(0)).astype(int) + 1
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, W), min(y1, H)
    return None if x0 >= x1 or y0 >= y1 else (x0, y0, x1, y1)


def render(scene: Scene, t_s: float) -> np.ndarray:
    """Composite all layers back to front at time t_s: (H, W) float32 in [0, 1]."""
    W, H = scene.width, scene.height
    bg = scene.layers[0]
    A0 = bg.trajectory.matrices(t_s)[0]
    Hc = None if scene.camera is None else scene.camera.homographies(t_s)[0]
    M0 = _full_map(Hc, A0)
    if M0 is None:
        image = cv2.warpAffine(bg.texture, A0, (W, H), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REFLECT_101)
    else:
        image = cv2.warpPerspective(bg.texture, M0, (W, H), flags=cv2.INTER_LINEAR,
                                    borderMode=cv2.BORDER_REFLECT_101)
    for layer in scene.layers[1:]:
        A = layer.trajectory.matrices(t_s)[0]
        M = _full_map(Hc, A)
        box = _warp_box(layer, A if M is None else M, W, H)
        if box is None:
            continue
        x0, y0, x1, y1 = box
        size = (x1 - x0, y1 - y0)
        if M is None:
            A_box = A.copy()
            A_box[:, 2] -= (x0, y0)  # render straight into the box's pixels
            tex = cv2.warpAffine(layer.texture, A_box, size, flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_REPLICATE)
            alpha = cv2.warpAffine(layer.alpha, A_box, size, flags=cv2.INTER_LINEAR,
                                   borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        else:
            M_box = np.array([[1.0, 0, -x0], [0, 1.0, -y0], [0, 0, 1.0]]) @ M
            tex = cv2.warpPerspective(layer.texture, M_box, size, flags=cv2.INTER_LINEAR,
                                      borderMode=cv2.BORDER_REPLICATE)
            alpha = cv2.warpPerspective(layer.alpha, M_box, size, flags=cv2.INTER_LINEAR,
                                        borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        view = image[y0:y1, x0:x1]
        view += alpha * (tex - view)
    return image


def layer_alpha_images(scene: Scene, t_s: float) -> np.ndarray:
    """(L, H, W) float32 warped alpha of every layer at t_s (background all ones)."""
    W, H = scene.width, scene.height
    out = np.ones((len(scene.layers), H, W), np.float32)
    Hc = None if scene.camera is None else scene.camera.homographies(t_s)[0]
    for k, layer in enumerate(scene.layers[1:], start=1):
        A = layer.trajectory.matrices(t_s)[0]
        M = _full_map(Hc, A)
        if M is None:
            out[k] = cv2.warpAffine(layer.alpha, A, (W, H), flags=cv2.INTER_LINEAR,
                                    borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        else:
            out[k] = cv2.warpPerspective(layer.alpha, M, (W, H), flags=cv2.INTER_LINEAR,
                                         borderMode=cv2.BORDER_CONSTANT, borderValue=0)
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
