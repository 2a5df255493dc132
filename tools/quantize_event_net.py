"""int8 ONNX graph of the event network step, calibrated on the tracker's own inputs:
`python tools/quantize_event_net.py DATA OUT.onnx [--weights W] [--modes ei,e-klt]`.

Runs the full tracker (torch) on the sequences of DATA (training data only, e.g. `blinktrack
synth --suite challenge --seed 1000 --split train --sequences 1`), records the event network's
inputs (states and SBT patches, every `--every`-th window, at most `--max-feeds`), and quantises
the exported step with them (`models.event_onnx.quantize_step`: static, QDQ, int8 weights per
channel). Use the result with `event_source.runtime: onnxruntime` and `event_source.onnx_model:
OUT.onnx` (or `--event-runtime onnxruntime --event-onnx OUT.onnx`); validate it on the full
tracker (`tools/val_noise.py ... --event-runtime onnxruntime --event-onnx OUT.onnx`) before use.
"""

from __future__ import annotations

import argparse
from pathlib import Path
import tempfile


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", help="benchmark data folder (training seeds)")
    ap.add_argument("out", type=Path, help="the int8 .onnx file to write")
    ap.add_argument("--weights", help="event network checkpoint (default: shipped)")
    ap.add_argument("--modes", default="ei,e-klt", help="tracker modes run for the inputs")
    ap.add_argument("--every", type=int, default=4, help="record every k-th event window")
    ap.add_argument("--max-feeds", type=int, default=400, help="recorded windows at most")
    args = ap.parse_args()
    import torch

    from blinktrack_ros.eval.benchmark import BenchmarkConfig, run_benchmark
    from blinktrack_ros.eval.commands import load_benchmark_sequences
    from blinktrack_ros.eval.tracker import pipeline_tracker
    from blinktrack_ros.models import event_onnx
    from blinktrack_ros.models.event_net import load_event_net
    from blinktrack_ros.tracking import event_source
    from blinktrack_ros.tracking.build import DEFAULT_EVENT_WEIGHTS, resolve_weights

    torch.set_num_threads(1)
    feeds: list = []
    calls = [0]
    forward = event_source.forward_chunked

    def recording(net, state, sbt, max_batch=None):  # the source's network call
        if calls[0] % args.every == 0 and len(feeds) < args.max_feeds and len(state):
            feeds.append(event_onnx.state_feed(state, sbt))
        calls[0] += 1
        return forward(net, state, sbt, max_batch)

    _, seqs = load_benchmark_sequences(args.data)
    modes = tuple(m for m in args.modes.split(",") if m)
    event_source.forward_chunked = recording
    try:
        with tempfile.TemporaryDirectory() as tmp:
            run_benchmark(seqs, pipeline_tracker(args.weights), tmp,
                          BenchmarkConfig(modes=modes, render=False), progress=True)
    finally:
        event_source.forward_chunked = forward
    if not feeds:
        raise SystemExit("no event windows recorded: does DATA hold event sequences?")
    print(f"{len(feeds)} windows recorded of {calls[0]}, "
          f"{sum(len(f['sbt']) for f in feeds)} track steps")
    model = load_event_net(resolve_weights(args.weights, DEFAULT_EVENT_WEIGHTS))
    graph = event_onnx.quantize_step(event_onnx.export_step(model), feeds)
    net = event_onnx.OnnxEventNet(model, graph)  # loads, digest matches, finite outputs
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(graph)
    print(f"wrote {args.out} ({len(graph) / 1e3:.0f} kB); on example inputs it differs from "
          f"the float network by up to {net.max_check_error:.3f} (px / logits / state)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
