"""Asynchronous fusion engine: observations from any source, applied in timestamp order.

Policy for out-of-order data: with `reorder_window_ms = 0` (default) every observation array is
applied on arrival; an entry older than its track's state time is dropped and counted (`stale`),
never reordered silently. With a window > 0, arrays wait in a buffer until the newest arrival is
that much later, and are then applied sorted by (timestamp, arrival order); `flush()` empties it.
Everything is deterministic: same inputs in the same order give the same tracks and ids.
"""

from __future__ import annotations

import copy
import heapq

import numpy as np

from blinktrack_ros import kalman
from blinktrack_ros.tracking import fusion_jit, lifecycle
from blinktrack_ros.tracking.fusion_types import (
    FusionConfig,
    FusionMode,
    FusionResult,
    TrackSnapshot,
)
from blinktrack_ros.tracking.observation import Observations, Source
from blinktrack_ros.tracking.tracks import TrackStatus, TrackTable

__all__ = ["FusionConfig", "FusionEngine", "FusionMode", "FusionResult", "TrackSnapshot"]


def _check_shapes(obs: Observations) -> None:
    """Raise on arrays whose shapes do not match (a programming error, not data noise)."""
    n = len(obs)
    shapes = {"positions_px": (n, 2), "covariances": (n, 2, 2), "visibility": (n,)}
    for name, shape in shapes.items():
        if getattr(obs, name).shape != shape:
            raise ValueError(f"Observations.{name} has shape {getattr(obs, name).shape}, "
                             f"expected {shape} for {n} ids")


def _valid_entries(obs: Observations) -> np.ndarray | None:
    """None when every entry is usable (fast path), else an (N,) bool mask of usable entries."""
    z, R, vis = obs.positions_px, obs.covariances, obs.visibility
    det = R[:, 0, 0] * R[:, 1, 1] - R[:, 0, 1] * R[:, 1, 0]
    if len(obs) == 0 or (np.isfinite(z.sum() + R.sum() + det.sum()) and det.min() > 0
                         and R[:, 0, 0].min() > 0 and vis.min() >= 0 and vis.max() <= 1):
        return None  # a few reductions instead of ten element-wise masks
    # NaN compares False, so these also reject non-finite values
    good = (np.abs(z).max(axis=1) < np.inf) & (R[:, 0, 0] > 0) & (det > 0) & (det < np.inf)
    good &= (vis >= 0) & (vis <= 1)
    return good


