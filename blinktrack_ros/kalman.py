"""Batched constant-velocity Kalman filter over N tracks (numpy float64 or differentiable torch).

State per track x = [px, py, vx, vy] (pixels, pixels/s); measurement z = [px, py] with H = [I 0].
Every function takes the state explicitly and returns the new one; numpy in gives numpy out, torch
in gives torch out (batched, differentiable, same formulas). Shapes:

    x (N, 4)   P (N, 4, 4)   dt scalar or (N,) seconds   z (N, 2) pixel xy   R (N, 2, 2) px^2

Any number of leading batch axes may replace N (e.g. (B, N, 4) in training); dt and q then
broadcast against x.shape[:-1].

Process noise Q(dt) comes from a continuous white-acceleration model with spectral density q
(px^2/s^3): per axis q * [[dt^3/3, dt^2/2], [dt^2/2, dt]]. The reference code instead adds Q(1)
whatever the elapsed time; `constant_q=True` reproduces that for ablations only.

The 2x2 innovation covariance S is inverted in closed form (adjugate over determinant): that is
an exact solve of a 2x2 system, the fastest one for large batches, and never a pseudo-inverse. A
singular S (determinant 0) gives inf/nan, which `update` reports by raising; callers keep R > 0.
"""

from __future__ import annotations

from typing import Any

import numpy as np

Array = Any  # np.ndarray or torch.Tensor: every function returns the type it was given

# H = [I 0]: the measurement picks the position out of the state.
H = np.array([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]])


def _is_torch(a: Array) -> bool:
    return type(a).__module__.startswith("torch")


def _like(values: np.ndarray, ref: Array) -> Array:
    """A constant numpy array as the backend, dtype and device of ref."""
    if _is_torch(ref):
        import torch

        return torch.as_tensor(values, dtype=ref.dtype, device=ref.device)
    return values


def _per_track(v: Array | float, batch: int | tuple[int, ...], ref: Array) -> Array:
    """A scalar or per-track value broadcast to the batch shape, in ref's backend."""
    batch = (batch,) if isinstance(batch, int) else tuple(batch)
    if _is_torch(ref):
        import torch

        return torch.as_tensor(v, dtype=ref.dtype, device=ref.device).expand(batch)
    return np.broadcast_to(np.asarray(v, dtype=np.float64), batch)


def _stack(parts: list, axis: int, ref: Array) -> Array:
    if _is_torch(ref):
        import torch

        return torch.stack(parts, dim=axis)
    return np.stack(parts, axis=axis)


def _t(a: Array) -> Array:
    """Transpose the last two axes (works for numpy and torch)."""
    return a.swapaxes(-1, -2)


def transition(dt: Array | float, batch: int | tuple[int, ...], like: Array) -> Array:
    """Constant-velocity transition matrices F(dt), (*batch, 4, 4): position += velocity * dt."""
    dt = _per_track(dt, batch, like)
    shift = _like(np.array([[0, 0, 1.0, 0], [0, 0, 0, 1.0], [0] * 4, [0] * 4]), like)
    return _like(np.eye(4), like) + dt[..., None, None] * shift


def process_noise(dt: Array | float, q: Array | float, batch: int | tuple[int, ...],
                  like: Array) -> Array:
    """White-acceleration process noise Q(dt), (*batch, 4, 4); q scalar or per track."""
    dt = _per_track(dt, batch, like)
    q = _per_track(q, batch, like)
    qpp, qpv, qvv = q * dt**3 / 3.0, q * dt**2 / 2.0, q * dt
    zero = qpp * 0.0
    rows = [[qpp, zero, qpv, zero], [zero, qpp, zero, qpv],
            [qpv, zero, qvv, zero], [zero, qpv, zero, qvv]]
    return _stack([_stack(r, -1, like) for r in rows], -2, like)  # *batch 4 4


