"""`blinktrack bench pipeline`: real-time factor of the offline replay and live latency.

On one synthetic sequence (N = `--target-count` tracks, `--window-ms` event windows, frames at
`--frame-hz`): the Pipeline alone in memory, the whole bag replay (read + decode + pipeline +
write), and with the real rclpy (unless `--no-live`) blinktrack_node in a child process fed at
real-time pace, latency from the packet completing an event window to its tracks.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from typing import Any


def register_bench(bench_sub: argparse._SubParsersAction) -> None:
    """Add `blinktrack bench pipeline [--json] [--size WxH] [--no-live] ...`."""
    from blinktrack_ros.tracking.build import add_event_runtime_args

    p = bench_sub.add_parser(
        "pipeline", help="replay real-time factor and live window-to-tracks latency",
        description=__doc__.split("\n\n", 1)[1])
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--size", default="240x180", help="sensor size WxH (default 240x180)")
    p.add_argument("--duration-s", type=float, default=2.0, help="sequence length (s)")
    p.add_argument("--mode", default="ei", choices=["e", "i", "ei", "ei-naive", "klt", "e-klt"])
    p.add_argument("--window-ms", type=float, default=5.0, help="event window (ms)")
    p.add_argument("--frame-hz", type=float, default=30.0, help="frame rate (Hz)")
    p.add_argument("--target-count", type=int, default=64, help="tracks seeded (N)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads (here and in the node process; default: torch's own "
                        "default, what `blinktrack track` and the node run: the core count)")
    p.add_argument("--seed", type=int, default=0, help="sequence seed")
    p.add_argument("--event-weights", help="event network checkpoint (default: shipped lite)")
    p.add_argument("--image-weights", help="image network checkpoint (default: shipped lite)")
    add_event_runtime_args(p)
    p.add_argument("--frame-join-ms", type=float, default=None,
                   help="frames concurrent with the event windows of the next this many ms of "
                        "data (0: one after the other; default: what `blinktrack track` runs, 10 "
                        "with one torch thread, else 0); the live node keeps 0")
    p.add_argument("--event-msg", default="dvs", choices=["dvs", "evt3"],
                   help="event messages of the replayed bag (evt3: Prophesee EventPacket; "
                        "the live run publishes dvs_msgs whatever this is)")
    p.add_argument("--event-rate-mev-s", type=float, default=0.0,
                   help="add uniform random events up to this rate (e.g. 20 for a Prophesee-"
                        "like stream; 0: the simulated events only)")
    p.add_argument("--no-live", action="store_true", help="skip the live rclpy latency run")
    p.add_argument("--no-replay", action="store_true", help="skip the bag replay")
    p.add_argument("--pace", type=float, default=1.0,
                   help="live data seconds per wall second (below 1: latency without backlog)")
    p.add_argument("--packet-ms", type=float, default=1.0,
                   help="live run: event packet length the driver publishes (1 ms: 1000 "
                        "messages a second; drivers let you set it, e.g. metavision_driver's "
                        "event_message_time_threshold)")
    p.add_argument("--node-frame-join-ms", type=float, default=0.0,
                   help="live run: the node's node.frame_join_ms (frames on a second thread "
                        "beside the event windows, which go out at once; 0: frames in line)")
    p.add_argument("--node-refined", action="store_true",
                   help="live run: the node also publishes ~/tracks_refined "
                        "(node.publish_refined), to measure its cost")
    p.add_argument("--node-warm-up-s", type=float, default=0.1,
                   help="live run: the node's node.warm_up_s (synthetic data run at start; 0: "
                        "a cold start, whose first windows wait for kernels and traces)")
    p.add_argument("--node-log", help="write the node process output to this file")
    p.add_argument("--trace", help="live run: write the node's per-input timestamps to this "
                   "CSV and report the medians of its stages (inbox, frames first, event "
                   "call, publishing)")
    p.set_defaults(func=_bench_pipeline)


def _size(text: str) -> tuple[int, int]:
    from blinktrack_ros.cli import UsageError

    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UsageError(f"--size {text!r}: give WxH, e.g. 240x180") from None
    if w < 32 or h < 32:
        raise UsageError(f"--size {text!r}: at least 32x32")
    return w, h


def pipeline_bench_figures(setup: Any, live: bool = True, replay: bool = True,
                           threads: int | None = None, node_log: str | None = None,
                           pace: float = 1.0,
                           progress: bool = False, trace: str | None = None,
                           packet_ms: float = 1.0,
                           node_frame_join_ms: float = 0.0,
                           node_refined: bool = False,
                           node_warm_up_s: float = 0.1) -> dict[str, Any]:
    """All figures of `blinktrack bench pipeline` for a bench.replay.BenchSetup."""
    import tempfile

    import torch

    from blinktrack_ros.bench.replay import (
        bench_pipeline,
        bench_sequence,
        pipeline_figures,
        replay_figures,
        warm_up,
    )
    from blinktrack_ros.tracking.pipeline import offline_frame_join_ms

    threads = threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    setup = replace(setup, frame_join_ms=offline_frame_join_ms(setup.frame_join_ms))
    seq = bench_sequence(setup, progress)
    pipe, note = bench_pipeline(setup)
    warm_up(seq, pipe)
    figures: dict[str, Any] = {
        "size": f"{setup.width}x{setup.height}", "mode": setup.mode, "weights": note,
        "target_count": setup.target_count, "event_window_ms": setup.window_ms,
        "frame_hz": setup.frame_hz, "data_s": setup.duration_s,
        "frame_join_ms": setup.frame_join_ms, "event_runtime": setup.event_runtime,
        "event_onnx": setup.event_onnx,
        "events_per_s": len(seq.events) / setup.duration_s, "torch_threads": threads}
    figures.update(pipeline_figures(seq, pipe, progress))
    if replay:
        with tempfile.TemporaryDirectory(prefix="bench_pipeline_") as tmp:
            replay_pipe = bench_pipeline(setup)[0]
            warm_up(seq, replay_pipe)
            figures.update(replay_figures(seq, replay_pipe, tmp, progress, setup.event_msg))
    if live:
        from pathlib import Path

        from blinktrack_ros.nodes.latency import LiveSetup, measure_latency

        figures.update(measure_latency(seq, LiveSetup(
            mode=setup.mode, window_ms=setup.window_ms, target_count=setup.target_count,
            event_weights=setup.event_weights, image_weights=setup.image_weights,
            event_runtime=setup.event_runtime, event_onnx=setup.event_onnx,
            threads=threads, pace=pace, trace=trace, packet_ms=packet_ms,
            frame_join_ms=node_frame_join_ms, refined=node_refined,
            warm_up_s=node_warm_up_s, warm_up_size=(setup.width, setup.height)),
            Path(node_log) if node_log else None))
        figures["live_packet_ms"] = packet_ms
        figures["live_node_frame_join_ms"] = node_frame_join_ms
        figures["live_node_refined"] = node_refined
        figures["live_node_warm_up_s"] = node_warm_up_s
    return figures


def _bench_pipeline(args: argparse.Namespace) -> int:
    from blinktrack_ros.bench.replay import BenchSetup
    from blinktrack_ros.bench.util import report
    from blinktrack_ros.cli import UsageError

    w, h = _size(args.size)
    if args.duration_s <= 0 or args.frame_hz <= 0 or args.target_count < 1 \
            or (args.threads is not None and args.threads < 1) \
            or args.pace <= 0 or not 0 < args.packet_ms <= 1000 \
            or not 0 <= args.node_frame_join_ms <= 1000 or not 0 <= args.node_warm_up_s <= 10:
        raise UsageError("--duration-s, --frame-hz, --target-count, --threads and --pace must "
                         "be > 0, --packet-ms in (0, 1000], --node-frame-join-ms in [0, 1000], "
                         "--node-warm-up-s in [0, 10]")
    live = not args.no_live
    if live:
        try:
            import importlib.util

            if importlib.util.find_spec("rclpy") is None:  # rclpy is imported in nodes/ only
                raise ImportError("No module named 'rclpy'")
            import blinktrack_ros.msg  # noqa: F401
        except ImportError as exc:
            raise UsageError(f"live run needs rclpy and the built messages ({exc}): run "
                             "`bash tools/build_msgs.sh .venv`, or pass --no-live") from None
    setup = BenchSetup(width=w, height=h, duration_s=args.duration_s, frame_hz=args.frame_hz,
                       window_ms=args.window_ms, target_count=args.target_count,
                       mode=args.mode, seed=args.seed, event_weights=args.event_weights,
                       image_weights=args.image_weights, event_runtime=args.event_runtime,
                       event_onnx=args.event_onnx or "")
    if args.frame_join_ms is not None:
        setup = replace(setup, frame_join_ms=args.frame_join_ms)
    if not 0 <= args.event_rate_mev_s <= 100:
        raise UsageError("--event-rate-mev-s must be in [0, 100]")
    setup = replace(setup, event_msg=args.event_msg, event_rate_mev_s=args.event_rate_mev_s)
    try:
        figures = pipeline_bench_figures(setup, live, not args.no_replay, args.threads,
                                         args.node_log, args.pace, progress=not args.json,
                                         trace=args.trace, packet_ms=args.packet_ms,
                                         node_frame_join_ms=args.node_frame_join_ms,
                                         node_refined=args.node_refined,
                                         node_warm_up_s=args.node_warm_up_s)
    except (FileNotFoundError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    report("pipeline", figures, args.json)
    return 0
