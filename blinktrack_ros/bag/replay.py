"""`blinktrack track`: replay a bag through the node logic (the Pipeline) as fast as possible.

Messages are read in log-time order and fed to the same Pipeline the blinktrack node wraps;
fused tracks and observations are written to an mcap bag with our message types, and optionally
as `id t x y` rows for `blinktrack eval`.

Time: when the bag has ground truth beside it (`<bag>.gt.txt`) or the seeds file has a
`# time origin N ns` header (`blinktrack synth` writes one: its bags start at a fixed epoch), the
pipeline runs in that relative time (stamps minus the origin) and the rows file carries the same
header, so t stays exact in float64; the output bag keeps the absolute stamps.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
import time
from typing import Any

import numpy as np

from blinktrack_ros.bag.core import GrayFrame, iter_core
from blinktrack_ros.bag.reader import bag_summary
from blinktrack_ros.bag.sequence import pick_topics
from blinktrack_ros.bag.types import OBSERVATION_ARRAY, TRACK_ARRAY, typestore
from blinktrack_ros.events.batch import EventBatch
from blinktrack_ros.tracking.engine import TrackSnapshot
from blinktrack_ros.tracking.observation import Observations
from blinktrack_ros.tracking.offline import TrackLog
from blinktrack_ros.tracking.pipeline import OFFLINE_FRAME_JOIN_MS, offline_frame_join_ms
from blinktrack_ros.tracking.seeding import SeedConfig

# consecutive evt3 packets decoded as one (bag.core.iter_core): the same events and tracks,
# fewer decoder calls; offline only (the pipeline's windows follow event time, not batches)
JOIN_PACKETS = 32
TRACKS_TOPIC = "/blinktrack/tracks"
# `blinktrack track --refined`: what blinktrack_node publishes with node.publish_refined
REFINED_TOPIC = "/blinktrack/tracks_refined"
SMOOTHING = ("none", "frame", "all")
OBSERVATION_TOPIC = "/blinktrack/observations/{source}"


def replay_time_origin_ns(bag: str | Path, seeds: str | Path | None = None) -> int:
    """The time origin of a replay: the `# time origin` of `<bag>.gt.txt` beside the bag, else
    that of the seeds file, else 0 (stamps used as they are)."""
    from blinktrack_ros.eval.tracks_io import header_time_origin_ns

    bag = Path(bag)
    gt = bag.parent / f"{bag.name}.gt.txt"
    for path in (gt, Path(seeds) if seeds else None):
        if path is not None and path.is_file():
            origin = header_time_origin_ns(path)
            if origin:
                return origin
    return 0


def _header(store: Any, t_ns: int, frame_id: str) -> Any:
    time_cls = store.types["builtin_interfaces/msg/Time"]
    header_cls = store.types["std_msgs/msg/Header"]
    return header_cls(stamp=time_cls(sec=int(t_ns // 1_000_000_000),
                                     nanosec=int(t_ns % 1_000_000_000)), frame_id=frame_id)


def _cov_flat(cov: np.ndarray) -> np.ndarray:
    return np.stack([cov[:, 0, 0], cov[:, 0, 1], cov[:, 1, 1]], axis=1).reshape(-1)


def track_array(store: Any, snap: TrackSnapshot, frame_id: str = "",
                time_origin_ns: int = 0) -> Any:
    """TrackSnapshot -> rosbags blinktrack_ros/msg/TrackArray (stamp: time_origin_ns + t)."""
    f32 = np.float32
    return store.types[TRACK_ARRAY](
        header=_header(store, snap.t_ns + time_origin_ns, frame_id),
        ids=snap.ids.astype(np.uint32),
        positions=snap.positions_px.reshape(-1).astype(f32),
        velocities=snap.velocities_px_s.reshape(-1).astype(f32),
        covariances=_cov_flat(snap.covariances).astype(f32),
        status=snap.status.astype(np.uint8), last_source=snap.last_source.astype(np.uint8),
        age=np.asarray(snap.age_s, f32), undistorted=np.zeros(0, f32))


def observation_array(store: Any, obs: Observations, frame_id: str = "",
                      time_origin_ns: int = 0) -> Any:
    """Observations -> rosbags blinktrack_ros/msg/ObservationArray (stamp: origin + t)."""
    f32 = np.float32
    return store.types[OBSERVATION_ARRAY](
        header=_header(store, obs.t_ns + time_origin_ns, frame_id), source=int(obs.source),
        ids=obs.ids.astype(np.uint32), positions=obs.positions_px.reshape(-1).astype(f32),
        covariances=_cov_flat(obs.covariances).astype(f32),
        visibility=obs.visibility.astype(f32))


def replay(args: argparse.Namespace) -> dict[str, Any]:
    """Run the replay described by the parsed `blinktrack track` arguments; returns stats."""
    from tqdm import tqdm

    from blinktrack_ros.bag.writer import BagWriter
    from blinktrack_ros.tracking.build import build_pipeline, event_source_options
    from blinktrack_ros.tracking.pipeline import Mode, PipelineConfig
    from blinktrack_ros.tracking.seeding import SeedConfig, load_seeds

    ev_topic, im_topic = pick_topics(args.bag, args.event_topic, args.image_topic)
    if im_topic is None:
        raise ValueError(f"{args.bag}: no sensor_msgs/Image topic: frames are needed to seed "
                         "tracks and for reference patches")
    mode = Mode(args.mode)
    if mode.uses_events and ev_topic is None:
        raise ValueError(f"{args.bag}: mode {mode.value!r} needs events, and the bag has no "
                         "event topic; use --mode klt or i")
    config = PipelineConfig(mode=mode, event_window_ms=args.window_ms, reseed=args.seeds is None,
                            max_pending_windows=1 << 30)
    seeding = SeedConfig(target_count=args.target_count)
    pipe = build_pipeline(config, seeding=seeding, event_weights=args.event_weights,
                          image_weights=args.image_weights, device=args.device,
                          untrained=args.untrained,
                          frame_join_ms=offline_frame_join_ms(args.frame_join_ms),
                          event_source=event_source_options(args.event_runtime, args.event_onnx))
    from blinktrack_ros.eval.tracks_io import time_shift_s

    origin = replay_time_origin_ns(args.bag, args.seeds)
    if args.seeds:
        seeds = load_seeds(args.seeds)
        shift_s = time_shift_s(args.seeds, seeds.t_s, origin)
        if shift_s:  # seeds written against another origin (or in absolute time)
            seeds = dataclasses.replace(seeds, t_s=seeds.t_s + shift_s)
        pipe.set_seeds(seeds)
    topics = [t for t in (ev_topic, im_topic) if t]
    summary = bag_summary(args.bag)
    total = sum(summary["topics"][t]["count"] for t in topics)
    smooth = getattr(args, "smooth", "none")
    if smooth not in SMOOTHING:
        raise ValueError(f"--smooth {smooth!r}: choose from {', '.join(SMOOTHING)}")
    store, log, stats = typestore(), TrackLog(keep_state=smooth != "none"), {}
    smoother = None
    if getattr(args, "refined", False):
        from blinktrack_ros.tracking.smoother import FixedLagSmoother

        smoother = FixedLagSmoother(pipe.engine.config.q, pipe.engine.config.constant_q)
    frame_times: list[int] = []
    span_ns = [None, None]
    t_start = time.perf_counter()
    with BagWriter(args.out) as writer:
        def write(updates: list) -> None:
            for u in updates:
                log.add(u)
                writer.write(TRACKS_TOPIC, TRACK_ARRAY, u.tracks.t_ns + origin,
                             track_array(store, u.tracks, args.frame_id, origin))
                if u.observations is not None:
                    topic = OBSERVATION_TOPIC.format(source=u.observations.source.name.lower())
                    writer.write(topic, OBSERVATION_ARRAY, u.observations.t_ns + origin,
                                 observation_array(store, u.observations, args.frame_id, origin))
                if smoother is not None:
                    write_refined(smoother.add(u.tracks, frame=not u.event_window),
                                  u.tracks.t_ns)

        def write_refined(snaps: list, log_ns: int) -> None:
            # stamped with each window's time, logged when the interval closes (what
            # recording the live node's ~/tracks_refined gives)
            for snap in snaps:
                writer.write(REFINED_TOPIC, TRACK_ARRAY, log_ns + origin,
                             track_array(store, snap, args.frame_id, origin))

        bar = tqdm(total=total, unit="msg", desc="tracking", disable=args.quiet)
        shown_s = 0.0
        for m in iter_core(args.bag, topics=topics, stats=stats, join_packets=JOIN_PACKETS):
            bar.update(m.count)
            if isinstance(m.value, EventBatch):
                ev = m.value
                if origin:
                    ev = EventBatch(ev.x, ev.y, ev.t - np.int64(origin), ev.p, ev.width,
                                    ev.height)
                updates = pipe.on_events(ev)
            elif isinstance(m.value, GrayFrame):
                frame_times.append(m.value.t_ns - origin)
                updates = pipe.on_image(m.value.t_ns - origin, m.value.gray)
            else:
                continue
            span_ns = [m.t_ns if span_ns[0] is None else span_ns[0], m.t_ns]
            write(updates)
            wall_s = time.perf_counter() - t_start
            if not args.quiet and wall_s - shown_s >= 0.5:  # the real-time factor so far
                shown_s = wall_s
                bar.set_postfix_str(f"{(span_ns[1] - span_ns[0]) * 1e-9 / wall_s:.2f}x real time",
                                    refresh=False)
        write(pipe.flush())
        if smoother is not None and span_ns[1] is not None:
            write_refined(smoother.flush(), span_ns[1] - origin)
        bar.close()
    wall = time.perf_counter() - t_start
    if args.tracks_txt:
        from blinktrack_ros.eval.tracks_io import write_tracks

        rows = log.as_rows(pipe.external_ids,
                           smooth=pipe.engine.config if smooth != "none" else None,
                           smooth_until_ns=np.asarray(frame_times, np.float64)
                           if smooth == "frame" else None)
        write_tracks(args.tracks_txt, rows[:, :4], time_origin_ns=origin)
    bag_s = (span_ns[1] - span_ns[0]) * 1e-9 if span_ns[0] is not None else 0.0
    return {"wall_s": wall, "bag_s": bag_s, "realtime_factor": bag_s / wall if wall else 0.0,
            "pipeline": vars(pipe.stats), "decode": {k: v.as_dict() for k, v in stats.items()}}


def run_track(args: argparse.Namespace) -> int:
    """`blinktrack track`: check arguments, replay, print a summary."""
    from blinktrack_ros.bag.reader import BagError
    from blinktrack_ros.cli import UsageError

    if not Path(args.bag).exists():
        raise UsageError(f"{args.bag}: no such bag (a ROS 2 bag folder, .mcap/.db3 or ROS 1 "
                         ".bag; `blinktrack synth --out DIR` makes one)")
    if Path(args.out).exists():
        raise UsageError(f"{args.out} exists: choose a new output path")
    if args.seeds and not Path(args.seeds).is_file():
        raise UsageError(f"--seeds {args.seeds}: no such file (rows `id t x y`)")
    try:
        result = replay(args)
    except (BagError, ValueError, FileNotFoundError) as exc:
        raise UsageError(str(exc)) from None
    p = result["pipeline"]
    print(f"tracked {result['bag_s']:.2f} s of data in {result['wall_s']:.2f} s "
          f"({result['realtime_factor']:.2f}x real time): {p['frames']} frames, "
          f"{p['event_windows']} event windows, {p['tracks_born']} tracks born, "
          f"{p['tracks_lost']} lost")
    print(f"wrote {args.out}" + (f" and {args.tracks_txt}" if args.tracks_txt else ""))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add `blinktrack track`."""
    from blinktrack_ros.tracking.build import add_event_runtime_args

    p = sub.add_parser("track", help="replay a bag through the tracker; write tracks to mcap",
                       description="Runs the node logic in strict timestamp order, as fast as "
                                   "the CPU allows.")
    p.add_argument("bag", help="input bag (events + images)")
    p.add_argument("--out", required=True, help="output mcap bag folder")
    p.add_argument("--tracks-txt", help="also write tracks as `id t x y` rows")
    p.add_argument("--smooth", default="none", choices=SMOOTHING,
                   help="the --tracks-txt rows: none = as published (causal filter); frame = "
                        "each event window smoothed with the observations up to the next frame "
                        "(a lag of one frame, as --refined); all = smoothed with the whole "
                        "recording (Rauch-Tung-Striebel; the best tracks offline, e.g. for "
                        "mapping)")
    p.add_argument("--refined", action="store_true",
                   help=f"also write {REFINED_TOPIC}: at each frame the event windows since "
                        "the previous frame smoothed with it, as blinktrack_node publishes "
                        "with node.publish_refined")
    p.add_argument("--mode", default="ei", choices=["e", "i", "ei", "ei-naive", "klt", "e-klt"])
    p.add_argument("--seeds", help="start from these points (`id t x y` rows, e.g. GT)")
    p.add_argument("--event-topic", help="event topic (default: the bag's only one)")
    p.add_argument("--image-topic", help="image topic (default: the bag's only one)")
    p.add_argument("--window-ms", type=float, default=10.0, help="event window (ms)")
    p.add_argument("--target-count", type=int, default=SeedConfig().target_count,
                   help="features kept alive by Shi-Tomasi seeding (without --seeds)")
    p.add_argument("--event-weights", help="event network checkpoint (default: shipped lite)")
    p.add_argument("--image-weights", help="image network checkpoint (default: shipped lite)")
    add_event_runtime_args(p)
    p.add_argument("--untrained", action="store_true", help="random network weights")
    p.add_argument("--device", default="cpu")
    p.add_argument("--frame-join-ms", type=float, default=None,
                   help="frames run on a worker thread, concurrently with the event windows of "
                        "the next this many ms of data, and are fused then (deterministic; "
                        "0: one after the other; default: "
                        f"{OFFLINE_FRAME_JOIN_MS:g} with one torch thread, else 0)")
    p.add_argument("--frame-id", default="camera", help="frame_id of the output messages")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_track)
