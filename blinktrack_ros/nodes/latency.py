"""Live latency of blinktrack_node (`blinktrack bench pipeline`): real rclpy, two processes.

A child process runs blinktrack_node (the core Pipeline, `python -m blinktrack_ros.nodes.latency`
with torch on `--threads` threads). This process is the sensor driver: it publishes a sequence's
events (raw dvs_msgs/EventArray CDR, one packet per `packet_ms`) and frames (mono8
sensor_msgs/Image) at real-time pace on a private ROS domain, and receives `~/tracks`.

Latency of an event window ending at t1: wall time from publishing the first packet whose last
event is later than t1 (the one that completes the window) to receiving the TrackArray stamped
t1 (the last one with that stamp: a frame at t1 publishes its own update first).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
import os
from pathlib import Path
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

import numpy as np


@dataclass(frozen=True)
class LiveSetup:
    """Settings of the live run (the node's pipeline and the driver's pace).

    Attributes:
        mode, window_ms, target_count: the node's pipeline (as in bag.bench.BenchSetup).
        event_weights, image_weights: checkpoints; None = shipped lite, else random weights.
        packet_ms: event packet length the driver publishes.
        skip_s: windows ending in the first skip_s of data are not counted.
        threads: torch threads of the node process (OMP_NUM_THREADS too).
        debug_image_rate_hz: the node's debug image rate (its default costs some time).
        pace: data seconds per wall second of the driver (1 = real time; below 1 shows the
            latency without the queueing of a node that cannot keep up).
        domain: ROS domain of the run (None: a private one derived from the process id).
        trace: write the node's per-input timestamps to this CSV (nodes/trace.py) and add
            the medians of its stages to the figures.
        frame_join_ms: the node's `node.frame_join_ms` (frames beside the event windows).
        refined: the node's `node.publish_refined` (~/tracks_refined, one frame late).
        event_runtime, event_onnx: the node's `event_source.runtime` / `.onnx_model`.
        warm_up_s, warm_up_size: the node's `node.warm_up_s` (0: a cold start) and
            `node.warm_up_width/height` (the sequence's size).
    """

    mode: str = "ei"
    window_ms: float = 5.0
    target_count: int = 64
    event_weights: str | None = None
    image_weights: str | None = None
    packet_ms: float = 1.0
    skip_s: float = 0.5
    threads: int = 1
    debug_image_rate_hz: float = 5.0
    pace: float = 1.0
    domain: int | None = None
    trace: str | None = None
    frame_join_ms: float = 0.0
    refined: bool = False
    event_runtime: str = "torch"
    event_onnx: str = ""
    warm_up_s: float = 0.1
    warm_up_size: tuple[int, int] = (240, 180)


def _child_command(setup: LiveSetup) -> list[str]:
    cmd = [sys.executable, "-m", "blinktrack_ros.nodes.latency", "--mode", setup.mode,
           "--window-ms", str(setup.window_ms), "--target-count", str(setup.target_count),
           "--threads", str(setup.threads), "--debug-rate", str(setup.debug_image_rate_hz),
           "--frame-join-ms", str(setup.frame_join_ms), "--warm-up-s", str(setup.warm_up_s),
           "--warm-up-size", "x".join(map(str, setup.warm_up_size))] + (
               ["--refined"] if setup.refined else [])
    for flag, value in (("--event-weights", setup.event_weights),
                        ("--image-weights", setup.image_weights),
                        ("--event-runtime", setup.event_runtime),
                        ("--event-onnx", setup.event_onnx)):
        if value:
            cmd += [flag, value]
    return cmd


def _messages(seq: Any, packet_ns: int) -> list[tuple[int, bool, Any]]:
    """(data time ns, is_event, message or raw bytes) in publishing order."""
    from sensor_msgs.msg import Image

    from blinktrack_ros.events.dvs import serialize_dvs_event_array
    from blinktrack_ros.nodes.convert import set_stamp
    from blinktrack_ros.tracking.offline import EventInput, interleave

    out = []
    for item in interleave(seq.frames, seq.frame_times_ns, seq.events, packet_ns):
        if isinstance(item, EventInput):
            b = item.batch
            out.append((int(b.t[-1]), True, serialize_dvs_event_array(b, int(b.t[0]))))
        else:
            h, w = item.gray.shape
            msg = Image(height=h, width=w, encoding="mono8", step=w, data=np.clip(
                item.gray * 255 + 0.5, 0, 255).astype(np.uint8).tobytes())
            set_stamp(msg.header.stamp, item.t_ns)
            out.append((item.t_ns, False, msg))
    return out


class Driver:
    """Publishers of events and frames, and the receiver of tracks, on a private domain."""

    def __init__(self, domain: int) -> None:
        from dvs_msgs.msg import EventArray
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from sensor_msgs.msg import Image

        import blinktrack_ros.msg as bt_msg
        from blinktrack_ros.nodes.qos import output_qos

        self.ctx = rclpy.Context()
        rclpy.init(context=self.ctx, domain_id=domain)
        self.node = rclpy.create_node("latency_driver", context=self.ctx)
        qos = output_qos(depth=100)
        self.ev_pub = self.node.create_publisher(EventArray, "/events", qos)
        self.img_pub = self.node.create_publisher(Image, "/image", qos)
        self.tracks: list[tuple[int, int]] = []  # (stamp ns, receipt monotonic ns)
        self.windows: list[int] = []  # event observation stamps (window ends)
        self.tracks_sub = self.node.create_subscription(
            bt_msg.TrackArray, "/blinktrack/tracks", self._on_tracks, qos)
        self.node.create_subscription(bt_msg.ObservationArray, "/blinktrack/event_observations",
                                      self._on_obs, qos)
        self.executor = SingleThreadedExecutor(context=self.ctx)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        from rclpy.executors import ExternalShutdownException

        try:
            while self.ctx.ok():
                self.executor.spin_once(timeout_sec=0.05)
        except (ExternalShutdownException, RuntimeError):
            pass

    def _on_tracks(self, msg: Any) -> None:
        now = time.monotonic_ns()
        self.tracks.append((int(msg.header.stamp.sec) * 10**9 + int(msg.header.stamp.nanosec),
                            now))

    def _on_obs(self, msg: Any) -> None:
        self.windows.append(int(msg.header.stamp.sec) * 10**9 + int(msg.header.stamp.nanosec))

    def connected(self) -> bool:
        """Both inputs subscribed and the tracks published by the node."""
        return (self.ev_pub.get_subscription_count() > 0 and self.img_pub.get_subscription_count()
                > 0 and self.tracks_sub.get_publisher_count() > 0)

    def play(self, messages: list[tuple[int, bool, Any]], pace: float = 1.0) -> np.ndarray:
        """Publish at `pace` x real time; returns (M,) monotonic ns of each publish call."""
        walls = np.zeros(len(messages), np.int64)
        t_data0, start = messages[0][0], time.monotonic_ns() + 50_000_000
        self.start_ns = start
        for i, (t_ns, is_event, msg) in enumerate(messages):
            delay = (start + (t_ns - t_data0) / pace - time.monotonic_ns()) * 1e-9
            if delay > 0:
                time.sleep(delay)
            walls[i] = time.monotonic_ns()
            (self.ev_pub if is_event else self.img_pub).publish(msg)
        return walls

    def close(self) -> None:
        import rclpy

        rclpy.try_shutdown(context=self.ctx)
        self._thread.join(timeout=5)


def window_latencies_ms(messages: list[tuple[int, bool, Any]], walls: np.ndarray,
                        windows: list[int], tracks: list[tuple[int, int]],
                        from_ns: int) -> np.ndarray:
    """(K,) ms from the publish of the packet completing each window to its tracks' receipt."""
    ev = np.array([k for k, m in enumerate(messages) if m[1]], np.int64)
    ev_t = np.array([messages[k][0] for k in ev], np.int64)
    received = {}
    for stamp, wall in tracks:  # the last TrackArray with a stamp is the window's update
        received[stamp] = wall
    out = []
    for t1 in sorted(set(windows)):
        k = int(np.searchsorted(ev_t, t1, side="right"))
        if t1 < from_ns or k >= ev.size or t1 not in received:
            continue
        out.append((received[t1] - walls[ev[k]]) * 1e-6)
    return np.asarray(out)


def measure_latency(seq: Any, setup: LiveSetup, log: Path | None = None) -> dict[str, Any]:
    """Run the node as a child process, play the sequence at real-time pace, return figures."""
    domain = setup.domain if setup.domain is not None else 20 + (os.getpid() + 13) % 80
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
               OMP_NUM_THREADS=str(setup.threads))
    if setup.trace:
        from blinktrack_ros.nodes.trace import TRACE_ENV

        env[TRACE_ENV] = str(setup.trace)
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    messages = _messages(seq, int(setup.packet_ms * 1e6))
    out = open(log, "w+") if log else tempfile.TemporaryFile("w+")  # noqa: SIM115
    child = subprocess.Popen(_child_command(setup), env=env, stdout=out,
                             stderr=subprocess.STDOUT, text=True)
    driver = Driver(domain)
    try:
        deadline = time.monotonic() + 120.0
        while not driver.connected():
            if child.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("blinktrack_node did not come up" + _tail(out))
            time.sleep(0.05)
        cpu0, driver0 = _cpu_s(child.pid), time.process_time()
        walls = driver.play(messages, setup.pace)
        n_windows = int(seq.config.duration_s * 1e3 / setup.window_ms)
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline and (not driver.windows or driver.tracks[-1][0]
                                               < messages[-1][0] - 50_000_000):
            time.sleep(0.05)
        time.sleep(0.5)
        node_cpu, driver_cpu = _cpu_s(child.pid) - cpu0, time.process_time() - driver0
        lat = window_latencies_ms(messages, walls, list(driver.windows), list(driver.tracks),
                                  messages[0][0] + int(setup.skip_s * 1e9))
    finally:
        driver.close()
        child.terminate()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
        out.close()
    if not driver.windows:
        raise RuntimeError("no event window was received from blinktrack_node")
    # windows came back but none after skip_s with its tracks (a node so far behind that it
    # merged them all): the figures say so (nan latencies, 0 windows) instead of failing
    nan = float("nan")
    late = (walls - driver.start_ns - np.array([m[0] - messages[0][0] for m in messages])
            / setup.pace) * 1e-6  # publish calls behind the schedule
    figures = {"latency_ms_median": float(np.median(lat)) if lat.size else nan,
            "latency_ms_p99": float(np.percentile(lat, 99)) if lat.size else nan,
            "latency_ms_max": float(lat.max()) if lat.size else nan,
            "latency_windows": int(lat.size),
            "live_event_updates": len(set(driver.windows)), "data_windows": n_windows,
            "live_track_arrays": len(driver.tracks),
            "node_cpu_s_per_data_s": node_cpu / seq.config.duration_s,
            # this process while it plays the sequence and receives the tracks (the driver
            # shares the cores with the node: a C++ driver on a robot costs less)
            "driver_cpu_s_per_data_s": driver_cpu / seq.config.duration_s,
            "driver_publish_lag_ms_p99": float(np.percentile(late, 99)),
            "node_torch_threads": setup.threads, "live_pace": setup.pace}
    if setup.trace and Path(setup.trace).is_file():
        figures.update(trace_stages(Path(setup.trace), messages[0][0]
                                    + int(setup.skip_s * 1e9)))
    return figures


