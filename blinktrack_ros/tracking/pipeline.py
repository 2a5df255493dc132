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

Frames run concurrently with the event windows (on a worker thread; torch and OpenCV release
the GIL), on a schedule fixed by the data times alone, so that a replay stays deterministic: a
frame at t_f is observed from the tracks fused before it (as in sequential order), while the
event windows ending in (t_f, t_f + frame_join_ms] are observed meanwhile, with crop centres from
a provisional fusion of the tracks without the frame. When the data passes t_f + frame_join_ms
(or at the next frame, or `flush()`), the frame's observations and seeds are fused, then those
windows' observations: the fusion stays in timestamp order. frame_join_ms = 0 (the default, what
the nodes run) runs frames on the calling thread in arrival order (no overlap).

When the event windows fall behind (live use: more than `max_pending_windows` complete windows at
once), they are merged into one window or the older ones skipped (`backlog`), and counted.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
import copy
from dataclasses import dataclass, field, replace
from enum import Enum
import logging
import time

import numpy as np

from blinktrack_ros.events.batch import EventBatch
from blinktrack_ros.tracking.engine import FusionConfig, FusionEngine, FusionMode, TrackSnapshot
from blinktrack_ros.tracking.modules import EventModule, FusionModule, ImageModule
from blinktrack_ros.tracking.observation import Observations, Source
from blinktrack_ros.tracking.seeding import SeedConfig, Seeds
from blinktrack_ros.tracking.tracks import TrackStatus

LOG = logging.getLogger(__name__)
# `blinktrack track` and `blinktrack bench pipeline` with one torch thread: frames overlap the
# event windows of the next 10 ms of data (two 5 ms windows, one 10 ms window)
OFFLINE_FRAME_JOIN_MS = 10.0


def offline_frame_join_ms(value: float | None = None) -> float:
    """The offline replay's frame_join_ms: `value` when given, else OFFLINE_FRAME_JOIN_MS when
    torch runs one intra-op thread (the frames then take the second core on the worker) and 0
    when it runs more (both networks use every core in turn; a frame worker on top of them
    oversubscribes the cores). On 2 cores, bench defaults, three runs each: 2 threads in line
    0.90-1.05x real time, 2 threads with the worker 0.60-0.72x, 1 thread with the worker
    0.66-0.85x (README, CPU timings)."""
    if value is not None:
        return float(value)
    try:
        import torch
    except ImportError:  # KLT only: no networks, no worker needed
        return 0.0
    return OFFLINE_FRAME_JOIN_MS if torch.get_num_threads() == 1 else 0.0


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


def fusion_config_for(mode: Mode, base: FusionConfig, event_source: object | None = None,
                      image_source: object | None = None) -> FusionConfig:
    """The fusion settings a mode implies (naive fusion for EI_NAIVE, Kalman otherwise), with
    the measurement noise fitted for the loaded weights where they carry one
    (`noise_from_weights`; the sources' `fusion_noise`, from their checkpoints)."""
    config = replace(base, mode=FusionMode.NAIVE if mode is Mode.EI_NAIVE else FusionMode.KF)
    return with_weights_noise(config, {
        "event": getattr(event_source, "fusion_noise", None) if mode.uses_events else None,
        "image": getattr(image_source, "fusion_noise", None) if mode.uses_image_net else None})


def with_weights_noise(config: FusionConfig, fits: dict[str, tuple[float, float] | None]
                       ) -> FusionConfig:
    """config with {"event"|"image": (log_r0, slope) or None} applied where
    `config.noise_from_weights` (None: that source keeps the parameters)."""
    if not config.noise_from_weights:
        return config
    for prefix, fit in fits.items():
        if fit is not None:
            config = replace(config, **{f"{prefix}_noise_log_r0": float(fit[0]),
                                        f"{prefix}_noise_slope": float(fit[1])})
    return config


@dataclass
class Update:
    """One fused update: the observations that caused it and the tracks after it.

    `late` (live frame join, `Pipeline(provisional=True)` only): a frame's update fused at its
    join, after the provisional updates of later event windows were returned: its tracks are
    older than those (a consumer that never goes back in time publishes its observations
    only); `provisional`: tracks of an event window fused without the frame still in flight;
    `refit`: such a window fused again after its frame joined (returned after the frame's
    late updates): its tracks and observations already went out provisionally, so publishers
    skip it; the final filter states are what a fixed-lag smoother needs.
    """

    observations: Observations | None
    tracks: TrackSnapshot
    late: bool = False
    provisional: bool = False
    refit: bool = False

    @property
    def event_window(self) -> bool:
        """Made by an event window's observations (else by a frame's, or its seeds)."""
        return self.observations is not None and self.observations.source == Source.EVENT


