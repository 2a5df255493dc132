"""EventModule's window grid: it starts at the first birth frame's stamp, exactly, also when the
module first sees a track late (its birth time then comes from a float32 age in seconds)."""

from __future__ import annotations

import numpy as np

from blinktrack_ros.events.batch import EventBatch
from blinktrack_ros.tracking.fusion_types import TrackSnapshot
from blinktrack_ros.tracking.modules import EventModule


class RecordingSource:
    """Stands in for EventSource: records the window ends it is asked to observe."""

    def __init__(self) -> None:
        self.track_ids = np.zeros(0, np.uint32)
        self.ends: list[int] = []

    def add_tracks(self, ids, frame=None, positions_px=None) -> None:
        self.track_ids = np.concatenate([self.track_ids, ids]).astype(np.uint32)

    def remove_tracks(self, ids) -> int:
        self.track_ids = self.track_ids[~np.isin(self.track_ids, ids)]
        return len(ids)

    def observe(self, events, t1_ns, window_ns, ids, positions):
        self.ends.append(int(t1_ns))
        return None


def _snapshot(t_ns: int, age_s: float) -> TrackSnapshot:
    n = 3
    return TrackSnapshot(
        t_ns=t_ns, ids=np.arange(1, n + 1, dtype=np.uint32),
        positions_px=np.full((n, 2), 20.0), velocities_px_s=np.full((n, 2), 3.0),
        covariances=np.tile(np.eye(2), (n, 1, 1)), status=np.zeros(n, np.uint8),
        last_source=np.zeros(n, np.uint8),
        # as msg_to_snapshot gives it: the message's float32 age widened to float64
        age_s=np.full(n, age_s, np.float32).astype(np.float64))


def _events(t0_ns: int, t1_ns: int, n: int = 200) -> EventBatch:
    t = np.linspace(t0_ns, t1_ns, n).astype(np.int64)
    z = np.full(n, 10, np.uint16)
    return EventBatch(z, z, t, np.ones(n, np.int8), 64, 48)


def test_grid_starts_at_birth_frame_stamp_when_first_seen_late() -> None:
    source = RecordingSource()
    module = EventModule(source, window_ms=10.0, max_pending_windows=1000)
    frame_ns = 1_000_000_000
    module.on_image(frame_ns, np.zeros((48, 64), np.uint8))
    # first snapshot 1.01 s after the birth: 1.01 is not exact in float32 (error ~19 ns)
    age = 1.01
    assert int(round(float(np.float32(age)) * 1e9)) != 1_010_000_000  # 1_009_999_990
    module.on_tracks(_snapshot(frame_ns + 1_010_000_000, age))
    module.on_events(_events(frame_ns + 2_000_000, frame_ns + 1_055_000_000))
    assert source.ends, "no windows observed"
    assert all((t - frame_ns) % 10_000_000 == 0 for t in source.ends), source.ends[:3]
    assert source.ends[0] == frame_ns + 10_000_000


def test_births_wait_for_their_frame() -> None:
    source = RecordingSource()
    module = EventModule(source, window_ms=10.0)
    module.on_tracks(_snapshot(2_000_000_000, 0.0))
    assert source.track_ids.size == 0 and module.counts["births_waiting"] == 3
    module.on_image(2_000_000_000, np.zeros((48, 64), np.uint8))
    module.on_tracks(_snapshot(2_010_000_000, 0.01))
    assert sorted(source.track_ids.tolist()) == [1, 2, 3]
