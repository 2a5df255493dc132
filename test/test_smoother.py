"""The offline RTS smoother against the batch least-squares solution of the same model."""

import numpy as np
import pytest

from blinktrack_ros import kalman
from blinktrack_ros.tracking.offline import TrackLog
from blinktrack_ros.tracking.smoother import rts_smooth

Q = 1.0e4
R = 2.0


def _filter_track(rng, times, observed, m0, P0):
    """Kalman filter a random constant-velocity track; returns logged states and the
    measurements (None where a step only predicts)."""
    xs, Ps, zs = [], [], []
    x, P = m0[None].copy(), P0[None].copy()
    for k, t in enumerate(times):
        if k:
            x, P = kalman.predict(x, P, t - times[k - 1], Q)
        z = None
        if observed[k]:
            z = rng.normal(size=2) * 3 + 50
            x, P = kalman.update(x, P, z[None], np.eye(2)[None] * R)
        xs.append(x[0].copy()), Ps.append(P[0].copy()), zs.append(z)
    return np.array(xs), np.array(Ps), zs


def _batch_solution(times, zs, m0, P0):
    """argmin of the joint Gaussian: prior + process + measurement terms (dense normal
    equations), i.e. the mean of every state given all measurements."""
    k = len(times)
    A = np.zeros((4 * k, 4 * k))
    b = np.zeros(4 * k)
    Pi = np.linalg.inv(P0)
    A[:4, :4] += Pi
    b[:4] += Pi @ m0
    H = np.eye(4)[:2]
    for i in range(k):
        if zs[i] is not None:
            A[4 * i:4 * i + 4, 4 * i:4 * i + 4] += H.T @ H / R
            b[4 * i:4 * i + 4] += H.T @ zs[i] / R
        if i + 1 < k:
            dt = times[i + 1] - times[i]
            F = kalman.transition(dt, 1, np.zeros(1))[0]
            Qi = np.linalg.inv(kalman.process_noise(dt, Q, 1, np.zeros(1))[0])
            s, n = slice(4 * i, 4 * i + 4), slice(4 * i + 4, 4 * i + 8)
            A[s, s] += F.T @ Qi @ F
            A[n, n] += Qi
            A[s, n] -= F.T @ Qi
            A[n, s] -= Qi @ F
    return np.linalg.solve(A, b).reshape(k, 4), np.linalg.inv(A)


def test_rts_matches_batch_least_squares_for_interleaved_tracks():
    rng = np.random.default_rng(3)
    ids, ts, xs, Ps, refs, ref_covs = [], [], [], [], [], []
    for track in range(3):
        times = np.sort(rng.choice(np.arange(40) * 0.005, size=25 - 4 * track, replace=False))
        observed = rng.random(times.shape[0]) < 0.5
        observed[0] = True
        m0 = np.array([50.0, 50.0, 0.0, 0.0])
        P0 = np.diag([1.0, 1.0, 2500.0, 2500.0])
        x, P, zs = _filter_track(rng, times, observed, m0, P0)
        ref, cov = _batch_solution(times, zs, m0, P0)
        ids.append(np.full(times.shape[0], track)), ts.append(times)
        xs.append(x), Ps.append(P), refs.append(ref)
        ref_covs.append(np.array([cov[4 * i:4 * i + 4, 4 * i:4 * i + 4]
                                  for i in range(times.shape[0])]))
    perm = rng.permutation(sum(t.shape[0] for t in ts))  # row order must not matter
    ids, ts = np.concatenate(ids)[perm], np.concatenate(ts)[perm]
    xs, Ps = np.concatenate(xs)[perm], np.concatenate(Ps)[perm]
    ref, ref_cov = np.concatenate(refs)[perm], np.concatenate(ref_covs)[perm]
    sm, sP = rts_smooth(ids, ts, xs, Ps, Q)
    np.testing.assert_allclose(sm, ref, atol=1e-6, rtol=1e-6)
    np.testing.assert_allclose(sP, ref_cov, atol=1e-6, rtol=1e-5)
    # a track's newest state is filtered and smoothed alike; earlier ones are more certain
    for track in range(3):
        rows = np.flatnonzero(ids == track)
        last = rows[np.argmax(ts[rows])]
        np.testing.assert_allclose(sm[last], xs[last])
        assert (np.trace(sP[rows], axis1=1, axis2=2)
                <= np.trace(Ps[rows], axis1=1, axis2=2) + 1e-9).all()


def test_rts_rejects_repeated_times_and_bad_input():
    x, P = np.zeros((2, 4)), np.tile(np.eye(4), (2, 1, 1))
    with pytest.raises(ValueError, match="repeated"):
        rts_smooth(np.array([1, 1]), np.array([0.1, 0.1]), x, P, Q)
    with pytest.raises(ValueError, match="non-finite"):
        rts_smooth(np.array([1, 2]), np.array([0.1, np.nan]), x, P, Q)
    with pytest.raises(ValueError, match="shapes"):
        rts_smooth(np.array([1, 2]), np.array([0.1, 0.2]), x[:1], P, Q)