@dataclass
class PipelineStats:
    """Counters for diagnostics (all cumulative)."""

    event_windows: int = 0
    windows_merged: int = 0
    windows_skipped: int = 0
    events_late: int = 0
    frames: int = 0
    tracks_born: int = 0
    tracks_lost: int = 0
    time_resets: int = 0
    fusion: dict[str, int] = field(default_factory=dict)
    sources: dict[str, int] = field(default_factory=dict)  # the networks' own drop counters


@dataclass
class _FrameInFlight:
    """A frame being observed on the worker, and the event windows observed meanwhile."""

    t_ns: int
    join_ns: int  # data time at which it is fused
    result: Future  # -> list[Observations] of ImageModule.on_image
    shadow: FusionEngine  # provisional fusion of the held windows (crop centres only)
    held: list[Observations] = field(default_factory=list)


class Pipeline:
    """The three modules of the nodes wired in one process: every observation array is fused
    at once and the resulting tracks go straight back to the modules (what the TrackArray
    topic does between the nodes)."""

    def __init__(self, config: PipelineConfig, fusion: FusionConfig | None = None,
                 seeding: SeedConfig | None = None, event_source: object | None = None,
                 image_source: object | None = None, klt: object | None = None,
                 on_reset: Callable[[str], None] | None = None,
                 frame_join_ms: float = 0.0, provisional: bool = False,
                 join_when_ready: bool = False) -> None:
        """Wire the sources a mode needs (each may be None when the mode does not use it).

        frame_join_ms: event data time after a frame at which its observations are fused; the
        frame runs on a worker thread meanwhile (0: on the calling thread, no overlap). The
        offline replay uses `offline_frame_join_ms()`.
        provisional: (live) each event window fused while a frame is in flight is returned at
        once, with the provisional tracks (fused without that frame), instead of at the join;
        at the join the frame's updates come back marked `late` and the held windows are
        re-fused into the filter without being returned again. The filter state, and so
        every update after the join, is the same as without it.
        join_when_ready: (live) also join a frame at the first window after its worker has
            finished, before frame_join_ms of data passed: its observations reach the
            filter sooner, at the price of a schedule that depends on the compute time (the
            offline replay keeps the data-time schedule, deterministic).
        """
        if not 0.0 <= frame_join_ms <= 1000.0:
            raise ValueError(f"frame_join_ms must be in [0, 1000], got {frame_join_ms}")
        self.frame_join_ns = int(round(frame_join_ms * 1e6))
        self.provisional = bool(provisional)
        self.join_when_ready = bool(join_when_ready)
        self.config = config
        mode = config.mode
        for needed, src, name in ((mode.uses_events, event_source, "event_source"),
                                  (mode.uses_image_net, image_source, "image_source"),
                                  (mode.uses_klt, klt, "klt")):
            if needed and src is None:
                raise ValueError(f"mode {mode.value!r} needs {name}")
        self.event = EventModule(event_source, config.event_window_ms,
                                 config.max_pending_windows,
                                 config.backlog is Backlog.MERGE) if mode.uses_events else None
        self.image = ImageModule(image_source if mode.uses_image_net else None,
                                 klt if mode.uses_klt else None, seeding, config.reseed)
        self.fusion = FusionModule(fusion_config_for(mode, fusion or FusionConfig(),
                                                     event_source, image_source))
        self._on_reset = on_reset
        self._seeded = False
        self._time_resets = 0
        self._lost = 0
        self._last_ns: dict[str, int] = {}
        self._in_flight: _FrameInFlight | None = None
        self._worker: ThreadPoolExecutor | None = None

    @property
    def engine(self) -> FusionEngine:
        """The fusion engine (track table)."""
        return self.fusion.engine

    @property
    def event_source(self) -> object | None:
        return self.event.source if self.event is not None else None

    @property
    def external_ids(self) -> dict[int, int]:
        """Engine id -> given seed id (empty unless `set_seeds` was used)."""
        return self.fusion.external_ids if self._seeded else {}

    @property
    def stats(self) -> PipelineStats:
        """Counters of every module."""
        ev = self.event.counts if self.event is not None else {}
        return PipelineStats(
            event_windows=ev.get("windows", 0), windows_merged=ev.get("windows_merged", 0),
            windows_skipped=ev.get("windows_skipped", 0), events_late=ev.get("events_late", 0),
            frames=self.image.counts["frames"], tracks_born=int(self.engine.tracks.next_id),
            tracks_lost=self._lost, time_resets=self._time_resets,
            fusion=dict(vars(self.fusion.result)), sources=self._source_counts())

    def _source_counts(self) -> dict[str, int]:
        """Drops counted inside the networks' sources (non-finite outputs, unknown ids...)."""
        out: dict[str, int] = {}
        event_stats = getattr(getattr(self.event, "source", None), "stats", None)
        if isinstance(event_stats, dict):
            out.update({f"event {k}": int(v) for k, v in event_stats.items()})
        drops = getattr(getattr(self.image, "image_source", None), "drops", None)
        if drops is not None:
            out.update({f"image {k}": int(v) for k, v in vars(drops).items()})
        return out

    def set_seeds(self, seeds: Seeds) -> None:
        """Start tracks from given points (e.g. EC/EDS ground truth at t0) instead of corners.

        Each seed is born at the first frame at or after its time; `external_ids` maps the
        engine's ids back to the seeds' ids.
        """
        self._seeded = True
        self.image.set_seeds(seeds)

    def reset(self, reason: str = "reset") -> None:
        """Drop every track and buffered input (ids keep counting; seeds are re-armed)."""
        if self._in_flight is not None:  # the worker uses the image module: let it finish
            self._in_flight.result.exception()
            self._in_flight = None
        for module in (self.event, self.image, self.fusion):
            if module is not None:
                module.reset()
        self._last_ns.clear()
        if self._on_reset is not None:
            self._on_reset(reason)

    def warm_up(self, width: int = 240, height: int = 180, seconds: float = 0.1) -> float:
        """Run `seconds` of synthetic input (a textured frame moving 1 px per 30 Hz frame,
        uniform random events) through a throwaway Pipeline sharing this one's sources, so the
        one-off costs of the first calls happen now and not on the first data: numba kernels
        loaded or compiled, ONNX Runtime and oneDNN primitives created, the image network's
        refinement steps traced for this image size (another size traces again at its first
        frame, ~0.1 s), the frame worker thread started (kept for this pipeline).

        Nothing of it stays: this pipeline's tracks, ids, counters and time checks are
        untouched, the shared sources are reset and their fault counters restored, so the
        tracks of the data that follows are those without a warm-up. Call it before the first
        input. Returns the wall seconds it took.
        """
        if len(self.engine.tracks) or self._last_ns:
            raise RuntimeError("warm_up() must run before the pipeline's first input")
        start = time.perf_counter()
        sources = [s for s in (self.event_source, self.image.image_source) if s is not None]
        saved = [(s, copy.deepcopy(getattr(s, "stats", None)), getattr(s, "_drops", None))
                 for s in sources]
        warm = Pipeline(self.config, self.engine.config, self.image.seeding,
                        self.event_source, self.image.image_source, self.image.klt,
                        frame_join_ms=self.frame_join_ns * 1e-6, provisional=self.provisional,
                        join_when_ready=self.join_when_ready)
        try:
            for item in warm_up_inputs(width, height, seconds):
                if isinstance(item, EventBatch):
                    warm.on_events(item)
                else:
                    warm.on_image(*item)
            warm.flush()
        finally:
            warm.reset("warm-up")
            for source, stats, drops in saved:
                if stats is not None:
                    source.stats = stats
                if drops is not None:
                    source._drops = drops
            if self._worker is None:  # its frame thread, warmed up, serves this pipeline
                self._worker = warm._worker
            elif warm._worker is not None:
                warm._worker.shutdown(wait=False)
        return time.perf_counter() - start

    def _check_time(self, t_ns: int, stream: str) -> None:
        last = self._last_ns.get(stream)
        if last is not None and t_ns < last - int(self.config.time_reset_tolerance_ms * 1e6):
            LOG.warning("%s time went back by %.3f s: resetting the tracks", stream,
                        (last - t_ns) * 1e-9)
            self._time_resets += 1
            self.reset(f"{stream} time went backwards")

    def on_events(self, batch: EventBatch) -> list[Update]:
        """Buffer events; return one Update per complete event window (possibly none), and
        those of a frame whose join time the events passed."""
        if len(batch) == 0 or self.event is None:
            return []
        self._check_time(int(batch.t[0]), "event")
        self._last_ns["event"] = int(batch.t[-1])
        updates: list[Update] = []

        def before_window(t1_ns: int) -> None:
            if self._join_due(t1_ns):
                updates.extend(self._join())

        def on_observation(obs: Observations) -> None:
            if self._in_flight is None:
                updates.append(self._fuse(obs))
                return
            flight = self._in_flight
            flight.held.append(obs)
            flight.shadow.apply(obs)
            snap = flight.shadow.snapshot(obs.t_ns)
            self.event.on_provisional_tracks(snap)
            if self.provisional:
                updates.append(Update(obs, snap, provisional=True))

        self.event.on_events(batch, on_observation, before_window)
        if self._join_due(int(batch.t[-1])):
            updates.extend(self._join())
        return updates

    def _join_due(self, t1_ns: int) -> bool:
        """Join the frame in flight before the window ending at t1_ns?"""
        flight = self._in_flight
        return flight is not None and (t1_ns > flight.join_ns or (
            self.join_when_ready and flight.result.done()))

    def on_image(self, t_ns: int, gray: np.ndarray) -> list[Update]:
        """Observe the alive tracks in a frame, then seed; returns the Updates fused now (the
        frame's own, or those of the previous frame when this one runs on the worker)."""
        updates = self._join()
        t_ns = int(t_ns)
        self._check_time(t_ns, "image")
        self._last_ns["image"] = t_ns
        self.fusion.set_image_size(gray.shape[1], gray.shape[0])
        if self.event is not None:
            self.event.on_image(t_ns, gray)
        if self.frame_join_ns > 0 and self.event is not None and self.event.has_grid:
            if self._worker is None:
                self._worker = ThreadPoolExecutor(1, thread_name_prefix="blinktrack-frames")
            self._in_flight = _FrameInFlight(
                t_ns, t_ns + self.frame_join_ns,
                self._worker.submit(self.image.on_image, t_ns, gray), self.engine.copy())
            return updates
        return updates + self._frame_updates(t_ns, self.image.on_image(t_ns, gray))

    def flush(self) -> list[Update]:
        """Fuse a frame still in flight (at the end of the input); its Updates."""
        return self._join()

    def _join(self) -> list[Update]:
        flight, self._in_flight = self._in_flight, None
        if flight is None:
            return []
        updates = self._frame_updates(flight.t_ns, flight.result.result())
        held = [self._fuse(obs) for obs in flight.held]
        if self.provisional and flight.held:  # those windows went out provisionally
            return [replace(u, late=True) for u in updates] + \
                [replace(u, refit=True) for u in held]
        return updates + held

    def _frame_updates(self, t_ns: int, observations: list[Observations]) -> list[Update]:
        updates = [self._fuse(obs) for obs in observations]
        if not updates:
            snap = self.engine.snapshot(t_ns)
            self._broadcast(snap)
            updates.append(Update(None, snap))
        return updates

    def _fuse(self, obs: Observations) -> Update:
        self._drop_nonfinite()
        snap = self.fusion.on_observations(obs)
        self._broadcast(snap)
        return Update(None if obs.source == Source.SEED else obs, snap)

    def _drop_nonfinite(self) -> None:
        """Tracks a network gave a NaN/Inf output (counted by the source) are ended: reported
        LOST in this snapshot, then removed from every source (the issue's fault policy)."""
        for source in (self.event_source, getattr(self.image, "image_source", None)):
            ids = getattr(source, "nonfinite_ids", None)
            if ids is not None and len(ids):
                self.engine.drop(ids)
                source.nonfinite_ids = np.zeros(0, np.uint32)

    def _broadcast(self, snap: TrackSnapshot) -> None:
        self._lost += int((snap.status == TrackStatus.LOST).sum())
        for module in (self.event, self.image):
            if module is not None:
                module.on_tracks(snap)


