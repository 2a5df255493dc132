"""The fusion engine's per-array update in one compiled pass (numba): the fast path of
`FusionEngine._fuse` for the Kalman modes.

For each fused row: predict the constant-velocity state to the array's time (white-acceleration
Q, `kalman.process_noise`), the optional Mahalanobis gate (`kalman.mahalanobis_sq`), the
Joseph-form update (`kalman._update_numpy`: the same algebra, `M - (M H' - K R) K'` then
symmetrised), the calibrated R of the network sources (`engine.calibrated_covariance`), and
the track table bookkeeping (`FusionEngine._store`, `lifecycle.update_visibility`). At the
64 tracks of a live window the numpy code is ~20 small array calls per step and costs ~0.3 ms;
here it is one loop. The numbers equal the numpy code's to rounding (the tests compare them on
random tables, with and without gate and calibrated noise).

numba is optional (`blinktrack_ros.jit`): without the compiled kernel the engine runs numpy.
"""

from __future__ import annotations

import math

import numpy as np

from blinktrack_ros.jit import Kernel


def _fuse_rows(x_tab, P_tab, state_ns, last_obs_ns, last_source, n_updates, vis_ema, status,
               last_conf_ns, rows, t_ns, source, z, R, vis, calibrated, log_r0, slope, q,
               constant_q, gated, gate, alpha, occl_vis, conf_vis, occluded, tracked):
    """Fuse observations into table rows in place (the Python source numba compiles).

    Args:
        x_tab: (N, 4) `TrackTable.x`, updated in place (as the columns below).
        P_tab: (N, 4, 4) `TrackTable.P`.
        state_ns: (N,) `TrackTable.state_ns`.
        last_obs_ns: (N,) `TrackTable.last_obs_ns`.
        last_source: (N,) `TrackTable.last_source`.
        n_updates: (N,) `TrackTable.n_updates`.
        vis_ema: (N,) `TrackTable.visibility_ema`.
        status: (N,) `TrackTable.status`.
        last_conf_ns: (N,) `TrackTable.last_confident_ns`.
        rows: (M,) int64 table rows to fuse (distinct).
        t_ns: the observation time, ns (every row's state is at or before it).
        source: the observations' source code.
        z: (M, 2) observed positions, px.
        R: (M, 2, 2) observation covariances (not read when `calibrated`).
        vis: (M,) visibilities.
        calibrated: R = exp(log_r0 + slope (1 - clip(vis, 0, 1))) I instead of `R`.
        log_r0: of the calibrated R.
        slope: of the calibrated R.
        q: white-acceleration density, px^2/s^3 (`kalman.predict`).
        constant_q: add Q(1 s) whatever the elapsed time (ablation).
        gated: reject rows with a squared Mahalanobis distance above `gate`: their state
            stays, their visibility EMA sees 0.
        gate: the threshold (read when gated).
        alpha: visibility EMA weight (`lifecycle.update_visibility`).
        occl_vis: OCCLUDED below this EMA.
        conf_vis: a visibility at or above this refreshes last_conf_ns.
        occluded: the OCCLUDED status code.
        tracked: the TRACKED status code.

    Returns:
        the number of gated rows, or -1 when some S = H P H' + R is not positive definite
        (nothing was written then; the caller raises as `kalman.update` does).
    """
    m = rows.shape[0]
    xs = np.empty((m, 4))
    Ps = np.empty((m, 4, 4))
    Rs = np.empty((m, 2, 2))
    for k in range(m):  # predict, and check S, before anything is written
        r = rows[k]
        dt = (t_ns - state_ns[r]) * 1e-9
        dq = 1.0 if constant_q else dt
        qdt = q * dq
        qvv = qdt
        qpv = qdt * dq / 2.0
        qpp = qdt * dq * dq / 3.0
        for i in range(4):
            xs[k, i] = x_tab[r, i]
        xs[k, 0] += dt * x_tab[r, 2]
        xs[k, 1] += dt * x_tab[r, 3]
        # F P F' with F = I + dt G (G moves velocity into position), then + Q
        A = np.empty((4, 4))
        for i in range(4):
            for j in range(4):
                A[i, j] = P_tab[r, i, j]
        for j in range(4):  # rows 0, 1 of F P: P[i] + dt P[i + 2]
            A[0, j] += dt * P_tab[r, 2, j]
            A[1, j] += dt * P_tab[r, 3, j]
        for i in range(4):  # (F P) F': columns 0, 1 + dt columns 2, 3
            A[i, 0] += dt * A[i, 2]
            A[i, 1] += dt * A[i, 3]
        A[0, 0] += qpp
        A[1, 1] += qpp
        A[0, 2] += qpv
        A[2, 0] += qpv
        A[1, 3] += qpv
        A[3, 1] += qpv
        A[2, 2] += qvv
        A[3, 3] += qvv
        for i in range(4):
            for j in range(4):
                Ps[k, i, j] = A[i, j]
        if calibrated:
            v = min(max(vis[k], 0.0), 1.0)
            rr = math.exp(log_r0 + slope * (1.0 - v))
            Rs[k, 0, 0] = rr
            Rs[k, 1, 1] = rr
            Rs[k, 0, 1] = 0.0
            Rs[k, 1, 0] = 0.0
        else:
            for i in range(2):
                for j in range(2):
                    Rs[k, i, j] = R[k, i, j]
        s00 = A[0, 0] + Rs[k, 0, 0]
        det = s00 * (A[1, 1] + Rs[k, 1, 1]) - (A[0, 1] + Rs[k, 0, 1]) * (A[1, 0] + Rs[k, 1, 0])
        if not (det > 0.0 and s00 > 0.0):  # also NaN
            return -1
    n_gated = 0
    for k in range(m):
        r = rows[k]
        P = Ps[k]
        s00 = P[0, 0] + Rs[k, 0, 0]
        s01 = P[0, 1] + Rs[k, 0, 1]
        s10 = P[1, 0] + Rs[k, 1, 0]
        s11 = P[1, 1] + Rs[k, 1, 1]
        det = s00 * s11 - s01 * s10
        y0 = z[k, 0] - xs[k, 0]
        y1 = z[k, 1] - xs[k, 1]
        if gated:
            # y' S^-1 y with S^-1 = [[s11, -s01], [-s10, s00]] / det
            d2 = (y0 * (s11 * y0 - s01 * y1) + y1 * (-s10 * y0 + s00 * y1)) / det
            if not d2 <= gate:
                n_gated += 1
                ema = alpha * 0.0 + (1.0 - alpha) * vis_ema[r]
                vis_ema[r] = ema
                status[r] = occluded if ema < occl_vis else tracked
                if 0.0 >= conf_vis:
                    last_conf_ns[r] = t_ns
                continue
        # K = P H' S^-1 (4 x 2)
        K = np.empty((4, 2))
        for i in range(4):
            K[i, 0] = (P[i, 0] * s11 - P[i, 1] * s10) / det
            K[i, 1] = (-P[i, 0] * s01 + P[i, 1] * s00) / det
        for i in range(4):
            x_tab[r, i] = xs[k, i] + K[i, 0] * y0 + K[i, 1] * y1
        # M = P - K (H P);  P = M - (M H' - K R) K'
        M = np.empty((4, 4))
        for i in range(4):
            for j in range(4):
                M[i, j] = P[i, j] - (K[i, 0] * P[0, j] + K[i, 1] * P[1, j])
        B = np.empty((4, 2))
        for i in range(4):
            for j in range(2):
                B[i, j] = M[i, j] - (K[i, 0] * Rs[k, 0, j] + K[i, 1] * Rs[k, 1, j])
        for i in range(4):
            for j in range(4):
                M[i, j] -= B[i, 0] * K[j, 0] + B[i, 1] * K[j, 1]
        for i in range(4):
            for j in range(4):
                P_tab[r, i, j] = 0.5 * (M[i, j] + M[j, i])
        state_ns[r] = t_ns
        last_obs_ns[r] = t_ns
        last_source[r] = source
        n_updates[r] += 1
        ema = alpha * vis[k] + (1.0 - alpha) * vis_ema[r]
        vis_ema[r] = ema
        status[r] = occluded if ema < occl_vis else tracked
        if vis[k] >= conf_vis:
            last_conf_ns[r] = t_ns
    return n_gated


