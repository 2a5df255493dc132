"""Noise calibration: the fit recovers a known visibility -> variance law; errors against GT."""

from __future__ import annotations

import numpy as np
import pytest

from blinktrack_ros.tracking.observation import Observations, Source
from blinktrack_ros.train.calibrate import ErrorRecorder, fit_noise


def test_fit_recovers_the_law_that_generated_the_errors(rng: np.random.Generator) -> None:
    log_r0, slope = 0.3, 6.0
    vis = rng.uniform(0.2, 1.0, 40_000)
    sigma = np.sqrt(np.exp(log_r0 + slope * (1 - vis)))
    err = rng.normal(size=(vis.size, 2)) * sigma[:, None]
    fit = fit_noise(vis, err)
    # binning over a range of visibilities blurs the law a little; 5 % is far below the effect
    assert fit.log_r0 == pytest.approx(log_r0, abs=0.15)
    assert fit.slope == pytest.approx(slope, rel=0.05)
    assert fit.samples == vis.size and len(fit.bin_variance) == 10
    # robust: 5 % of lost tracks 100 px off barely move it
    err[::20] += 100.0
    assert fit_noise(vis, err).slope == pytest.approx(slope, rel=0.15)


def test_fit_rejects_too_few_samples() -> None:
    with pytest.raises(ValueError):
        fit_noise(np.ones(5), np.zeros((5, 2)))


def test_recorder_errors_against_interpolated_ground_truth() -> None:
    # GT: id 7 moves from (10, 20) at 0 s to (20, 20) at 1 s; occluded after 0.5 s
    gt = np.array([[7, 0.0, 10.0, 20.0, 1], [7, 0.5, 15.0, 20.0, 0], [7, 1.0, 20.0, 20.0, 0]])
    rec = ErrorRecorder()
    obs = Observations(Source.EVENT, 250_000_000, np.array([3], np.uint32),
                       np.array([[13.0, 21.0]]), np.eye(2)[None], np.array([0.9]))
    rec(obs, {3: 7})
    rec(Observations(Source.KLT, 300_000_000, np.array([3], np.uint32), np.array([[0.0, 0.0]]),
                     np.eye(2)[None], np.array([1.0])), {3: 7})  # not a network: ignored
    rows = rec.errors(gt)
    np.testing.assert_allclose(rows, [[int(Source.EVENT), 0.9, 0.5, 1.0, 1.0]])
