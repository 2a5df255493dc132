"""The batched Kalman filter against filterpy, gradcheck, positive definiteness and limits."""

from __future__ import annotations

from filterpy.common import Q_continuous_white_noise
from filterpy.kalman import KalmanFilter
import numpy as np
import pytest
import torch

from blinktrack_ros import kalman


def _random_spd(rng: np.random.Generator, n: int, dim: int, scale: float) -> np.ndarray:
    """(n, dim, dim) random symmetric positive definite matrices."""
    A = rng.normal(size=(n, dim, dim)) * np.sqrt(scale)
    return A @ A.swapaxes(1, 2) + 0.05 * scale * np.eye(dim)


def _random_sequence(rng: np.random.Generator, n_tracks: int, n_steps: int) -> list[tuple]:
    """Steps (dt (N,), z (N, 2), R (N, 2, 2)) with irregular dt and correlated R."""
    return [(rng.uniform(0.0, 0.05, n_tracks), rng.normal(100, 20, (n_tracks, 2)),
             _random_spd(rng, n_tracks, 2, rng.uniform(0.1, 10))) for _ in range(n_steps)]


@pytest.mark.parametrize(("n_tracks", "n_steps"), [(6, 40), (300, 6), (4100, 2)])  # every kernel
def test_matches_filterpy_per_track(rng: np.random.Generator, n_tracks: int,
                                    n_steps: int) -> None:
    q = 350.0
    x0 = np.column_stack([rng.normal(100, 20, (n_tracks, 2)), rng.normal(0, 50, (n_tracks, 2))])
    P0 = _random_spd(rng, n_tracks, 4, 3.0)
    steps = _random_sequence(rng, n_tracks, n_steps)
    x, P = x0.copy(), P0.copy()
    refs = []
    for i in range(n_tracks):
        f = KalmanFilter(dim_x=4, dim_z=2)
        f.x, f.P = x0[i].reshape(4, 1).copy(), P0[i].copy()
        f.H = kalman.H.copy()
        refs.append(f)
    for dt, z, R in steps:
        x, P = kalman.predict(x, P, dt, q)
        x, P = kalman.update(x, P, z, R)
        for i, f in enumerate(refs):
            f.F = np.eye(4) + np.diag([dt[i], dt[i]], k=2)
            f.Q = Q_continuous_white_noise(dim=2, dt=dt[i], spectral_density=q, block_size=2,
                                           order_by_dim=False)
            f.predict()
            f.update(z[i].reshape(2, 1), R=R[i])
        for i, f in enumerate(refs):
            np.testing.assert_allclose(x[i], f.x[:, 0], rtol=0, atol=1e-9)
            np.testing.assert_allclose(P[i], f.P, rtol=0, atol=1e-9)


def test_constant_q_option_adds_q_of_one_second(rng: np.random.Generator) -> None:
    x = rng.normal(size=(3, 4))
    P = _random_spd(rng, 3, 4, 1.0)
    _, P_const = kalman.predict(x, P, 0.01, 5.0, constant_q=True)
    _, P_zero_q = kalman.predict(x, P, 0.01, 0.0)
    expected_Q = Q_continuous_white_noise(dim=2, dt=1.0, spectral_density=5.0, block_size=2,
                                          order_by_dim=False)
    np.testing.assert_allclose(P_const - P_zero_q, np.broadcast_to(expected_Q, (3, 4, 4)),
                               atol=1e-12)


def test_torch_path_equals_numpy_path(rng: np.random.Generator) -> None:
    n = 5
    x = rng.normal(size=(n, 4))
    P = _random_spd(rng, n, 4, 2.0)
    dt, z, R = _random_sequence(rng, n, 1)[0]
    xn, Pn = kalman.update(*kalman.predict(x, P, dt, 80.0), z, R)
    t = [torch.from_numpy(a) for a in (x, P, dt, z, R)]
    xt, Pt = kalman.update(*kalman.predict(t[0], t[1], t[2], 80.0), t[3], t[4])
    assert isinstance(xt, torch.Tensor) and xt.dtype == torch.float64
    np.testing.assert_allclose(xt.numpy(), xn, atol=1e-10)
    np.testing.assert_allclose(Pt.numpy(), Pn, atol=1e-10)


