"""Is each source's R calibrated? Per mode and source, every observation the fusion receives is
compared with the ground truth: the normalised error squared e^T R^-1 e (R as the engine uses
it: the calibrated mapping for the networks, KLT's own), its mean (2 for a calibrated 2-D
Gaussian) and the fraction inside the 1-sigma / 2-sigma ellipses (39.3 % / 86.5 %), at GT-visible
points. Validation data only:

    python tools/noise_calibration_check.py DATA --modes e,i,ei,klt,e-klt [--event-weights W] \
        [--event-r=LOG_R0,SLOPE]
"""

from __future__ import annotations

import argparse
import json

import numpy as np


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data")
    ap.add_argument("--modes", default="e,i,ei,klt,e-klt")
    ap.add_argument("--event-weights")
    ap.add_argument("--event-r", help="LOG_R0,SLOPE of the event source (default: the config's)")
    args = ap.parse_args()
    import torch
    from tqdm import tqdm

    from blinktrack_ros.eval.benchmark import gt_seeds
    from blinktrack_ros.eval.commands import load_benchmark_sequences
    from blinktrack_ros.eval.klt_tuning import load_klt_configs
    from blinktrack_ros.eval.tracker import BENCHMARK_FUSION, pipeline_tracker
    from blinktrack_ros.tracking.engine import calibrated_covariance
    from blinktrack_ros.tracking.observation import Source

    torch.set_num_threads(1)
    cfg = BENCHMARK_FUSION
    if args.event_r:
        from dataclasses import replace

        a, b = (float(v) for v in args.event_r.split(","))
        cfg = replace(cfg, event_noise_log_r0=a, event_noise_slope=b)
    out = {}
    for mode in args.modes.split(","):
        rows = []  # source, nes, gt_visible

        _, seqs = load_benchmark_sequences(args.data)
        for seq in tqdm(list(seqs), desc=mode):
            rec = []

            def observer(obs, ext, rec=rec):
                if len(obs) == 0 or obs.source not in (Source.EVENT, Source.IMAGE, Source.KLT):
                    return
                R = (calibrated_covariance(obs.visibility, obs.source, cfg)
                     if cfg.calibrated_noise and obs.source != Source.KLT else obs.covariances)
                ids = np.array([ext.get(int(i), -1) for i in obs.ids])
                rec.append((int(obs.source), obs.t_ns * 1e-9, ids, obs.positions_px.copy(),
                            np.linalg.inv(R)))

            tracker = pipeline_tracker(args.event_weights, fusion=cfg, observer=observer,
                                       klt_configs=load_klt_configs())
            tracker(seq, mode, gt_seeds(seq.gt), 10_000_000)
            gt = seq.gt
            for source, t, ids, z, Rinv in rec:
                for k, gid in enumerate(ids):
                    g = gt[gt[:, 0] == gid]
                    if g.shape[0] < 2 or not g[0, 1] <= t <= g[-1, 1]:
                        continue
                    e = z[k] - np.array([np.interp(t, g[:, 1], g[:, j]) for j in (2, 3)])
                    last = np.searchsorted(g[:, 1], t, side="right") - 1
                    vis = g[last, 4] if g.shape[1] > 4 else 1.0
                    rows.append((source, float(e @ Rinv[k] @ e), vis))
        a = np.array(rows).reshape(-1, 3)
        for source in np.unique(a[:, 0]):
            s = a[(a[:, 0] == source) & (a[:, 2] > 0.5)]
            out[f"{mode}:{Source(int(source)).name.lower()}"] = {
                "n": int(len(s)), "mean_nes": round(float(s[:, 1].mean()), 2),
                "median_nes": round(float(np.median(s[:, 1])), 2),
                "in_1sigma": round(float((s[:, 1] <= 1.0).mean()), 3),
                "in_2sigma": round(float((s[:, 1] <= 4.0).mean()), 3)}
        print(json.dumps({k: v for k, v in out.items() if k.startswith(mode + ":")}), flush=True)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
