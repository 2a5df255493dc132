"""The per-role modules when the fused tracks come back late (the split deployment, issue 20):
births find their reference frame whatever the latency between the nodes (or are counted when
it is gone), and seeds still waiting to come back as tracks count towards the target."""

from __future__ import annotations

import cv2
import numpy as np

from blinktrack_ros.tracking.fusion_types import TrackSnapshot
from blinktrack_ros.tracking.modules import (
    FRAMES_KEPT,
    FRAMES_RETAIN_NS,
    EventModule,
    ImageModule,
)
from blinktrack_ros.tracking.seeding import SeedConfig

FRAME_NS = 20_000_000  # 50 Hz


class ReferenceSource:
    """Stands in for EventSource: records the reference frame each new track is given."""

    def __init__(self) -> None:
        self.track_ids = np.zeros(0, np.uint32)
        self.frames: dict[int, np.ndarray] = {}

    def add_tracks(self, ids, frame=None, positions_px=None) -> None:
        self.frames.update({int(i): frame for i in ids})
        self.track_ids = np.concatenate([self.track_ids, ids]).astype(np.uint32)

    def remove_tracks(self, ids) -> int:
        self.track_ids = self.track_ids[~np.isin(self.track_ids, ids)]
        return len(ids)

    def observe(self, events, t1_ns, window_ns, ids, positions):
        return None


def _tracks(t_ns: int, ids, birth_ns: int, positions=None) -> TrackSnapshot:
    ids = np.asarray(ids, np.uint32)
    n = ids.size
    pos = np.full((n, 2), 30.0) if positions is None else np.asarray(positions, float)
    return TrackSnapshot(
        t_ns=t_ns, ids=ids, positions_px=pos, velocities_px_s=np.zeros((n, 2)),
        covariances=np.tile(np.eye(2), (n, 1, 1)), status=np.zeros(n, np.uint8),
        last_source=np.zeros(n, np.uint8), age_s=np.full(n, (t_ns - birth_ns) * 1e-9))


def test_birth_reference_found_whatever_the_latency() -> None:
    """Tracks announced 400 ms after their birth frame (20 frames later, more than the 8
    frames kept before) get the frame of their birth; one announced after its frame was
    dropped is counted, not silently ignored."""
    source = ReferenceSource()
    frames = source.frames
    module = EventModule(source, window_ms=10.0)
    t0 = 10**9
    for k in range(21):  # frame k is filled with k
        module.on_image(t0 + k * FRAME_NS, np.full((48, 64), float(k), np.float32))
    module.on_tracks(_tracks(t0 + 20 * FRAME_NS, [1, 2], birth_ns=t0))  # 400 ms late
    assert sorted(frames) == [1, 2] and all(f[0, 0] == 0.0 for f in frames.values())
    assert module.counts["births_frame_lost"] == 0
    # frames are kept for FRAMES_RETAIN_NS behind the newest tracks, at most FRAMES_KEPT
    late = t0 + 20 * FRAME_NS + FRAMES_RETAIN_NS + 5 * FRAME_NS
    for k in range(21, 21 + FRAMES_KEPT):
        module.on_image(t0 + k * FRAME_NS, np.full((48, 64), float(k), np.float32))
    module.on_tracks(_tracks(late, [1, 2, 3], birth_ns=t0 + 5 * FRAME_NS))  # frame 5: dropped
    assert 3 not in frames and module.counts["births_frame_lost"] == 1


def test_pending_seeds_count_towards_the_target() -> None:
    """Frames keep coming while the fusion node has not answered: the image module proposes
    seeds once up to the target, not again on every frame; the answer (tracks) releases them,
    and a lost track is topped up."""
    rng = np.random.default_rng(0)
    gray = cv2.GaussianBlur(rng.uniform(0, 1, (120, 160)).astype(np.float32), (0, 0), 2.0)
    module = ImageModule(seeding=SeedConfig(target_count=10, border_px=10))
    proposed = []
    for k in range(4):  # no tracks came back yet
        proposed += module.on_image(10**9 + k * FRAME_NS, gray)
    assert len(proposed) == 1 and len(proposed[0].ids) == 10
    seeds = proposed[0].positions_px
    module.on_tracks(_tracks(10**9, np.arange(10), 10**9, seeds))  # the fusion answers
    assert module.on_image(10**9 + 4 * FRAME_NS, gray) == []  # target reached
    module.on_tracks(_tracks(10**9 + 4 * FRAME_NS, np.arange(9), 10**9, seeds[:9]))
    topped = module.on_image(10**9 + 5 * FRAME_NS, gray)
    assert len(topped) == 1 and len(topped[0].ids) == 1


def test_seeds_never_answered_expire_and_are_proposed_again() -> None:
    """The fusion node's first track array is lost (its reader matched late): the seeds it
    answered stay pending only for SEED_PENDING_TIMEOUT_NS of data time, are counted as
    expired, and the module detects again instead of waiting for ever (it would observe
    nothing and propose nothing from then on)."""
    from blinktrack_ros.tracking.modules import SEED_PENDING_TIMEOUT_NS

    rng = np.random.default_rng(1)
    gray = cv2.GaussianBlur(rng.uniform(0, 1, (120, 160)).astype(np.float32), (0, 0), 2.0)
    module = ImageModule(seeding=SeedConfig(target_count=10, border_px=10))
    t0 = 10**9
    frames = range(0, SEED_PENDING_TIMEOUT_NS + 2 * FRAME_NS, FRAME_NS)
    proposals = [(t0 + dt, obs) for dt in frames for obs in module.on_image(t0 + dt, gray)]
    assert [len(obs.ids) for _, obs in proposals] == [10, 10]  # once at t0, once after expiry
    assert proposals[1][0] - proposals[0][0] > SEED_PENDING_TIMEOUT_NS
    assert module.counts["seeds_expired"] == 10
    # a track array that does come back keeps the new seeds from expiring
    module.on_tracks(_tracks(proposals[1][0], np.arange(10), proposals[1][0],
                             proposals[1][1].positions_px))
    later = proposals[1][0] + SEED_PENDING_TIMEOUT_NS + FRAME_NS
    assert module.on_image(later, gray) == [] and module.counts["seeds_expired"] == 10
