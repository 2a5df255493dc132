"""Validation figures of a rollout, computed by `blinktrack_ros.eval.metrics`.

Each (snippet, track) pair becomes one track id. Predicted rows `id t x y` hold the rollout's
positions (the first row is the start position at t0); ground-truth rows `id t x y vis` stop
before the first sample outside the image (as the EC protocol's tracks end there).
"""

from __future__ import annotations

import numpy as np

from blinktrack_ros.eval.metrics import delta_metrics, feature_age_metrics
from blinktrack_ros.train.event_rollout import RolloutResult


def track_rows(r: RolloutResult) -> tuple[np.ndarray, np.ndarray]:
    """(pred (M, 4) `id t x y`, gt (G, 5) `id t x y vis`) rows of a rollout, t in seconds."""
    k, n = r.gt_vis.shape
    ids = np.repeat(np.arange(n, dtype=np.float64)[None], k, 0)  # K N
    t = r.times_ns.astype(np.float64) * 1e-9
    pred = np.stack([ids, t, r.positions[..., 0], r.positions[..., 1]], -1)  # K N 4
    gt = np.concatenate([pred[..., :2], r.gt_xy, r.gt_vis[..., None].astype(np.float64)], -1)
    inside = np.cumprod(r.gt_vis != -1, axis=0).astype(bool)  # K N: until first outside
    pred_rows = pred.transpose(1, 0, 2).reshape(-1, 4)
    gt_rows = gt.transpose(1, 0, 2)[inside.T].reshape(-1, 5)
    return pred_rows, gt_rows


def rollout_metrics(r: RolloutResult, width: int, height: int) -> dict[str, float]:
    """Feature age, delta metrics and endpoint errors of a rollout (NaN where undefined).

    `epe_final_px`: median endpoint error at the last step over tracks visible there;
    `epe_mean_px`: mean over visible (step >= 1, track) samples of the error, capped at 50 px.
    """
    pred, gt = track_rows(r)
    fa = feature_age_metrics(pred, gt)
    dm = delta_metrics(pred, gt, width, height)
    err = np.linalg.norm(r.positions - r.gt_xy, axis=-1)  # K N
    vis = r.gt_vis == 1
    last = err[-1][vis[-1]]
    mid = np.minimum(err[1:][vis[1:]], 50.0)
    return {
        "feature_age": fa["feature_age"], "expected_feature_age": fa["expected_feature_age"],
        "inlier_ratio": fa["inlier_ratio"], "age_5": fa["age_5"],
        "delta_vis": dm["delta_vis"], "delta_occ": dm["delta_occ"], "delta_all": dm["delta_all"],
        "epe_final_px": float(np.median(last)) if last.size else float("nan"),
        "epe_mean_px": float(np.mean(mid)) if mid.size else float("nan"),
        "n_tracks": float(r.gt_vis.shape[1]),
    }
