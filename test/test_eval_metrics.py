"""Feature-age and delta metrics: hand-computed cases, scipy reference, the reference's output."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.interpolate import interp1d

from blinktrack_ros.eval.metrics import (
    THRESHOLDS_PX,
    ages_at_thresholds,
    delta_metrics,
    feature_age_metrics,
    interp_extrapolate,
    mean_metrics,
    track_errors,
)


def rows(track_id: float, t, x, y=None, vis=None) -> np.ndarray:
    """Rows `id t x y [vis]` of one track."""
    t = np.asarray(t, dtype=float)
    cols = [np.full_like(t, track_id), t, np.asarray(x, float),
            np.zeros_like(t) if y is None else np.asarray(y, float)]
    if vis is not None:
        cols.append(np.asarray(vis, float))
    return np.stack(cols, axis=1)


T5 = [0.0, 1.0, 2.0, 3.0, 4.0]
GT_A = rows(0, T5, [0, 0, 0, 0, 0])
# Errors after the first sample e = [0, 0, 10, 10]: the first error > 5 px is e[2] (G[3]).
PRED_A = rows(0, T5, [0, 0, 0, 10, 10])
# e = [0, 10, 10, 10]: the second evaluated sample G[2] fails.
GT_B = rows(1, T5, [50, 50, 50, 50, 50])
PRED_B = rows(1, T5, [50, 50, 60, 60, 60])


def test_interpolation_matches_scipy_interp1d_with_extrapolation(rng):
    t = np.sort(rng.uniform(0, 10, 12))
    v = rng.normal(size=(12, 2))
    q = rng.uniform(-3, 13, 200)
    ours = interp_extrapolate(t, v, q)
    for d in range(2):
        ref = interp1d(t, v[:, d], fill_value="extrapolate")(q)
        np.testing.assert_allclose(ours[:, d], ref, rtol=0, atol=1e-12)


def test_index_quirk_and_corrected_ages_by_hand():
    thr = np.array([5.0, 10.0])
    g_t, e = track_errors(PRED_A[:, 1:], GT_A[:, 1:])
    np.testing.assert_array_equal(e, [0, 0, 10, 10])
    ages, te, rec = ages_at_thresholds(g_t, e, thr)
    # 5 px: k = 2 -> reference j = k - 1 = 1 -> age (t1 - t0) / (t4 - t0) = 1/4;
    # error mean(e[1:2]) = 0.
    # 10 px: nothing > 10 -> j = -1 -> age 1; error mean(e[1:]) = (0 + 10 + 10) / 3.
    np.testing.assert_allclose(ages, [0.25, 1.0])
    np.testing.assert_allclose(te, [0.0, 20 / 3])
    assert rec.all()
    ages, te, _ = ages_at_thresholds(g_t, e, thr, corrected=True)
    # Corrected: last sample within 5 px is G[2] -> age 2/4; error mean(e[0:2]) = 0; all: 20/4.
    np.testing.assert_allclose(ages, [0.5, 1.0])
    np.testing.assert_allclose(te, [0.0, 5.0])


def test_second_sample_failure_scores_zero_in_reference_only():
    g_t, e = track_errors(PRED_B[:, 1:], GT_B[:, 1:])
    ages, te, rec = ages_at_thresholds(g_t, e, np.array([5.0]))
    assert ages[0] == 0.0 and not rec[0] and np.isnan(te[0])  # k = 1 -> j = 0
    ages, te, rec = ages_at_thresholds(g_t, e, np.array([5.0]), corrected=True)
    assert ages[0] == pytest.approx(0.25) and te[0] == 0.0  # G[1] is within 5 px


def test_extrapolation_before_the_predicted_span():
    # GT starts 2 s before the prediction and ends earlier (no crop). The prediction moves
    # 3 px/s: extrapolated back it is at 4 and 7 px at t = 0, 1, exactly the GT; a clamped
    # interpolation would sit at 10 px there (error 3 at G[1] -> age 0 at 1 and 2 px).
    gt = rows(0, T5, [4, 7, 10, 13, 16])
    pred = rows(0, [2, 3, 4, 5], [10, 13, 16, 19])
    g_t, e = track_errors(pred[:, 1:], gt[:, 1:])
    np.testing.assert_allclose(e, 0, atol=1e-12)
    ages, _, _ = ages_at_thresholds(g_t, e, np.array([1.0]))
    assert ages[0] == 1.0


def test_gt_cropped_to_prediction_and_short_tracks_skipped():
    gt = np.concatenate([GT_A, rows(2, T5, [9] * 5)])
    # Track 0 predicted only up to t = 2: GT cropped to t in [0, 2], duration 2, no error.
    # Track 2 predicted only over [0, 0.5]: one GT row is left -> skipped (not in the ratio).
    pred = np.concatenate([rows(0, [0, 1, 2], [0, 0, 0]), rows(2, [0, 0.5], [9, 9])])
    m = feature_age_metrics(pred, gt)
    assert m["n_tracks"] == 1 and m["n_skipped_short"] == 1
    assert m["feature_age"] == 1.0 and m["inlier_ratio"] == 1.0


def test_aggregate_over_thresholds_by_hand():
    m = feature_age_metrics(np.concatenate([PRED_A, PRED_B]), np.concatenate([GT_A, GT_B]))
    # Thresholds 1..9 px: track A age 1/4, track B age 0 (k = 1) -> inliers 1/2, nz age 1/4.
    # Thresholds 10..31 px (errors of 10 are not > 10): both age 1 -> inliers 1, nz age 1.
    assert m["feature_age"] == pytest.approx((9 * 0.25 + 22 * 1.0) / 31)
    assert m["inlier_ratio"] == pytest.approx((9 * 0.5 + 22) / 31)
    assert m["expected_feature_age"] == pytest.approx((9 * 0.125 + 22) / 31)
    # 5 px: only A records an age (1/4) and an error (mean(e[1:2]) = 0).
    assert m["age_5"] == 0.25 and m["age_5_std"] == 0.0 and m["te_5"] == 0.0
    assert len(m["feature_age_per_threshold"]) == len(THRESHOLDS_PX) == 31
    assert np.mean(m["expected_feature_age_per_threshold"]) == pytest.approx(
        m["expected_feature_age"])
    c = feature_age_metrics(np.concatenate([PRED_A, PRED_B]), np.concatenate([GT_A, GT_B]),
                            corrected=True)
    # Corrected, 1..9 px: A age 2/4, B age 1/4 -> nz mean 3/8, inliers 1.
    assert c["feature_age"] == pytest.approx((9 * 0.375 + 22) / 31)
    assert c["inlier_ratio"] == 1.0


def test_first_row_time_shift_whatever_the_ids():
    # Predictions written on another clock: first prediction row (id 1) at 100 s, first GT row
    # (id 0) at 0 s -> every predicted time shifted by -100 s: same result as aligned files.
    pred = np.concatenate([PRED_B, PRED_A])
    shifted = pred.copy()
    shifted[:, 1] += 100.0
    gt = np.concatenate([GT_A, GT_B])
    assert feature_age_metrics(shifted, gt) == feature_age_metrics(pred, gt)


def test_truncate_pred_and_missing_ids():
    pred = PRED_A.copy()
    pred[:, 2] += 0.9  # 0.9 px off everywhere; truncation brings it back to 0
    pred = np.concatenate([pred, rows(7, [0, 1], [0, 0])])  # id 7 has no ground truth
    m = feature_age_metrics(pred, GT_A, thresholds=np.array([0.5]), truncate_pred=True)
    assert m["n_pred_ids_without_gt"] == 1
    assert m["feature_age"] == 0.25  # e = [0, 0, 10, 10] again: j = 1
    m = feature_age_metrics(pred, GT_A, thresholds=np.array([0.5]))
    assert m["inlier_ratio"] == 0.0  # 0.9 > 0.5 at the first evaluated sample


def test_delta_metrics_by_hand():
    gt = rows(0, T5, [0] * 5, vis=[1, 1, 0, 0, 1])
    pred = rows(0, T5, [0, 1.5, 3, 20, 0.5])
    d = delta_metrics(pred, gt, width=256, height=256)
    # visible errors {0, 1.5, 0.5}: share <= 1, 2, 4, 8, 16 = 2/3, 1, 1, 1, 1
    assert d["delta_vis"] == pytest.approx((2 / 3 + 4) / 5)
    # occluded {3, 20}: 0, 0, 1/2, 1/2, 1/2; all: 2/5, 3/5, 4/5, 4/5, 4/5
    assert d["delta_occ"] == pytest.approx(1.5 / 5)
    assert d["delta_all"] == pytest.approx(3.4 / 5)
    # x errors are rescaled by 256 / width: at width 512 they halve. Visible {0, 0.75, 0.25}:
    # all <= 1; occluded {1.5, 10}: share <= 1, 2, 4, 8, 16 = 0, 1/2, 1/2, 1/2, 1.
    d2 = delta_metrics(pred, gt, width=512, height=256)
    assert d2["delta_vis"] == 1.0 and d2["delta_occ"] == pytest.approx(2.5 / 5)
    # A GT track without prediction counts as missed everywhere.
    d3 = delta_metrics(pred, np.concatenate([gt, rows(3, T5, [0] * 5, vis=[1] * 5)]), 256, 256)
    assert d3["n_gt_ids_without_pred"] == 1
    assert d3["delta_vis"] == pytest.approx((2 / 3 + 4) / 5 * 3 / 8)


def test_mean_metrics_skips_nan_and_sums_counts():
    m = mean_metrics({"a": {"feature_age": 0.5, "delta_occ": float("nan"), "n_tracks": 2,
                            "feature_age_per_threshold": [0.0, 1.0]},
                      "b": {"feature_age": 1.0, "delta_occ": 0.4, "n_tracks": 3,
                            "feature_age_per_threshold": [1.0, 1.0]}})
    assert m["feature_age"] == 0.75 and m["delta_occ"] == 0.4 and m["n_tracks"] == 5
    assert m["feature_age_per_threshold"] == [0.5, 1.0] and m["n_sequences"] == 2


def test_bad_input_raises_clear_errors():
    with pytest.raises(ValueError, match="id t x y"):
        feature_age_metrics(np.zeros((0, 4)), GT_A)
    with pytest.raises(ValueError, match="vis"):
        delta_metrics(PRED_A, GT_A, 240, 180)