def trace_stages(path: Path, from_ns: int = 0) -> dict[str, Any]:
    """Medians (ms) of the node's stages for the event batches that completed windows (data
    after from_ns): arrival -> taken by the worker (inbox), taken -> pipeline call (decoding,
    and the frames of the same batch that come first), the pipeline call, its publishing; and
    the frames' pipeline call."""
    import csv

    with open(path) as f:
        rows = [dict(r, zero="0") for r in csv.DictReader(f) if int(r["t_data_ns"]) >= from_ns]

    def stage(kind: str, a: str, b: str) -> float:
        vals = [(int(r[b]) - int(r[a])) * 1e-6 for r in rows
                if r["kind"] == kind and (kind != "events" or int(r["updates"]) > 0)]
        return float(np.median(vals)) if vals else float("nan")

    return {"node_inbox_ms_median": stage("events", "arrival_ns", "taken_ns"),
            "node_before_events_ms_median": stage("events", "taken_ns", "start_ns"),
            "node_event_call_ms_median": stage("events", "start_ns", "end_ns"),
            "node_publish_ms_median": stage("events", "end_ns", "published_ns"),
            "node_event_call_cpu_ms_median": stage("events", "zero", "call_cpu_ns"),
            "node_frame_call_ms_median": stage("frame", "start_ns", "end_ns"),
            "node_event_batches": sum(r["kind"] == "events" for r in rows)}


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far (Linux /proc; nan elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _tail(out: Any) -> str:
    """The end of the child's output (for errors)."""
    try:
        out.flush()
        out.seek(0)
        return ": " + out.read()[-2000:]
    except (OSError, ValueError):
        return ""


def serve(argv: list[str] | None = None) -> int:
    """The child: blinktrack_node around a Pipeline built from the arguments."""
    p = argparse.ArgumentParser(prog="python -m blinktrack_ros.nodes.latency")
    p.add_argument("--mode", default="ei")
    p.add_argument("--window-ms", type=float, default=5.0)
    p.add_argument("--target-count", type=int, default=64)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--frame-join-ms", type=float, default=0.0)
    p.add_argument("--debug-rate", type=float, default=5.0)
    p.add_argument("--refined", action="store_true")
    p.add_argument("--event-weights")
    p.add_argument("--image-weights")
    p.add_argument("--event-runtime", default="torch")
    p.add_argument("--event-onnx", default="")
    p.add_argument("--warm-up-s", type=float, default=0.1)
    p.add_argument("--warm-up-size", default="240x180")
    args = p.parse_args(argv)
    warm_w, warm_h = (int(v) for v in args.warm_up_size.split("x"))
    from rclpy.parameter import Parameter
    import torch

    from blinktrack_ros.nodes.base import run
    from blinktrack_ros.nodes.blinktrack import PipelineNode
    from blinktrack_ros.tracking.build import build_pipeline, event_source_options
    from blinktrack_ros.tracking.pipeline import Mode, PipelineConfig
    from blinktrack_ros.tracking.seeding import SeedConfig

    torch.set_num_threads(args.threads)
    config = PipelineConfig(mode=Mode(args.mode), event_window_ms=args.window_ms)
    kwargs = dict(seeding=SeedConfig(target_count=args.target_count),
                  event_weights=args.event_weights, image_weights=args.image_weights,
                  frame_join_ms=args.frame_join_ms, provisional=args.frame_join_ms > 0,
                  join_when_ready=args.frame_join_ms > 0,
                  event_source=event_source_options(args.event_runtime, args.event_onnx))
    try:
        pipe = build_pipeline(config, **kwargs)
    except FileNotFoundError as exc:
        if args.event_weights or args.image_weights:
            raise
        print(f"note: {exc}: random lite weights (same speed)", flush=True)
        pipe = build_pipeline(config, untrained=True, **kwargs)
    overrides = [Parameter("node.event_msg_type", value="dvs_msgs/EventArray"),
                 Parameter("node.input_reliability", value="reliable"),
                 Parameter("node.input_queue_depth", value=100),
                 Parameter("node.debug_image_rate_hz", value=args.debug_rate),
                 Parameter("node.publish_refined", value=args.refined),
                 Parameter("node.warm_up_s", value=args.warm_up_s),
                 Parameter("node.warm_up_width", value=warm_w),
                 Parameter("node.warm_up_height", value=warm_h)]
    return run(lambda: PipelineNode(pipe, parameter_overrides=overrides), [])


if __name__ == "__main__":
    sys.exit(serve())
