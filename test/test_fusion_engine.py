"""The fusion engine: ordering policy, counts, modes, lifecycle, queries, determinism."""

from __future__ import annotations

from dataclasses import replace

from filterpy.common import Q_continuous_white_noise
from filterpy.kalman import KalmanFilter
import numpy as np
import pytest

from blinktrack_ros import kalman
from blinktrack_ros.tracking.engine import FusionConfig, FusionEngine, FusionMode
from blinktrack_ros.tracking.observation import Observations, Source
from blinktrack_ros.tracking.tracks import TrackStatus

MS = 1_000_000
RAW = FusionConfig(calibrated_noise=False)  # fuse the R the observations carry


def _obs(source: Source, t_ns: int, ids, positions, r: float = 1.0, vis=1.0) -> Observations:
    ids = np.asarray(ids, dtype=np.uint32)
    n = ids.shape[0]
    return Observations(source, t_ns, ids, np.asarray(positions, float).reshape(n, 2),
                        np.tile(r * np.eye(2), (n, 1, 1)), np.broadcast_to(vis, (n,)) * 1.0)


def test_interleaved_sources_match_filterpy_on_merged_sequence(rng: np.random.Generator) -> None:
    cfg = replace(RAW, q=500.0, seed_position_std_px=1.5, seed_velocity_std_px_s=40.0)
    eng = FusionEngine(cfg)
    start = rng.uniform(20, 200, (3, 2))
    ids = eng.add_tracks(0, start)
    refs = []
    for i in range(3):
        f = KalmanFilter(dim_x=4, dim_z=2)
        f.x = np.r_[start[i], 0, 0].reshape(4, 1)
        f.P = np.diag([1.5**2, 1.5**2, 40.0**2, 40.0**2])
        f.H = kalman.H.copy()
        refs.append((f, [0]))
    # events every 5 ms for tracks 0, 1; frames every 33 ms for tracks 1, 2 (irregular overlap)
    stamps = sorted({*(5 * MS * k for k in range(1, 20)), *(33 * MS * k for k in range(1, 3))})
    for t in stamps:
        for source, sel in ((Source.EVENT, [0, 1]), (Source.IMAGE, [1, 2])):
            if (source is Source.EVENT) != (t % (5 * MS) == 0):
                continue
            z = start[sel] + rng.normal(0, 1, (2, 2)) + 0.02 * t / MS
            r = rng.uniform(0.2, 4.0)
            result = eng.apply(_obs(source, t, ids[sel], z, r))
            assert result.applied == 2
            for k, i in enumerate(sel):
                f, last = refs[i]
                dt = (t - last[0]) * 1e-9
                f.F = np.eye(4) + np.diag([dt, dt], k=2)
                f.Q = Q_continuous_white_noise(2, dt, 500.0, block_size=2, order_by_dim=False)
                f.predict()
                f.update(z[k].reshape(2, 1), R=r * np.eye(2))
                last[0] = t
    rows, _ = eng.tracks.rows_of(ids)
    for i, (f, _) in enumerate(refs):
        np.testing.assert_allclose(eng.tracks.x[rows[i]], f.x[:, 0], atol=1e-9)
        np.testing.assert_allclose(eng.tracks.P[rows[i]], f.P, atol=1e-9)


