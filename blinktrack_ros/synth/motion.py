"""Smooth random similarity motions: keyframes with bounce-back, cubic-spline interpolation."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.interpolate import CubicSpline

from blinktrack_ros.synth.config import MotionConfig


@dataclass(frozen=True)
class SimilarityTrajectory:
    """A layer's motion: texture coords u -> image coords x = s(t) R(theta(t)) (u - anchor) + T(t).

    Attributes:
        spline: cubic spline of (log s, theta rad, Tx px, Ty px) over time in seconds.
        anchor: (2,) texture xy that sits at T (the texture's centre).
    """

    spline: CubicSpline
    anchor: np.ndarray

    def params(self, times_s: np.ndarray) -> np.ndarray:
        """(S, 4) log-scale, angle, tx, ty at times (S,) in seconds."""
        return self.spline(np.asarray(times_s, np.float64))

    def matrices(self, times_s: np.ndarray) -> np.ndarray:
        """(S, 2, 3) forward affine maps texture xy -> image xy (OpenCV warpAffine convention)."""
        q = self.params(np.atleast_1d(times_s))
        s, th = np.exp(q[:, 0]), q[:, 1]
        A = np.empty((q.shape[0], 2, 3))
        A[:, 0, 0], A[:, 0, 1] = s * np.cos(th), -s * np.sin(th)
        A[:, 1, 0], A[:, 1, 1] = s * np.sin(th), s * np.cos(th)
        A[:, :, 2] = q[:, 2:] - np.einsum("sij,j->si", A[:, :, :2], self.anchor)
        return A


def invert_affine(A: np.ndarray) -> np.ndarray:
    """(..., 2, 3) affine maps -> their inverses (..., 2, 3)."""
    Rinv = np.linalg.inv(A[..., :2])
    out = np.empty_like(A)
    out[..., :2] = Rinv
    out[..., 2] = -np.einsum("...ij,...j->...i", Rinv, A[..., 2])
    return out


def apply_affine(A: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Apply maps (S, 2, 3) to points (N, 2) -> (S, N, 2); or one (2, 3) map -> (N, 2)."""
    if A.ndim == 2:
        return xy @ A[:, :2].T + A[:, 2]
    return np.einsum("sij,nj->sni", A[:, :, :2], xy) + A[:, None, :, 2]


def _bounce(value: np.ndarray, velocity: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> None:
    """Reflect value into [lo, hi] in place, flipping the velocity component that bounced."""
    for _ in range(4):  # a few reflections cover any overshoot smaller than 4 widths
        below, above = value < lo, value > hi
        value[below] = 2 * lo[below] - value[below]
        value[above] = 2 * hi[above] - value[above]
        velocity[below | above] *= -1


def random_trajectory(rng: np.random.Generator, motion: MotionConfig, duration_s: float,
                      start_xy: np.ndarray, bounds: np.ndarray, anchor: np.ndarray,
                      speed_scale: float = 1.0, heading_xy: np.ndarray | None = None,
                      start_angle: float = 0.0) -> SimilarityTrajectory:
    """Draw a smooth random similarity motion.

    Args:
        rng: random generator.
        motion: speed, rotation and scale ranges.
        duration_s: length to cover (keyframes extend one step beyond).
        start_xy: (2,) image position of the anchor at t = 0.
        bounds: (2, 2) [[xmin, ymin], [xmax, ymax]] box the translation bounces inside.
        anchor: (2,) texture xy of the layer's reference point.
        speed_scale: multiplies the translation speeds (image width / 240).
        heading_xy: (2,) optional point to head for initially (more crossings).
        start_angle: initial rotation in radians.
    """
    n_key = int(np.ceil(duration_s / motion.keyframe_s)) + 2
    key_t = np.arange(n_key) * motion.keyframe_s - motion.keyframe_s  # one key before t = 0
    speed = rng.uniform(*motion.speed_px_s) * speed_scale
    if heading_xy is not None and np.linalg.norm(heading_xy - start_xy) > 1e-6:
        direction = (heading_xy - start_xy) / np.linalg.norm(heading_xy - start_xy)
    else:
        phi = rng.uniform(0, 2 * np.pi)
        direction = np.array([np.cos(phi), np.sin(phi)])
    lim = np.log(np.asarray(motion.scale_limits, np.float64))
    value = np.array([0.0, start_angle, *start_xy], np.float64)
    velocity = np.array([
        rng.uniform(*motion.scale_rate) * rng.choice([-1, 1]),
        np.deg2rad(rng.uniform(*motion.rotation_deg_s)) * rng.choice([-1, 1]),
        *(speed * direction)])
    lo = np.array([lim[0], -np.inf, *bounds[0]])
    hi = np.array([lim[1], np.inf, *bounds[1]])
    keys = np.empty((n_key, 4))
    keys[1] = value
    keys[0] = value - velocity * motion.keyframe_s  # entering with the initial velocity
    for k in range(2, n_key):
        value = value + velocity * motion.keyframe_s
        _bounce(value, velocity, lo, hi)
        keys[k] = value
        velocity = velocity * (1 + motion.jitter * rng.normal(0, 1, 4)).clip(0.3, 1.7)
        turn = motion.jitter * rng.normal()
        c, s = np.cos(turn), np.sin(turn)
        velocity[2:] = np.array([[c, -s], [s, c]]) @ velocity[2:]
    return SimilarityTrajectory(CubicSpline(key_t, keys, axis=0), np.asarray(anchor, np.float64))


# Camera rotation profiles: (frequency band Hz, share of the angular speed) per component.
# Hand-held: physiological tremor and arm sway; vehicle: slow turns plus engine/road
# vibration; drone: slow banking plus rotor vibration.
CAMERA_PROFILES: dict[str, tuple[tuple[tuple[float, float], float], ...]] = {
    "handheld": (((0.5, 2.0), 0.4), ((2.0, 6.0), 0.4), ((6.0, 12.0), 0.2)),
    "vehicle": (((0.1, 0.5), 0.7), ((8.0, 20.0), 0.3)),
    "drone": (((0.2, 1.0), 0.6), ((1.0, 3.0), 0.3), ((10.0, 25.0), 0.1)),
}


@dataclass(frozen=True)
class CameraRotation:
    """Camera rotation R(t) (pan, tilt, roll as sums of sinusoids) seen as homographies.

    A point at world-plane pixel x_w (where it would be seen with R = I) is seen at
    x ~ K R(t) K^-1 x_w: rotation and perspective, as a hand-held or vehicle camera sees a far
    scene. R(0) = I, so the first frame shows the world plane unrotated.

    Attributes:
        K: (3, 3) intrinsics.
        amp, freq, phase: (3, B) amplitude (rad), frequency (Hz), phase of each component,
            rows pan (about y), tilt (about x), roll (about z).
    """

    K: np.ndarray
    amp: np.ndarray
    freq: np.ndarray
    phase: np.ndarray

    def angles(self, times_s: np.ndarray) -> np.ndarray:
        """(S, 3) pan, tilt, roll in radians (zero at t = 0)."""
        t = np.atleast_1d(np.asarray(times_s, np.float64))[:, None, None]
        w = 2 * np.pi * self.freq
        return (self.amp * (np.sin(w * t + self.phase) - np.sin(self.phase))).sum(-1)

    def homographies(self, times_s: np.ndarray) -> np.ndarray:
        """(S, 3, 3) world-plane pixel -> image pixel maps K R(t) K^-1."""
        a = self.angles(times_s)
        cy, sy = np.cos(a[:, 0]), np.sin(a[:, 0])
        cx, sx = np.cos(a[:, 1]), np.sin(a[:, 1])
        cz, sz = np.cos(a[:, 2]), np.sin(a[:, 2])
        S = a.shape[0]
        Ry = np.zeros((S, 3, 3))
        Ry[:, 0, 0], Ry[:, 0, 2], Ry[:, 1, 1], Ry[:, 2, 0], Ry[:, 2, 2] = cy, sy, 1, -sy, cy
        Rx = np.zeros((S, 3, 3))
        Rx[:, 0, 0], Rx[:, 1, 1], Rx[:, 1, 2], Rx[:, 2, 1], Rx[:, 2, 2] = 1, cx, -sx, sx, cx
        Rz = np.zeros((S, 3, 3))
        Rz[:, 0, 0], Rz[:, 0, 1], Rz[:, 1, 0], Rz[:, 1, 1], Rz[:, 2, 2] = cz, -sz, sz, cz, 1
        R = Rz @ Ry @ Rx
        return self.K @ R @ np.linalg.inv(self.K)


def apply_homography(H: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Apply maps (S, 3, 3) to points (S, N, 2) or (N, 2) -> (S, N, 2); one (3, 3) to (N, 2)."""
    if H.ndim == 2:
        p = xy @ H[:, :2].T + H[:, 2]
        return p[..., :2] / p[..., 2:3]
    if xy.ndim == 2:
        xy = np.broadcast_to(xy, (H.shape[0], *xy.shape))
    p = np.einsum("sij,snj->sni", H[:, :, :2], xy) + H[:, None, :, 2]
    return p[..., :2] / p[..., 2:3]


def random_camera_rotation(rng: np.random.Generator, profile: str, angular_speed_rad_s: float,
                           roll_ratio: float, max_angle_rad: float,
                           K: np.ndarray) -> CameraRotation:
    """Draw a rotation of the named profile whose components peak at about the given speed.

    Each component k of a profile gets the share w_k of the angular speed w: amplitude
    w * w_k / (2 pi f_k) (clipped to max_angle_rad), random frequency in its band, random
    phase; pan and tilt split the speed at a random direction, roll gets roll_ratio of it.
    """
    if profile not in CAMERA_PROFILES:
        raise ValueError(f"unknown camera profile {profile!r}; choose from "
                         f"{', '.join(CAMERA_PROFILES)}")
    bands = CAMERA_PROFILES[profile]
    B = len(bands)
    phi = rng.uniform(0, 2 * np.pi)
    axis_share = np.array([abs(np.cos(phi)), abs(np.sin(phi)), roll_ratio])
    freq = np.array([[rng.uniform(*band) for band, _ in bands] for _ in range(3)])
    share = np.array([w for _, w in bands])
    amp = angular_speed_rad_s * axis_share[:, None] * share[None, :] / (2 * np.pi * freq)
    amp = np.minimum(amp, max_angle_rad / B)
    phase = rng.uniform(0, 2 * np.pi, (3, B))
    return CameraRotation(np.asarray(K, np.float64), amp, freq, phase)