def initial_covariance(n: int, position_std_px: float = 1.0, velocity_std_px_s: float = 50.0,
                       like: Array | None = None) -> Array:
    """Diagonal initial covariance P0, (N, 4, 4): seed accuracy and velocity prior (1 sigma)."""
    diag = np.array([position_std_px**2] * 2 + [velocity_std_px_s**2] * 2)
    P0 = np.tile(np.diag(diag), (n, 1, 1))
    return P0 if like is None else _like(P0, like)


def predict(x: Array, P: Array, dt: Array | float, q: Array | float,
            constant_q: bool = False) -> tuple[Array, Array]:
    """Predict N tracks forward by dt seconds; returns (x, P) with the input's shapes and type.

    Args:
        x: (N, 4) states [px, py, vx, vy].
        P: (N, 4, 4) covariances.
        dt: elapsed time in seconds, scalar or (N,); 0 leaves the track unchanged.
        q: white-acceleration spectral density in px^2/s^3, scalar or (N,).
        constant_q: add Q(1 s) whatever dt (the reference code's behaviour; ablation only).
    """
    if _is_torch(x):
        return _predict_textbook(x, P, dt, q, constant_q)
    if x.ndim == 2:
        if x.shape[1] != 4 or P.shape != (x.shape[0], 4, 4):
            raise ValueError(f"predict: shapes x {x.shape}, P {P.shape} are not (N, 4), (N, 4, 4)")
        return _predict_numpy(x, P, dt, q, constant_q)
    batch = x.shape[:-1]  # flatten leading axes for the (N, ...) kernel

    def flat(v: np.ndarray | float) -> np.ndarray:
        return np.broadcast_to(np.asarray(v, dtype=np.float64), batch).reshape(-1)

    x_new, P_new = _predict_numpy(x.reshape(-1, 4), P.reshape(-1, 4, 4), flat(dt), flat(q),
                                  constant_q)
    return x_new.reshape(x.shape), P_new.reshape(P.shape)


def _predict_textbook(x: Array, P: Array, dt: Array | float, q: Array | float,
                      constant_q: bool) -> tuple[Array, Array]:
    """Predict with explicit F and Q matrices (torch path: differentiable, batched)."""
    batch = tuple(x.shape[:-1])
    F = transition(dt, batch, x)
    Q = process_noise(1.0 if constant_q else dt, q, batch, x)
    # x = F x
    x_new = (F @ x[..., None])[..., 0]
    # P = F P F' + Q
    P_new = F @ P @ _t(F) + Q
    return x_new, P_new


def _predict_numpy(x: np.ndarray, P: np.ndarray, dt: np.ndarray | float, q: np.ndarray | float,
                   constant_q: bool) -> tuple[np.ndarray, np.ndarray]:
    """The same predict as one product of the flattened covariance with constant 0/1 maps.

    F = I + dt G with G moving velocity into position, so per track
    F P F' + Q = P + dt (G P + P G') + dt^2 G P G' + q (dt^3/3 Qpp + dt^2/2 Qpv + dt Qvv).
    With P flattened to (N, 16), the last four terms are [dt P, dt^2 P, q dt^3, q dt^2, q dt]
    (N, 35) times a constant (35, 16) matrix: one BLAS call for all tracks.
    """
    n = x.shape[0]
    if n >= _COLUMN_PREDICT_TRACKS:
        return _predict_columns(x, P, dt, q, constant_q)
    dt = _column(dt, n)  # N 1
    dq = np.ones((n, 1)) if constant_q else dt
    qdt = (q if np.ndim(q) == 0 else _column(q, n)) * dq
    # x = F x = x + dt G x
    x_new = (dt * x) @ _GT
    x_new += x
    # P = F P F' + Q(dt)
    flat = P.reshape(n, 16)
    dt_p = dt * flat
    qdt2 = qdt * dq
    q_terms = np.concatenate([qdt2 * dq, qdt2, qdt], axis=1)  # N 3
    if n <= _FEW_TRACKS:  # fewest numpy calls: one product with the stacked (35, 16) map
        terms = np.concatenate([dt_p, dt * dt_p, q_terms], axis=1)  # N 35
        P_new = terms @ _PREDICT_MAP
    else:  # fewest flops: the 0/1 maps are sparse, skip the dt^2 zeros of the stacked product
        P_new = dt_p @ _PREDICT_MAP[:16]
        dt_p *= dt
        P_new += dt_p @ _PREDICT_MAP[16:32]
        P_new += q_terms @ _PREDICT_MAP[32:]
    P_new += flat
    return x_new, P_new.reshape(n, 4, 4)


