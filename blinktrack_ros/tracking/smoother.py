"""Offline fixed-interval Rauch-Tung-Striebel smoothing of fused tracks.

The Kalman filter is causal: a track's position at an event window knows nothing of the frame
that comes 20 ms later. Offline (bag replay, benchmarks, SLAM back ends that wait for the next
keyframe anyway) every later observation is available, and the RTS smoother gives each logged
state the estimate conditioned on all of them, with the same constant-velocity model and
process noise q as the filter:

    x_{k+1|k} = F_k x_k,  P_{k+1|k} = F_k P_k F_k^T + Q_k,
    C_k = P_k F_k^T P_{k+1|k}^{-1},
    xs_k = x_k + C_k (xs_{k+1} - x_{k+1|k}),  Ps_k = P_k + C_k (Ps_{k+1} - P_{k+1|k}) C_k^T,

with F, Q from `kalman.transition` / `kalman.process_noise` and (x_k, P_k) the filtered state
logged at step k (a step where a track got no observation logs the prediction, which the
recursion passes through unchanged in information). The newest state of a track is the same
filtered and smoothed. Not for a live node: every smoothed position depends on the future.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from blinktrack_ros import kalman
from blinktrack_ros.tracking.tracks import TrackStatus


def rts_smooth(ids: np.ndarray, t_s: np.ndarray, x: np.ndarray, P: np.ndarray, q: float,
               constant_q: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Smooth logged filter states, all tracks at once.

    Args:
        ids: (M,) track ids.
        t_s: (M,) state times in seconds; within a track strictly increasing once sorted (the
            caller keeps one row per (id, time)).
        x: (M, 4) filtered states [px, py, vx, vy].
        P: (M, 4, 4) their covariances.
        q: the filter's white-acceleration spectral density, px^2/s^3.
        constant_q: the filter's `constant_q` (Q(1 s) per step whatever dt).

    Returns:
        (xs (M, 4), Ps (M, 4, 4)) in the input's row order.

    Raises:
        ValueError: on shapes that do not match, non-finite input or repeated (id, time) rows.
    """
    ids = np.asarray(ids)
    t_s = np.asarray(t_s, np.float64)
    x = np.asarray(x, np.float64)
    P = np.asarray(P, np.float64)
    m = ids.shape[0]
    if t_s.shape != (m,) or x.shape != (m, 4) or P.shape != (m, 4, 4):
        raise ValueError(f"rts_smooth: shapes ids {ids.shape}, t {t_s.shape}, x {x.shape}, "
                         f"P {P.shape} are not (M,), (M,), (M, 4), (M, 4, 4)")
    if not (np.isfinite(t_s).all() and np.isfinite(x).all() and np.isfinite(P).all()):
        raise ValueError("rts_smooth: non-finite times, states or covariances")
    xs, Ps = x.copy(), P.copy()
    if m == 0:
        return xs, Ps
    order = np.lexsort((t_s, ids))
    same_track = ids[order][1:] == ids[order][:-1]
    if (same_track & (np.diff(t_s[order]) <= 0)).any():
        raise ValueError("rts_smooth: repeated or unsorted times within a track")
    # row -> the row of the same track's next state (-1: the track's newest state)
    nxt = np.full(m, -1)
    nxt[order[:-1][same_track]] = order[1:][same_track]
    # backwards over the distinct times, every track present at a time in one batch
    uniq, inverse = np.unique(t_s, return_inverse=True)
    by_time = np.argsort(inverse, kind="stable")
    bounds = np.searchsorted(inverse[by_time], np.arange(uniq.shape[0] + 1))
    for k in range(uniq.shape[0] - 1, -1, -1):
        rows = by_time[bounds[k]:bounds[k + 1]]
        rows = rows[nxt[rows] >= 0]
        if rows.shape[0] == 0:
            continue
        n = rows.shape[0]
        later = nxt[rows]
        dt = t_s[later] - t_s[rows]
        F = kalman.transition(dt, n, x)
        Q = kalman.process_noise(np.ones(n) if constant_q else dt, q, n, x)
        Pk = P[rows]
        FP = F @ Pk
        x_pred = np.einsum("nij,nj->ni", F, x[rows])
        P_pred = FP @ F.swapaxes(1, 2) + Q
        # C = P F^T P_pred^-1  <=>  C^T = P_pred^-1 (F P)  (both covariances symmetric)
        C = np.linalg.solve(P_pred, FP).swapaxes(1, 2)
        xs[rows] = x[rows] + np.einsum("nij,nj->ni", C, xs[later] - x_pred)
        Ps[rows] = Pk + C @ (Ps[later] - P_pred) @ C.swapaxes(1, 2)
    return xs, Ps


