"""The track table: a struct of numpy arrays, one row per alive track, rows sorted by id."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np

from blinktrack_ros.tracking.observation import Source


class TrackStatus(IntEnum):
    """Lifecycle state of a track (values equal the TrackArray.msg constants)."""

    TRACKED = 0
    OCCLUDED = 1
    LOST = 2


def _empty(shape: tuple[int, ...], dtype: type) -> np.ndarray:
    return np.zeros(shape, dtype=dtype)


@dataclass
class TrackTable:
    """Every alive track's filter state and bookkeeping; entry i of each array is row i.

    Ids are uint32, assigned in increasing order and never reused in a run, and rows stay sorted
    by id (new rows are appended, removal keeps the order), so `rows_of` is a binary search.
    Reference data the networks need (patches, features) is kept by the modules that own it,
    keyed by id.

    Attributes:
        ids: (N,) uint32 track ids, ascending.
        x: (N, 4) float64 filter state [px, py, vx, vy] (pixels, px/s).
        P: (N, 4, 4) float64 filter covariance.
        status: (N,) uint8 TrackStatus.
        birth_ns: (N,) int64 birth time.
        state_ns: (N,) int64 time the filter state refers to.
        last_obs_ns: (N,) int64 time of the last fused observation.
        last_confident_ns: (N,) int64 time of the last observation with visibility at or above
            the engine's confidence threshold (birth counts as one).
        last_source: (N,) uint8 Source of the last fused observation.
        visibility_ema: (N,) float64 exponential moving average of observed visibility.
        n_updates: (N,) int64 number of fused observations.
        next_id: the id the next new track gets.
    """

    ids: np.ndarray = field(default_factory=lambda: _empty((0,), np.uint32))
    x: np.ndarray = field(default_factory=lambda: _empty((0, 4), np.float64))
    P: np.ndarray = field(default_factory=lambda: _empty((0, 4, 4), np.float64))
    status: np.ndarray = field(default_factory=lambda: _empty((0,), np.uint8))
    birth_ns: np.ndarray = field(default_factory=lambda: _empty((0,), np.int64))
    state_ns: np.ndarray = field(default_factory=lambda: _empty((0,), np.int64))
    last_obs_ns: np.ndarray = field(default_factory=lambda: _empty((0,), np.int64))
    last_confident_ns: np.ndarray = field(default_factory=lambda: _empty((0,), np.int64))
    last_source: np.ndarray = field(default_factory=lambda: _empty((0,), np.uint8))
    visibility_ema: np.ndarray = field(default_factory=lambda: _empty((0,), np.float64))
    n_updates: np.ndarray = field(default_factory=lambda: _empty((0,), np.int64))
    next_id: int = 0

    _ROW_FIELDS = ("ids", "x", "P", "status", "birth_ns", "state_ns", "last_obs_ns",
                   "last_confident_ns", "last_source", "visibility_ema", "n_updates")

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def add(self, t_ns: int, x0: np.ndarray, P0: np.ndarray,
            source: Source = Source.SEED) -> np.ndarray:
        """Append tracks born at t_ns with states x0 (M, 4) and covariances P0 (M, 4, 4).

        Returns:
            (M,) uint32 ids of the new tracks.
        """
        x0 = np.asarray(x0, dtype=np.float64).reshape(-1, 4)
        P0 = np.asarray(P0, dtype=np.float64).reshape(-1, 4, 4)
        m = x0.shape[0]
        if P0.shape[0] != m:
            raise ValueError(f"{m} states but {P0.shape[0]} covariances")
        if self.next_id + m > np.iinfo(np.uint32).max:
            raise OverflowError("uint32 track ids exhausted")
        new_ids = np.arange(self.next_id, self.next_id + m, dtype=np.uint32)
        self.next_id += m
        t = np.full(m, int(t_ns), dtype=np.int64)
        new = {"ids": new_ids, "x": x0, "P": P0,
               "status": np.full(m, TrackStatus.TRACKED, np.uint8), "birth_ns": t,
               "state_ns": t, "last_obs_ns": t, "last_confident_ns": t,
               "last_source": np.full(m, int(source), np.uint8),
               "visibility_ema": np.ones(m), "n_updates": np.zeros(m, np.int64)}
        for name in self._ROW_FIELDS:
            setattr(self, name, np.concatenate([getattr(self, name), new[name]]))
        return new_ids

    def remove(self, rows: np.ndarray) -> None:
        """Drop the given rows (indices or an (N,) bool mask); the others keep their order."""
        keep = np.ones(len(self), dtype=bool)
        keep[rows] = False
        for name in self._ROW_FIELDS:
            setattr(self, name, getattr(self, name)[keep])

    def rows_of(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rows of ids: (rows (M,) int64, found (M,) bool); rows[~found] are meaningless."""
        ids = np.asarray(ids)
        rows = np.searchsorted(self.ids, ids)
        rows_clipped = np.minimum(rows, max(len(self) - 1, 0))
        found = (rows < len(self)) & (self.ids[rows_clipped] == ids) if len(self) else (
            np.zeros(ids.shape, dtype=bool))
        return rows_clipped, found

    def clear(self) -> None:
        """Remove every track; ids keep counting up (never reused within a run)."""
        self.remove(np.arange(len(self)))