_FEW_TRACKS = 256  # below this, numpy call overhead dominates; above, arithmetic does
# From these track counts on, the kernels on (N,) vectors that use P's symmetry win (measured
# interleaved with the stacked / batch-last kernels in one process: predict 1.28x at N = 1000,
# 2.9x at 10000 but 0.66x at 256; update 2x at 10000, not faster below ~4000)
_COLUMN_PREDICT_TRACKS = 512
_COLUMN_UPDATE_TRACKS = 4096
# flat index of (i, j) in a 4x4 matrix, and of its upper-triangle twin (P is symmetric)
_UPPER = np.array([4 * min(i, j) + max(i, j) for i in range(4) for j in range(4)])


def _predict_columns(x: np.ndarray, P: np.ndarray, dt: np.ndarray | float,
                     q: np.ndarray | float, constant_q: bool) -> tuple[np.ndarray, np.ndarray]:
    """`_predict_numpy` for many tracks, on (N,) vectors (see `_predict_vectors`)."""
    xp, upper = _predict_vectors(x, P, dt, q, constant_q)
    return _state_from_rows(xp, x), _symmetric_from_upper(upper, x.shape[0])


def _predict_vectors(x: np.ndarray, P: np.ndarray, dt: np.ndarray | float,
                     q: np.ndarray | float, constant_q: bool
                     ) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]]:
    """The predicted state rows (4 (N,) vectors) and the 10 distinct entries 00 01 02 03 11
    12 13 22 23 33 of the symmetric F P F' + Q written out as products of (N,) vectors (G
    moves velocity into position, Q is the white-acceleration q [[dt^3/3, dt^2/2],
    [dt^2/2, dt]] per axis)."""
    n = x.shape[0]
    dt = np.broadcast_to(np.asarray(dt, np.float64), (n,))
    dq = np.ones(n) if constant_q else dt
    qd = np.asarray(q, np.float64) * dq  # q dt
    q_vv, q_pv, q_pp = qd, qd * dq * 0.5, qd * dq * dq * (1.0 / 3.0)
    c = P.reshape(n, 16).T  # 16 N view; P[i, j] = c[4 i + j]
    p00, p01, p02, p03, p11, p12, p13, p22, p23, p33 = (
        c[0], c[1], c[2], c[3], c[5], c[6], c[7], c[10], c[11], c[15])
    dt2 = dt * dt
    # x = F x
    xc = x.T
    xp = (xc[0] + dt * xc[2], xc[1] + dt * xc[3], xc[2], xc[3])
    # P = F P F' + Q: with F = I + dt G, F P F' = P + dt (G P + P G') + dt^2 G P G'
    upper = (p00 + dt * (p02 + p02) + dt2 * p22 + q_pp,  # 00
             p01 + dt * (p12 + p03) + dt2 * p23,  # 01
             p02 + dt * p22 + q_pv,  # 02
             p03 + dt * p23,  # 03
             p11 + dt * (p13 + p13) + dt2 * p33 + q_pp,  # 11
             p12 + dt * p23,  # 12
             p13 + dt * p33 + q_pv,  # 13
             p22 + q_vv, p23, p33 + q_vv)  # 22 23 33
    return xp, upper


def _state_from_rows(rows: tuple[np.ndarray, ...], like: np.ndarray) -> np.ndarray:
    """(N, 4) state from its 4 (N,) rows."""
    out = np.empty_like(like)
    for i in range(4):
        out[:, i] = rows[i]
    return out