def test_tracklog_smoothing_needs_the_states():
    log = TrackLog()
    log.rows.append(np.array([[1.0, 0.0, 2.0, 3.0, 0.0]]))
    from blinktrack_ros.tracking.fusion_types import FusionConfig

    with pytest.raises(ValueError, match="keep_state"):
        log.as_rows(smooth=FusionConfig())


def _log_with_states(rows, velocities):
    log = TrackLog(keep_state=True)
    log.rows.append(np.asarray(rows, np.float64))
    states = np.zeros((len(rows), 18))
    states[:, :2] = velocities
    log.states.append(states)
    return log


def test_predicted_rows_are_the_causal_constant_velocity_extrapolation():
    # track 1: rows at 0 and 33 ms; track 2: rows 5 ms apart (no gap of a 10 ms window)
    rows = [[1, 0, 10.0, 20.0, 0], [1, 33e6, 99.0, 99.0, 1],
            [2, 0, 5.0, 5.0, 0], [2, 5e6, 6.0, 5.0, 0]]
    vel = [[100.0, -50.0], [0.0, 0.0], [200.0, 0.0], [200.0, 0.0]]
    out = _log_with_states(rows, vel).as_rows(predict_every_ns=10_000_000)
    one = out[out[:, 0] == 1]
    np.testing.assert_allclose(one[:, 1], [0, 0.01, 0.02, 0.03, 0.033])
    k = np.arange(1, 4)
    np.testing.assert_allclose(one[1:4, 2], 10.0 + 100.0 * 0.01 * k)
    np.testing.assert_allclose(one[1:4, 3], 20.0 - 50.0 * 0.01 * k)
    assert (one[1:4, 4] == 0).all()  # the earlier row's status
    np.testing.assert_allclose(out[out[:, 0] == 2][:, 1], [0, 0.005])  # nothing inserted
    # causal: the later row does not change the inserted ones; nothing after a last row
    rows[1][2:4] = [-500.0, 700.0]
    again = _log_with_states(rows, vel).as_rows(predict_every_ns=10_000_000)
    np.testing.assert_allclose(again[again[:, 0] == 1][1:4], one[1:4])
    assert again[:, 1].max() == pytest.approx(0.033)


def test_predicted_rows_need_the_states_and_no_smoothing():
    from blinktrack_ros.tracking.fusion_types import FusionConfig

    log = TrackLog()
    log.rows.append(np.array([[1.0, 0.0, 2.0, 3.0, 0.0], [1.0, 5e7, 2.0, 3.0, 0.0]]))
    with pytest.raises(ValueError, match="keep_state"):
        log.as_rows(predict_every_ns=10_000_000)
    full = _log_with_states(log.rows[0], np.zeros((2, 2)))
    with pytest.raises(ValueError, match="no smoothing"):
        full.as_rows(smooth=FusionConfig(), predict_every_ns=10_000_000)
    with pytest.raises(ValueError, match="> 0"):
        full.as_rows(predict_every_ns=0)


def _random_snapshots(rng, frame_every=3, steps=14, window_at_frames=False):
    """Fused snapshots of three tracks filtered with the package's Kalman functions: event
    windows every 10 ms, every frame_every-th step a frame (with window_at_frames, an event
    window ending at the frame's time is fused right after it); track 2 is born late and
    track 3 dies early. Returns [(snapshot, is_frame)]."""
    from blinktrack_ros.tracking.fusion_types import TrackSnapshot

    state = {}
    out = []
    updates = []
    for k in range(steps):
        updates.append((k, k % frame_every == 0))
        if window_at_frames and k % frame_every == 0 and k:
            updates.append((k, False))
    for k, frame in updates:
        t = k * 0.01
        alive = [i for i in (1, 2, 3) if not (i == 2 and k < 2) and not (i == 3 and k > 7)]
        for i in alive:
            if i not in state:
                state[i] = (np.array([[50.0 + 10 * i, 40.0, 0.0, 0.0]]),
                            np.diag([1.0, 1.0, 2500.0, 2500.0])[None], t)
            x, P, t0 = state[i]
            if t > t0:
                x, P = kalman.predict(x, P, t - t0, Q)
            r = 0.5 if frame else 4.0
            z = np.array([[50.0 + 10 * i + 300 * t, 40.0 + 100 * t]]) + rng.normal(size=2)
            x, P = kalman.update(x, P, z, np.eye(2)[None] * r)
            state[i] = (x, P, t)
        for i in [i for i in state if i not in alive]:
            del state[i]
        ids = np.array(sorted(state), np.uint32)
        X = np.concatenate([state[i][0] for i in ids])
        Pm = np.concatenate([state[i][1] for i in ids])
        n = ids.size
        out.append((TrackSnapshot(int(round(t * 1e9)), ids, X[:, :2].copy(), X[:, 2:].copy(),
                                  Pm[:, :2, :2].copy(), np.zeros(n, np.uint8),
                                  np.zeros(n, np.uint8), np.zeros(n), Pm.copy()), frame))
    return out