def test_counts_unknown_stale_invalid_and_duplicates() -> None:
    eng = FusionEngine(RAW)
    ids = eng.add_tracks(10 * MS, [[50, 50], [60, 60], [70, 70]])
    assert eng.apply(_obs(Source.EVENT, 20 * MS, ids[:2], [[51, 50], [61, 60]])).applied == 2
    state = eng.tracks.x.copy()
    # track 0 is at 20 ms: an observation at 15 ms is stale; track 2 (at 10 ms) takes it
    res = eng.apply(_obs(Source.IMAGE, 15 * MS, [ids[0], ids[2], 999], [[0, 0], [70, 71], [1, 1]]))
    assert (res.applied, res.stale, res.unknown_ids) == (1, 1, 1)
    np.testing.assert_array_equal(eng.tracks.x[0], state[0])
    bad = _obs(Source.EVENT, 30 * MS, [ids[0], ids[1], ids[2], ids[2]],
               [[np.nan, 1], [61, 60], [70, 70], [70, 70]])
    bad.covariances[1] = [[1.0, 2.0], [2.0, 1.0]]  # not positive definite
    res = eng.apply(bad)
    assert (res.applied, res.invalid) == (1, 3)  # NaN, non-PD, repeated id
    vis_bad = _obs(Source.EVENT, 40 * MS, ids, [[50, 50], [60, 60], [70, 70]], vis=1.5)
    assert eng.apply(vis_bad).invalid == 3
    assert eng.apply(Observations.empty(Source.EVENT, 50 * MS)).arrays == 1
    with pytest.raises(ValueError, match="shape"):
        eng.apply(Observations(Source.EVENT, 0, ids, np.zeros((2, 2)), np.zeros((3, 2, 2)),
                               np.ones(3)))


def test_reorder_window_equals_sorted_application(rng: np.random.Generator) -> None:
    arrivals = [_obs(Source.EVENT if k % 2 else Source.IMAGE, t * MS, [0, 1],
                     rng.normal(100, 2, (2, 2))) for k, t in enumerate([5, 3, 9, 7, 12, 11, 20])]
    sorted_eng, buffered, plain = (FusionEngine(replace(RAW, reorder_window_ms=w))
                                   for w in (0, 4, 0))
    for eng in (sorted_eng, buffered, plain):
        eng.add_tracks(0, [[100, 100], [100, 100]])
    for obs in sorted(arrivals, key=lambda o: o.t_ns):
        sorted_eng.apply(obs)
    total = sum((buffered.apply(obs) for obs in arrivals), start=buffered.flush())
    total = total + buffered.flush()
    assert (total.applied, total.stale, total.arrays) == (14, 0, 7)
    np.testing.assert_array_equal(buffered.tracks.x, sorted_eng.tracks.x)
    plain_stale = sum(plain.apply(obs).stale for obs in arrivals)
    assert plain_stale == 3 * 2  # 3 after 5, 7 after 9, 11 after 12; both tracks


def test_gate_rejects_outlier_as_a_miss() -> None:
    eng = FusionEngine(replace(RAW, gate_threshold=kalman.chi2_threshold_2dof(0.999)))
    ids = eng.add_tracks(0, [[100, 100], [50, 50]])
    before = eng.tracks.x.copy()
    res = eng.apply(_obs(Source.EVENT, 5 * MS, ids, [[100.5, 100], [90, 50]]))
    assert (res.applied, res.gated) == (1, 1)
    np.testing.assert_array_equal(eng.tracks.x[1], before[1])
    assert eng.tracks.visibility_ema[1] < 1.0


def test_naive_and_single_source_modes() -> None:
    naive = FusionEngine(replace(RAW, mode=FusionMode.NAIVE))
    ids = naive.add_tracks(0, [[10, 10]])
    naive.apply(_obs(Source.EVENT, 5 * MS, ids, [[13, 11]], r=9.0))
    snap = naive.snapshot(5 * MS)
    np.testing.assert_array_equal(snap.positions_px, [[13, 11]])
    np.testing.assert_array_equal(snap.covariances, [9 * np.eye(2)])
    single = FusionEngine(replace(RAW, mode=FusionMode.SINGLE_SOURCE, source=Source.IMAGE))
    ids = single.add_tracks(0, [[10, 10]])
    assert single.apply(_obs(Source.EVENT, 5 * MS, ids, [[13, 11]])).ignored_source == 1
    assert single.apply(_obs(Source.IMAGE, 6 * MS, ids, [[13, 11]])).applied == 1


