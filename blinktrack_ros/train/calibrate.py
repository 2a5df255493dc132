"""Calibrate the networks' measurement noise R against ground truth on validation sequences.

The networks output visibility logits; the paper maps p_vis to r = r_max (1 - p_vis)^b. With the
shipped lite weights that r collapses to its floor for almost every observation (p_vis is not a
calibrated probability), so the Kalman filter trusts every observation fully. This module runs
the full tracker (mode `ei`, the inference path) on sequences with ground truth, records every
network observation's error, and fits per source

    log r = log_r0 + slope * (1 - visibility)      (r: per-axis error variance, px^2)

by least squares on the log of a robust per-decile variance of the errors: per axis
sigma^2 = (median |error| / sqrt(2 ln 2))^2, exact for isotropic Gaussian errors, so the tails
of lost tracks (tens of pixels) do not dominate. The fitted values are `FusionConfig.*_noise_*`
(the image offset then inflated on validation, see weights/README.md).

    python -m blinktrack_ros.train.calibrate DATA [--mode ei] [--calibrated] \
        [--event-weights W] [--image-weights W] [--write]                  # bags + GT

--write stores each fit in the given weights file (`extra["fusion_noise"]`); the trackers use
it for that source (`FusionConfig.noise_from_weights`, default on).

Use validation sequences only (e.g. `blinktrack synth --preset benchmark --seed 2000`), never the
benchmark seeds.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
import json

import numpy as np

from blinktrack_ros.tracking.observation import Observations, Source


@dataclass(frozen=True)
class NoiseFit:
    """r = exp(log_r0 + slope * (1 - visibility)) px^2, and the binned data behind it."""

    log_r0: float
    slope: float
    bin_one_minus_vis: tuple[float, ...]
    bin_variance: tuple[float, ...]
    samples: int


def fit_noise(visibility: np.ndarray, error_px: np.ndarray, bins: int = 10) -> NoiseFit:
    """Fit log r = log_r0 + slope (1 - vis) to (N,) visibilities and (N, 2) position errors.

    Bins are quantiles of the visibility (equal counts); per bin, r is the per-axis variance
    from the median error norm (the norm of a 2-D isotropic Gaussian error of per-axis sigma
    has median sigma sqrt(2 ln 2)).
    """
    visibility = np.asarray(visibility, np.float64).reshape(-1)
    error_px = np.asarray(error_px, np.float64).reshape(-1, 2)
    if visibility.size != error_px.shape[0] or visibility.size < 2 * bins:
        raise ValueError(f"need >= {2 * bins} samples with matching shapes, got "
                         f"{visibility.shape} and {error_px.shape}")
    norm = np.linalg.norm(error_px, axis=1)
    order = np.argsort(visibility, kind="stable")
    xs, ys = [], []
    for part in np.array_split(order, bins):
        xs.append(1.0 - float(np.median(visibility[part])))
        ys.append(float(np.median(norm[part]) ** 2 / (2.0 * np.log(2.0))))
    slope, log_r0 = np.polyfit(np.array(xs), np.log(np.maximum(ys, 1e-12)), 1)
    return NoiseFit(float(log_r0), float(slope), tuple(xs), tuple(ys), int(visibility.size))


class ErrorRecorder:
    """Observer for `pipeline_tracker`: keeps (source, t, external id, z, visibility) rows."""

    def __init__(self) -> None:
        self.rows: list[np.ndarray] = []

    def __call__(self, obs: Observations, external_ids: dict[int, int]) -> None:
        if obs.source not in (Source.EVENT, Source.IMAGE) or len(obs) == 0:
            return
        ext = np.array([external_ids.get(int(i), -1) for i in obs.ids], np.float64)
        n = len(obs)
        self.rows.append(np.column_stack([
            np.full(n, int(obs.source), np.float64), np.full(n, obs.t_ns * 1e-9), ext,
            obs.positions_px, obs.visibility]))

    def errors(self, gt: np.ndarray) -> np.ndarray:
        """(M, 5) rows source, visibility, ex, ey, gt_visible against GT rows `id t x y [vis]`."""
        rows = np.concatenate(self.rows) if self.rows else np.zeros((0, 6))
        out = []
        for gid in np.unique(rows[:, 2]):
            g = gt[gt[:, 0] == gid]
            r = rows[rows[:, 2] == gid]
            if g.shape[0] < 2:
                continue
            inside = (r[:, 1] >= g[0, 1]) & (r[:, 1] <= g[-1, 1])
            r = r[inside]
            gx, gy = (np.interp(r[:, 1], g[:, 1], g[:, k]) for k in (2, 3))
            last = np.searchsorted(g[:, 1], r[:, 1], side="right") - 1  # a flag: step, no lerp
            gv = g[last, 4] if g.shape[1] > 4 else np.ones(len(r))
            out.append(np.column_stack([r[:, 0], r[:, 5], r[:, 3] - gx, r[:, 4] - gy, gv]))
        return np.concatenate(out) if out else np.zeros((0, 5))


def main(argv: list[str] | None = None) -> int:
    """Run the tracker on DATA, print the fitted noise parameters per source as JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", help="folder of synthetic bags with <name>.gt.txt (validation!)")
    ap.add_argument("--mode", default="ei", help="tracker mode whose observations are fitted")
    ap.add_argument("--window-ms", type=float, default=10.0)
    ap.add_argument("--calibrated", action="store_true",
                    help="run the tracker with the current calibrated R (default: with the "
                         "paper's mapping, which is how the shipped values were fitted)")
    ap.add_argument("--event-weights", help="event network checkpoint (default: the shipped one)")
    ap.add_argument("--image-weights", help="image network checkpoint (default: the shipped one)")
    ap.add_argument("--write", action="store_true",
                    help="store each fit in the weights file given for its source (the "
                         "trackers then use it: FusionConfig.noise_from_weights)")
    args = ap.parse_args(argv)
    if args.write and not (args.event_weights or args.image_weights):
        ap.error("--write needs --event-weights and/or --image-weights (never the defaults "
                 "implicitly)")
    from dataclasses import replace

    import torch

    from blinktrack_ros.eval.benchmark import gt_seeds
    from blinktrack_ros.eval.commands import load_benchmark_sequences
    from blinktrack_ros.eval.tracker import BENCHMARK_FUSION, pipeline_tracker

    torch.set_num_threads(1)
    _, sequences = load_benchmark_sequences(args.data)
    errors = []
    for seq in sequences:
        recorder = ErrorRecorder()
        fusion = replace(BENCHMARK_FUSION, calibrated_noise=args.calibrated)
        tracker = pipeline_tracker(event_weights=args.event_weights,
                                   image_weights=args.image_weights, fusion=fusion,
                                   observer=recorder)
        tracker(seq, args.mode, gt_seeds(seq.gt), int(round(args.window_ms * 1e6)))
        errors.append(recorder.errors(seq.gt))
    err = np.concatenate(errors)
    result = {}
    for source in (Source.EVENT, Source.IMAGE):
        sel = err[:, 0] == int(source)
        if sel.sum() >= 20:
            fit = fit_noise(err[sel, 1], err[sel, 2:4])
            result[source.name.lower()] = {
                "log_r0": round(fit.log_r0, 3), "slope": round(fit.slope, 3),
                "samples": fit.samples,
                "bins_1_minus_vis": [round(v, 4) for v in fit.bin_one_minus_vis],
                "bins_variance_px2": [round(v, 3) for v in fit.bin_variance]}
    if args.write:
        from blinktrack_ros.models.checkpoint import set_fusion_noise

        for name, path in (("event", args.event_weights), ("image", args.image_weights)):
            if path and name in result:
                set_fusion_noise(path, result[name]["log_r0"], result[name]["slope"],
                                 note=f"train.calibrate {args.data} --mode {args.mode}")
                result[name]["written_to"] = str(path)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
