"""Validation runs of the full tracker with a given event network and fusion R (no CLI flag
sets R): `python tools/val_noise.py DATA OUT --modes e,ei,e-klt [--event-weights W]
[--event-r LOG_R0,SLOPE] [--image-r LOG_R0,SLOPE]`; prints the per-preset comparison table.
Validation data only (e.g. `blinktrack synth --preset benchmark --seed 2000`)."""

from __future__ import annotations

import argparse
from dataclasses import replace


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data")
    ap.add_argument("out")
    ap.add_argument("--modes", default="e,ei,e-klt")
    ap.add_argument("--event-weights")
    ap.add_argument("--event-r", help="log_r0,slope of the event source")
    ap.add_argument("--image-r", help="log_r0,slope of the image source")
    ap.add_argument("--gate", type=float, help="Mahalanobis gate (squared distance)")
    ap.add_argument("--q", type=float, help="process noise q, px^2/s^3")
    ap.add_argument("--event-runtime", default="torch", help="torch or onnxruntime")
    ap.add_argument("--event-onnx", default="", help="ONNX step graph (onnxruntime)")
    args = ap.parse_args()
    import torch

    from blinktrack_ros.eval.benchmark import (
        BenchmarkConfig,
        comparison_markdown,
        comparison_rows,
        run_benchmark,
        with_zero_motion,
    )
    from blinktrack_ros.eval.commands import load_benchmark_sequences
    from blinktrack_ros.eval.klt_tuning import load_klt_configs
    from blinktrack_ros.eval.tracker import BENCHMARK_FUSION, pipeline_tracker
    from blinktrack_ros.tracking.build import event_source_options, weights_noise_fits
    from blinktrack_ros.tracking.pipeline import with_weights_noise

    torch.set_num_threads(1)
    fusion = BENCHMARK_FUSION
    if args.event_r or args.image_r:
        # the weights' own R would override the given one: apply it here, then the overrides,
        # and switch the override off
        fusion = replace(with_weights_noise(fusion, weights_noise_fits(args.event_weights, None)),
                         noise_from_weights=False)
    if args.event_r:
        a, b = (float(v) for v in args.event_r.split(","))
        fusion = replace(fusion, event_noise_log_r0=a, event_noise_slope=b)
    if args.image_r:
        a, b = (float(v) for v in args.image_r.split(","))
        fusion = replace(fusion, image_noise_log_r0=a, image_noise_slope=b)
    if args.gate is not None:
        fusion = replace(fusion, gate_threshold=args.gate)
    if args.q is not None:
        fusion = replace(fusion, q=args.q)
    tracker = with_zero_motion(pipeline_tracker(args.event_weights, fusion=fusion,
                                                klt_configs=load_klt_configs(),
                                                event_source=event_source_options(
                                                    args.event_runtime, args.event_onnx)))
    _, seqs = load_benchmark_sequences(args.data)
    modes = tuple(m for m in args.modes.split(",") if m)
    res = run_benchmark(seqs, tracker, args.out, BenchmarkConfig(modes=modes, render=False),
                        progress=False)
    print(comparison_markdown(comparison_rows(res)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