def test_constant_velocity_prediction_follows_a_moving_point() -> None:
    eng = FusionEngine(replace(RAW, q=10.0))
    ids = eng.add_tracks(0, [[20, 30]])
    velocity = np.array([200.0, -100.0])  # px/s
    for k in range(1, 41):
        t = 5 * MS * k
        eng.apply(_obs(Source.EVENT, t, ids, [[20, 30] + velocity * t * 1e-9], r=0.01))
    t_query = 250 * MS
    out_ids, pos = eng.predict_positions(t_query)
    np.testing.assert_array_equal(out_ids, ids)
    np.testing.assert_allclose(pos[0], [20, 30] + velocity * 0.25, atol=0.05)
    np.testing.assert_allclose(eng.snapshot(t_query).velocities_px_s[0], velocity, atol=0.5)
    assert eng.predict_positions(t_query, ids=np.array([123]))[0].shape == (0,)


def test_lifecycle_occlusion_loss_and_border() -> None:
    cfg = replace(RAW, lost_after_s=0.1, image_size=(240, 180), out_of_image_margin_px=5,
                       occlusion_visibility=0.5, visibility_ema_alpha=0.5)
    eng = FusionEngine(cfg)
    ids = eng.add_tracks(0, [[100, 100], [120, 90], [236, 90]])
    eng.apply(_obs(Source.EVENT, 10 * MS, ids[:1], [[100, 100]], vis=0.1))
    eng.apply(_obs(Source.EVENT, 20 * MS, ids[:1], [[100, 100]], vis=0.1))
    eng.apply(_obs(Source.EVENT, 20 * MS, ids[1:], [[120, 90], [240, 90]]))
    eng.apply(_obs(Source.EVENT, 40 * MS, ids[2:], [[250, 90]]))  # moving right, fast
    snap = eng.snapshot(60 * MS)
    status = dict(zip(snap.ids.tolist(), snap.status.tolist()))
    assert status == {0: TrackStatus.OCCLUDED, 1: TrackStatus.TRACKED, 2: TrackStatus.LOST}
    eng.apply(_obs(Source.EVENT, 70 * MS, ids[:1], [[100, 100]], vis=0.0))
    eng.apply(_obs(Source.EVENT, 70 * MS, ids[1:2], [[120, 90]], vis=0.9))
    snap = eng.snapshot(130 * MS)  # track 0: no confident observation since 0 ms
    assert dict(zip(snap.ids.tolist(), snap.status.tolist())) == {0: 2, 1: 0}
    assert snap.age_s.tolist() == pytest.approx([0.13, 0.13])
    assert eng.snapshot(130 * MS).ids.tolist() == [1]  # lost ones are reported once
    assert eng.apply(_obs(Source.EVENT, 140 * MS, ids[:1], [[1, 1]])).unknown_ids == 1


def test_ids_never_reused_and_runs_are_deterministic(rng: np.random.Generator) -> None:
    def run() -> FusionEngine:
        eng = FusionEngine(replace(RAW, lost_after_s=0.02))
        a = eng.add_tracks(0, [[1, 1], [2, 2]])
        eng.snapshot(50 * MS)  # both lost and removed
        b = eng.add_tracks(50 * MS, [[3, 3]])
        eng.reset()
        c = eng.add_tracks(60 * MS, [[4, 4]])
        assert len({*a.tolist(), *b.tolist(), *c.tolist()}) == 4
        return eng

    one, two = run(), run()
    np.testing.assert_array_equal(one.tracks.ids, two.tracks.ids)
    np.testing.assert_array_equal(one.tracks.P, two.tracks.P)


def test_empty_table_and_empty_queries() -> None:
    eng = FusionEngine(RAW)
    res = eng.apply(_obs(Source.EVENT, 5 * MS, [1, 2], [[1, 1], [np.nan, 2]]))
    assert (res.unknown_ids, res.invalid, res.applied) == (1, 1, 0)
    assert len(eng.snapshot()) == 0 and len(eng.snapshot(10 * MS)) == 0
    assert eng.predict_positions(0)[1].shape == (0, 2)
    assert eng.predict_positions(0, ids=np.array([3]))[0].shape == (0,)
    with pytest.raises(ValueError, match="finite"):
        eng.add_tracks(0, [[np.inf, 0]])
    assert eng.add_tracks(0, np.zeros((0, 2))).shape == (0,)


