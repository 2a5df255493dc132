"""Slider line fits: a real error on EC slider_depth (static scene, camera on a linear slider)."""

from __future__ import annotations

import numpy as np
import pytest

from blinktrack_ros.eval.realcheck import (
    RealCheckConfig,
    line_fit,
    lk_reference,
    load_real,
    read_slider,
    slider_line_fits,
    slider_position,
    undistort,
)


def test_line_fit_recovers_the_noise_of_exact_slider_tracks():
    rng = np.random.default_rng(0)
    F, N, sigma = 40, 300, 0.3
    s = np.linspace(0.1, 0.2, F)
    inv_depth = rng.uniform(100, 600, N)  # f / Z in px per m
    u0, v0 = rng.uniform(0, 240, N), rng.uniform(0, 180, N)
    truth = np.stack([u0 - np.outer(s - s[0], inv_depth), np.tile(v0, (F, 1))], -1)
    noisy = truth + rng.normal(0, sigma, truth.shape)
    fit = line_fit(noisy, np.ones((F, N), bool), s)
    # RMS 2-D residual distance: x loses 2 dof, y 1 dof out of F
    expected = sigma * np.sqrt(((F - 2) + (F - 1)) / F)
    assert fit["tracks"] == N and fit["rms_median_px"] == pytest.approx(expected, rel=0.05)
    assert fit["moved_median_px"] == pytest.approx(np.median(inv_depth) * 0.1, rel=0.1)
    # a track drifting in y, or lagging (x not linear in s), is caught
    drift = truth.copy()
    drift[:, :, 1] += np.linspace(0, 3, F)[:, None]
    assert line_fit(drift, np.ones((F, N), bool), s)["y_median_px"] > 0.8
    lag = truth.copy()
    lag[:, :, 0] = u0 - np.outer((s - s[0]) ** 2 / 0.1, inv_depth)
    assert line_fit(lag, np.ones((F, N), bool), s)["x_median_px"] > 0.5
    # too few valid frames: not fitted, counted
    few = np.zeros((F, N), bool)
    few[:2] = True
    assert line_fit(truth, few, s)["too_short"] == N


@pytest.mark.data
def test_slider_depth_lk_is_a_line_and_zero_motion_does_not_move(shared_data):
    folder = shared_data / "ec_slider_depth"
    K, dist, rows = read_slider(folder)
    assert K[0, 0] == pytest.approx(335.419, abs=1e-3)
    s = slider_position(rows, rows[:5, 0])
    assert np.allclose(s, rows[:5, 1])
    # undistortion of the principal point is the identity
    assert np.allclose(undistort(K[:2, 2][None], K, dist), K[:2, 2][None], atol=1e-6)
    data = load_real(folder)
    from blinktrack_ros.tracking.seeding import SeedConfig, detect_seeds

    seeds = detect_seeds(data.frames[0], np.zeros((0, 2)), SeedConfig(target_count=30))
    lk, valid = lk_reference(data.frames, seeds, RealCheckConfig())
    result = {"frame_times_s": (data.frame_times_ns * 1e-9).tolist(), "modes": {},
              "arrays": {"seeds": seeds, "lk": lk, "lk_valid": valid}}
    fits = slider_line_fits(folder, result)["fits"]
    # Real LK on a real slider: sub-pixel line fits while moving several pixels
    assert fits["lk (frame 0 -> k)"]["rms_median_px"] < 0.4
    assert fits["lk (frame 0 -> k)"]["moved_median_px"] > 5
    assert fits["zero motion"]["moved_median_px"] == pytest.approx(0.0, abs=1e-9)
