"""The tracker's node logic without ROS: events and frames in, observations and tracks out.

The ROS nodes and the offline replay (`blinktrack track`) both drive this one object, so a bag
replayed offline gives the tracks a live run gives. Inputs must come in sensor-time order per
stream; a stream going backwards (a looped bag) resets the tracks and is counted.

Data flow per input:
- `on_events(batch)`: events are buffered; every complete window (t1 - dt, t1] of the event grid
  gives one event observation array for the tracks born before t1, fused at t1.
- `on_image(t_ns, gray)`: the frame source (image network or KLT) observes the alive tracks from
  their fused positions predicted to t_ns; then lost tracks are removed from every source and
  new features are seeded (Shi-Tomasi top-up, or the given seeds) and registered with the sources.

When the event windows fall behind (live use: more than `max_pending_windows` complete windows at
once), they are merged into one window or the older ones skipped (`backlog`), and counted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import Enum
import logging

import numpy as np

from blinktrack_ros.events.batch import EventBatch
from blinktrack_ros.tracking.engine import FusionConfig, FusionEngine, FusionMode, TrackSnapshot
from blinktrack_ros.tracking.observation import Observations, Source
from blinktrack_ros.tracking.seeding import SeedConfig, Seeds, detect_seeds
from blinktrack_ros.tracking.tracks import TrackStatus

LOG = logging.getLogger(__name__)


class Mode(Enum):
    """Which sources run and how they are fused (the paper's ablations plus classical ones)."""

    E = "e"  # event network only
    I = "i"  # noqa: E741 - image network only
    EI = "ei"  # event + image networks, Kalman fusion (the method)
    EI_NAIVE = "ei-naive"  # event + image networks, an observation replaces the position
    KLT = "klt"  # pyramidal Lucas-Kanade on frames only
    E_KLT = "e-klt"  # event network + KLT, Kalman fusion (no image weights needed)

    @property
    def uses_events(self) -> bool:
        return self in (Mode.E, Mode.EI, Mode.EI_NAIVE, Mode.E_KLT)

    @property
    def uses_image_net(self) -> bool:
        return self in (Mode.I, Mode.EI, Mode.EI_NAIVE)

    @property
    def uses_klt(self) -> bool:
        return self in (Mode.KLT, Mode.E_KLT)


class Backlog(Enum):
    """What to do with event windows when inference falls behind."""

    MERGE = "merge"  # one window spanning every pending one
    SKIP = "skip"  # only the newest window; older ones are dropped


@dataclass(frozen=True)
class PipelineConfig:
    """Settings of the tracking pipeline (ROS parameters default to these).

    Attributes:
        mode: sources and fusion, see Mode.
        event_window_ms: event window length dt (10 ms for EC-like data, 5 ms for EDS-like).
        reseed: top up to the seeding target on every frame (False: seed on the first frame).
        max_pending_windows: complete event windows processed at once before `backlog` applies.
        backlog: MERGE or SKIP when more windows are pending.
        time_reset_tolerance_ms: a stream going back by more than this resets the tracks.
    """

    mode: Mode = Mode.EI
    event_window_ms: float = 10.0
    reseed: bool = True
    max_pending_windows: int = 4
    backlog: Backlog = Backlog.MERGE
    time_reset_tolerance_ms: float = 1.0

    def __post_init__(self) -> None:
        """Reject values that cannot work."""
        if not 0.1 <= self.event_window_ms <= 1000.0:
            raise ValueError(f"event_window_ms must be in [0.1, 1000], got {self.event_window_ms}")
        if self.max_pending_windows < 1:
            raise ValueError("max_pending_windows must be >= 1")
        if self.time_reset_tolerance_ms < 0:
            raise ValueError("time_reset_tolerance_ms must be >= 0")


def fusion_config_for(mode: Mode, base: FusionConfig) -> FusionConfig:
    """The fusion settings a mode implies (naive fusion for EI_NAIVE, Kalman otherwise)."""
    return replace(base, mode=FusionMode.NAIVE if mode is Mode.EI_NAIVE else FusionMode.KF)


@dataclass
class Update:
    """One fused update: the observations that caused it and the tracks after it."""

    observations: Observations | None
    tracks: TrackSnapshot


@dataclass
class PipelineStats:
    """Counters for diagnostics (all cumulative)."""

    event_windows: int = 0
    windows_merged: int = 0
    windows_skipped: int = 0
    frames: int = 0
    tracks_born: int = 0
    tracks_lost: int = 0
    time_resets: int = 0
    events_late: int = 0
    fusion: dict[str, int] = field(default_factory=dict)

    def add_fusion(self, result: object) -> None:
        for key, value in vars(result).items():
            self.fusion[key] = self.fusion.get(key, 0) + int(value)


class Pipeline:
    """Events and frames in; event/frame observations and fused tracks out."""

    def __init__(self, config: PipelineConfig, fusion: FusionConfig | None = None,
                 seeding: SeedConfig | None = None, event_source: object | None = None,
                 image_source: object | None = None, klt: object | None = None,
                 on_reset: Callable[[str], None] | None = None) -> None:
        """Wire the sources a mode needs (each may be None when the mode does not use it)."""
        self.config = config
        mode = config.mode
        for needed, src, name in ((mode.uses_events, event_source, "event_source"),
                                  (mode.uses_image_net, image_source, "image_source"),
                                  (mode.uses_klt, klt, "klt")):
            if needed and src is None:
                raise ValueError(f"mode {mode.value!r} needs {name}")
        self.event_source = event_source if mode.uses_events else None
        self.image_source = image_source if mode.uses_image_net else None
        self.klt = klt if mode.uses_klt else None
        self.engine = FusionEngine(fusion_config_for(mode, fusion or FusionConfig()))
        self.seeding = seeding or SeedConfig()
        self.stats = PipelineStats()
        self.external_ids: dict[int, int] = {}
        self._on_reset = on_reset
        self._seeds: Seeds | None = None
        self._seeds_used = np.zeros(0, bool)
        self._window_ns = int(round(config.event_window_ms * 1e6))
        self._clear_streams()

    # ----------------------------------------------------------------- state
    def _clear_streams(self) -> None:
        self._events: list[EventBatch] = []
        self._next_end_ns: int | None = None
        self._last_event_ns: int | None = None
        self._last_frame_ns: int | None = None

    def reset(self, reason: str = "reset") -> None:
        """Drop every track and buffered input (ids keep counting; seeds are re-armed)."""
        for ids in (self._alive_ids(),):
            self._remove_from_sources(ids)
        self.engine.reset()
        if self.klt is not None:
            self.klt.reset()
        self._clear_streams()
        self._seeds_used[:] = False
        if self._on_reset is not None:
            self._on_reset(reason)

    def set_seeds(self, seeds: Seeds) -> None:
        """Start tracks from given points (e.g. EC/EDS ground truth at t0) instead of corners.

        Each seed is born at the first frame at or after its time; its external id is kept in
        `external_ids` (engine id -> seed id) for writing tracks in the ground truth's ids.
        """
        self._seeds = seeds
        self._seeds_used = np.zeros(len(seeds), bool)

    def _alive_ids(self) -> np.ndarray:
        return self.engine.tracks.ids.copy()

    def _check_time(self, t_ns: int, last: int | None, stream: str) -> None:
        tol = int(self.config.time_reset_tolerance_ms * 1e6)
        if last is not None and t_ns < last - tol:
            LOG.warning("%s time went back by %.3f s: resetting the tracks", stream,
                        (last - t_ns) * 1e-9)
            self.stats.time_resets += 1
            self.reset(f"{stream} time went backwards")

    # ---------------------------------------------------------------- events
    def on_events(self, batch: EventBatch) -> list[Update]:
        """Buffer events; return one Update per complete event window (possibly none)."""
        if len(batch) == 0 or self.event_source is None:
            return []
        self._check_time(int(batch.t[0]), self._last_event_ns, "event")
        if self._next_end_ns is not None and int(batch.t[-1]) <= self._next_end_ns - \
                self._window_ns:
            self.stats.events_late += len(batch)  # the window they belong to is done
            return []
        self._last_event_ns = int(batch.t[-1])
        self._events.append(batch)
        if self._next_end_ns is None:  # no track yet: keep one window's worth, bounded
            events = EventBatch.concatenate(self._events)
            self._events = [events.slice_time(self._last_event_ns - self._window_ns,
                                              self._last_event_ns)]
            return []
        return self._run_windows()

    def _run_windows(self) -> list[Update]:
        # A window (t1 - dt, t1] is complete once an event later than t1 has arrived.
        if self._last_event_ns is None or self._last_event_ns <= self._next_end_ns:
            return []
        n_complete = (self._last_event_ns - self._next_end_ns - 1) // self._window_ns + 1
        ends = [self._next_end_ns + k * self._window_ns for k in range(n_complete)]
        window = [self._window_ns] * n_complete
        if n_complete > self.config.max_pending_windows:
            if self.config.backlog is Backlog.MERGE:
                self.stats.windows_merged += n_complete - 1
                window, ends = [self._window_ns * n_complete], [ends[-1]]
            else:
                self.stats.windows_skipped += n_complete - 1
                window, ends = [self._window_ns], [ends[-1]]
        self._next_end_ns = ends[-1] + self._window_ns
        events = EventBatch.concatenate(self._events)
        updates = [self._event_step(events, t1, w) for t1, w in zip(ends, window)]
        keep_from = self._next_end_ns - self._window_ns
        self._events = [events.slice_time(keep_from, np.iinfo(np.int64).max)]
        return [u for u in updates if u is not None]

    def _event_step(self, events: EventBatch, t1_ns: int, window_ns: int) -> Update | None:
        ids, pos = self.engine.predict_positions(t1_ns, self.event_source.track_ids)
        born = self.engine.tracks.birth_ns[self.engine.tracks.rows_of(ids)[0]] < t1_ns
        ids, pos = ids[born], pos[born]
        if ids.size == 0:
            return None
        window = events.slice_time(t1_ns - window_ns, t1_ns)
        obs = self.event_source.observe(window, t1_ns, window_ns, ids, pos)
        self.stats.event_windows += 1
        return self._fuse(obs)

    # ---------------------------------------------------------------- frames
    def on_image(self, t_ns: int, gray: np.ndarray) -> list[Update]:
        """Observe the alive tracks in a frame, then seed; returns the frame's Update(s)."""
        t_ns = int(t_ns)
        self._check_time(t_ns, self._last_frame_ns, "image")
        self._last_frame_ns = t_ns
        self.stats.frames += 1
        if self.engine.config.image_size is None:  # out-of-image test needs the frame size
            self.engine.config = replace(self.engine.config,
                                         image_size=(gray.shape[1], gray.shape[0]))
        updates: list[Update] = []
        features = self.image_source.encode(gray) if self.image_source is not None else None
        ids, pred = self.engine.predict_positions(t_ns)
        if ids.size and (self.image_source is not None or self.klt is not None):
            if self.image_source is not None:
                obs = self.image_source.observe(t_ns, features, ids, pred)
            else:
                obs = self.klt.observe(t_ns, gray, ids, pred)
            updates.append(self._fuse(obs))
        elif self.klt is not None:
            self.klt.observe(t_ns, gray, ids, pred)  # keeps the frame for the next one
        if self.klt is not None:
            self.klt.set_previous_points(*self.engine.predict_positions(t_ns))
        born = self._seed(t_ns, gray, features)
        if born.size or not updates:
            updates.append(Update(None, self._snapshot(t_ns)))
        return updates

    def _seed(self, t_ns: int, gray: np.ndarray, features: object) -> np.ndarray:
        if self._seeds is not None:
            take = ~self._seeds_used & (self._seeds.t_s * 1e9 <= t_ns + 1)
            self._seeds_used |= take
            positions, external = self._seeds.positions_px[take], self._seeds.ids[take]
        elif self.config.reseed or self.stats.tracks_born == 0:
            _, alive = self.engine.predict_positions(t_ns)
            positions, external = detect_seeds(gray, alive, self.seeding), None
        else:
            return np.zeros(0, np.uint32)
        if len(positions) == 0:
            return np.zeros(0, np.uint32)
        ids = self.engine.add_tracks(t_ns, positions)
        if external is not None:
            self.external_ids.update(zip(ids.tolist(), np.asarray(external).tolist()))
        self.stats.tracks_born += int(ids.size)
        if self._next_end_ns is None and self.event_source is not None:
            self._next_end_ns = t_ns + self._window_ns
            self._events = [e.slice_time(t_ns, np.iinfo(np.int64).max) for e in self._events]
        if self.event_source is not None:
            self.event_source.add_tracks(ids, frame=gray, positions_px=positions)
        if self.image_source is not None:
            self.image_source.add_tracks(ids, features, positions)
        if self.klt is not None:
            self.klt.add_points(ids, positions)
        return ids

    # ---------------------------------------------------------------- fusion
    def _fuse(self, obs: Observations) -> Update:
        self.stats.add_fusion(self.engine.apply(obs))
        return Update(obs, self._snapshot(obs.t_ns))

    def _snapshot(self, t_ns: int) -> TrackSnapshot:
        snap = self.engine.snapshot(t_ns)
        lost = snap.ids[snap.status == TrackStatus.LOST]
        if lost.size:
            self.stats.tracks_lost += int(lost.size)
            self._remove_from_sources(lost)
        return snap

    def _remove_from_sources(self, ids: np.ndarray) -> None:
        if ids.size == 0:
            return
        for source in (self.event_source, self.image_source):
            if source is not None:
                source.remove_tracks(ids)
        if self.klt is not None:
            self.klt.remove_points(ids)


def observed_sources(mode: Mode) -> tuple[Source, ...]:
    """The observation sources a mode produces (for topic set-up and diagnostics)."""
    out = []
    if mode.uses_events:
        out.append(Source.EVENT)
    if mode.uses_image_net:
        out.append(Source.IMAGE)
    if mode.uses_klt:
        out.append(Source.KLT)
    return tuple(out)
