"""blinktrack_node as a child process fed a looping synthetic stream at real-time pace.

The driver (this process) publishes dvs_msgs/EventArray packets and mono8 frames stamped with
wall-clock times (sequence time + a shift: the stream happens "now"), each at the moment its
stamp says, and receives the TrackArrays and /diagnostics. Latency of a TrackArray = its arrival
(wall clock) - its stamp: window completion + transport + processing. Memory: the child's
VmRSS from /proc. Used by `bench/reliability.py` (soak, burst, faults); it lives in nodes/, the
only package that imports rclpy.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
import os
from pathlib import Path
import subprocess
import sys
import time
from typing import Any

import numpy as np

from blinktrack_ros.events.batch import EventBatch

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Update:
    """One received TrackArray."""

    arrival_ns: int
    stamp_ns: int
    ids: np.ndarray
    status: np.ndarray

    @property
    def latency_ms(self) -> float:
        return (self.arrival_ns - self.stamp_ns) * 1e-6


def rss_mb(pid: int) -> float:
    """Resident set size of a process (MB), from /proc/<pid>/status."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def burst(batch: EventBatch, factor: int, rng: np.random.Generator) -> EventBatch:
    """`factor` x the events: each repeated with +-1 px jitter (times stay sorted)."""
    x = np.repeat(batch.x.astype(np.int32), factor) + rng.integers(-1, 2, len(batch) * factor)
    y = np.repeat(batch.y.astype(np.int32), factor) + rng.integers(-1, 2, len(batch) * factor)
    return EventBatch(np.clip(x, 0, batch.width - 1).astype(np.uint16),
                      np.clip(y, 0, batch.height - 1).astype(np.uint16),
                      np.repeat(batch.t, factor), np.repeat(batch.p, factor),
                      batch.width, batch.height)


