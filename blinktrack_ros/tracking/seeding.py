"""Feature seeding: Shi-Tomasi corners topping up to a target count, or seeds read from a file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np


@dataclass(frozen=True)
class SeedConfig:
    """Parameters of Shi-Tomasi seeding.

    Attributes:
        target_count: alive tracks wanted; detection tops up to this many.
        min_distance_px: minimum distance between new corners and from alive tracks.
        quality_level: corners weaker than this fraction of the strongest are rejected.
        block_size: window of the structure tensor, pixels.
        border_px: no corner closer than this to the image border (room for patches).
    """

    target_count: int = 100
    min_distance_px: float = 10.0
    quality_level: float = 0.01
    block_size: int = 7
    border_px: int = 15

    def __post_init__(self) -> None:
        """Reject values OpenCV would refuse or misread."""
        if self.target_count < 0 or self.min_distance_px < 0 or self.border_px < 0:
            raise ValueError(f"SeedConfig values must be >= 0: {self}")
        if not 0 < self.quality_level < 1 or self.block_size < 3:
            raise ValueError(f"SeedConfig needs 0 < quality_level < 1, block_size >= 3: {self}")


def detect_seeds(gray: np.ndarray, alive_positions_px: np.ndarray,
                 config: SeedConfig = SeedConfig()) -> np.ndarray:
    """New corners to start tracks at, so that alive + new reaches the target count.

    Args:
        gray: (H, W) image, uint8 or float in [0, 1].
        alive_positions_px: (M, 2) pixel xy of alive tracks; new corners keep min_distance_px
            away from them.
        config: seeding parameters.

    Returns:
        (K, 2) float64 pixel xy, strongest first, K <= target_count - M.
    """
    if gray.ndim != 2:
        raise ValueError(f"detect_seeds needs a (H, W) grayscale image, got shape {gray.shape}")
    alive = np.asarray(alive_positions_px, dtype=np.float64).reshape(-1, 2)
    wanted = config.target_count - alive.shape[0]
    h, w = gray.shape
    if wanted <= 0 or min(h, w) <= 2 * config.border_px:
        return np.zeros((0, 2))
    image = gray if gray.dtype == np.uint8 else np.clip(gray * 255.0, 0, 255).astype(np.uint8)
    mask = np.zeros((h, w), np.uint8)
    b = config.border_px
    mask[b:h - b, b:w - b] = 255
    radius = int(np.ceil(config.min_distance_px))
    for x, y in np.round(alive).astype(int):
        cv2.circle(mask, (int(x), int(y)), radius, 0, thickness=-1)
    corners = cv2.goodFeaturesToTrack(image, maxCorners=wanted, qualityLevel=config.quality_level,
                                      minDistance=config.min_distance_px, mask=mask,
                                      blockSize=config.block_size)
    if corners is None:
        return np.zeros((0, 2))
    return corners.reshape(-1, 2).astype(np.float64)


@dataclass(frozen=True)
class Seeds:
    """Seeds from a track file: one per id, at that id's earliest time.

    Attributes:
        ids: (K,) int64 ids as written in the file, ascending.
        t_s: (K,) float64 seconds.
        positions_px: (K, 2) pixel xy.
        visibility: (K,) float64 (1 where the file has no visibility column).
    """

    ids: np.ndarray
    t_s: np.ndarray
    positions_px: np.ndarray
    visibility: np.ndarray

    def __len__(self) -> int:
        return int(self.ids.shape[0])


def load_seeds(path: str | Path) -> Seeds:
    """Read an `id t x y [vis]` track file (EC/EDS ground-truth format) into per-id seeds.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is empty or a row does not have 4 or 5 numeric columns.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"seed file not found: {path}")
    try:
        rows = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except ValueError as exc:
        raise ValueError(f"{path}: expected rows 'id t x y [vis]': {exc}") from exc
    if rows.shape[0] == 0 or rows.shape[1] not in (4, 5):
        raise ValueError(f"{path}: expected rows 'id t x y [vis]', got shape {rows.shape}")
    # earliest row of each id: sort by (id, t) and keep each id's first row
    order = np.lexsort((rows[:, 1], rows[:, 0]))
    rows = rows[order]
    first = np.r_[True, rows[1:, 0] != rows[:-1, 0]]
    rows = rows[first]
    visibility = rows[:, 4] if rows.shape[1] == 5 else np.ones(rows.shape[0])
    return Seeds(ids=rows[:, 0].astype(np.int64), t_s=rows[:, 1].copy(),
                 positions_px=rows[:, 2:4].copy(), visibility=visibility.copy())