def _check(kernel) -> None:
    """Compile; one track at rest at the origin, observed at (1, 0) with R = P: x -> 0.5."""
    x = np.zeros((1, 4))
    P = np.zeros((1, 4, 4))
    P[0, 0, 0] = P[0, 1, 1] = 1.0
    P[0, 2, 2] = P[0, 3, 3] = 1.0
    cols = (np.zeros(1, np.int64), np.zeros(1, np.int64), np.zeros(1, np.uint8),
            np.zeros(1, np.int64), np.ones(1), np.zeros(1, np.uint8), np.zeros(1, np.int64))
    R = np.eye(2)[None].copy()
    got = kernel(x, P, *cols, np.zeros(1, np.int64), 0, 1, np.array([[1.0, 0.0]]), R,
                 np.ones(1), False, 0.0, 0.0, 0.0, False, False, 9.0, 0.5, 0.3, 0.6,
                 np.uint8(1), np.uint8(0))
    if got != 0 or abs(x[0, 0] - 0.5) > 1e-12 or abs(P[0, 0, 0] - 0.5) > 1e-12:
        raise RuntimeError(f"a one-track update gave x {x[0, 0]}, P {P[0, 0, 0]}")


KERNEL = Kernel(_fuse_rows, _check, "the fusion kernel")


def backend() -> str:
    """What fuses the Kalman modes' arrays here: "numba", or "numpy" (numba missing or the
    kernel failed its check; the reason in `KERNEL.error()`)."""
    return "numba" if KERNEL.available() else "numpy"
