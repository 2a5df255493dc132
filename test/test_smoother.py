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
