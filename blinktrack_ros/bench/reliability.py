"""`blinktrack bench reliability`: soak, burst, faults and fuzzed decoders (figures, not tests).

- soak: blinktrack_node (a child process) fed a looping synthetic stream at real-time pace for
  --soak-seconds (default 600): RSS growth, track-table size, latency p50/p99 of the first and
  the last minute (or quarter), the node's backlog counters. Targets: RSS flat within 5 MB,
  p99 unchanged (within 20 % or 5 ms).
- burst: 10x the event rate for 2 s: latency during and after, the time until it is back to
  normal (target <= 1 s), the windows merged/skipped counted in /diagnostics.
- faults: a time jump backwards (looped bag), frames missing 1 s, camera_info changing size,
  the event source restarted, NaN/Inf from the event network (in-process: not reachable by a
  topic), a checkpoint that does not match its config.
- fuzz: >= 10,000 cases per decoder (bench/fuzz.py).
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np

RSS_TARGET_MB = 5.0


def register_bench(bench_sub: argparse._SubParsersAction) -> None:
    """Add `blinktrack bench reliability [--json] [--soak-seconds S] ...`."""
    p = bench_sub.add_parser("reliability", help="soak, burst, faults, fuzzed decoders",
                             description=__doc__.split("\n\n", 1)[1])
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--soak-seconds", type=float, default=600.0, help="soak length (s)")
    p.add_argument("--fuzz-cases", type=int, default=10_000, help="cases per decoder")
    p.add_argument("--mode", default="e-klt", help="pipeline.mode of the node (default e-klt)")
    p.add_argument("--target-count", type=int, default=32, help="seeding.target_count")
    p.add_argument("--parts", default="soak,burst,faults,fuzz",
                   help="comma-separated subset of soak,burst,faults,fuzz")
    p.add_argument("--domain", type=int, default=None,
                   help="ROS domain id of the node (default: ROS_DOMAIN_ID or 0)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import os

    parts = set(args.parts.split(","))
    out: dict[str, Any] = {}
    domain = args.domain if args.domain is not None else int(os.environ.get("ROS_DOMAIN_ID", 0))
    if parts & {"soak", "burst", "faults"}:
        out.update(run_live(domain, args.soak_seconds, args.mode, args.target_count, parts))
    if "faults" in parts:
        faults_out = out.setdefault("faults", {})
        faults_out.update(nan_from_network())
        faults_out.update(checkpoint_mismatch(domain))
    if "fuzz" in parts:
        from blinktrack_ros.bench.fuzz import fuzz_all

        out["fuzz"] = fuzz_all(args.fuzz_cases, progress=not args.json)
    print(json.dumps(out, indent=None if args.json else 1))
    return 0


def _pct(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 2) if values else float("nan")


def _lat(updates: list, t0_ns: int, t1_ns: int) -> dict[str, float]:
    lat = [u.latency_ms for u in updates if t0_ns <= u.arrival_ns < t1_ns]
    return {"n": len(lat), "p50_ms": _pct(lat, 50), "p99_ms": _pct(lat, 99),
            "max_ms": round(max(lat), 2) if lat else float("nan")}


def _tracks(updates: list, t0_ns: int, t1_ns: int) -> float:
    sizes = [len(u.ids) for u in updates if t0_ns <= u.arrival_ns < t1_ns]
    return float(np.median(sizes)) if sizes else float("nan")


BACKLOG_KEYS = ("pipeline event_windows", "pipeline windows_merged", "pipeline windows_skipped",
                "pipeline events_late", "frames skipped (backlog)", "pipeline time_resets",
                "events dropped", "image dropped", "events malformed", "image malformed",
                "camera_info malformed", "camera_info received")


def _counters(diag: dict[str, str]) -> dict[str, str]:
    """The backlog/drop counters, and whatever reports a queue depth (issue-20 diagnostics)."""
    return {k: v for k, v in diag.items()
            if k in BACKLOG_KEYS or "queue" in k or "pending" in k or "depth" in k}


def run_live(domain: int, soak_s: float, mode: str, target: int, parts: set) -> dict:
    """Soak, burst and the topic-driven faults on one blinktrack_node."""
    from blinktrack_ros.nodes.livenode import LiveNode

    live = LiveNode(domain, mode, target)
    out: dict[str, Any] = {"node": {"mode": mode, "target_count": target,
                                    "sensor": list(live.seq.frames.shape[:0:-1]),
                                    "events_per_s": round(len(live.seq.events) / 2.0)}}
    try:
        out["node"]["startup_s"] = round(live.wait_ready(), 1)
        items = live.stream(time.time_ns() + 200_000_000)
        for name, part in (("soak", lambda: soak(live, items, soak_s)),
                           ("burst", lambda: burst_test(live, items)),
                           ("faults", lambda: faults(live, items))):
            if name in parts:
                try:
                    out[name] = part()
                except Exception as exc:  # noqa: BLE001 - the figures of the other parts stay
                    out[name] = {"error": f"{type(exc).__name__}: {exc}"}
        out["node"]["alive_at_end"] = live.alive()
    finally:
        log = live.close()
        out["node"]["log_tail"] = log[-600:]
    return out


def soak(live: Any, items: Any, seconds: float) -> dict:
    """Real-time input for `seconds`; first and last windows compared."""
    from tqdm import tqdm

    t_start = time.time_ns()
    warm = min(30.0, seconds * 0.1)
    window = min(60.0, seconds / 4)
    with tqdm(total=int(seconds), desc="soak (s)", leave=False) as bar:
        done = 0.0
        while done < seconds:
            step = min(10.0, seconds - done)
            live.play(items, step)
            done += step
            bar.update(int(step))
    t_end = time.time_ns()
    a0, a1 = t_start + int(warm * 1e9), t_start + int((warm + window) * 1e9)
    b0 = t_end - int(window * 1e9)
    rss = [(t, mb) for t, mb in live.rss if t >= live.rss[0][0] + warm]
    n_rss = max(1, len(rss) // 10)
    rss_start = float(np.median([mb for _, mb in rss[:n_rss]]))
    rss_end = float(np.median([mb for _, mb in rss[-n_rss:]]))
    first, last = _lat(live.updates, a0, a1), _lat(live.updates, b0, t_end)
    growth = rss_end - rss_start
    p99_ok = last["p99_ms"] <= max(first["p99_ms"] * 1.2, first["p99_ms"] + 5.0)
    return {"seconds": seconds, "warm_up_s": warm, "window_s": window,
            "rss_mb_start": round(rss_start, 1), "rss_mb_end": round(rss_end, 1),
            "rss_growth_mb": round(growth, 2), "rss_flat_within_5mb": abs(growth) <= RSS_TARGET_MB,
            "rss_mb_trend": [round(float(np.median([mb for _, mb in part])), 1)
                             for part in np.array_split(np.asarray(rss), 10) if len(part)],
            "tracks_median_start": _tracks(live.updates, a0, a1),
            "tracks_median_end": _tracks(live.updates, b0, t_end),
            "latency_start": first, "latency_end": last, "p99_unchanged": bool(p99_ok),
            "updates": len(live.updates), "counters_end": _counters(live.diag)}


def _recovery_s(updates: list, t_end_ns: int, normal_ms: float, span_s: float = 0.5) -> float:
    """Seconds after t_end_ns until the median latency of the updates arriving in the next
    span_s is normal (<= normal_ms); nan when it never is. A median, not a maximum: one
    scheduling spike of a busy machine is not a backlog."""
    after = [u for u in updates if u.arrival_ns >= t_end_ns]
    for i, u in enumerate(after):
        nxt = [v.latency_ms for v in after[i:] if v.arrival_ns < u.arrival_ns + span_s * 1e9]
        if float(np.median(nxt)) <= normal_ms:
            return round((u.arrival_ns - t_end_ns) * 1e-9, 2)
    return float("nan")


WINDOWS = ("pipeline event_windows", "pipeline windows_merged", "pipeline windows_skipped")


def _windows(diag: dict[str, str]) -> int:
    return sum(int(diag.get(k, 0)) for k in WINDOWS)


def burst_test(live: Any, items: Any, factor: int = 10, seconds: float = 2.0,
               window_ms: float = 10.0) -> dict:
    """Baseline 3 s, 10x events for 2 s, then 4 s normal. Before and after, the stream pauses
    (1.5 s, the node catches up and reports) so that the windows the node accounted for
    (run + merged + skipped) can be compared with the stream time that passed."""
    live.play(items, 2.0)
    live.spin_for(1.5)
    before, s0 = dict(live.diag), live.last_event_ns
    t0 = time.time_ns()
    live.play(items, 3.0, skip_late=True)
    t1 = time.time_ns()
    live.play(items, seconds, burst_factor=factor)
    t2 = time.time_ns()
    live.play(items, 4.0)
    live.spin_for(1.5)
    after, s1 = dict(live.diag), live.last_event_ns
    base = _lat(live.updates, t0, t1)
    normal = max(base["p50_ms"] * 1.5, base["p50_ms"] + 10.0)
    delta = {k: int(after.get(k, 0)) - int(before.get(k, 0))
             for k in BACKLOG_KEYS if k in after and after[k].lstrip("-").isdigit()}
    rec = _recovery_s(live.updates, t2, normal)
    expected = (s1 - s0) / (window_ms * 1e6)
    return {"factor": factor, "seconds": seconds, "baseline": base,
            "during": _lat(live.updates, t1, t2),
            "after_1s": _lat(live.updates, t2 + 10**9, t2 + 4 * 10**9),
            "normal_ms": round(normal, 1), "recovery_s": rec, "recovered_within_1s": rec <= 1.0,
            "windows_of_stream_time": round(expected, 1),
            "windows_accounted": _windows(after) - _windows(before),
            "counter_deltas": delta, "alive": live.alive()}


def faults(live: Any, items: Any) -> dict:
    """Topic-driven faults on the running node; each ends with the node still publishing."""
    out: dict[str, Any] = {}
    # 1. time jumps back 5 s (a looping bag): counted reset, no old id after it
    before = dict(live.diag)
    t0 = time.time_ns()
    live.play(items, 2.0)
    old_ids = set().union(*(set(u.ids.tolist()) for u in live.updates if u.arrival_ns >= t0))
    t1 = time.time_ns()
    live.play(items, 2.0, offset_ns=-5_000_000_000)
    live.spin_for(1.0)
    # updates of the replayed past (stamps 5 s back), not those of the backlog still in flight
    after_jump = [u for u in live.updates if u.arrival_ns >= t1 and u.stamp_ns < t1 - 2 * 10**9]
    reused = set().union(*(set(u.ids.tolist()) for u in after_jump)) & old_ids
    out["time_backwards"] = {
        "resets_counted": int(live.diag.get("pipeline time_resets", 0))
        - int(before.get("pipeline time_resets", 0)),
        "old_ids_after_jump": len(reused), "updates_after_jump": len(after_jump),
        "tracks_after_jump_median": float(np.median([len(u.ids) for u in after_jump]))
        if after_jump else float("nan")}
    # the stream is now 5 s in the past: jump forward again (not a reset) and settle
    live.play(items, 2.0)
    out["frames_missing_1s"] = _frames_missing(live, items)
    out["camera_info_size_change"] = _camera_info_change(live, items)
    out["event_source_restart"] = _event_restart(live, items)
    out["alive"] = live.alive()
    return out


def _frames_missing(live: Any, items: Any) -> dict:
    live.play(items, 1.5)
    ids_before = set(live.updates[-1].ids.tolist()) if live.updates else set()
    t1 = time.time_ns()
    live.play(items, 1.0, frames=False)
    t2 = time.time_ns()
    during = [u for u in live.updates if t1 <= u.arrival_ns < t2]
    live.play(items, 1.5)
    last = live.updates[-1]
    kept = ids_before & set(last.ids.tolist())
    return {"updates_during_gap": len(during),
            "tracks_before": len(ids_before), "same_ids_1_5s_after": len(kept),
            "status_after": {str(s): int((last.status == s).sum()) for s in (0, 1, 2, 3)},
            "latency_during_gap": _lat(live.updates, t1, t2)}


def _camera_info_change(live: Any, items: Any) -> dict:
    before = dict(live.diag)
    h, w = live.frames_u8.shape[1:]
    for width, height in ((w, h), (640, 480), (w, h)):
        live.info_pub.publish(live.CameraInfo(
            width=width, height=height, distortion_model="plumb_bob",
            k=[float(width), 0, width / 2, 0, float(width), height / 2, 0, 0, 1],
            d=[0.0] * 5))
        t = time.time_ns()
        live.play(items, 1.0)
    live.spin_for(1.0)
    return {"updates_last_s": sum(u.arrival_ns >= t for u in live.updates),
            "camera_info_received": live.diag.get("camera_info received"),
            "camera_info_malformed": live.diag.get("camera_info malformed"),
            "counters_delta": {k: int(live.diag[k]) - int(before.get(k, 0))
                               for k in _counters(live.diag) if live.diag[k].isdigit()},
            "alive": live.alive()}


def _event_restart(live: Any, items: Any) -> dict:
    before = int(live.diag.get("events received", 0))
    live.node.destroy_publisher(live.ev_pub)
    live.play(items, 0.5, events=False)  # the source is down: frames only
    live.ev_pub = live.node.create_publisher(live.EventArray, "/events", 1000)
    t0 = time.monotonic()
    while live.ev_pub.get_subscription_count() == 0 and time.monotonic() - t0 < 10:
        live.spin_for(0.05)
    rematch_s = time.monotonic() - t0
    live.play(items, 2.0)
    live.spin_for(1.0)
    return {"rematched_s": round(rematch_s, 2),
            "events_received_after": int(live.diag.get("events received", 0)) - before,
            "alive": live.alive()}


def nan_from_network(n_windows: int = 30) -> dict:
    """The event network's output replaced by NaN/Inf for half the tracks (in-process: no topic
    reaches the network's output): counted, those observations dropped and their tracks
    ended (tracks_lost), the pipeline lives; blinktrack_node publishes the count in
    /diagnostics ("network event nan_dropped")."""
    import torch

    from blinktrack_ros.synth.config import preset
    from blinktrack_ros.synth.sequence import generate_sequence
    from blinktrack_ros.tracking.build import build_pipeline
    from blinktrack_ros.tracking.offline import FrameInput, interleave
    from blinktrack_ros.tracking.pipeline import Mode, PipelineConfig
    from blinktrack_ros.tracking.seeding import SeedConfig

    seq = generate_sequence(preset("slow", duration_s=0.5), seed=4)
    pipe = build_pipeline(PipelineConfig(mode=Mode("e-klt")), seeding=SeedConfig(target_count=16))
    src = pipe.event_source
    real = src._step_net

    class Poisoned:
        """The real network, its displacement NaN for every 2nd row and Inf for every 4th."""

        config = getattr(real, "config", src.net_config)

        def __call__(self, *a: Any, **k: Any) -> Any:
            disp, logits, *rest = real(*a, **k)
            disp = disp.clone()
            disp[::2] = float("nan")
            disp[1::4] = float("inf")
            return (disp, logits, *rest)

    src._step_net = Poisoned()
    frames = (np.clip(seq.frames, 0, 1) * 255 + 0.5).astype(np.uint8)
    nonfinite_out = 0
    with torch.inference_mode():
        for item in interleave(frames, seq.frame_times_ns, seq.events, 2_000_000):
            ups = pipe.on_image(item.t_ns, item.gray / np.float32(255)) \
                if isinstance(item, FrameInput) else pipe.on_events(item.batch)
            nonfinite_out += sum(int((~np.isfinite(u.tracks.positions_px)).sum()) for u in ups)
    return {"nan_from_network": {"nan_dropped": src.stats["nan_dropped"],
                                 "tracks_lost": pipe.stats.tracks_lost,
                                 "non_finite_positions_published": nonfinite_out,
                                 "pipeline_alive": True,
                                 "in_node_diagnostics": True}}


def checkpoint_mismatch(domain: int) -> dict:
    """blinktrack_node started with the image checkpoint as event weights: exit 2, named."""
    import os
    from pathlib import Path
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[2]
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, str(repo / "scripts" / "blinktrack_node"), "--ros-args", "-p",
         "pipeline.mode:=e-klt", "-p", f"node.event_weights:={repo / 'weights/image_lite.pt'}"],
        env=env, capture_output=True, text=True, timeout=120)
    text = (proc.stdout + proc.stderr).strip().splitlines()
    return {"checkpoint_mismatch": {"exit_code": proc.returncode,
                                    "seconds": round(time.monotonic() - t0, 1),
                                    "message": next((ln for ln in text if "invalid" in ln
                                                     or "rror" in ln), text[-1] if text else "")
                                    [:300]}}
