"""Track lifecycle rules: TRACKED <-> OCCLUDED from observed visibility, LOST by time or border."""

from __future__ import annotations

import numpy as np

from blinktrack_ros.tracking.fusion_types import FusionConfig
from blinktrack_ros.tracking.tracks import TrackStatus, TrackTable

_OCCLUDED, _TRACKED = np.uint8(TrackStatus.OCCLUDED), np.uint8(TrackStatus.TRACKED)
OCCLUDED_CODE, TRACKED_CODE = _OCCLUDED, _TRACKED  # (the compiled fusion writes them too)


def update_visibility(tab: TrackTable, rows: np.ndarray, visibility: np.ndarray, t_ns: int,
                      config: FusionConfig) -> None:
    """Fold observed visibility (M,) into the rows' EMA and set TRACKED / OCCLUDED.

    ema = alpha * visibility + (1 - alpha) * ema; OCCLUDED while ema < occlusion_visibility.
    An observation with visibility >= confident_visibility refreshes last_confident_ns.
    """
    alpha = config.visibility_ema_alpha
    ema = alpha * visibility + (1.0 - alpha) * tab.visibility_ema[rows]
    tab.visibility_ema[rows] = ema
    tab.status[rows] = np.where(ema < config.occlusion_visibility, _OCCLUDED, _TRACKED)
    confident = visibility >= config.confident_visibility
    tab.last_confident_ns[rows[confident]] = t_ns


def lost_mask(tab: TrackTable, positions_px: np.ndarray, t_ns: int,
              config: FusionConfig) -> np.ndarray:
    """(N,) bool: tracks that are LOST at t_ns.

    Args:
        tab: the track table.
        positions_px: (N, 2) pixel xy of every row predicted to t_ns.
        t_ns: the time of the check.
        config: lost_after_s, image_size and out_of_image_margin_px are used.
    """
    lost = (t_ns - tab.last_confident_ns) * 1e-9 > config.lost_after_s
    lost |= tab.status == TrackStatus.LOST
    if config.image_size is not None:
        width, height = config.image_size
        m = config.out_of_image_margin_px
        x, y = positions_px[:, 0], positions_px[:, 1]
        # pixel centres at integer coordinates: the image spans [-0.5, size - 0.5]
        lost |= (x < -0.5 - m) | (x > width - 0.5 + m) | (y < -0.5 - m) | (y > height - 0.5 + m)
    return lost