def _symmetric_from_upper(upper: tuple[np.ndarray, ...], n: int) -> np.ndarray:
    """(N, 4, 4) from the 10 (N,) upper-triangle entries 00 01 02 03 11 12 13 22 23 33."""
    # one (N, 16) allocation written column by column: stacking the tuple first and
    # transposing would allocate (and page-fault) two more arrays of P's size per call
    out = np.empty((n, 16))
    for k, v in zip(_UPPER_FLAT, upper):
        out[:, k] = v
    for k, src in zip(_LOWER_FLAT, _LOWER_TWIN):
        out[:, k] = upper[src]
    return out.reshape(n, 4, 4)


_UPPER_FLAT = (0, 1, 2, 3, 5, 6, 7, 10, 11, 15)  # flat (i, j), i <= j, in `upper`'s order
_LOWER_FLAT = (4, 8, 12, 9, 13, 14)  # flat (j, i) of the strictly lower triangle ...
_LOWER_TWIN = (1, 2, 3, 5, 6, 8)  # ... and the index in `upper` of its twin (i, j)
# for each flat index 4 i + j of a 4x4 symmetric matrix, its entry's index in `upper`
_FULL_FROM_UPPER = (0, 1, 2, 3, 1, 4, 5, 6, 2, 5, 7, 8, 3, 6, 8, 9)


def _selection_matrices() -> tuple[np.ndarray, np.ndarray]:
    """G' (4, 4), and the (35, 16) map of the predict (see `_predict_numpy`)."""
    G = np.zeros((4, 4))
    G[0, 2] = G[1, 3] = 1.0
    basis = np.eye(16).reshape(16, 4, 4)  # basis[k] = the matrix with a 1 at flat index k
    gp_pg = np.stack([(G @ b + b @ G.T).ravel() for b in basis])  # vec(P) -> vec(G P + P G')
    gpg = np.stack([(G @ b @ G.T).ravel() for b in basis])  # vec(P) -> vec(G P G')
    # white acceleration per axis: q [[dt^3/3, dt^2/2], [dt^2/2, dt]]
    pp, pv, vv = np.diag([1.0, 1, 0, 0]) / 3, (G + G.T) / 2, np.diag([0.0, 0, 1, 1])
    q_basis = np.stack([pp.ravel(), pv.ravel(), vv.ravel()])
    return np.ascontiguousarray(G.T), np.concatenate([gp_pg, gpg, q_basis])


_GT, _PREDICT_MAP = _selection_matrices()


def _column(v: np.ndarray | float, n: int) -> np.ndarray:
    """A scalar or (N,) value as an (N, 1) float64 column."""
    if np.ndim(v) == 0:
        return np.full((n, 1), float(v))
    return np.asarray(v, dtype=np.float64).reshape(n, 1)


def _inv2(S: Array) -> Array:
    """Closed-form inverse of (N, 2, 2) matrices: adj(S) / det(S) (an exact 2x2 solve)."""
    a, b, c, d = S[..., 0, 0], S[..., 0, 1], S[..., 1, 0], S[..., 1, 1]
    det = a * d - b * c
    adj = _stack([_stack([d, -b], -1, S), _stack([-c, a], -1, S)], -2, S)
    return adj / det[..., None, None]


def innovation(x: Array, P: Array, z: Array, R: Array) -> tuple[Array, Array]:
    """Residual y = z - H x, (N, 2), and its covariance S = H P H' + R, (N, 2, 2)."""
    # H = [I 0] makes H x and H P H' plain slices
    return z - x[..., :2], P[..., :2, :2] + R


def mahalanobis_sq(x: Array, P: Array, z: Array, R: Array) -> Array:
    """Squared Mahalanobis distance y' S^-1 y of each observation to its prediction, (N,)."""
    y, S = innovation(x, P, z, R)
    return (y[..., None, :] @ _inv2(S) @ y[..., None])[..., 0, 0]


def chi2_threshold_2dof(probability: float) -> float:
    """Chi-square quantile with 2 degrees of freedom: -2 ln(1 - p) (0.99 -> 9.21)."""
    if not 0.0 < probability < 1.0:
        raise ValueError(f"probability must be in (0, 1), got {probability}")
    return float(-2.0 * np.log1p(-probability))