def test_calibrated_noise_replaces_network_covariance_and_coasts_when_occluded() -> None:
    # calibrated R for network sources, with a visibility slope (the old lite net's fit; the
    # compact lite2/lite3 nets have slope 0: its visibility does not rank its errors)
    cfg = FusionConfig(q=100.0, event_noise_log_r0=-0.14, event_noise_slope=9.09)
    eng, raw = FusionEngine(cfg), FusionEngine(replace(RAW, q=100.0))
    start = np.array([[100.0, 100.0], [50.0, 50.0]])
    ids, _ = eng.add_tracks(0, start), raw.add_tracks(0, start)
    vis = np.array([0.95, 0.05])
    tiny = np.tile(1e-3 * np.eye(2), (2, 1, 1))
    obs = Observations(Source.EVENT, 5 * MS, ids, start + 3.0, tiny, vis)
    eng.apply(obs)
    raw.apply(obs)
    # reference: one predict + update with R = exp(log_r0 + slope (1 - vis)) I, written out here
    r = np.exp(cfg.event_noise_log_r0 + cfg.event_noise_slope * (1 - vis))
    p0 = np.diag([cfg.seed_position_std_px**2] * 2 + [cfg.seed_velocity_std_px_s**2] * 2)
    for k in range(2):
        x, P = kalman.predict(np.r_[start[k], 0, 0][None], p0[None], np.array([5e-3]), 100.0)
        x, P = kalman.update(x, P, (start[k] + 3.0)[None], (r[k] * np.eye(2))[None])
        np.testing.assert_allclose(eng.tracks.x[k], x[0], atol=1e-9)
    assert r[1] > 1e3 * r[0]  # "not visible": the track keeps (almost) its prediction
    assert np.abs(eng.tracks.x[1, :2] - start[1]).max() < 0.01
    np.testing.assert_allclose(raw.tracks.x[:, :2], start + 3.0, atol=0.01)  # raw R = 1e-3
    # KLT observations keep their own covariance
    klt = Observations(Source.KLT, 9 * MS, ids, start + 3.0, tiny, vis)
    eng.apply(klt)
    np.testing.assert_allclose(eng.tracks.x[:, :2], start + 3.0, atol=0.01)


def test_many_tracks_fused_kernel_equals_the_gated_path(rng: np.random.Generator) -> None:
    """With 700 tracks the engine fuses with kalman.predict_update; an engine with a gate that
    accepts everything takes the predict / gate / update path: same table after a sequence."""
    n = 700
    fast, gated = FusionEngine(replace(RAW, q=300.0)), FusionEngine(
        replace(RAW, q=300.0, gate_threshold=1e300))
    start = rng.uniform(20, 200, (n, 2))
    ids = fast.add_tracks(0, start)
    assert np.array_equal(gated.add_tracks(0, start), ids)
    for k in range(1, 8):
        z = start + rng.normal(0, 1, (n, 2)) + 0.3 * k
        obs = _obs(Source.EVENT if k % 3 else Source.IMAGE, 5 * MS * k, ids, z,
                   rng.uniform(0.2, 4.0))
        assert fast.apply(obs).applied == n and gated.apply(obs).applied == n
    np.testing.assert_allclose(fast.tracks.x, gated.tracks.x, rtol=1e-10, atol=1e-9)
    np.testing.assert_allclose(fast.tracks.P, gated.tracks.P, rtol=1e-10, atol=1e-9)
    assert np.array_equal(fast.tracks.n_updates, gated.tracks.n_updates)


def _without_kernel(monkeypatch) -> None:
    from blinktrack_ros.tracking import fusion_jit

    monkeypatch.setattr(fusion_jit.KERNEL, "_compiled", None)
    monkeypatch.setattr(fusion_jit.KERNEL, "_error", "numba off (test)")


