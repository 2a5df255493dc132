"""The core observation type exchanged between sources, the fusion engine and the nodes."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np


class Source(IntEnum):
    """Where an observation comes from (values equal the ObservationArray.msg constants)."""

    EVENT = 0
    IMAGE = 1
    KLT = 2
    SEED = 3


@dataclass(frozen=True)
class Observations:
    """Position observations of several tracks from one source at one time.

    Attributes:
        source: the producing source.
        t_ns: observation time in nanoseconds (sensor clock).
        ids: (N,) uint32 track ids.
        positions_px: (N, 2) float64 pixel xy (pixel centres at integer coordinates).
        covariances: (N, 2, 2) float64 measurement covariance R in px^2.
        visibility: (N,) float64 probability that the feature is visible, in [0, 1].
    """

    source: Source
    t_ns: int
    ids: np.ndarray
    positions_px: np.ndarray
    covariances: np.ndarray
    visibility: np.ndarray

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    @staticmethod
    def empty(source: Source, t_ns: int) -> Observations:
        """An observation array with no tracks."""
        return Observations(source, int(t_ns), np.zeros(0, np.uint32), np.zeros((0, 2)),
                            np.zeros((0, 2, 2)), np.zeros(0))