class LiveNode:
    """The child process, the driver node and the looping stream."""

    def __init__(self, domain: int, mode: str = "e-klt", target_count: int = 32,
                 duration_s: float = 2.0, packet_ms: float = 5.0, extra: list[str] = (),
                 seed: int = 3) -> None:
        from blinktrack_ros.synth.config import preset
        from blinktrack_ros.synth.sequence import generate_sequence

        self.seq = generate_sequence(preset("slow", duration_s=duration_s), seed=seed)
        self.packet_ns = int(packet_ms * 1e6)
        self.loop_ns = int(duration_s * 1e9)
        env = dict(os.environ, ROS_DOMAIN_ID=str(domain),
                   ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", OMP_NUM_THREADS="1")
        args = ["--ros-args", "--params-file", str(REPO / "config" / "blinktrack.yaml"),
                "-p", "node.input_reliability:=reliable", "-p", "node.input_queue_depth:=100",
                "-p", "node.event_msg_type:=dvs_msgs/EventArray",
                "-p", "node.diagnostics_period_s:=0.5", "-p", f"pipeline.mode:={mode}",
                "-p", f"seeding.target_count:={target_count}"]
        for p in extra:
            args += ["-p", p]
        self.child = subprocess.Popen([sys.executable, str(REPO / "scripts" / "blinktrack_node"),
                                       *args], env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True)
        self._ros_setup(domain)
        self.updates: list[Update] = []
        self.diag: dict[str, str] = {}
        self.rss: list[tuple[float, float]] = []  # (monotonic s, MB)
        self.last_event_ns = 0
        self.rng = np.random.default_rng(seed)
        self.frames_u8 = (np.clip(self.seq.frames, 0, 1) * 255 + 0.5).astype(np.uint8)

    def _ros_setup(self, domain: int) -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        self.ctx = rclpy.Context()
        rclpy.init(context=self.ctx, domain_id=domain)
        self.node = rclpy.create_node("reliability_driver", context=self.ctx)
        self.ex = SingleThreadedExecutor(context=self.ctx)
        self.ex.add_node(self.node)
        from diagnostic_msgs.msg import DiagnosticArray
        from dvs_msgs.msg import EventArray
        from sensor_msgs.msg import CameraInfo, Image

        import blinktrack_ros.msg as bt

        self.Image, self.CameraInfo, self.EventArray = Image, CameraInfo, EventArray
        self.node.create_subscription(bt.TrackArray, "/blinktrack/tracks", self._on_tracks, 1000)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 100)
        self.ev_pub = self.node.create_publisher(EventArray, "/events", 1000)
        self.img_pub = self.node.create_publisher(Image, "/image", 100)
        self.info_pub = self.node.create_publisher(CameraInfo, "/camera_info", 10)

    def _on_tracks(self, msg: Any) -> None:
        stamp = int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)
        self.updates.append(Update(time.time_ns(), stamp, np.asarray(msg.ids, np.uint32),
                                   np.asarray(msg.status, np.uint8)))

    def _on_diag(self, msg: Any) -> None:
        for st in msg.status:
            if "blinktrack" in st.name:
                self.diag.update({kv.key: kv.value for kv in st.values})

    def alive(self) -> bool:
        return self.child.poll() is None

    def spin_for(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.ex.spin_once(timeout_sec=max(0.0, min(0.01, end - time.monotonic())))

    def wait_ready(self, timeout_s: float = 120.0) -> float:
        """Blank frames (no corners: an empty TrackArray comes back) until one returns: the
        node is up and both directions are matched. Returns the seconds it took."""
        t0 = time.monotonic()
        sent: set[int] = set()
        while time.monotonic() - t0 < timeout_s:
            if not self.alive():
                raise RuntimeError("blinktrack_node exited:\n" + self.child.communicate()[0])
            t_ns = time.time_ns() - 5_000_000_000
            self.publish_frame(np.zeros((self.seq.frames.shape[1:]), np.uint8), t_ns)
            sent.add(t_ns)
            self.spin_for(0.5)
            if any(u.stamp_ns in sent for u in self.updates):
                self.spin_for(1.0)
                self.updates.clear()
                return time.monotonic() - t0
        raise RuntimeError(f"blinktrack_node did not answer within {timeout_s} s")

    def publish_frame(self, gray_u8: np.ndarray, t_ns: int) -> None:
        h, w = gray_u8.shape
        msg = self.Image(height=h, width=w, encoding="mono8", step=w, data=gray_u8.tobytes())
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(int(t_ns), 1_000_000_000)
        self.img_pub.publish(msg)

    def publish_events(self, batch: EventBatch) -> None:
        from blinktrack_ros.events.dvs import serialize_dvs_event_array

        self.ev_pub.publish(serialize_dvs_event_array(batch, int(batch.t[-1])))

    def stream(self, start_ns: int) -> Iterator[tuple[int, Any]]:
        """(stamp ns, EventBatch or frame index) of the looping sequence from start_ns on."""
        from blinktrack_ros.tracking.offline import EventInput, interleave

        seq, k = self.seq, 0
        t0 = int(seq.frame_times_ns[0])
        while True:
            shift = start_ns - t0 + k * self.loop_ns
            events = replace(seq.events, t=seq.events.t + shift)
            for item in interleave(np.arange(len(seq.frame_times_ns)),
                                   seq.frame_times_ns + shift, events, self.packet_ns):
                if isinstance(item, EventInput):
                    yield int(item.batch.t[-1]), item.batch
                else:
                    yield int(item.t_ns), int(item.gray)
            k += 1

    def play(self, items: Iterator[tuple[int, Any]], seconds: float, offset_ns: int = 0,
             frames: bool = True, burst_factor: int = 1, events: bool = True,
             skip_late: bool = False) -> int:
        """Publish the stream for `seconds` of wall time, each item when the wall clock reaches
        its stamp (+ offset_ns: negative replays the past, a time jump); returns the last stamp
        published. The items iterator continues where it stopped on the next call.
        skip_late: drop the items already 20 ms late (after a pause: no catch-up burst)."""
        end = time.monotonic() + seconds
        last = 0
        next_rss = 0.0
        for t_ns, value in items:
            stamp = t_ns + offset_ns
            if skip_late and t_ns < time.time_ns() - 20_000_000:
                continue
            while time.time_ns() < t_ns:
                self.ex.spin_once(timeout_sec=min(0.005, max(0.0, (t_ns - time.time_ns())
                                                             * 1e-9)))
            if isinstance(value, EventBatch):
                if not events:
                    continue
                batch = burst(value, burst_factor, self.rng) if burst_factor > 1 else value
                self.publish_events(replace(batch, t=batch.t + offset_ns))
                self.last_event_ns = int(batch.t[-1]) + offset_ns
            elif frames:
                self.publish_frame(self.frames_u8[value], stamp)
            last = stamp
            now = time.monotonic()
            if now >= next_rss:
                self.rss.append((now, rss_mb(self.child.pid)))
                next_rss = now + 1.0
            if now >= end:
                break
        return last

    def close(self) -> str:
        import rclpy

        rclpy.shutdown(context=self.ctx)
        if self.child.poll() is None:
            self.child.terminate()
        try:
            return self.child.communicate(timeout=20)[0]
        except subprocess.TimeoutExpired:
            self.child.kill()
            return self.child.communicate(timeout=10)[0]