def warm_up_inputs(width: int, height: int, seconds: float, frame_hz: float = 30.0,
                   events_per_ms: int = 100, seed: int = 0) -> list:
    """Synthetic inputs of `Pipeline.warm_up`, in time order: (t_ns, (H, W) float32 gray)
    frames of a blocky random texture shifted by 1 px per frame (corners everywhere), and 1 ms
    EventBatches of uniform random events."""
    if width < 16 or height < 16 or not seconds > 0:
        raise ValueError(f"warm-up needs at least 16x16 pixels and seconds > 0, got "
                         f"{width}x{height}, {seconds}")
    rng = np.random.default_rng(seed)
    end_ns, frame_ns = int(seconds * 1e9), int(1e9 / frame_hz)
    frames = range(0, end_ns + 1, frame_ns)
    blocks = rng.random((height // 6 + 2, (width + len(frames)) // 6 + 2), dtype=np.float32)
    texture = np.kron(blocks, np.ones((6, 6), np.float32))  # wide enough for every shift
    out: list = []
    for k, t_f in enumerate(frames):
        out.append((t_f, np.ascontiguousarray(texture[1:height + 1, k:k + width])))
    for t0 in range(0, end_ns, 1_000_000):
        t = np.sort(rng.integers(t0 + 1, t0 + 1_000_001, events_per_ms)).astype(np.int64)
        out.append(EventBatch(rng.integers(0, width, t.size).astype(np.uint16),
                              rng.integers(0, height, t.size).astype(np.uint16), t,
                              rng.integers(0, 2, t.size).astype(np.uint8), width, height))
    # a frame after the events up to its time (the replay's order, offline.interleave)
    return sorted(out, key=lambda item: (int(item.t[-1]), 0) if isinstance(item, EventBatch)
                  else (item[0], 1))


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
