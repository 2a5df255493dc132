"""The ESIM-style simulator against a slow per-pixel reference, evlib's ESIM and real frames."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from blinktrack_ros.synth import esim
from blinktrack_ros.synth.esim import EsimConfig


def _reference_events(images, times_ns, c_pos, c_neg, config: EsimConfig):
    """Slow per-pixel ESIM written from the paper's description (one Python loop per crossing)."""
    H, W = images[0].shape
    logs = [np.log(np.maximum(np.asarray(im, np.float64), config.log_floor)) for im in images]
    out = []
    for y in range(H):
        for x in range(W):
            ref, last = logs[0][y, x], -np.inf
            for k in range(1, len(images)):
                L0, L1, t0, t1 = logs[k - 1][y, x], logs[k][y, x], times_ns[k - 1], times_ns[k]
                while True:
                    up = L1 > ref
                    level = ref + c_pos[y, x] if up else ref - c_neg[y, x]
                    if (up and level > L1) or (not up and level < L1):
                        break
                    t = t0 + (level - L0) / (L1 - L0) * (t1 - t0)
                    if t - last >= config.refractory_ns:
                        out.append((int(np.clip(np.ceil(t), t0 + 1, t1)), y, x, int(up)))
                        last = t
                    ref = level
    return sorted(out)


def _random_video(rng, n=12, shape=(6, 7)):
    base = rng.uniform(0.05, 1.0, shape)
    return [np.clip(base * np.exp(rng.normal(0, 0.6, shape)), 0, 1) for _ in range(n)]


@pytest.mark.parametrize("refractory_ns", [0, 300_000])
def test_matches_slow_per_pixel_reference(rng, refractory_ns):
    config = EsimConfig(contrast_sigma=0.04, refractory_ns=refractory_ns)
    images = _random_video(rng)
    times = np.cumsum(rng.integers(500_000, 1_500_000, len(images))).astype(np.int64)
    state = esim.init_state(images[0], int(times[0]), config, np.random.default_rng(3))
    batches = []
    for im, t in zip(images[1:], times[1:]):
        state, b = esim.step(state, im, int(t), config, np.random.default_rng(0))
        batches.append(b)
    ours = sorted(zip(*(np.concatenate([getattr(b, f) for b in batches]).tolist()
                        for f in ("t", "y", "x", "p"))))
    ref = _reference_events(images, times, state.c_pos, state.c_neg, config)
    assert len(ref) > 100
    assert len(ours) == len(ref)
    ours_a, ref_a = np.array(ours), np.array(ref)
    np.testing.assert_array_equal(ours_a[:, 1:], ref_a[:, 1:])
    assert np.abs(ours_a[:, 0] - ref_a[:, 0]).max() <= 1  # ns rounding only


def test_signed_event_sum_tracks_log_intensity(rng):
    """Without refractory suppression: |dL - (n_on C+ - n_off C-)| < C at every pixel."""
    config = EsimConfig(contrast_sigma=0.05, refractory_ns=0)
    images = _random_video(rng, n=30, shape=(20, 30))
    times = np.arange(len(images), dtype=np.int64) * 1_000_000
    state = esim.init_state(images[0], 0, config, rng)
    batches = []
    for im, t in zip(images[1:], times[1:]):
        state, b = esim.step(state, im, int(t), config, rng)
        batches.append(b)
    ev = esim.EventBatch.concatenate(batches)
    assert np.all(np.diff(ev.t) >= 0) and ev.t[0] > 0 and ev.t[-1] <= times[-1]
    sign = np.where(ev.p == 1, state.c_pos[ev.y, ev.x], -state.c_neg[ev.y, ev.x])
    summed = np.zeros(images[0].shape)
    np.add.at(summed, (ev.y, ev.x), sign)
    dL = esim.log_intensity(images[-1], config.log_floor) - esim.log_intensity(
        images[0], config.log_floor)
    residual = dL - summed
    assert np.all(residual < state.c_pos + 1e-9) and np.all(residual > -state.c_neg - 1e-9)


def _truck(shared_data: Path, n: int | None = None):
    folder = shared_data / "hfr_truck"
    times = np.round(np.loadtxt(folder / "timestamps.txt") * 1e9).astype(np.int64)
    paths = sorted((folder / "images").glob("*.png"))[:n]
    images = [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in paths]
    return images, times[:len(images)]