def gate(x: Array, P: Array, z: Array, R: Array, threshold: float) -> Array:
    """(N,) bool: True where the observation is accepted (squared Mahalanobis <= threshold)."""
    return mahalanobis_sq(x, P, z, R) <= threshold


def update(x: Array, P: Array, z: Array, R: Array) -> tuple[Array, Array]:
    """Fuse position observations into N tracks (Joseph form); returns (x, P).

    Args:
        x: (N, 4) predicted states.
        P: (N, 4, 4) predicted covariances.
        z: (N, 2) observed pixel xy.
        R: (N, 2, 2) observation covariances in px^2 (positive definite).

    Raises:
        ValueError: (numpy path) when some S = H P H' + R is not positive definite.
    """
    if _is_torch(x):
        return _update_textbook(x, P, z, R)
    if x.ndim == 2:
        n = x.shape[0]
        if x.shape[1] != 4 or P.shape != (n, 4, 4) or z.shape != (n, 2) or R.shape != (n, 2, 2):
            raise ValueError(f"update: shapes x {x.shape}, P {P.shape}, z {z.shape}, "
                             f"R {R.shape} do not match (N, 4), (N, 4, 4), (N, 2), (N, 2, 2)")
        return _update_numpy(x, P, z, R)
    x_new, P_new = _update_numpy(x.reshape(-1, 4), P.reshape(-1, 4, 4),
                                 np.broadcast_to(z, x.shape[:-1] + (2,)).reshape(-1, 2),
                                 np.broadcast_to(R, x.shape[:-1] + (2, 2)).reshape(-1, 2, 2))
    return x_new.reshape(x.shape), P_new.reshape(P.shape)


def _update_textbook(x: Array, P: Array, z: Array, R: Array) -> tuple[Array, Array]:
    """Update with explicit H and I - K H (torch path: differentiable, batched)."""
    # y = z - H x ;  S = H P H' + R
    y, S = innovation(x, P, z, R)
    # K = P H' S^-1   (H' selects the first two columns of P)
    K = P[..., :, :2] @ _inv2(S)
    # x = x + K y
    x_new = x + (K @ y[..., None])[..., 0]
    # P = (I - K H) P (I - K H)' + K R K'   (Joseph form: stays symmetric positive definite)
    A = _like(np.eye(4), x) - K @ _like(H, x)
    P_new = A @ P @ _t(A) + K @ R @ _t(K)
    # rounding leaves a ~1e-16 asymmetry; remove it so it cannot accumulate over long runs
    return x_new, 0.5 * (P_new + _t(P_new))


_ADJ_SIGN = np.array([[1.0, -1.0], [-1.0, 1.0]])


