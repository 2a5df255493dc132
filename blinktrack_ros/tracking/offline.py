"""Drive a Pipeline from in-memory frames and events in strict timestamp order; log tracks."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from blinktrack_ros.events.batch import EventBatch
from blinktrack_ros.tracking.fusion_types import FusionConfig
from blinktrack_ros.tracking.pipeline import Pipeline, Update
from blinktrack_ros.tracking.smoother import rts_smooth
from blinktrack_ros.tracking.tracks import TrackStatus


@dataclass(frozen=True)
class EventInput:
    """A packet of events (what one event message carries)."""

    batch: EventBatch


@dataclass(frozen=True)
class FrameInput:
    """One grayscale frame (H, W) float32 in [0, 1] with its stamp."""

    t_ns: int
    gray: np.ndarray


def interleave(frames: np.ndarray, frame_times_ns: np.ndarray, events: EventBatch,
               packet_ns: int = 1_000_000) -> Iterator[EventInput | FrameInput]:
    """Events in packets of packet_ns and frames, in timestamp order (events at t <= a frame's
    stamp come before the frame, like a bag recorded by the drivers)."""
    t = events.t
    edges = np.arange(int(t[0]) - 1, int(t[-1]) + packet_ns, packet_ns) if len(t) else \
        np.zeros(0, np.int64)
    bounds = np.searchsorted(t, edges, side="right")
    packets = [(int(edges[k + 1]), int(bounds[k]), int(bounds[k + 1]))
               for k in range(len(edges) - 1) if bounds[k + 1] > bounds[k]]
    order = sorted([(end, 0, i) for i, (end, _, _) in enumerate(packets)]
                   + [(int(ft), 1, i) for i, ft in enumerate(frame_times_ns)])
    for _, kind, i in order:
        if kind == 0:
            _, a, b = packets[i]
            yield EventInput(EventBatch(events.x[a:b], events.y[a:b], events.t[a:b],
                                        events.p[a:b], events.width, events.height))
        else:
            yield FrameInput(int(frame_times_ns[i]), frames[i])


@dataclass
class TrackLog:
    """Rows (id, t_ns, x, y, status) of every fused update, for files and metrics.

    keep_state: also keep each row's velocity and 4x4 covariance, so that `as_rows(smooth=...)`
    can return the offline RTS-smoothed tracks (`tracking.smoother`).
    """

    rows: list[np.ndarray] = field(default_factory=list)
    keep_state: bool = False
    states: list[np.ndarray] = field(default_factory=list)

    def add(self, update: Update) -> None:
        """Append the update's track states (LOST entries are not positions: left out)."""
        snap = update.tracks
        keep = snap.status != TrackStatus.LOST
        if not keep.any():
            return
        n = int(keep.sum())
        block = np.empty((n, 5))
        block[:, 0] = snap.ids[keep]
        block[:, 1] = snap.t_ns
        block[:, 2:4] = snap.positions_px[keep]
        block[:, 4] = snap.status[keep]
        self.rows.append(block)
        if self.keep_state:
            if snap.state_covariances is None:
                raise ValueError("TrackLog(keep_state=True): the snapshot has no "
                                 "state_covariances")
            state = np.empty((n, 18))  # vx vy, then P flattened
            state[:, :2] = snap.velocities_px_s[keep]
            state[:, 2:] = snap.state_covariances[keep].reshape(n, 16)
            self.states.append(state)

    def as_rows(self, external_ids: dict[int, int] | None = None,
                smooth: FusionConfig | None = None,
                predict_every_ns: int | None = None,
                smooth_until_ns: np.ndarray | None = None) -> np.ndarray:
        """(M, 5) rows id, t (s), x, y, status sorted by id then time; ids mapped if given.

        smooth: the filter's settings (q, constant_q) to return the RTS-smoothed positions
        instead of the filtered ones (needs `keep_state=True`); one row per (id, time), the
        last logged, as the metrics keep.
        smooth_until_ns: with smooth, a fixed lag instead of the whole future: increasing times
            (the frame times) cut each track into segments (t_{k-1}, t_k], and each segment is
            smoothed with its own observations only, its row at t_k staying the filtered one.
            A row then uses the data up to the first of these times at or after it, the same
            information as the linear interpolation between frames that the protocol gives
            the frame-only modes. Rows after the last time keep their filtered positions
            (no later time comes to smooth them).
        predict_every_ns: where a track's consecutive rows are further apart, add rows every
        this many ns after the earlier one (strictly before the later one) with the constant-
        velocity prediction x + v dt from the earlier row alone: what a node publishing at that
        rate would give (needs `keep_state=True`; not with smooth).
        """
        if not self.rows:
            return np.zeros((0, 5))
        out = np.concatenate(self.rows)
        order = np.lexsort((out[:, 1], out[:, 0]))
        out = out[order]
        if smooth is not None:
            if not self.keep_state:
                raise ValueError("TrackLog.as_rows(smooth=...) needs TrackLog(keep_state=True)")
            state = np.concatenate(self.states)[order]
            # the last row of each (id, time): lexsort is stable, so later updates come later
            last = np.ones(out.shape[0], dtype=bool)
            last[:-1] = (out[1:, 0] != out[:-1, 0]) | (out[1:, 1] != out[:-1, 1])
            out, state = out[last], state[last]
            x = np.concatenate([out[:, 2:4], state[:, :2]], axis=1)
            chain = out[:, 0]
            if smooth_until_ns is not None:
                cuts = np.asarray(smooth_until_ns, np.float64).reshape(-1)
                if (np.diff(cuts) <= 0).any():
                    raise ValueError("smooth_until_ns must be strictly increasing")
                segment = np.searchsorted(cuts, out[:, 1], side="left")
                chain = out[:, 0] * (cuts.size + 1) + segment  # one chain per (id, segment)
            xs, _ = rts_smooth(chain, out[:, 1] * 1e-9, x, state[:, 2:].reshape(-1, 4, 4),
                               smooth.q, smooth.constant_q)
            if smooth_until_ns is not None:
                xs[segment == cuts.size] = x[segment == cuts.size]
            out[:, 2:4] = xs[:, :2]
        if predict_every_ns is not None:
            if smooth is not None or not self.keep_state:
                raise ValueError("TrackLog.as_rows(predict_every_ns=...) needs "
                                 "TrackLog(keep_state=True) and no smoothing")
            out = _with_predictions(out, np.concatenate(self.states)[order, :2],
                                    int(predict_every_ns))
        if external_ids:
            out[:, 0] = [external_ids.get(int(i), int(i)) for i in out[:, 0]]
        out[:, 1] *= 1e-9
        if external_ids:  # the mapped ids may sort differently
            out = out[np.lexsort((out[:, 1], out[:, 0]))]
        return out


