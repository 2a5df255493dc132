"""Classical image source: pyramidal Lucas-Kanade with forward-backward consistency (OpenCV).

The CPU baseline and the fallback when no image-network weights are available. Each call tracks
the requested ids from the previous frame to the current one, starting the search at the fused
prediction the caller passes, and reports an observation for every id the source saw in the
previous frame.

Forward-backward mapping (Kalal et al. 2010 consistency check): the point is tracked forward
(previous -> current) and back; e = |p_back - p_previous| px. If the forward and backward
estimates each err independently with standard deviation s per axis, p_back - p_previous has
variance 2 s^2 per axis, so E[e^2] = 4 s^2 and s^2 ~ e^2 / 4. Hence

    R = (sigma_min_px^2 + e^2 / 4) I           visibility = exp(-e^2 / (2 fb_visibility_px^2))

A point is lost when OpenCV reports failure in either direction, e > fb_max_px, or the result
leaves the image; it is then reported at the caller's predicted position with visibility 0 and
R = lost_variance_px2 I (an uninformative observation that drives the track towards OCCLUDED and
LOST). Pixel centres are at integer coordinates (OpenCV's convention).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from blinktrack_ros.tracking.observation import Observations, Source


@dataclass(frozen=True)
class KltConfig:
    """Parameters of the KLT source.

    Attributes:
        win_size: LK window side in pixels (odd).
        max_level: pyramid levels above the base.
        max_iterations: LK iterations per level.
        epsilon: LK convergence threshold in pixels.
        min_eig_threshold: OpenCV's minimum eigenvalue of the spatial gradient matrix.
        fb_max_px: forward-backward error beyond which the point counts as lost.
        sigma_min_px: 1-sigma floor of the observation noise.
        fb_visibility_px: forward-backward error at which visibility falls to exp(-1/2).
        lost_variance_px2: R of a lost point (reported at the predicted position).
    """

    win_size: int = 21
    max_level: int = 3
    max_iterations: int = 30
    epsilon: float = 0.01
    min_eig_threshold: float = 1e-4
    fb_max_px: float = 2.0
    sigma_min_px: float = 0.25
    fb_visibility_px: float = 0.5
    lost_variance_px2: float = 1.0e4

    def __post_init__(self) -> None:
        """Reject values OpenCV or the covariance mapping cannot use."""
        if self.win_size < 3 or self.win_size % 2 == 0 or self.max_level < 0:
            raise ValueError(f"KltConfig needs an odd win_size >= 3, max_level >= 0: {self}")
        if min(self.fb_max_px, self.sigma_min_px, self.fb_visibility_px,
               self.lost_variance_px2) <= 0:
            raise ValueError(f"KltConfig thresholds must be > 0: {self}")


def fb_to_covariance(fb_error_px: np.ndarray, config: KltConfig) -> np.ndarray:
    """(N,) forward-backward errors -> (N, 2, 2) isotropic covariance (see module docstring)."""
    r = config.sigma_min_px**2 + 0.25 * np.square(fb_error_px)
    return r[:, None, None] * np.eye(2)


def fb_to_visibility(fb_error_px: np.ndarray, config: KltConfig) -> np.ndarray:
    """(N,) forward-backward errors -> (N,) visibility in [0, 1]."""
    return np.exp(-0.5 * np.square(fb_error_px / config.fb_visibility_px))


def _to_uint8(gray: np.ndarray) -> np.ndarray:
    if gray.ndim != 2:
        raise ValueError(f"KltSource needs a (H, W) grayscale frame, got shape {gray.shape}")
    if gray.dtype == np.uint8:
        return gray
    return (np.clip(gray, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


class KltSource:
    """Pyramidal LK from the previous frame; keeps that frame and its points by id.

    (OpenCV's Python binding cannot take prebuilt pyramids, so each LK call builds its own.)
    """

    def __init__(self, config: KltConfig | None = None) -> None:
        """Create a source that has seen no frame yet."""
        self.config = config or KltConfig()
        self._prev_image: np.ndarray | None = None
        self._prev_shape: tuple[int, int] | None = None
        self._prev_ids = np.zeros(0, np.uint32)
        self._prev_points = np.zeros((0, 2), np.float32)

    def reset(self) -> None:
        """Forget the previous frame and points."""
        self.__init__(self.config)

    def set_previous_points(self, ids: np.ndarray, positions_px: np.ndarray) -> int:
        """Replace the stored previous-frame points of known ids (e.g. with fused posteriors).

        Call it after fusing this source's observations so that the next frame is tracked from
        each track's fused position: `klt.set_previous_points(*engine.predict_positions(t_ns))`.

        Args:
            ids: (M,) track ids.
            positions_px: (M, 2) pixel xy in the previous (last observed) frame.

        Returns:
            How many ids were known (the others are ignored).
        """
        ids = np.asarray(ids, dtype=np.uint32).reshape(-1)
        positions_px = np.asarray(positions_px, dtype=np.float32).reshape(-1, 2)
        if positions_px.shape[0] != ids.shape[0]:
            raise ValueError(f"{ids.shape[0]} ids but {positions_px.shape[0]} positions")
        if self._prev_ids.shape[0] == 0:
            return 0
        idx = np.minimum(np.searchsorted(self._prev_ids, ids), self._prev_ids.shape[0] - 1)
        known = self._prev_ids[idx] == ids
        self._prev_points[idx[known]] = positions_px[known]
        return int(known.sum())

    def add_points(self, ids: np.ndarray, positions_px: np.ndarray,
                   birth_gray: np.ndarray | None = None) -> None:
        """Register new tracks at (M, 2) pixel xy of their birth frame.

        When the birth frame is not the last observed one (the tracks were confirmed late, as
        between separate nodes), the points are first tracked from birth_gray into it.
        """
        ids = np.asarray(ids, dtype=np.uint32).reshape(-1)
        pts = np.asarray(positions_px, dtype=np.float32).reshape(-1, 2)
        if pts.shape[0] != ids.shape[0]:
            raise ValueError(f"{ids.shape[0]} ids but {pts.shape[0]} positions")
        if birth_gray is not None and self._prev_image is not None and pts.shape[0]:
            birth = _to_uint8(birth_gray)
            if birth.shape == self._prev_image.shape and not np.array_equal(birth,
                                                                            self._prev_image):
                moved, ok = self._lk(birth, self._prev_image, pts, pts)
                pts = np.where(ok[:, None], moved, pts).astype(np.float32)
        keep = ~np.isin(self._prev_ids, ids)
        all_ids = np.concatenate([self._prev_ids[keep], ids])
        all_pts = np.concatenate([self._prev_points[keep], pts])
        order = np.argsort(all_ids, kind="stable")
        self._prev_ids, self._prev_points = all_ids[order], all_pts[order]

    def remove_points(self, ids: np.ndarray) -> None:
        """Forget the points of dead tracks."""
        keep = ~np.isin(self._prev_ids, np.asarray(ids, dtype=np.uint32))
        self._prev_ids, self._prev_points = self._prev_ids[keep], self._prev_points[keep]

    def _lk(self, src: np.ndarray, dst: np.ndarray, pts: np.ndarray,
            guess: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        c = self.config
        criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, c.max_iterations, c.epsilon)
        out, status, _ = cv2.calcOpticalFlowPyrLK(
            src, dst, pts.reshape(-1, 1, 2), guess.reshape(-1, 1, 2).copy(),
            winSize=(c.win_size, c.win_size), maxLevel=c.max_level, criteria=criteria,
            flags=cv2.OPTFLOW_USE_INITIAL_FLOW, minEigThreshold=c.min_eig_threshold)
        return out.reshape(-1, 2), status.reshape(-1).astype(bool)

    def observe(self, t_ns: int, gray: np.ndarray, ids: np.ndarray,
                predicted_positions: np.ndarray) -> Observations:
        """Track ids into this frame; returns observations of the ids seen in the previous one.

        Args:
            t_ns: the frame's timestamp.
            gray: (H, W) float32 in [0, 1] (or uint8) frame.
            ids: (N,) uint32 ids of the tracks to follow.
            predicted_positions: (N, 2) pixel xy, the fused prediction at t_ns (search start).

        Returns:
            Observations (source KLT) for the ids that have a point in the previous frame.
        """
        image = _to_uint8(gray)
        ids = np.asarray(ids, dtype=np.uint32).reshape(-1)
        guess = np.asarray(predicted_positions, dtype=np.float32).reshape(-1, 2)
        if guess.shape[0] != ids.shape[0]:
            raise ValueError(f"{ids.shape[0]} ids but {guess.shape[0]} predicted positions")
        have = np.zeros(ids.shape[0], dtype=bool)
        idx = np.zeros(ids.shape[0], dtype=np.intp)
        n_prev = self._prev_ids.shape[0]
        if self._prev_image is not None and self._prev_shape == image.shape and n_prev:
            idx = np.minimum(np.searchsorted(self._prev_ids, ids), n_prev - 1)
            have = self._prev_ids[idx] == ids
        obs = Observations.empty(Source.KLT, t_ns)
        next_points = guess.copy()
        if have.any():
            prev = self._prev_points[idx[have]]
            obs, tracked = self._track(t_ns, image, ids[have], prev, guess[have], image.shape)
            next_points[have] = tracked
        order = np.argsort(ids, kind="stable")
        self._prev_image, self._prev_shape = image, image.shape
        self._prev_ids, self._prev_points = ids[order], next_points[order]
        return obs

    def _track(self, t_ns: int, image: np.ndarray, ids: np.ndarray, prev: np.ndarray,
               guess: np.ndarray, shape: tuple[int, int]) -> tuple[Observations, np.ndarray]:
        """Forward-backward LK of prev (M, 2) -> this frame; returns observations and points."""
        c = self.config
        fwd, ok_f = self._lk(self._prev_image, image, prev, guess)
        back, ok_b = self._lk(image, self._prev_image, fwd, prev)
        fb = np.linalg.norm(back.astype(np.float64) - prev, axis=1)
        h, w = shape
        inside = ((fwd[:, 0] >= -0.5) & (fwd[:, 0] <= w - 0.5) & (fwd[:, 1] >= -0.5)
                  & (fwd[:, 1] <= h - 0.5))
        ok = ok_f & ok_b & inside & (fb <= c.fb_max_px) & np.isfinite(fb)
        fb = np.where(ok, fb, 0.0)
        positions = np.where(ok[:, None], fwd, guess).astype(np.float64)
        cov = fb_to_covariance(fb, c)
        cov[~ok] = c.lost_variance_px2 * np.eye(2)
        visibility = np.where(ok, fb_to_visibility(fb, c), 0.0)
        obs = Observations(Source.KLT, int(t_ns), ids.copy(), positions, cov, visibility)
        return obs, positions.astype(np.float32)