def _update_numpy(x: np.ndarray, P: np.ndarray, z: np.ndarray,
                  R: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The same Joseph-form update with H = [I 0] applied as slicing (no 4x4 I - K H built)."""
    if x.shape[0] >= _COLUMN_UPDATE_TRACKS:
        return _update_columns(x, P, z, R)
    if x.shape[0] >= _FEW_TRACKS:
        return _update_batch_last(x, P, z, R)
    # y = z - H x ;  S = H P H' + R
    y, S = innovation(x, P, z, R)
    det = S[:, 0, 0] * S[:, 1, 1] - S[:, 0, 1] * S[:, 1, 0]
    _check_positive_definite(det, S[:, 0, 0])
    # K = P H' S^-1 with S^-1 = adj(S) / det(S), adj(S) = [[d, -b], [-c, a]]
    K = P[:, :, :2] @ (S.swapaxes(1, 2)[:, ::-1, ::-1] * _ADJ_SIGN)  # N 4 2
    K /= det[:, None, None]
    # x = x + K y
    x_new = x + (K @ y[:, :, None])[:, :, 0]
    # P = (I - K H) P (I - K H)' + K R K'
    #   = M - (M H' - K R) K'   with M = (I - K H) P = P - K (H P), and M H' = M[:, :, :2]
    KT = np.ascontiguousarray(K.swapaxes(1, 2))
    M = P - K @ P[:, :2, :]
    P_new = M - (M[:, :, :2] - K @ R) @ KT
    # rounding leaves a ~1e-16 asymmetry; remove it so it cannot accumulate over long runs
    P_new += P_new.swapaxes(1, 2)
    P_new *= 0.5
    return x_new, P_new


def _check_positive_definite(det: np.ndarray, s00: np.ndarray) -> None:
    """Raise unless every S is positive definite (a 2x2 is iff S00 > 0 and det > 0)."""
    if not (det.min(initial=1.0) > 0 and s00.min(initial=1.0) > 0):  # also catches NaN
        raise ValueError("S = H P H' + R is singular or not positive definite: check R")


def _update_batch_last(x: np.ndarray, P: np.ndarray, z: np.ndarray,
                       R: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`_update_numpy` for many tracks: the same formulas with the track axis last.

    numpy's stacked 4x4 matmuls loop over the tracks; with the arrays transposed to (4, 4, N)
    every step is a broadcast product over contiguous N-vectors. Measured interleaved with the
    stacked kernel in one process, predict + update: 1.34x at N = 256, 1.23x at N = 1000,
    1.18x at N = 10000 (update alone: 1.2-2.4x, the machine is noisy); at N = 64 it does not
    pay, so small batches keep the stacked kernel.
    """
    Pb = np.ascontiguousarray(P.transpose(1, 2, 0))  # 4 4 N
    Rb = np.ascontiguousarray(R.transpose(1, 2, 0))  # 2 2 N
    xb = np.ascontiguousarray(x.T)  # 4 N
    # y = z - H x ;  S = H P H' + R
    y = z.T - xb[:2]  # 2 N
    S = Pb[:2, :2] + Rb
    det = S[0, 0] * S[1, 1] - S[0, 1] * S[1, 0]
    _check_positive_definite(det, S[0, 0])
    # S^-1 = adj(S) / det(S)
    Si = np.empty_like(S)
    Si[0, 0], Si[1, 1] = S[1, 1], S[0, 0]
    np.negative(S[0, 1], out=Si[0, 1])
    np.negative(S[1, 0], out=Si[1, 0])
    Si /= det
    # K = P H' S^-1: K[i, j] = sum_k P[i, k] Si[k, j] over k = 0, 1   (4 2 N)
    K = Pb[:, 0, None] * Si[None, 0]
    K += Pb[:, 1, None] * Si[None, 1]
    # x = x + K y
    x_new = xb + K[:, 0] * y[0] + K[:, 1] * y[1]
    # M = P - K (H P) ;  P = M - (M H' - K R) K'   (the Joseph form, as in _update_numpy)
    M = Pb - K[:, 0, None] * Pb[None, 0]
    M -= K[:, 1, None] * Pb[None, 1]
    D = M[:, :2] - K[:, 0, None] * Rb[None, 0]
    D -= K[:, 1, None] * Rb[None, 1]
    P_new = M - D[:, 0, None] * K[None, :, 0]
    P_new -= D[:, 1, None] * K[None, :, 1]
    P_new += P_new.swapaxes(0, 1)  # symmetric to the last bit (see _update_numpy)
    P_new *= 0.5
    return np.ascontiguousarray(x_new.T), np.ascontiguousarray(P_new.transpose(2, 0, 1))


def _update_columns(x: np.ndarray, P: np.ndarray, z: np.ndarray,
                    R: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`_update_numpy` for many tracks: the Joseph form on (N,) vectors, P's symmetry used.

    The same formulas as `_update_batch_last` (M = P - K H P, D = M H' - K R, P = M - D K'),
    with P read from its upper triangle and only the upper triangle of the result computed
    (the Joseph form is symmetric for symmetric P and R); R is used as given.
    """
    n = x.shape[0]
    c = P.reshape(n, 16).T[_UPPER]  # 16 N, P[i, j] = c[4 i + j] from the upper triangle
    x_new, upper = _update_vectors(tuple(x.T), c, z, R)
    return _state_from_rows(x_new, x), _symmetric_from_upper(upper, n)


def _update_vectors(xc: tuple[np.ndarray, ...], c, z: np.ndarray, R: np.ndarray
                    ) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]]:
    """The Joseph-form update on (N,) vectors: state rows xc (4), covariance entries c with
    c[4 i + j] = P[i, j] (16, symmetric); returns the new state rows and the 10 upper-triangle
    entries 00 01 02 03 11 12 13 22 23 33 of the new covariance."""
    n = xc[0].shape[0]
    r = R.reshape(n, 4).T  # 4 N: r00 r01 r10 r11
    # y = z - H x ;  S = H P H' + R
    y0, y1 = z[:, 0] - xc[0], z[:, 1] - xc[1]
    s00, s01, s10, s11 = c[0] + r[0], c[1] + r[1], c[4] + r[2], c[5] + r[3]
    det = s00 * s11 - s01 * s10
    _check_positive_definite(det, s00)
    inv = 1.0 / det
    # S^-1 = adj(S) / det(S);  K = P H' S^-1: K[i, j] = P[i, 0] Si[0, j] + P[i, 1] Si[1, j]
    i00, i01, i10, i11 = s11 * inv, -s01 * inv, -s10 * inv, s00 * inv
    K = [(c[4 * i] * i00 + c[4 * i + 1] * i10, c[4 * i] * i01 + c[4 * i + 1] * i11)
         for i in range(4)]
    # x = x + K y
    x_new = tuple(xc[i] + K[i][0] * y0 + K[i][1] * y1 for i in range(4))
    # M = P - K (H P): M[i, j] = P[i, j] - K[i, 0] P[0, j] - K[i, 1] P[1, j]
    M = {(i, j): c[4 * i + j] - K[i][0] * c[j] - K[i][1] * c[4 + j]
         for i in range(4) for j in range(4) if j < 2 or j >= i}
    # D = M H' - K R: D[i, b] = M[i, b] - K[i, 0] R[0, b] - K[i, 1] R[1, b]
    D = [(M[i, 0] - K[i][0] * r[0] - K[i][1] * r[2], M[i, 1] - K[i][0] * r[1] - K[i][1] * r[3])
         for i in range(4)]
    # P = M - D K' (upper triangle)
    upper = tuple(M[i, j] - D[i][0] * K[j][0] - D[i][1] * K[j][1]
                  for i in range(4) for j in range(i, 4))
    return x_new, upper


def predict_update(x: Array, P: Array, dt: Array | float, q: Array | float, z: Array,
                   R: Array, constant_q: bool = False) -> tuple[Array, Array]:
    """`update(*predict(x, P, dt, q, constant_q), z, R)`: predict N tracks to their
    observation times and fuse the observations (what the fusion engine does per array).

    Same arguments, shapes and errors as `predict` and `update`. From
    `_FUSED_TRACKS` tracks on (numpy, (N, 4) states) both steps run as one kernel on (N,)
    vectors that never builds the predicted (N, 4, 4) covariance; below it, and for torch
    tensors, it is the two calls.
    """
    if _is_torch(x) or x.ndim != 2 or x.shape[0] < _FUSED_TRACKS:
        return update(*predict(x, P, dt, q, constant_q), z, R)
    n = x.shape[0]
    if x.shape[1] != 4 or P.shape != (n, 4, 4) or z.shape != (n, 2) or R.shape != (n, 2, 2):
        raise ValueError(f"predict_update: shapes x {x.shape}, P {P.shape}, z {z.shape}, "
                         f"R {R.shape} do not match (N, 4), (N, 4, 4), (N, 2), (N, 2, 2)")
    xp, up = _predict_vectors(x, P, dt, q, constant_q)
    pc = tuple(up[k] for k in _FULL_FROM_UPPER)  # c[4 i + j] = P[i, j] of the prediction
    x_new, upper = _update_vectors(xp, pc, z, R)
    return _state_from_rows(x_new, x), _symmetric_from_upper(upper, n)


_FUSED_TRACKS = 512  # measured: 0.8x the two calls at N = 256, 2x at 1000 (fresh process)
