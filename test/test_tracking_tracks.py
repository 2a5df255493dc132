"""The track table: ids, row bookkeeping and lookups."""

from __future__ import annotations

import numpy as np
import pytest

from blinktrack_ros.tracking.observation import Source
from blinktrack_ros.tracking.tracks import TrackStatus, TrackTable


def _add(table: TrackTable, t_ns: int, m: int) -> np.ndarray:
    x0 = np.arange(4 * m, dtype=float).reshape(m, 4)
    return table.add(t_ns, x0, np.tile(np.eye(4), (m, 1, 1)), Source.SEED)


def test_add_remove_keep_rows_aligned_and_ids_unique() -> None:
    table = TrackTable()
    a = _add(table, 5, 3)
    table.remove(np.array([1]))
    b = _add(table, 9, 2)
    assert a.dtype == np.uint32 and a.tolist() == [0, 1, 2] and b.tolist() == [3, 4]
    assert table.ids.tolist() == [0, 2, 3, 4]
    assert table.x[:, 0].tolist() == [0.0, 8.0, 0.0, 4.0]  # rows moved together
    assert table.birth_ns.tolist() == [5, 5, 9, 9]
    assert np.all(table.status == TrackStatus.TRACKED)
    fields = ("x", "P", "status", "birth_ns", "state_ns", "last_obs_ns", "last_confident_ns",
              "last_source", "visibility_ema", "n_updates")
    assert all(getattr(table, f).shape[0] == 4 for f in fields)
    table.clear()
    assert len(table) == 0 and _add(table, 10, 1).tolist() == [5]


def test_rows_of_finds_known_and_flags_unknown_ids() -> None:
    table = TrackTable()
    _add(table, 0, 5)
    table.remove(np.array([True, False, True, False, False]))
    rows, found = table.rows_of(np.array([4, 0, 3, 99, 1]))
    assert found.tolist() == [True, False, True, False, True]
    assert table.ids[rows[found]].tolist() == [4, 3, 1]
    empty_rows, empty_found = TrackTable().rows_of(np.array([1, 2]))
    assert not empty_found.any() and empty_rows.shape == (2,)


def test_add_rejects_mismatched_arrays() -> None:
    with pytest.raises(ValueError, match="covariances"):
        TrackTable().add(0, np.zeros((2, 4)), np.zeros((3, 4, 4)))