class FixedLagSmoother:
    """Live smoothing with a lag of one frame: the event windows between two frames, refined
    once the later frame is fused.

    `add(snapshot, frame=...)` takes every fused snapshot in time order (they carry
    state_covariances, as the fusion engine's do). The interval (previous frame, this frame]
    closes at the first snapshot after the frame's time (the next event window, usually one
    window later; `flush()` at the end of the data): `add` then returns the snapshots of the
    event windows strictly between the two frames, RTS-smoothed over the interval (each
    track's chain ends at its latest state at the frame's time, or at its last state in the
    interval when it is gone by then): positions, velocities and covariances conditioned on
    everything up to that frame and nothing later. This is `TrackLog.as_rows(smooth_until_ns=
    frame times)` done online, the same information the protocol's interpolation between
    frames gives frame-only trackers; a node publishes it one frame late. Snapshots at a
    frame's time are not changed (and not returned). LOST rows are left out. Holds at most
    `max_pending` snapshots (the oldest are dropped, counted in `dropped`, when frames stop
    coming); a snapshot older than the newest one held (a late frame join, a reset) drops
    the interval (counted).
    """

    def __init__(self, q: float, constant_q: bool = False, max_pending: int = 256) -> None:
        self.q, self.constant_q = float(q), bool(constant_q)
        self.max_pending = int(max_pending)
        self._pending: list = []  # TrackSnapshot of the windows since the last frame
        self._end = None  # the latest snapshot at the time of the frame closing them
        self.dropped = 0

    def reset(self) -> None:
        """Forget the windows waiting for a frame."""
        self._pending.clear()
        self._end = None

    def add(self, snap, frame: bool = False) -> list:
        """Take one fused snapshot; returns the refined windows of an interval it closes."""
        if snap.state_covariances is None:
            raise ValueError("FixedLagSmoother needs snapshots with state_covariances")
        t = int(snap.t_ns)
        alive = _select(snap, snap.status != TrackStatus.LOST)
        if self._end is not None and t == int(self._end.t_ns):
            self._end = alive  # a later update at the frame's time (its seeds, a window)
            return []
        out = self.flush() if self._end is not None and t > int(self._end.t_ns) else []
        newest = self._end if self._end is not None else (
            self._pending[-1] if self._pending else None)
        if newest is not None and t < int(newest.t_ns):
            self.dropped += len(self._pending)  # nothing to chain it to: start over
            self.reset()
        if frame:
            if self._pending and int(self._pending[-1].t_ns) == t:
                self._pending.pop()  # a window ending at the frame's time, fused before it
            self._end = alive
            return out
        if len(alive):
            self._pending.append(alive)
        if len(self._pending) > self.max_pending:
            self.dropped += len(self._pending) - self.max_pending
            del self._pending[:len(self._pending) - self.max_pending]
        return out

    def flush(self) -> list:
        """Close the interval of the last frame now (end of the data); its refined windows."""
        pending, end = self._pending, self._end
        self._pending, self._end = [], None
        if end is None or not pending:
            if end is None:
                self._pending = pending  # no frame yet: keep waiting
            return []
        chain = pending + [end]
        sizes = [len(s) for s in chain]
        ids = np.concatenate([s.ids for s in chain]).astype(np.int64)
        t_s = np.repeat([int(s.t_ns) * 1e-9 for s in chain], sizes)
        x = np.concatenate([np.concatenate([s.positions_px, s.velocities_px_s], axis=1)
                            for s in chain])
        P = np.concatenate([s.state_covariances for s in chain])
        xs, Ps = rts_smooth(ids, t_s, x, P, self.q, self.constant_q)
        out, start = [], 0
        for s, n in zip(pending, sizes[:-1]):
            rows = slice(start, start + n)
            out.append(_replace_state(s, xs[rows], Ps[rows]))
            start += n
        return out


def _select(snap, rows: np.ndarray):
    if rows.all():  # the usual case: no LOST row, nothing to copy
        return snap
    return replace(snap, ids=snap.ids[rows], positions_px=snap.positions_px[rows],
                   velocities_px_s=snap.velocities_px_s[rows],
                   covariances=snap.covariances[rows], status=snap.status[rows],
                   last_source=snap.last_source[rows], age_s=np.asarray(snap.age_s)[rows],
                   state_covariances=snap.state_covariances[rows])


def _replace_state(snap, xs: np.ndarray, Ps: np.ndarray):
    return replace(snap, positions_px=xs[:, :2].copy(), velocities_px_s=xs[:, 2:].copy(),
                   covariances=Ps[:, :2, :2].copy(), state_covariances=Ps.copy())
