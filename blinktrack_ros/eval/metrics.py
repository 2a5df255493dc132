"""Feature-age metrics of the EC/EDS benchmark and the delta metrics of BlinkTrack.

By default `feature_age_metrics` reproduces the public reference script step by step (see
`/work/shared/notes/feature-age-protocol.md`), quirks included, so numbers are comparable with
published tables:

1. if the first prediction row's time differs from the first GT row's, all predicted times are
   shifted by t_gt[0] - t_pred[0] (first rows of the files, whatever their ids);
2. per threshold and predicted id: the GT track is cropped to the predicted time span when it
   ends later than the prediction (the cropped track G also gives the duration); tracks with
   G shorter than 2 rows are skipped; the prediction is interpolated linearly at G's times
   (extrapolated outside its span); e = distance, first sample dropped;
3. **index quirk**: with k the index in e of the first error above the threshold, the reference
   uses j = k - 1 (or 0 when k <= 1) as an index into G, although e[k] belongs to G[k + 1]: a
   track's age ends one sample earlier than the last sample within the threshold, and a track
   that fails at its second evaluated sample scores 0. Its tracking error is mean(e[1:j + 1])
   (e[0] is never counted; a 2-row track that never fails has no error: NaN, as the reference).

Options:
- `corrected=True` (`blinktrack eval --corrected`): the age ends at the last GT sample within
  the threshold (j = k, age 0 only when the first evaluated sample fails) and the tracking error
  is the mean of the errors up to it, e[0] included.
- `truncate_pred=True` (`--truncate-pred`): truncate predicted x, y towards zero first, as the
  reference trackers write their output files (`%i`); use it to compare our raw float output
  with published numbers computed from such files.

Not in the reference, because it would crash there: a predicted id missing from the GT is
skipped and counted (`n_pred_ids_without_gt`); a one-row prediction is held constant; repeated
times within a predicted track keep their last row (counted in `n_duplicate_pred_times`).
"""

from __future__ import annotations

import warnings

import numpy as np

THRESHOLDS_PX = np.arange(1, 32)
DELTA_TAUS_PX = (1, 2, 4, 8, 16)
DELTA_IMAGE_SIZE = 256
AGE_5_THRESHOLD_PX = 5


def group_tracks(tracks: np.ndarray) -> dict[float, np.ndarray]:
    """Split rows `id t x y [vis]` by id (ascending), keeping file order within each track.

    Returns:
        id -> (M, C - 1) rows `t x y [vis]`.
    """
    order = np.argsort(tracks[:, 0], kind="stable")
    ids, starts = np.unique(tracks[order, 0], return_index=True)
    parts = np.split(tracks[order, 1:], starts[1:])
    return {float(i): part for i, part in zip(ids, parts)}


def interp_extrapolate(t_known: np.ndarray, v_known: np.ndarray, t_query: np.ndarray
                       ) -> np.ndarray:
    """Linear interpolation through (t_known, v_known), linear extrapolation outside.

    Args:
        t_known: (M,) strictly increasing sample times (M >= 1; M == 1 gives a constant).
        v_known: (M, D) values.
        t_query: (Q,) query times.

    Returns:
        (Q, D) values; the segment of each query is the one scipy's `interp1d(kind="linear",
        fill_value="extrapolate")` uses (first/last segment outside the span).
    """
    if t_known.shape[0] == 1:
        return np.repeat(v_known[:1], t_query.shape[0], axis=0)
    hi = np.clip(np.searchsorted(t_known, t_query), 1, t_known.shape[0] - 1)
    lo = hi - 1
    slope = (v_known[hi] - v_known[lo]) / (t_known[hi] - t_known[lo])[:, None]
    return slope * (t_query - t_known[lo])[:, None] + v_known[lo]


