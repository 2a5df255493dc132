"""dv-processing's event+frame Lucas-Kanade tracker as a benchmark baseline (mode `dv`).

`dv_processing.features.EventCombinedLKTracker.RegularTracker` (iniVation's dv-processing, PyPI
`dv-processing`, the `baselines` extra) detects its own GFTT corners on the frames and tracks
them with pyramidal LK, using frames accumulated from the events between two frames as position
priors. It cannot start from given points, so the benchmark's seeds are attached to its tracks:

* at the first frame at or after a seed's time, the seed takes the nearest unclaimed dv track
  within `match_radius_px` (greedy, closest pairs first);
* the seed's track is the dv track shifted by (seed - dv position at that frame), so it starts
  exactly at the seed;
* a seed with no dv track nearby is reported as not moving, so it is counted by the metrics
  instead of silently skipped. `DvTracker.stats` says how many.

With `hold_after_loss` (default) a track stays at its last position from the frame dv drops it
to the last frame, as does an unmatched seed: the reference protocol crops the ground truth to
each predicted track's time span, so a track that simply ended would be scored only over the
part dv managed to follow. Positions are reported at frame times only (dv outputs nothing
between frames).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

US_PER_NS = 1e-3


@dataclass(frozen=True)
class DvConfig:
    """Options of the dv-processing baseline.

    Attributes:
        max_tracks: tracks dv keeps (its detector tops up to this many); large so that most
            seeds find a dv track nearby.
        match_radius_px: a seed takes a dv track at most this far away at its start frame.
        num_intermediate_frames: event-accumulated frames tracked between two frames.
        hold_after_loss: report lost and unmatched tracks at their last position until the
            last frame (else they end where dv drops them).
    """

    max_tracks: int = 1000
    match_radius_px: float = 3.0
    num_intermediate_frames: int = 3
    hold_after_loss: bool = True


def _event_store(events: Any, lo: int, hi: int) -> tuple[Any, int]:
    """Events [lo, hi) of an EventBatch -> (dv_processing.EventStore with times in
    microseconds, number of events dropped because their time went back)."""
    import dv_processing as dv

    store = dv.EventStore()
    t_us = (np.asarray(events.t[lo:hi], np.int64) // 1000).tolist()
    xs, ys = events.x[lo:hi].tolist(), events.y[lo:hi].tolist()
    ps = (np.asarray(events.p[lo:hi]) > 0).tolist()
    last, dropped = None, 0
    for t, x, y, p in zip(t_us, xs, ys, ps):
        if last is not None and t < last:  # dv needs non-decreasing times
            dropped += 1
            continue
        store.push_back(t, x, y, p)
        last = t
    return store, dropped


def _as_uint8(frame: np.ndarray) -> np.ndarray:
    """(H, W) uint8 or float in [0, 1] -> (H, W) uint8."""
    if frame.dtype == np.uint8:
        return np.ascontiguousarray(frame)
    return np.clip(np.asarray(frame, np.float64) * 255.0 + 0.5, 0, 255).astype(np.uint8)


def run_dv_tracker(frames: list[np.ndarray], frame_times_ns: np.ndarray, events: Any,
                   config: DvConfig = DvConfig()
                   ) -> tuple[list[dict[int, tuple[float, float]]], int]:
    """dv's tracks at every frame, and the number of events dropped as out of order.

    Returns:
        (per frame {dv track id: (x, y) pixel position}, dropped event count).

    Args:
        frames: F frames (H, W), uint8 or float in [0, 1].
        frame_times_ns: (F,) int64 increasing frame times, on the events' clock.
        events: EventBatch (t in ns, time-sorted).
        config: tracker options.
    """
    import dv_processing as dv

    h, w = frames[0].shape[:2]
    tracker = dv.features.EventCombinedLKTracker.RegularTracker((int(w), int(h)))
    tracker.setMaxTracks(int(config.max_tracks))
    tracker.setNumIntermediateFrames(int(config.num_intermediate_frames))
    times = np.asarray(frame_times_ns, np.int64)
    out: list[dict[int, tuple[float, float]]] = []
    lo = dropped = 0
    for k, frame in enumerate(frames):
        # dv wants events reaching past the frame it tracks: feed up to the next frame
        upto = times[k + 1] if k + 1 < len(times) else np.iinfo(np.int64).max
        hi = int(np.searchsorted(events.t, upto, side="right"))
        if hi > lo:
            store, n_bad = _event_store(events, lo, hi)
            dropped += n_bad
            tracker.accept(store)
        lo = max(lo, hi)
        tracker.accept(dv.Frame(int(times[k] // 1000), _as_uint8(frame)))
        result = tracker.runTracking()
        kps = [] if result is None else result.keypoints
        out.append({int(kp.class_id): (float(kp.pt[0]), float(kp.pt[1])) for kp in kps})
    return out, dropped


def match_seeds(seed_xy: np.ndarray, dv_tracks: dict[int, tuple[float, float]],
                taken: set[int], radius_px: float) -> list[int | None]:
    """Greedy nearest matching: per seed (N, 2 pixel xy) a free dv track id within radius."""
    ids = [i for i in dv_tracks if i not in taken]
    if not ids or seed_xy.shape[0] == 0:
        return [None] * seed_xy.shape[0]
    pos = np.array([dv_tracks[i] for i in ids])  # M 2
    dist = np.linalg.norm(seed_xy[:, None, :] - pos[None, :, :], axis=2)  # N M
    result: list[int | None] = [None] * seed_xy.shape[0]
    used: set[int] = set()
    for flat in np.argsort(dist, axis=None):
        s, m = np.unravel_index(flat, dist.shape)
        if dist[s, m] > radius_px:
            break
        if result[s] is None and m not in used:
            result[s] = ids[m]
            used.add(int(m))
    return result


@dataclass
class DvTracker:
    """The benchmark's TrackerFn(sequence, mode, seeds, window_ns) -> rows `id t x y`.

    `mode` and `window_ns` are ignored (dv chooses its own event accumulation). After each
    call, `stats` holds the `seeds`, `matched` and `unmatched` counts of that sequence and
    `events_dropped_out_of_order` (events whose microsecond time went back; dv needs order).
    """

    config: DvConfig = DvConfig()
    stats: dict[str, int] = field(default_factory=dict)

    def __call__(self, seq: Any, mode: str, seeds: np.ndarray, window_ns: int) -> np.ndarray:
        """Track `seq` with dv and attach the (N, 4) seed rows `id t0 x y` to its tracks."""
        times = np.asarray(seq.frame_times_ns, np.int64)
        per_frame, dropped = run_dv_tracker(list(seq.frames), times, seq.events, self.config)
        seeds = np.asarray(seeds, np.float64).reshape(-1, 4)
        start = np.searchsorted(times, np.round(seeds[:, 1] * 1e9).astype(np.int64) - 1000)
        rows: list[np.ndarray] = []
        taken: set[int] = set()
        matched = 0
        for k in np.unique(start):
            group = np.flatnonzero(start == k)
            k_eff = min(int(k), len(times) - 1)
            pairs = match_seeds(seeds[group, 2:4], per_frame[k_eff], taken,
                                self.config.match_radius_px)
            for s, dv_id in zip(group, pairs):
                rows.append(self._rows(seeds[s], dv_id, per_frame, times, k_eff,
                                       self.config.hold_after_loss))
                if dv_id is not None:
                    taken.add(dv_id)
                    matched += 1
        self.stats = {"seeds": int(seeds.shape[0]), "matched": matched,
                      "unmatched": int(seeds.shape[0]) - matched,
                      "events_dropped_out_of_order": dropped}
        return np.concatenate(rows) if rows else np.zeros((0, 4))

    @staticmethod
    def _rows(seed: np.ndarray, dv_id: int | None, per_frame: list[dict], times: np.ndarray,
              k0: int, hold: bool) -> np.ndarray:
        """Rows `id t x y` of one seed from frame k0 (see the module docstring)."""
        sid, t0, xy = seed[0], seed[1], np.asarray(seed[2:4], np.float64)
        offset = xy - np.asarray(per_frame[k0][dv_id]) if dv_id is not None else None
        out = [[sid, t0, *xy]]
        k = k0 + 1
        while k < len(times) and offset is not None and dv_id in per_frame[k]:
            xy = np.asarray(per_frame[k][dv_id]) + offset
            out.append([sid, times[k] * 1e-9, *xy])
            k += 1
        if hold:
            out += [[sid, times[m] * 1e-9, *xy] for m in range(k, len(times))]
        if len(out) == 1:  # a track needs two rows to be evaluated
            out.append([sid, t0 + 1e-3, *xy])
        return np.array(out)


def require_dv() -> None:
    """Raise UsageError with the fix when dv-processing is not installed."""
    try:
        import dv_processing  # noqa: F401
    except ImportError:
        from blinktrack_ros.cli import UsageError

        raise UsageError("mode dv needs dv-processing: pip install dv-processing "
                         "(or pip install 'blinktrack_ros[baselines]')") from None


def with_dv(tracker: Callable[..., np.ndarray], config: DvConfig = DvConfig(),
            log: Callable[[str], None] | None = print) -> Callable[..., np.ndarray]:
    """`tracker` (a TrackerFn) with mode `dv` sent to a DvTracker; `log` gets its match counts.

    Raises:
        UsageError: dv-processing is not installed.
    """
    require_dv()
    dv = DvTracker(config)

    def track(seq: Any, mode: str, seeds: np.ndarray, window_ns: int) -> np.ndarray:
        if mode != "dv":
            return tracker(seq, mode, seeds, window_ns)
        rows = dv(seq, mode, seeds, window_ns)
        if log is not None:
            st = dv.stats
            log(f"dv on {seq.name}: {st['matched']}/{st['seeds']} seeds matched a dv track "
                f"within {config.match_radius_px:g} px (the rest reported static); "
                f"{st['events_dropped_out_of_order']} events dropped as out of order")
        return rows

    return track