def test_gradcheck_through_predict_and_update(rng: np.random.Generator) -> None:
    n = 3
    x = torch.tensor(rng.normal(size=(n, 4)), requires_grad=True)
    P = torch.tensor(_random_spd(rng, n, 4, 1.0))
    z = torch.tensor(rng.normal(size=(n, 2)), requires_grad=True)
    log_r = torch.tensor(rng.normal(size=n), requires_grad=True)
    dt = torch.tensor(rng.uniform(0.001, 0.1, n), requires_grad=True)
    q = torch.tensor(20.0, dtype=torch.float64, requires_grad=True)

    def fused(x, z, log_r, dt, q):
        R = torch.exp(log_r)[:, None, None] * torch.eye(2, dtype=torch.float64)
        xp, Pp = kalman.predict(x, P, dt, q)
        return kalman.update(xp, Pp, z, R)

    assert torch.autograd.gradcheck(fused, (x, z, log_r, dt, q), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize(("n_tracks", "n_steps"), [(100, 100), (400, 25)])  # both kernels
def test_covariances_stay_spd_over_many_updates(rng: np.random.Generator, n_tracks: int,
                                                n_steps: int) -> None:
    # 10^4 track updates
    x = np.zeros((n_tracks, 4))
    P = kalman.initial_covariance(n_tracks, 2.0, 100.0)
    for _ in range(n_steps):
        # wide ranges: tiny and huge dt, nearly singular and huge R
        dt = 10.0 ** rng.uniform(-6, 0, n_tracks)
        R = _random_spd(rng, n_tracks, 2, 1.0) * 10.0 ** rng.uniform(-4, 4, (n_tracks, 1, 1))
        x, P = kalman.predict(x, P, dt, 1e3)
        x, P = kalman.update(x, P, rng.normal(0, 5, (n_tracks, 2)), R)
        assert np.array_equal(P, P.swapaxes(1, 2))
        assert np.linalg.eigvalsh(P).min() > 0


def test_huge_r_keeps_the_prior_and_tiny_r_snaps_to_z(rng: np.random.Generator) -> None:
    n = 4
    x = rng.normal(size=(n, 4)) * 10
    P = _random_spd(rng, n, 4, 2.0)
    z = rng.normal(size=(n, 2)) * 10
    eye = np.broadcast_to(np.eye(2), (n, 2, 2))
    x_inf, P_inf = kalman.update(x, P, z, 1e12 * eye)
    np.testing.assert_allclose(x_inf, x, atol=1e-8)
    np.testing.assert_allclose(P_inf, P, atol=1e-8)
    x_0, P_0 = kalman.update(x, P, z, 1e-12 * eye)
    np.testing.assert_allclose(x_0[:, :2], z, atol=1e-8)
    np.testing.assert_allclose(P_0[:, :2, :2], 0.0, atol=1e-8)


def test_gate_uses_mahalanobis_distance(rng: np.random.Generator) -> None:
    x = np.zeros((2, 4))
    P = np.broadcast_to(np.diag([1.0, 1.0, 1.0, 1.0]), (2, 4, 4)).copy()
    R = np.broadcast_to(np.eye(2), (2, 2, 2)).copy()  # S = 2 I
    z = np.array([[2.0, 0.0], [6.0, 0.0]])  # d^2 = 2 and 18
    np.testing.assert_allclose(kalman.mahalanobis_sq(x, P, z, R), [2.0, 18.0])
    threshold = kalman.chi2_threshold_2dof(0.99)
    assert threshold == pytest.approx(9.2103, abs=1e-4)  # tabulated chi-square(2) quantile
    assert kalman.gate(x, P, z, R, threshold).tolist() == [True, False]


def test_singular_innovation_covariance_raises() -> None:
    x = np.zeros((1, 4))
    P = np.zeros((1, 4, 4))
    with pytest.raises(ValueError, match="singular"):
        kalman.update(x, P, np.zeros((1, 2)), np.zeros((1, 2, 2)))
    # negative definite S has a positive determinant: it must be refused all the same
    with pytest.raises(ValueError, match="not positive definite"):
        kalman.update(x, P, np.zeros((1, 2)), -np.eye(2)[None])


def test_zero_dt_predict_is_identity(rng: np.random.Generator) -> None:
    x = rng.normal(size=(3, 4))
    P = _random_spd(rng, 3, 4, 1.0)
    xp, Pp = kalman.predict(x, P, 0.0, 100.0)
    np.testing.assert_array_equal(xp, x)
    np.testing.assert_array_equal(Pp, P)


def test_leading_batch_axes_equal_flattened_tracks(rng: np.random.Generator) -> None:
    B, n = 3, 5
    x = rng.normal(size=(B, n, 4))
    P = _random_spd(rng, B * n, 4, 2.0).reshape(B, n, 4, 4)
    z, R = rng.normal(size=(B, n, 2)), _random_spd(rng, B * n, 2, 1.0).reshape(B, n, 2, 2)
    dt = rng.uniform(0, 0.1, (B, n))
    flat = kalman.update(*kalman.predict(x.reshape(-1, 4), P.reshape(-1, 4, 4), dt.ravel(), 9.0),
                         z.reshape(-1, 2), R.reshape(-1, 2, 2))
    batched = kalman.update(*kalman.predict(x, P, dt, 9.0), z, R)
    np.testing.assert_allclose(batched[0].reshape(-1, 4), flat[0], atol=1e-12)
    np.testing.assert_allclose(batched[1].reshape(-1, 4, 4), flat[1], atol=1e-12)
    as_torch = [torch.from_numpy(a).float() for a in (x, P, dt, z, R)]
    xt, Pt = kalman.predict(as_torch[0], as_torch[1], as_torch[2], 9.0)
    xt, Pt = kalman.update(xt, Pt, as_torch[3], as_torch[4])
    assert xt.dtype == torch.float32 and xt.shape == (B, n, 4) and Pt.shape == (B, n, 4, 4)
    np.testing.assert_allclose(xt.numpy(), batched[0], rtol=1e-4, atol=1e-4)


def test_mismatched_shapes_raise() -> None:
    with pytest.raises(ValueError, match="shapes"):
        kalman.update(np.zeros((2, 4)), np.zeros((2, 4, 4)), np.zeros((1, 2)), np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match="shapes"):
        kalman.predict(np.zeros((2, 4)), np.zeros((3, 4, 4)), 0.1, 1.0)


@pytest.mark.parametrize("n", [3, 300, 600])  # every numpy kernel (few / many tracks)
def test_predict_equals_explicit_f_p_ft_plus_q(rng: np.random.Generator, n: int) -> None:
    x = rng.normal(size=(n, 4))
    P = _random_spd(rng, n, 4, 2.0)
    dt, q = rng.uniform(0, 0.2, n), rng.uniform(1, 100, n)
    xp, Pp = kalman.predict(x, P, dt, q)
    for i in rng.choice(n, 3, replace=False):
        F = np.eye(4) + np.diag([dt[i], dt[i]], k=2)
        Q = Q_continuous_white_noise(2, dt[i], q[i], block_size=2, order_by_dim=False)
        np.testing.assert_allclose(xp[i], F @ x[i], atol=1e-12)
        np.testing.assert_allclose(Pp[i], F @ P[i] @ F.T + Q, atol=1e-12)


@pytest.mark.parametrize("n", [256, 1000])
def test_batch_last_update_equals_the_stacked_kernel(rng: np.random.Generator, n: int) -> None:
    """Many tracks take the batch-last kernel; it must compute what the small-N one does."""
    x = rng.normal(size=(n, 4))
    P = _random_spd(rng, n, 4, 2.0)
    z, R = rng.normal(size=(n, 2)), _random_spd(rng, n, 2, 1.0)
    xa, Pa = kalman._update_batch_last(x, P, z, R)
    x_parts, P_parts = zip(*(kalman.update(x[i:i + 100], P[i:i + 100], z[i:i + 100],
                                           R[i:i + 100]) for i in range(0, n, 100)))
    np.testing.assert_allclose(xa, np.concatenate(x_parts), rtol=0, atol=1e-12)
    np.testing.assert_allclose(Pa, np.concatenate(P_parts), rtol=0, atol=1e-12)
    assert xa.flags.c_contiguous and Pa.flags.c_contiguous
    xb, Pb = kalman.update(x, P, z, R)  # the public entry point takes it from 256 tracks on
    assert np.array_equal(xb, xa) and np.array_equal(Pb, Pa)
    R_bad = R.copy()
    R_bad[7] = -np.eye(2) * 1e3
    with pytest.raises(ValueError, match="singular"):
        kalman.update(x, P, z, R_bad)


@pytest.mark.parametrize("constant_q", [False, True])
def test_column_kernels_equal_the_stacked_kernels(rng: np.random.Generator,
                                                  constant_q: bool) -> None:
    """The (N,)-vector kernels (many tracks) compute what the small-N ones do, and their
    covariances are exactly symmetric."""
    n = 600
    x = rng.normal(size=(n, 4))
    P = _random_spd(rng, n, 4, 2.0)
    z, R = rng.normal(size=(n, 2)), _random_spd(rng, n, 2, 1.0)
    dt, q = rng.uniform(0.0, 0.05, n), rng.uniform(1.0, 1e4, n)
    parts = [kalman.predict(x[i:i + 100], P[i:i + 100], dt[i:i + 100], q[i:i + 100],
                            constant_q) for i in range(0, n, 100)]
    xc, Pc = kalman._predict_columns(x, P, dt, q, constant_q)
    np.testing.assert_allclose(xc, np.concatenate([p[0] for p in parts]), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(Pc, np.concatenate([p[1] for p in parts]), rtol=1e-12, atol=1e-12)
    xu, Pu = kalman._update_columns(xc, Pc, z, R)
    parts = [kalman.update(xc[i:i + 100], Pc[i:i + 100], z[i:i + 100], R[i:i + 100])
             for i in range(0, n, 100)]
    np.testing.assert_allclose(xu, np.concatenate([p[0] for p in parts]), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(Pu, np.concatenate([p[1] for p in parts]), rtol=1e-12, atol=1e-12)
    assert np.array_equal(Pu, Pu.swapaxes(1, 2)) and Pu.flags.c_contiguous
    R_bad = R.copy()
    R_bad[5] = -np.eye(2) * 1e9
    with pytest.raises(ValueError, match="singular"):
        kalman._update_columns(xc, Pc, z, R_bad)


@pytest.mark.parametrize("n", [40, 700])
@pytest.mark.parametrize("constant_q", [False, True])
def test_predict_update_equals_filterpy(rng: np.random.Generator, n: int,
                                        constant_q: bool) -> None:
    """The one-kernel predict + update (N >= _FUSED_TRACKS) and its small-N fallback give
    filterpy's posterior, row by row, with exactly symmetric covariances."""
    x = rng.normal(size=(n, 4)) * [100, 100, 30, 30]
    P = _random_spd(rng, n, 4, 2.0)
    z, R = x[:, :2] + rng.normal(size=(n, 2)), _random_spd(rng, n, 2, 1.0)
    dt, q = rng.uniform(0.0, 0.05, n), 300.0
    xf, Pf = kalman.predict_update(x, P, dt, q, z, R, constant_q)
    assert xf.shape == (n, 4) and Pf.shape == (n, 4, 4) and np.array_equal(Pf, Pf.swapaxes(1, 2))
    for i in rng.choice(n, 12, replace=False):
        f = KalmanFilter(dim_x=4, dim_z=2)
        f.x, f.P, f.H = x[i].reshape(4, 1).copy(), P[i].copy(), kalman.H.copy()
        f.F = np.eye(4) + np.diag([dt[i], dt[i]], k=2)
        f.Q = Q_continuous_white_noise(2, 1.0 if constant_q else dt[i], q, block_size=2,
                                       order_by_dim=False)
        f.predict()
        f.update(z[i].reshape(2, 1), R=R[i])
        np.testing.assert_allclose(xf[i], f.x[:, 0], rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(Pf[i], f.P, rtol=1e-8, atol=1e-9)
    R_bad = R.copy()
    R_bad[3] = -np.eye(2) * 1e9
    with pytest.raises(ValueError, match="singular"):
        kalman.predict_update(x, P, dt, q, z, R_bad, constant_q)
    with pytest.raises(ValueError, match="do not match"):
        kalman.predict_update(x, P, dt, q, z[:-1], R[:-1], constant_q)
