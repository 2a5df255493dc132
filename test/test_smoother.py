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


def _random_snapshots(rng, frame_every=3, steps=14):
    """Fused snapshots of three tracks filtered with the package's Kalman functions: event
    windows every 10 ms, every frame_every-th step a frame; track 2 is born late and track 3
    dies early. Returns [(snapshot, is_frame)]."""
    from blinktrack_ros.tracking.fusion_types import TrackSnapshot

    state = {}
    out = []
    for k in range(steps):
        t = k * 0.01
        frame = k % frame_every == 0
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


def test_fixed_lag_smoother_is_rts_over_the_log_cut_at_the_next_frame():
    from blinktrack_ros.tracking.fusion_types import FusionConfig
    from blinktrack_ros.tracking.smoother import FixedLagSmoother

    snaps = _random_snapshots(np.random.default_rng(5))
    smoother = FixedLagSmoother(Q)
    refined = {}
    for k, (snap, frame) in enumerate(snaps):
        got = smoother.add(snap, frame=frame)
        if not frame:
            assert got == []
            continue
        # independent path: the whole log up to this frame, smoothed with the offline RTS
        # (whose equality to the batch least-squares solution is tested above)
        upto = [s for s, _ in snaps[:k + 1]]
        ids = np.concatenate([s.ids for s in upto]).astype(np.int64)
        t_s = np.concatenate([np.full(len(s), s.t_ns * 1e-9) for s in upto])
        x = np.concatenate([np.concatenate([s.positions_px, s.velocities_px_s], 1)
                            for s in upto])
        P = np.concatenate([s.state_covariances for s in upto])
        full, _ = rts_smooth(ids, t_s, x, P, Q)
        prev_frame = max([j for j in range(k) if snaps[j][1]], default=-1)
        window_snaps = [s for s, _ in snaps[prev_frame + 1:k]]
        assert [g.t_ns for g in got] == [s.t_ns for s in window_snaps]
        for g in got:
            for i, pos in zip(g.ids, g.positions_px):
                # smoothing over the rest of the interval equals the full smoother on the log
                # cut at this frame (every later state is in the interval)
                row = np.flatnonzero((ids == i) & np.isclose(t_s, g.t_ns * 1e-9))[0]
                np.testing.assert_allclose(pos, full[row, :2], atol=1e-9)
                refined[(int(i), g.t_ns)] = pos
    filtered = {(int(i), s.t_ns): p for s, _ in snaps for i, p in zip(s.ids, s.positions_px)}
    moved = [np.abs(p - filtered[key]).max() for key, p in refined.items()]
    assert len(refined) >= 10 and max(moved) > 0.1  # the smoothing did change the windows
    # track 3 ends at step 7 (inside an interval): its last state stays the filtered one
    last3 = next(s for s, _ in snaps[7:8])
    np.testing.assert_allclose(refined[(3, last3.t_ns)],
                               last3.positions_px[last3.ids == 3][0])
    # the offline rows with smooth_until_ns give the same positions
    log = TrackLog(keep_state=True)
    for s, _ in snaps:
        log.add(type("U", (), {"tracks": s})())
    frames = np.array([s.t_ns for s, f in snaps if f], np.float64)
    rows = log.as_rows(smooth=FusionConfig(q=Q), smooth_until_ns=frames)
    for (i, t), pos in refined.items():
        r = rows[(rows[:, 0] == i) & np.isclose(rows[:, 1], t * 1e-9)][0]
        np.testing.assert_allclose(r[2:4], pos, atol=1e-9)
    # after the last frame nothing is smoothed offline either
    after = rows[rows[:, 1] > frames[-1] * 1e-9 + 1e-12]
    tail = {(int(i), s.t_ns): p for s, _ in snaps if s.t_ns > frames[-1]
            for i, p in zip(s.ids, s.positions_px)}
    assert len(after) == len(tail) > 0
    for r in after:
        np.testing.assert_allclose(r[2:4], tail[(int(r[0]), int(round(r[1] * 1e9)))])


def test_fixed_lag_smoother_bounds_and_restarts():
    from blinktrack_ros.tracking.smoother import FixedLagSmoother

    snaps = _random_snapshots(np.random.default_rng(6), frame_every=100, steps=12)
    smoother = FixedLagSmoother(Q, max_pending=4)
    for s, _ in snaps[1:]:
        assert smoother.add(s) == []
    assert smoother.dropped == 11 - 4
    # a snapshot older than the newest pending one (a late frame join) restarts the interval
    assert smoother.add(snaps[0][0], frame=True) == []
    assert smoother.dropped == 11
    with pytest.raises(ValueError, match="state_covariances"):
        from dataclasses import replace

        smoother.add(replace(snaps[0][0], state_covariances=None))