def _with_predictions(rows: np.ndarray, velocities: np.ndarray, every_ns: int) -> np.ndarray:
    """rows (id, t_ns, x, y, status; sorted by id then time) with prediction rows inserted
    every `every_ns` between consecutive rows of a track, from the earlier row's position and
    velocity (px/s) only."""
    if every_ns <= 0:
        raise ValueError(f"predict_every_ns must be > 0, got {every_ns}")
    if rows.shape[0] < 2:
        return rows
    gap = rows[1:, 1] - rows[:-1, 1]
    same = rows[1:, 0] == rows[:-1, 0]
    n_new = np.where(same, np.ceil(gap / every_ns) - 1, 0).clip(0).astype(np.int64)
    n_new = np.append(n_new, 0)  # nothing after a track's last row
    if not n_new.any():
        return rows
    src = np.repeat(np.arange(rows.shape[0]), n_new)
    first = np.repeat(np.cumsum(n_new) - n_new, n_new)
    k = np.arange(src.size) - first + 1  # 1 .. n_new per source row
    new = rows[src].copy()
    dt_ns = k * float(every_ns)
    new[:, 1] = rows[src, 1] + dt_ns
    new[:, 2:4] += velocities[src] * (dt_ns * 1e-9)[:, None]
    out = np.concatenate([rows, new])
    return out[np.lexsort((out[:, 1], out[:, 0]))]


def run_offline(pipeline: Pipeline, inputs: Iterable[EventInput | FrameInput],
                progress: bool = False, total: int | None = None,
                keep_state: bool = False) -> TrackLog:
    """Feed inputs in order to the pipeline; return the log of every update (with each
    state's velocity and covariance when keep_state, for `TrackLog.as_rows(smooth=...)`)."""
    log = TrackLog(keep_state=keep_state)
    if progress:
        from tqdm import tqdm

        inputs = tqdm(inputs, total=total, unit="msg", desc="tracking")
    for item in inputs:
        if isinstance(item, EventInput):
            updates = pipeline.on_events(item.batch)
        else:
            updates = pipeline.on_image(item.t_ns, item.gray)
        for update in updates:
            log.add(update)
    for update in pipeline.flush():
        log.add(update)
    return log