class FusionEngine:
    """Owns the track table; fuses observation arrays and answers position queries."""

    def __init__(self, config: FusionConfig | None = None) -> None:
        """Create an engine with no tracks."""
        self.config = config or FusionConfig()
        self.tracks = TrackTable()
        self._buffer: list[tuple[int, int, Observations]] = []
        self._arrivals = 0
        self._newest_ns: int | None = None
        self._dropped = np.zeros(0, np.uint32)  # ids to report LOST at the next snapshot

    def drop(self, ids: np.ndarray) -> None:
        """End these tracks: the next snapshot reports them LOST and removes them (e.g. a
        network gave them a non-finite output, so their recurrent state cannot be trusted)."""
        self._dropped = np.union1d(self._dropped, np.asarray(ids, np.uint32))

    def copy(self) -> FusionEngine:
        """An independent engine with the same tracks, buffer and settings (a provisional
        fusion that must not touch this one; instance-level patches are not copied)."""
        other = FusionEngine(self.config)
        other.tracks = copy.deepcopy(self.tracks)
        other._buffer = list(self._buffer)
        other._arrivals, other._newest_ns = self._arrivals, self._newest_ns
        other._dropped = self._dropped.copy()
        return other

    def reset(self) -> None:
        """Forget every track and buffered observation; ids keep counting (never reused)."""
        self.tracks.clear()
        self._buffer.clear()
        self._newest_ns = None

    def add_tracks(self, t_ns: int, positions_px: np.ndarray,
                   position_std_px: float | np.ndarray | None = None,
                   source: Source = Source.SEED) -> np.ndarray:
        """Start tracks at (M, 2) pixel xy at time t_ns, velocity 0; returns their (M,) ids.

        position_std_px (scalar or (M,)) overrides the configured seed accuracy.
        """
        positions_px = np.asarray(positions_px, dtype=np.float64).reshape(-1, 2)
        if not np.isfinite(positions_px).all():
            raise ValueError("add_tracks: positions must be finite")
        m = positions_px.shape[0]
        std = self.config.seed_position_std_px if position_std_px is None else position_std_px
        P0 = kalman.initial_covariance(m, 1.0, self.config.seed_velocity_std_px_s)
        P0[:, 0, 0] = P0[:, 1, 1] = np.broadcast_to(np.asarray(std, np.float64), (m,)) ** 2
        x0 = np.zeros((m, 4))
        x0[:, :2] = positions_px
        return self.tracks.add(t_ns, x0, P0, source)

    def apply(self, obs: Observations) -> FusionResult:
        """Fuse one observation array (or buffer it, with a reorder window); returns counts."""
        _check_shapes(obs)
        if self.config.reorder_window_ms <= 0:
            return self._apply_now(obs)
        heapq.heappush(self._buffer, (int(obs.t_ns), self._arrivals, obs))
        self._arrivals += 1
        newest = int(obs.t_ns) if self._newest_ns is None else self._newest_ns
        self._newest_ns = max(newest, int(obs.t_ns))
        release_ns = self._newest_ns - int(self.config.reorder_window_ms * 1e6)
        result = FusionResult()
        while self._buffer and self._buffer[0][0] <= release_ns:
            result = result + self._apply_now(heapq.heappop(self._buffer)[2])
        return result

    def flush(self) -> FusionResult:
        """Apply every buffered observation array in timestamp order."""
        result = FusionResult()
        while self._buffer:
            result = result + self._apply_now(heapq.heappop(self._buffer)[2])
        return result

    def _apply_now(self, obs: Observations) -> FusionResult:
        cfg, tab = self.config, self.tracks
        n = len(obs)
        if cfg.mode is FusionMode.SINGLE_SOURCE and obs.source != cfg.source:
            return FusionResult(ignored_source=n, arrays=1)
        t_ns = int(obs.t_ns)
        valid = _valid_entries(obs)
        if len(tab) == 0:  # every id is unknown
            n_invalid = 0 if valid is None else int(n - valid.sum())
            return FusionResult(unknown_ids=n - n_invalid, invalid=n_invalid, arrays=1)
        rows, found = tab.rows_of(obs.ids)
        if valid is None:  # the common case: every entry is usable
            use = found & (tab.state_ns[rows] <= t_ns)
            n_invalid, n_unknown = 0, int(n - found.sum())
        else:
            n_invalid, n_unknown = int(n - valid.sum()), int((valid & ~found).sum())
            use = valid & found & (tab.state_ns[rows] <= t_ns)
        n_stale = n - n_invalid - n_unknown - int(use.sum())
        if not use.all():
            rows = rows[use]
            z, R, vis = obs.positions_px[use], obs.covariances[use], obs.visibility[use]
        else:
            z, R, vis = obs.positions_px, obs.covariances, obs.visibility
        if rows.shape[0] > 1 and np.bincount(rows).max() > 1:  # repeated ids
            first = np.zeros(rows.shape[0], dtype=bool)
            first[np.unique(rows, return_index=True)[1]] = True
            n_invalid += int((~first).sum())
            rows, z, R, vis = rows[first], z[first], R[first], vis[first]
        n_gated = self._fuse(t_ns, obs.source, rows, z, R, vis)
        return FusionResult(applied=rows.shape[0] - n_gated, unknown_ids=n_unknown, stale=n_stale,
                            gated=n_gated, invalid=n_invalid, arrays=1)

    def _fuse(self, t_ns: int, source: Source, rows: np.ndarray, z: np.ndarray, R: np.ndarray,
              vis: np.ndarray) -> int:
        """Predict the rows to t_ns and update them; returns how many the gate rejected."""
        cfg, tab = self.config, self.tracks
        calibrated = cfg.calibrated_noise and source in (Source.EVENT, Source.IMAGE)
        if cfg.mode is not FusionMode.NAIVE and fusion_jit.KERNEL.available():
            n_gated = self._fuse_compiled(t_ns, source, rows, z, R, vis, calibrated)
            if n_gated >= 0:
                return n_gated  # else an S that is not positive definite: numpy raises
        if calibrated:
            R = calibrated_covariance(vis, source, cfg)
        dt = (t_ns - tab.state_ns[rows]) * 1e-9
        n_gated = 0
        if cfg.gate_threshold is None and cfg.mode is not FusionMode.NAIVE:
            # predict and update in one kernel (never builds the predicted covariances)
            x, P = kalman.predict_update(tab.x[rows], tab.P[rows], dt, cfg.q, z, R,
                                         cfg.constant_q)
            self._store(t_ns, source, rows, x, P, vis)
            return 0
        x, P = kalman.predict(tab.x[rows], tab.P[rows], dt, cfg.q, cfg.constant_q)
        if cfg.gate_threshold is not None:
            accepted = kalman.mahalanobis_sq(x, P, z, R) <= cfg.gate_threshold
            n_gated = int(rows.shape[0] - accepted.sum())
            if n_gated:
                # a miss: the state stays where it was, the visibility EMA sees 0
                lifecycle.update_visibility(tab, rows[~accepted], np.zeros(n_gated), t_ns, cfg)
                rows, x, P = rows[accepted], x[accepted], P[accepted]
                z, R, vis = z[accepted], R[accepted], vis[accepted]
        if cfg.mode is FusionMode.NAIVE:
            x, P = _replace_position(x, P, z, R)
        else:
            x, P = kalman.update(x, P, z, R)
        self._store(t_ns, source, rows, x, P, vis)
        return n_gated

    def _fuse_compiled(self, t_ns: int, source: Source, rows: np.ndarray, z: np.ndarray,
                       R: np.ndarray, vis: np.ndarray, calibrated: bool) -> int:
        """`_fuse` for the Kalman modes in one numba call (`fusion_jit`); -1: nothing done."""
        cfg, tab = self.config, self.tracks
        if source == Source.EVENT:
            log_r0, slope = cfg.event_noise_log_r0, cfg.event_noise_slope
        else:
            log_r0, slope = cfg.image_noise_log_r0, cfg.image_noise_slope
        gate = cfg.gate_threshold
        return fusion_jit.KERNEL.compiled()(
            tab.x, tab.P, tab.state_ns, tab.last_obs_ns, tab.last_source, tab.n_updates,
            tab.visibility_ema, tab.status, tab.last_confident_ns,
            np.ascontiguousarray(rows, np.int64), int(t_ns), int(source),
            np.ascontiguousarray(z, np.float64), np.ascontiguousarray(R, np.float64),
            np.ascontiguousarray(vis, np.float64), bool(calibrated), float(log_r0),
            float(slope), float(cfg.q), bool(cfg.constant_q), gate is not None,
            float(gate if gate is not None else 0.0), float(cfg.visibility_ema_alpha),
            float(cfg.occlusion_visibility), float(cfg.confident_visibility),
            lifecycle.OCCLUDED_CODE, lifecycle.TRACKED_CODE)

    def _store(self, t_ns: int, source: Source, rows: np.ndarray, x: np.ndarray,
               P: np.ndarray, vis: np.ndarray) -> None:
        """Write the fused rows back to the track table."""
        tab = self.tracks
        tab.x[rows], tab.P[rows] = x, P
        tab.state_ns[rows] = t_ns
        tab.last_obs_ns[rows] = t_ns
        tab.last_source[rows] = int(source)
        tab.n_updates[rows] += 1
        lifecycle.update_visibility(tab, rows, vis, t_ns, self.config)

    def predict_positions(self, t_ns: int,
                          ids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Alive tracks' mean positions predicted to t_ns (crop centres, search starts).

        Args:
            t_ns: query time; tracks whose state is newer are reported at their state time.
            ids: (M,) ids to query; None for all alive tracks. Unknown ids are left out.

        Returns:
            (ids (K,) uint32, positions (K, 2) pixel xy).
        """
        tab = self.tracks
        if ids is None:
            rows = np.arange(len(tab))
        else:
            rows, found = tab.rows_of(np.asarray(ids, dtype=np.uint32))
            rows = rows[found]
        dt = np.maximum(int(t_ns) - tab.state_ns[rows], 0) * 1e-9
        x = tab.x[rows]
        return tab.ids[rows], x[:, :2] + dt[:, None] * x[:, 2:]

    def snapshot(self, t_ns: int | None = None) -> TrackSnapshot:
        """Every track predicted to t_ns (default: the newest state time), lifecycle applied.

        Tracks found LOST here (no confident observation for `lost_after_s`, or predicted out of
        the image by more than the margin) appear once with status LOST and are then removed.
        """
        tab = self.tracks
        if t_ns is None:
            t_ns = int(tab.state_ns.max()) if len(tab) else 0
        dt = np.maximum(int(t_ns) - tab.state_ns, 0) * 1e-9
        x, P = kalman.predict(tab.x, tab.P, dt, self.config.q, self.config.constant_q)
        lost = lifecycle.lost_mask(tab, x[:, :2], int(t_ns), self.config)
        if self._dropped.size:
            lost |= np.isin(tab.ids, self._dropped)
            self._dropped = np.zeros(0, np.uint32)
        tab.status[lost] = TrackStatus.LOST
        snap = TrackSnapshot(
            t_ns=int(t_ns), ids=tab.ids.copy(), positions_px=x[:, :2].copy(),
            velocities_px_s=x[:, 2:].copy(), covariances=P[:, :2, :2].copy(),
            status=tab.status.copy(), last_source=tab.last_source.copy(),
            age_s=(int(t_ns) - tab.birth_ns) * 1e-9, state_covariances=P)
        if lost.any():
            tab.remove(lost)
        return snap


def calibrated_covariance(visibility: np.ndarray, source: Source,
                          config: FusionConfig) -> np.ndarray:
    """(N, 2, 2) R = r I with log r = log_r0 + slope * (1 - visibility), per network source.

    The paper's mapping r = r_max (1 - p_vis)^b is exponential in log(1 - p_vis); the networks'
    visibility outputs are not calibrated as probabilities, so its r collapses to the floor
    for almost every observation and the filter trusts every observation equally. This mapping
    is fitted (log of the per-axis error variance against 1 - p_vis, binned by deciles) on
    validation sequences; see weights/README.md for the fit and its data.
    """
    if source == Source.EVENT:
        log_r0, slope = config.event_noise_log_r0, config.event_noise_slope
    else:
        log_r0, slope = config.image_noise_log_r0, config.image_noise_slope
    r = np.exp(log_r0 + slope * (1.0 - np.clip(visibility, 0.0, 1.0)))
    R = np.zeros((visibility.shape[0], 2, 2))
    R[:, 0, 0] = R[:, 1, 1] = r
    return R


def _replace_position(x: np.ndarray, P: np.ndarray, z: np.ndarray,
                      R: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Naive fusion: position := z, its covariance := R, no position-velocity correlation."""
    x, P = x.copy(), P.copy()
    x[:, :2] = z
    P[:, :2, :] = 0.0
    P[:, :, :2] = 0.0
    P[:, :2, :2] = R
    return x, P