def _prepare_pred_track(rows: np.ndarray) -> tuple[np.ndarray, int]:
    """Sort a predicted track by time and keep the last row of repeated times."""
    order = np.argsort(rows[:, 0], kind="stable")
    rows = rows[order]
    keep = np.append(rows[1:, 0] != rows[:-1, 0], True)
    return rows[keep], int(np.count_nonzero(~keep))


def track_errors(pred_rows: np.ndarray, gt_rows: np.ndarray, pred_last_t: float | None = None
                 ) -> tuple[np.ndarray, np.ndarray] | None:
    """Crop the GT track to the prediction (synchronous mode) and compute the errors.

    Args:
        pred_rows: (M, >=3) predicted rows `t x y`, time-sorted without repeats.
        gt_rows: (K, >=3) GT rows `t x y [vis]`, in file order.
        pred_last_t: time of the prediction's last row in file order (the reference crops only
            when the GT's last row is later than it); default: the latest predicted time.

    Returns:
        (G_t, e): (L,) times of the cropped GT track and (L - 1,) pixel errors after its first
        sample, or None when fewer than 2 GT rows remain (the track is skipped).
    """
    g = gt_rows
    if g[-1, 0] > (pred_rows[-1, 0] if pred_last_t is None else pred_last_t):
        inside = (g[:, 0] >= pred_rows[:, 0].min()) & (g[:, 0] <= pred_rows[:, 0].max())
        g = g[inside]
    if g.shape[0] < 2:
        return None
    xy = interp_extrapolate(pred_rows[:, 0], pred_rows[:, 1:3], g[:, 0])
    e = np.linalg.norm(g[:, 1:3] - xy, axis=1)[1:]
    return g[:, 0], e


