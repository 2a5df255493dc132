"""The three roles of the tracker, as the three ROS nodes run them (and the Pipeline wires them).

- EventModule (event_node): events -> EVENT observations per window, crop centres predicted from
  the latest fused tracks; reference patches of new tracks from the frame of their birth.
- ImageModule (image_node): frames -> IMAGE (network) or KLT observations of the known tracks,
  plus SEED observations proposing new features (Shi-Tomasi top-up, or given seeds).
- FusionModule (fusion_node): owns the track table; SEED arrays start tracks (ids assigned
  here), the others are fused; every array gives the snapshot to publish.

The modules talk only through Observations and TrackSnapshots (what the topics carry), so the
split three-process deployment and the in-process Pipeline run the same code.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
import logging

import numpy as np

from blinktrack_ros.events.batch import EventBatch
from blinktrack_ros.tracking.engine import FusionConfig, FusionEngine, FusionResult, TrackSnapshot
from blinktrack_ros.tracking.observation import Observations, Source
from blinktrack_ros.tracking.seeding import SeedConfig, Seeds, detect_seeds
from blinktrack_ros.tracking.tracks import TrackStatus

LOG = logging.getLogger(__name__)
# Frames (and their features) are kept to give new tracks their references for as long as a
# birth can still be announced: FRAMES_RETAIN_NS before the newest fused tracks received (between
# nodes the TrackArray announcing a birth may come hundreds of ms after the frame), and at most
# FRAMES_KEPT of them (the bound while no tracks come back).
FRAMES_KEPT = 48
FRAMES_RETAIN_NS = 1_000_000_000
# A new track's reference comes from its birth frame; between nodes the TrackArray announcing
# the birth may arrive before that frame: the birth then waits for it (or its time) to arrive.
BIRTH_FRAME_TOLERANCE_NS = 1_000_000
# Seeds proposed but not seen back in any track array after this much data time are forgotten
# (counted): a first track array lost between split nodes (a reader matched late) must not
# leave the image module waiting on them for ever, proposing nothing and observing nothing.
SEED_PENDING_TIMEOUT_NS = FRAMES_RETAIN_NS


def member_mask(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """`np.isin(a, b)`, without its sort in the usual case of two equal id arrays (the same
    tracks as last time: ~60 us saved per call at 64 tracks)."""
    if a.shape == b.shape and np.array_equal(a, b):
        return np.ones(a.shape, bool)
    return np.isin(a, b)


@dataclass
class KnownTracks:
    """The latest fused tracks as a module sees them (from a TrackSnapshot)."""

    t_ns: int = 0
    ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint32))
    positions_px: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    velocities_px_s: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    birth_ns: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def predict(self, t_ns: int, ids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(ids, (K, 2) positions) predicted to t_ns with the fused velocities."""
        rows = (np.arange(self.ids.size) if ids is None
                else np.flatnonzero(member_mask(self.ids, ids)))
        dt = max(int(t_ns) - self.t_ns, 0) * 1e-9
        return self.ids[rows], self.positions_px[rows] + dt * self.velocities_px_s[rows]

    def update(self, snap: TrackSnapshot) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Take a snapshot; returns (born ids, their birth positions, dead ids)."""
        alive = snap.status != TrackStatus.LOST
        ids = snap.ids[alive]
        born = ~member_mask(ids, self.ids)
        dead = self.ids[~member_mask(self.ids, ids)]
        age = np.asarray(snap.age_s)[alive]
        birth_pos = snap.positions_px[alive] - age[:, None] * snap.velocities_px_s[alive]
        self.t_ns, self.ids = int(snap.t_ns), ids.copy()
        self.positions_px = snap.positions_px[alive].copy()
        self.velocities_px_s = snap.velocities_px_s[alive].copy()
        self.birth_ns = (int(snap.t_ns) - np.round(age * 1e9)).astype(np.int64)
        return ids[born], birth_pos[born], dead

    def refresh(self, snap: TrackSnapshot) -> None:
        """Take the positions and velocities of a provisional snapshot for the known ids only
        (no births, no deaths); the other rows are advanced to its time at their velocity."""
        dt = max(int(snap.t_ns) - self.t_ns, 0) * 1e-9
        positions = self.positions_px + dt * self.velocities_px_s
        velocities = self.velocities_px_s.copy()
        if snap.ids.size:
            order = np.argsort(snap.ids, kind="stable")
            at = np.minimum(np.searchsorted(snap.ids[order], self.ids), snap.ids.size - 1)
            src = order[at]
            found = (snap.ids[src] == self.ids) & (snap.status[src] != TrackStatus.LOST)
            positions[found] = snap.positions_px[src[found]]
            velocities[found] = snap.velocities_px_s[src[found]]
        self.t_ns = max(self.t_ns, int(snap.t_ns))
        self.positions_px, self.velocities_px_s = positions, velocities

    def forget(self, ids: np.ndarray) -> None:
        """Drop ids so that the next snapshot reports them as born again (births waiting for
        their frame)."""
        keep = ~np.isin(self.ids, ids)
        self.ids, self.positions_px = self.ids[keep], self.positions_px[keep]
        self.velocities_px_s, self.birth_ns = self.velocities_px_s[keep], self.birth_ns[keep]


class FrameMemory:
    """The last few frames (or their encoded features) by timestamp."""

    def __init__(self, size: int = FRAMES_KEPT) -> None:
        self._items: deque[tuple[int, object]] = deque(maxlen=size)

    def add(self, t_ns: int, item: object) -> None:
        self._items.append((int(t_ns), item))

    def at(self, t_ns: int, tolerance_ns: int | None = None) -> object | None:
        """The item whose time is nearest to t_ns (None when empty, or none within tolerance)."""
        found = self.nearest(t_ns, tolerance_ns)
        return None if found is None else found[1]

    def nearest(self, t_ns: int, tolerance_ns: int | None = None) -> tuple[int, object] | None:
        """(time, item) nearest to t_ns (None when empty, or none within tolerance)."""
        if not self._items:
            return None
        t, item = min(self._items, key=lambda ti: abs(ti[0] - int(t_ns)))
        if tolerance_ns is not None and abs(t - int(t_ns)) > tolerance_ns:
            return None
        return t, item

    def prune_before(self, t_ns: int) -> None:
        """Forget the items older than t_ns (the newest one is always kept)."""
        while len(self._items) > 1 and self._items[0][0] < int(t_ns):
            self._items.popleft()

    def oldest_ns(self) -> int | None:
        """Time of the oldest item kept (None when empty)."""
        return self._items[0][0] if self._items else None

    def clear(self) -> None:
        self._items.clear()


class EventModule:
    """Event windows on a fixed grid -> EVENT observations from the event network."""

    def __init__(self, source: object, window_ms: float, max_pending_windows: int = 4,
                 merge_backlog: bool = True) -> None:
        self.source = source
        self.window_ns = int(round(window_ms * 1e6))
        self.max_pending = int(max_pending_windows)
        self.merge_backlog = merge_backlog
        self.counts = {"windows": 0, "windows_merged": 0, "windows_skipped": 0,
                       "events_late": 0, "births_waiting": 0, "births_frame_lost": 0}
        self.reset()

    def reset(self) -> None:
        """Forget tracks, frames and buffered events."""
        if len(self.source.track_ids):
            self.source.remove_tracks(self.source.track_ids)
        self.tracks = KnownTracks()
        self.frames = FrameMemory()
        self._events: list[EventBatch] = []
        self._next_end_ns: int | None = None
        self._last_event_ns: int | None = None

    @property
    def has_grid(self) -> bool:
        """Whether the window grid has started (at the first birth)."""
        return self._next_end_ns is not None

    def on_image(self, t_ns: int, gray: np.ndarray) -> None:
        """Keep the frame: new tracks take their reference patch from their birth frame."""
        self.frames.add(t_ns, gray)

    def on_tracks(self, snap: TrackSnapshot) -> None:
        """New tracks get a state row (reference patch at birth); dead ones lose theirs."""
        born, birth_pos, dead = self.tracks.update(snap)
        if dead.size:
            self.source.remove_tracks(dead)
        if born.size:
            birth_ns = int(self.tracks.birth_ns[np.isin(self.tracks.ids, born)].min())
            found = self.frames.nearest(birth_ns, BIRTH_FRAME_TOLERANCE_NS)
            oldest = self.frames.oldest_ns()
            if found is None and oldest is not None and \
                    birth_ns < oldest - BIRTH_FRAME_TOLERANCE_NS:
                # the birth frame is gone: these tracks get no events (counted, not retried)
                self.counts["births_frame_lost"] += int(born.size)
                self.frames.prune_before(int(snap.t_ns) - FRAMES_RETAIN_NS)
                return
            if found is None:  # the birth frame has not arrived yet: wait for it
                self.tracks.forget(born)
                self.counts["births_waiting"] += int(born.size)
                return
            frame_ns, frame = found
            self.source.add_tracks(born, frame=frame, positions_px=birth_pos)
            # The window grid starts at the first birth frame's own stamp: a birth time derived
            # from a snapshot's float32 age (a track first seen late) is off by up to ~100 ns.
            if self._next_end_ns is None:
                self._next_end_ns = int(frame_ns) + self.window_ns
        self.frames.prune_before(int(snap.t_ns) - FRAMES_RETAIN_NS)

    def on_provisional_tracks(self, snap: TrackSnapshot) -> None:
        """Crop centres from a provisional fusion (positions of known tracks only)."""
        self.tracks.refresh(snap)

    def on_events(self, batch: EventBatch,
                  on_observation: Callable[[Observations], None] | None = None,
                  before_window: Callable[[int], None] | None = None
                  ) -> list[Observations]:
        """Buffer events; observations of every window complete (a later event has arrived).

        `on_observation(obs)` is called after each window's observation, before the next window
        is observed: a caller that fuses there (the Pipeline) gives every window the crop
        centres of the tracks fused up to the window before, however many packets a batch holds.
        `before_window(t1_ns)` is called before each window (ending at t1_ns) is observed.
        """
        if len(batch) == 0:
            return []
        if self._next_end_ns is not None and int(batch.t[-1]) <= self._next_end_ns - \
                self.window_ns:
            self.counts["events_late"] += len(batch)  # their window is done
            return []
        self._last_event_ns = int(batch.t[-1])
        if self._next_end_ns is not None and self._last_event_ns <= self._next_end_ns:
            # no window completes: keep the packet as it is (the window's slicing drops its
            # events before the window start); one concatenation per window, not per packet
            self._events.append(batch)
            return []
        events = EventBatch.concatenate(self._events + [batch])
        if self._next_end_ns is None:  # before the grid: the last window of events only
            self._events = [events.slice_time(self._last_event_ns - self.window_ns,
                                              self._last_event_ns)]
            return []
        ends, windows = self._due_windows()
        self._events = [events.slice_time(self._next_end_ns - self.window_ns,
                                          self._last_event_ns)]
        observations = []
        for t1, w in zip(ends, windows):
            if before_window is not None:
                before_window(t1)
            obs = self._observe(events, t1, w)
            if obs is not None:
                observations.append(obs)
                if on_observation is not None:
                    on_observation(obs)
        return observations

    def _due_windows(self) -> tuple[list[int], list[int]]:
        n = (self._last_event_ns - self._next_end_ns - 1) // self.window_ns + 1
        ends = [self._next_end_ns + k * self.window_ns for k in range(n)]
        windows = [self.window_ns] * n
        if n > self.max_pending:
            key = "windows_merged" if self.merge_backlog else "windows_skipped"
            self.counts[key] += n - 1
            windows = [self.window_ns * (n if self.merge_backlog else 1)]
            ends = ends[-1:]
        self._next_end_ns = ends[-1] + self.window_ns
        return ends, windows

    def _observe(self, events: EventBatch, t1_ns: int, window_ns: int) -> Observations | None:
        born_before = self.tracks.ids[self.tracks.birth_ns < t1_ns]
        known = self.source.track_ids
        ids, pos = self.tracks.predict(t1_ns, born_before if np.array_equal(born_before, known)
                                       else np.intersect1d(born_before, known))
        if ids.size == 0:
            return None
        self.counts["windows"] += 1
        return self.source.observe(events.slice_time(t1_ns - window_ns, t1_ns), t1_ns,
                                   window_ns, ids, pos)


class ImageModule:
    """Frames -> IMAGE/KLT observations of the known tracks, and SEED proposals."""

    def __init__(self, image_source: object | None = None, klt: object | None = None,
                 seeding: SeedConfig | None = None, reseed: bool = True) -> None:
        self.image_source, self.klt = image_source, klt
        self.seeding = seeding or SeedConfig()
        self.reseed = reseed
        self.seeds: Seeds | None = None
        self.counts = {"frames": 0, "seeds_proposed": 0, "births_frame_lost": 0,
                       "seeds_expired": 0}
        self.reset()

    def reset(self) -> None:
        """Forget tracks and frames (given seeds are proposed again)."""
        if self.image_source is not None and len(self.image_source.track_ids):
            self.image_source.remove_tracks(self.image_source.track_ids)
        if self.klt is not None:
            self.klt.reset()
        self.tracks = KnownTracks()
        self.features = FrameMemory()  # encoded frames (image network)
        self.frames_gray = FrameMemory()
        self._seeded_once = False
        # seeds proposed whose tracks have not come back yet (t_ns, (K, 2) px): they count
        # towards the target, so that a fusion node behind by a few frames is not over-seeded
        self._pending_seeds: list[tuple[int, np.ndarray]] = []
        self._seeds_used = np.zeros(len(self.seeds) if self.seeds else 0, bool)

    def set_seeds(self, seeds: Seeds) -> None:
        """Propose these points (e.g. ground truth at t0) instead of detected corners."""
        self.seeds = seeds
        self._seeds_used = np.zeros(len(seeds), bool)

    def on_image(self, t_ns: int, gray: np.ndarray) -> list[Observations]:
        """Observe the known tracks in this frame, then propose seeds (SEED array, ids are
        the given seeds' ids or 0..K-1)."""
        self.counts["frames"] += 1
        out = []
        ids, pred = self.tracks.predict(t_ns)
        self.frames_gray.add(t_ns, gray)
        if self.image_source is not None:
            features = self.image_source.encode(gray)
            self.features.add(t_ns, features)
            known = np.isin(ids, self.image_source.track_ids)
            if known.any():
                out.append(self.image_source.observe(t_ns, features, ids[known], pred[known]))
        if self.klt is not None:
            obs = self.klt.observe(t_ns, gray, ids, pred)
            if len(obs):
                out.append(obs)
        self._expire_pending_seeds(t_ns)
        pending = [p for _, p in self._pending_seeds]
        seeds = self._propose(t_ns, gray, np.concatenate([pred.reshape(-1, 2)] + pending))
        if seeds is not None:
            out.append(seeds)
            self._pending_seeds.append((int(t_ns), seeds.positions_px))
        return out

    def _expire_pending_seeds(self, t_ns: int) -> None:
        keep = [(t, p) for t, p in self._pending_seeds if t >= t_ns - SEED_PENDING_TIMEOUT_NS]
        if len(keep) == len(self._pending_seeds):
            return
        self.counts["seeds_expired"] += sum(len(p) for t, p in self._pending_seeds
                                            if t < t_ns - SEED_PENDING_TIMEOUT_NS)
        self._pending_seeds = keep
        if len(self.tracks.ids) == 0:
            self._seeded_once = False  # no track ever came back: detect again (given seeds
            # are not proposed twice: their positions belong to their own time)

    def _propose(self, t_ns: int, gray: np.ndarray, alive_px: np.ndarray) -> Observations | None:
        if self.seeds is not None:
            take = ~self._seeds_used & (self.seeds.t_s * 1e9 <= t_ns + 1)
            self._seeds_used |= take
            positions, ids = self.seeds.positions_px[take], self.seeds.ids[take]
        elif self.reseed or not self._seeded_once:
            positions = detect_seeds(gray, alive_px, self.seeding)
            ids = np.arange(len(positions), dtype=np.uint32)
        else:
            return None
        if len(positions) == 0:
            return None
        self._seeded_once = True
        self.counts["seeds_proposed"] += len(positions)
        n = len(positions)
        return Observations(Source.SEED, int(t_ns), np.asarray(ids, np.uint32),
                            np.asarray(positions, np.float64), np.tile(np.eye(2), (n, 1, 1)),
                            np.ones(n))

    def on_tracks(self, snap: TrackSnapshot) -> None:
        """New tracks get their references; dead ones are forgotten; KLT restarts from the
        fused positions of its last frame."""
        born, birth_pos, dead = self.tracks.update(snap)
        self._pending_seeds = [(t, p) for t, p in self._pending_seeds if t > snap.t_ns]
        if dead.size and self.image_source is not None:
            self.image_source.remove_tracks(dead)
        if dead.size and self.klt is not None:
            self.klt.remove_points(dead)
        if born.size:
            birth_ns = int(self.tracks.birth_ns[np.isin(self.tracks.ids, born)].min())
            gray = self.frames_gray.at(birth_ns, BIRTH_FRAME_TOLERANCE_NS)
            oldest = self.frames_gray.oldest_ns()
            if gray is None and oldest is not None and \
                    birth_ns < oldest - BIRTH_FRAME_TOLERANCE_NS:
                self.counts["births_frame_lost"] += int(born.size)  # counted, not retried
                born = born[:0]
            elif gray is None:  # the birth frame has not arrived yet: wait for it
                self.tracks.forget(born)
                return
        if born.size:
            if self.image_source is not None:
                self.image_source.add_tracks(born, self.features.at(birth_ns), birth_pos)
            if self.klt is not None:
                self.klt.add_points(born, birth_pos, gray)
        if self.klt is not None and snap.t_ns == self._last_frame_ns():
            self.klt.set_previous_points(self.tracks.ids, self.tracks.positions_px)
        self.frames_gray.prune_before(int(snap.t_ns) - FRAMES_RETAIN_NS)
        self.features.prune_before(int(snap.t_ns) - FRAMES_RETAIN_NS)

    def _last_frame_ns(self) -> int | None:
        items = self.frames_gray._items
        return items[-1][0] if items else None


class FusionModule:
    """The track table: SEED arrays start tracks, other arrays are fused."""

    def __init__(self, config: FusionConfig) -> None:
        self.engine = FusionEngine(config)
        self.result = FusionResult()
        self.external_ids: dict[int, int] = {}

    def on_observations(self, obs: Observations) -> TrackSnapshot:
        """Fuse (or start tracks from) one array; the snapshot at its time."""
        if obs.source == Source.SEED:
            if len(obs):
                std = np.sqrt(np.maximum(obs.covariances[:, 0, 0], 1e-12))
                ids = self.engine.add_tracks(obs.t_ns, obs.positions_px, std)
                self.external_ids.update(zip(ids.tolist(), obs.ids.tolist()))
        else:
            self.result = self.result + self.engine.apply(obs)
        return self.engine.snapshot(obs.t_ns)

    def set_config(self, config: FusionConfig) -> None:
        """Apply changed parameters from the next observation on."""
        self.engine.config = config

    def set_image_size(self, width: int, height: int) -> None:
        """The out-of-image test needs the frame size (set once, from the first frame)."""
        if self.engine.config.image_size is None:
            self.engine.config = replace(self.engine.config, image_size=(width, height))

    def reset(self) -> None:
        """Forget every track (ids keep counting)."""
        self.engine.reset()

    def stats(self) -> dict[str, int]:
        """Counts of the fused, stale, gated, ... observations so far."""
        return dict(vars(self.result))