def _evlib_counts(images_u8, times_ns, threshold, log_floor):
    """ON/OFF counts of evlib's ESIM (PyPI evlib) on the same frames."""
    pytest.importorskip("evlib", reason="evlib (test extra) not installed")
    from evlib.simulation.config import ESIMConfig
    from evlib.simulation.esim import ESIMSimulator

    sim = ESIMSimulator(ESIMConfig(positive_threshold=threshold, negative_threshold=threshold,
                                   refractory_period_ms=0.0, log_floor=log_floor, device="cpu",
                                   dtype="float64"))
    on = off = 0
    for im, t in zip(images_u8, times_ns):
        _, _, _, p = sim.process_frame(im.astype(np.float64), t * 1e-9)
        on += int(np.sum(np.asarray(p) > 0))
        off += int(np.sum(np.asarray(p) < 0))
    return on, off


@pytest.mark.data
def test_counts_agree_with_evlib_esim(shared_data):
    images, times = _truck(shared_data, n=60)
    config = EsimConfig(contrast_pos=0.15, contrast_neg=0.15, contrast_sigma=0.0,
                        refractory_ns=0, log_floor=1e-3)
    floats = [im.astype(np.float64) / 255.0 for im in images]
    ours = esim.simulate(floats, times, config)
    on, off = int(ours.p.sum()), int(len(ours) - ours.p.sum())
    ev_on, ev_off = _evlib_counts(images, times, 0.15, 1e-3)
    assert ev_on > 1000 and ev_off > 1000
    # Same model, uniform thresholds: only float rounding at exact levels may differ.
    assert abs(on - ev_on) <= 0.005 * ev_on and abs(off - ev_off) <= 0.005 * ev_off
    # Per-pixel threshold spread changes single pixels, not the statistics (counts within 10%).
    spread = esim.simulate(floats, times, replace(config, contrast_sigma=0.03), seed=1)
    assert abs(len(spread) - (ev_on + ev_off)) <= 0.10 * (ev_on + ev_off)
    assert abs(spread.p.mean() - ev_on / (ev_on + ev_off)) < 0.03


@pytest.mark.data
def test_real_536fps_truck_frames(shared_data):
    images, times = _truck(shared_data)
    assert len(images) == 161
    floats = [im.astype(np.float64) / 255.0 for im in images]
    config = EsimConfig(noise_rate_hz=0.0)
    ev = esim.simulate(floats, times, config, seed=0)
    no_refr = esim.simulate(floats, times, replace(config, refractory_ns=0), seed=0)
    assert ev.width == 240 and ev.height == 180
    assert np.all(np.diff(ev.t) >= 0) and ev.t[0] > times[0] and ev.t[-1] <= times[-1]
    assert ev.x.max() < 240 and ev.y.max() < 180
    # A panning camera: many events of both polarities, neither dominating.
    assert len(ev) > 50_000 and 0.3 < ev.p.mean() < 0.7
    # The refractory period only removes events, and spaces each pixel's events by >= 0.1 ms.
    assert len(ev) <= len(no_refr)
    order = np.lexsort((ev.t, ev.y.astype(np.int64) * 240 + ev.x))
    pix, t = (ev.y.astype(np.int64) * 240 + ev.x)[order], ev.t[order]
    same = pix[1:] == pix[:-1]
    assert np.all(np.diff(t)[same] >= config.refractory_ns - 1)


def test_noise_and_hot_pixels_rates(rng):
    """Static scene: only noise fires; counts match the Poisson rates; hot pixels keep polarity."""
    config = EsimConfig(noise_rate_hz=2.0, hot_pixel_fraction=0.01, hot_pixel_rate_hz=300.0)
    image = np.full((50, 40), 0.5)
    times = np.arange(201, dtype=np.int64) * 5_000_000  # 1 s
    ev = esim.simulate([image] * times.size, times, config, seed=4)
    n_hot = round(0.01 * image.size)
    flat = ev.y.astype(np.int64) * 40 + ev.x
    counts = np.bincount(flat, minlength=image.size)
    hot = counts > 100  # 300 expected for hot, 2 for the rest
    assert hot.sum() == n_hot
    expected_bg = 2.0 * image.size
    assert abs(counts[~hot].sum() - expected_bg) < 5 * np.sqrt(expected_bg)
    assert abs(counts[hot].mean() - 300.0) < 5 * np.sqrt(300.0 / n_hot)
    for pix in np.flatnonzero(hot):
        p = ev.p[flat == pix]
        bg_share = 2.0 / 300.0
        assert max(p.mean(), 1 - p.mean()) > 1 - 5 * bg_share  # one polarity (+ rare noise)
    assert np.all(np.diff(ev.t) >= 0)