def ages_at_thresholds(g_t: np.ndarray, e: np.ndarray, thresholds: np.ndarray,
                       corrected: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Relative feature age and tracking error of one track for every threshold.

    Args:
        g_t: (L,) cropped GT times (see `track_errors`).
        e: (L - 1,) pixel errors after the first sample.
        thresholds: (T,) pixel thresholds.
        corrected: see the module docstring.

    Returns:
        (T,) ages in [0, 1]; (T,) tracking errors; (T,) bool, True where the track records an
        age and an error (False: age 0 at its first evaluated samples, error NaN).
    """
    fails = e[None, :] > thresholds[:, None]  # T L-1
    any_fail = fails.any(axis=1)
    k = np.argmax(fails, axis=1)
    duration = g_t[-1] - g_t[0]
    ages = np.empty(thresholds.shape[0])
    errors = np.full(thresholds.shape[0], np.nan)
    recorded = np.zeros(thresholds.shape[0], dtype=bool)
    for i in range(thresholds.shape[0]):
        if corrected:
            j = int(k[i]) if any_fail[i] else g_t.shape[0] - 1
            window = e[:j]
        else:
            j = (int(k[i]) - 1 if k[i] > 1 else 0) if any_fail[i] else -1
            window = e[1:j + 1] if j != -1 else e[1:]
        if j == 0:
            ages[i] = 0.0
            continue
        ages[i] = (g_t[j] - g_t[0]) / duration
        recorded[i] = True
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # empty window: NaN as reference
            errors[i] = np.mean(window) if window.size else np.nan
    return ages, errors, recorded


def _check_tracks(tracks: np.ndarray, what: str, min_cols: int = 4) -> np.ndarray:
    tracks = np.asarray(tracks, dtype=np.float64)
    if tracks.ndim != 2 or tracks.shape[1] < min_cols or tracks.shape[0] == 0:
        cols = "id t x y vis" if min_cols == 5 else "id t x y [vis]"
        raise ValueError(f"{what} must be non-empty rows `{cols}`, got shape {tracks.shape}")
    return tracks


def _mean_nonzero(ages: np.ndarray) -> tuple[float, float, float]:
    """(inlier ratio, mean and std of the non-zero ages; 0 when no age is > 0), as reference."""
    if ages.size == 0:
        return float("nan"), 0.0, 0.0
    inlier = float(np.count_nonzero(ages > 0) / ages.size)
    if not inlier > 0:
        return inlier, 0.0, 0.0
    nonzero = ages[ages != 0]
    return inlier, float(np.mean(nonzero)), float(np.std(nonzero))


def feature_age_metrics(pred: np.ndarray, gt: np.ndarray,
                        thresholds: np.ndarray = THRESHOLDS_PX, corrected: bool = False,
                        truncate_pred: bool = False) -> dict:
    """Feature-age metrics of one sequence (reference protocol unless `corrected`).

    Args:
        pred: (N, 4+) predicted rows `id t x y` (t in s, x y in px).
        gt: (K, 4+) GT rows `id t x y [vis]`.
        thresholds: (T,) pixel thresholds (the benchmark: 1 ... 31).
        corrected: fix the index quirk (module docstring).
        truncate_pred: truncate predicted x, y towards zero first.

    Returns:
        `feature_age` (mean over thresholds of the mean non-zero age), `expected_feature_age`,
        `inlier_ratio`, their `*_std` over thresholds, `age_5`/`te_5` (mean non-zero age and
        mean tracking error at 5 px) with stds, per-threshold lists `thresholds_px`,
        `feature_age_per_threshold`, `inlier_ratio_per_threshold`,
        `expected_feature_age_per_threshold`, and counts `n_tracks`,
        `n_skipped_short`, `n_pred_ids_without_gt`, `n_duplicate_pred_times`.
    """
    pred = _check_tracks(pred, "pred").copy()
    gt = _check_tracks(gt, "gt")
    if truncate_pred:
        pred[:, 2:4] = np.trunc(pred[:, 2:4])
    if pred[0, 1] != gt[0, 1]:  # step 1: align the first rows' times (same float operations)
        pred[:, 1] += -pred[0, 1] + gt[0, 1]
    thr = np.append(np.asarray(thresholds, dtype=np.float64), AGE_5_THRESHOLD_PX)
    gt_tracks = group_tracks(gt)
    ages, errors, recorded = [], [], []
    n_short = n_missing = n_dup = 0
    for track_id, rows in group_tracks(pred).items():
        if track_id not in gt_tracks:
            n_missing += 1
            continue
        last_t = float(rows[-1, 0])
        rows, dup = _prepare_pred_track(rows)
        n_dup += dup
        cropped = track_errors(rows, gt_tracks[track_id], last_t)
        if cropped is None:
            n_short += 1
            continue
        a, te, rec = ages_at_thresholds(*cropped, thr, corrected=corrected)
        ages.append(a)
        errors.append(te)
        recorded.append(rec)
    shape = (len(ages), thr.shape[0])
    A = np.asarray(ages).reshape(shape)  # tracks, thresholds
    E = np.asarray(errors).reshape(shape)
    R = np.asarray(recorded, dtype=bool).reshape(shape)
    per_thr = [_mean_nonzero(A[:, i]) for i in range(thr.shape[0] - 1)]
    inliers = np.array([p[0] for p in per_thr])
    nz_age = np.array([p[1] for p in per_thr])
    inlier_5, age_5, age_5_std = _mean_nonzero(A[:, -1])
    te_5 = E[R[:, -1], -1] if inlier_5 > 0 else np.zeros(1)
    return {
        "feature_age": float(np.mean(nz_age)), "feature_age_std": float(np.std(nz_age)),
        "expected_feature_age": float(np.mean(inliers * nz_age)),
        "inlier_ratio": float(np.mean(inliers)), "inlier_ratio_std": float(np.std(inliers)),
        "age_5": age_5, "age_5_std": age_5_std,
        "te_5": float(np.mean(te_5)), "te_5_std": float(np.std(te_5)),
        "thresholds_px": [float(t) for t in thr[:-1]],
        "feature_age_per_threshold": nz_age.tolist(),
        "inlier_ratio_per_threshold": inliers.tolist(),
        "expected_feature_age_per_threshold": (inliers * nz_age).tolist(),
        "n_tracks": int(shape[0]), "n_skipped_short": n_short,
        "n_pred_ids_without_gt": n_missing, "n_duplicate_pred_times": n_dup,
    }


def delta_metrics(pred: np.ndarray, gt: np.ndarray, width: int, height: int,
                  taus: tuple[float, ...] = DELTA_TAUS_PX, truncate_pred: bool = False) -> dict:
    """BlinkTrack's delta metrics on GT with visibility.

    Every GT sample (t0 included) is compared with the prediction interpolated (extrapolated)
    at its time; errors are rescaled to a 256 x 256 image (dx * 256 / width, dy * 256 / height);
    delta = share of samples with error <= tau, averaged over tau. A GT id without prediction
    counts all its samples as misses (`n_gt_ids_without_pred`).

    Args:
        pred: (N, 4+) predicted rows `id t x y`.
        gt: (K, 5) GT rows `id t x y vis` (vis == 1 visible, anything else occluded).
        width: image width in pixels.
        height: image height in pixels.
        taus: thresholds in pixels of the 256 x 256 image.
        truncate_pred: truncate predicted x, y towards zero first.

    Returns:
        `delta_vis`, `delta_occ`, `delta_all` (NaN when a set has no samples), `n_samples_vis`,
        `n_samples_occ`, `n_gt_ids_without_pred`.
    """
    pred = _check_tracks(pred, "pred").copy()
    gt = _check_tracks(gt, "gt (with visibility)", min_cols=5)
    if truncate_pred:
        pred[:, 2:4] = np.trunc(pred[:, 2:4])
    scale = np.array([DELTA_IMAGE_SIZE / width, DELTA_IMAGE_SIZE / height])
    pred_tracks = group_tracks(pred)
    errs, vis, n_missing = [], [], 0
    for track_id, g in group_tracks(gt).items():
        vis.append(g[:, 3] == 1)
        if track_id not in pred_tracks:
            n_missing += 1
            errs.append(np.full(g.shape[0], np.inf))
            continue
        p, _ = _prepare_pred_track(pred_tracks[track_id])
        xy = interp_extrapolate(p[:, 0], p[:, 1:3], g[:, 0])
        errs.append(np.linalg.norm((g[:, 1:3] - xy) * scale, axis=1))
    err, visible = np.concatenate(errs), np.concatenate(vis)
    taus_arr = np.asarray(taus, dtype=np.float64)

    def share(mask: np.ndarray) -> float:
        if not mask.any():
            return float("nan")
        return float(np.mean(err[mask][None, :] <= taus_arr[:, None]))

    return {"delta_vis": share(visible), "delta_occ": share(~visible),
            "delta_all": share(np.ones_like(visible)),
            "n_samples_vis": int(visible.sum()), "n_samples_occ": int((~visible).sum()),
            "n_gt_ids_without_pred": n_missing}


def mean_metrics(per_sequence: dict[str, dict]) -> dict:
    """Average metrics dicts over sequences (the benchmark's summary row).

    Floats are averaged over the sequences where they are finite, per-threshold lists
    element-wise, counts (`n_*`) summed; `n_sequences` is added.
    """
    out: dict = {"n_sequences": len(per_sequence)}
    keys = dict.fromkeys(k for m in per_sequence.values() for k in m)
    for key in keys:
        values = [m[key] for m in per_sequence.values() if key in m]
        if key.startswith("n_"):
            out[key] = int(sum(values))
        elif isinstance(values[0], list):
            if len({len(v) for v in values}) == 1:
                out[key] = np.mean(np.asarray(values, dtype=np.float64), axis=0).tolist()
        else:
            finite = [float(v) for v in values if np.isfinite(v)]
            out[key] = float(np.mean(finite)) if finite else float("nan")
    if "thresholds_px" in out:
        out["thresholds_px"] = next(iter(per_sequence.values()))["thresholds_px"]
    return out