@pytest.mark.parametrize("window_at_frames", [False, True])
def test_fixed_lag_smoother_is_rts_over_the_log_cut_at_the_next_frame(window_at_frames):
    from blinktrack_ros.tracking.fusion_types import FusionConfig
    from blinktrack_ros.tracking.smoother import FixedLagSmoother

    snaps = _random_snapshots(np.random.default_rng(5), window_at_frames=window_at_frames)
    smoother = FixedLagSmoother(Q)
    got = []
    for snap, frame in snaps:
        got += smoother.add(snap, frame=frame)
    got += smoother.flush()
    frames = sorted({s.t_ns for s, f in snaps if f})
    # the last row of each (id, time), as the metrics keep (a window fused after the frame at
    # the frame's time supersedes the frame's row)
    last = {}
    for s, _ in snaps:
        for r, i in enumerate(s.ids):
            last[(int(i), s.t_ns)] = (np.concatenate([s.positions_px[r], s.velocities_px_s[r]]),
                                      s.state_covariances[r])
    refined = {}
    for g in got:
        assert g.t_ns not in frames and frames[0] < g.t_ns < frames[-1]
        cut = next(f for f in frames if f > g.t_ns)
        # independent path: the whole deduplicated log up to that frame, smoothed with the
        # offline RTS (whose equality to the batch least-squares solution is tested above)
        keys = [k for k in last if k[1] <= cut]
        ids = np.array([k[0] for k in keys])
        t_s = np.array([k[1] * 1e-9 for k in keys])
        x = np.array([last[k][0] for k in keys])
        P = np.array([last[k][1] for k in keys])
        full, _ = rts_smooth(ids, t_s, x, P, Q)
        for i, pos in zip(g.ids, g.positions_px):
            row = keys.index((int(i), g.t_ns))
            np.testing.assert_allclose(pos, full[row, :2], atol=1e-9)
            refined[(int(i), g.t_ns)] = pos
    windows = {(int(i), s.t_ns) for s, f in snaps if not f and s.t_ns not in frames
               and s.t_ns < frames[-1] for i in s.ids}
    assert set(refined) == windows  # every window between two frames, once
    filtered = {k: v[0][:2] for k, v in last.items()}
    moved = [np.abs(p - filtered[key]).max() for key, p in refined.items()]
    assert len(refined) >= 10 and max(moved) > 0.1  # the smoothing did change the windows
    # track 3 ends at step 7 (inside an interval): its last state stays the filtered one
    np.testing.assert_allclose(refined[(3, 70_000_000)], filtered[(3, 70_000_000)])
    # the offline rows with smooth_until_ns give the same positions
    log = TrackLog(keep_state=True)
    for s, _ in snaps:
        log.add(type("U", (), {"tracks": s})())
    rows = log.as_rows(smooth=FusionConfig(q=Q), smooth_until_ns=np.array(frames, np.float64))
    for (i, t), pos in refined.items():
        r = rows[(rows[:, 0] == i) & np.isclose(rows[:, 1], t * 1e-9)][0]
        np.testing.assert_allclose(r[2:4], pos, atol=1e-9)
    # rows at frames and after the last frame are the filtered ones offline too
    for r in rows:
        key = (int(r[0]), int(round(r[1] * 1e9)))
        if key[1] in frames or key[1] > frames[-1]:
            np.testing.assert_allclose(r[2:4], filtered[key], atol=1e-9)


def test_fixed_lag_smoother_bounds_and_restarts():
    from dataclasses import replace

    from blinktrack_ros.tracking.smoother import FixedLagSmoother

    snaps = _random_snapshots(np.random.default_rng(6), frame_every=100, steps=12)
    smoother = FixedLagSmoother(Q, max_pending=4)
    for s, _ in snaps[1:]:
        assert smoother.add(s) == []
    assert smoother.dropped == 11 - 4
    assert smoother.flush() == []  # no frame yet: nothing to close, the windows wait
    # a snapshot older than the newest one held (a late frame join) restarts the interval
    assert smoother.add(snaps[0][0], frame=True) == []
    assert smoother.dropped == 11
    with pytest.raises(ValueError, match="state_covariances"):
        smoother.add(replace(snaps[0][0], state_covariances=None))