def _run_engine(cfg: FusionConfig, seed: int) -> tuple[FusionEngine, list]:
    """A random sequence: 40 tracks, both network sources with random R and visibilities (some
    low: occlusion), outliers for the gate, unknown and stale ids, tracks dropped and born."""
    rng = np.random.default_rng(seed)
    eng = FusionEngine(cfg)
    start = rng.uniform(20, 200, (40, 2))
    ids = eng.add_tracks(0, start)
    results = []
    for k in range(1, 30):
        t = 5 * MS * k
        pick = rng.permutation(ids)[:rng.integers(5, ids.size + 1)]
        z = eng.predict_positions(t, pick)[1] + rng.normal(0, 0.7, (pick.size, 2))
        z[rng.random(pick.size) < 0.1] += 40.0  # outliers
        obs = Observations(Source.EVENT if k % 3 else Source.IMAGE, t, pick, z,
                           np.einsum("n,ij->nij", rng.uniform(0.1, 5.0, pick.size), np.eye(2)),
                           rng.uniform(0.0, 1.0, pick.size))
        if k % 7 == 0:  # an unknown id and a stale array of one track
            obs = replace(obs, ids=np.where(np.arange(pick.size) == 0, 9999, obs.ids))
            results.append(eng.apply(_obs(Source.EVENT, t - 3 * MS, pick[1:2], z[1:2])))
        results.append(eng.apply(obs))
        if k % 10 == 0:
            eng.drop(ids[:3])
            ids = np.concatenate([ids[3:], eng.add_tracks(t, rng.uniform(20, 200, (3, 2)))])
    return eng, results


@pytest.mark.parametrize("cfg", [
    FusionConfig(), RAW, replace(RAW, gate_threshold=9.21), FusionConfig(gate_threshold=6.0),
    replace(RAW, constant_q=True, q=50.0)], ids=["calibrated", "raw", "raw-gate",
                                                  "calibrated-gate", "constant-q"])
def test_compiled_fusion_equals_the_numpy_engine(monkeypatch, cfg: FusionConfig) -> None:
    """The numba fusion kernel (fusion_jit, the engine's default where numba imports) leaves
    the same table and counts as the numpy code on a sequence with gating, occlusion, unknown
    and stale ids, drops and births."""
    from blinktrack_ros.tracking import fusion_jit

    if not fusion_jit.KERNEL.available():
        pytest.skip(f"numba kernel unavailable: {fusion_jit.KERNEL.error()}")
    fast, fast_results = _run_engine(cfg, 3)
    _without_kernel(monkeypatch)
    ref, ref_results = _run_engine(cfg, 3)
    assert fast_results == ref_results
    if cfg.gate_threshold is not None:
        assert sum(r.gated for r in ref_results) > 5  # the gate did reject some
    tab, want = fast.tracks, ref.tracks
    assert np.array_equal(tab.ids, want.ids) and len(tab) > 30
    np.testing.assert_allclose(tab.x, want.x, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(tab.P, want.P, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(tab.visibility_ema, want.visibility_ema, rtol=1e-12)
    for name in ("status", "state_ns", "last_obs_ns", "last_confident_ns", "last_source",
                 "n_updates"):
        assert np.array_equal(getattr(tab, name), getattr(want, name)), name
    assert (tab.status == TrackStatus.OCCLUDED).any() and (tab.status == TrackStatus.TRACKED).any()


def test_compiled_fusion_raises_as_numpy_on_a_bad_covariance() -> None:
    """A covariance that makes S = H P H' + R not positive definite (a corrupted state; the
    observations' R are validated before): the kernel writes nothing, the engine raises the
    numpy path's error and the other track is not updated either."""
    eng = FusionEngine(RAW)
    ids = eng.add_tracks(0, [[10.0, 10.0], [20.0, 20.0]])
    eng.tracks.P[1, 0, 0] = -50.0
    before = eng.tracks.x.copy()
    with pytest.raises(ValueError, match="positive definite"):
        eng.apply(_obs(Source.EVENT, 5 * MS, ids, [[11.0, 10.0], [21.0, 20.0]]))
    assert np.array_equal(eng.tracks.x, before) and eng.tracks.n_updates.sum() == 0
