"""The split deployment at real speed (issue 20): event_node, image_node (KLT) and fusion_node as
three processes, wired as the launch file wires them (single_process:=false), the event type
left at `auto`, no CameraInfo at all. A driver plays a synthetic sequence's events and frames
at real-time pace (as `ros2 bag play` at 1x does) and checks what a SLAM front-end relies on:
event observations fused, the target count respected, a frame_id on every message, stamps
never going back, and no birth left without its reference frame."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
import subprocess
import sys
import time

import numpy as np
import pytest

pytestmark = [pytest.mark.ros, pytest.mark.slow]

rclpy = pytest.importorskip("rclpy", reason="rclpy missing: run bash tools/build_msgs.sh .venv")
bt_msg = pytest.importorskip(
    "blinktrack_ros.msg", reason="messages not built: run bash tools/build_msgs.sh .venv")
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rosutil import spin_until  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from blinktrack_ros.nodes import convert  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
TARGET = 12


def _start(executable: str, name: str, remaps: list[str], env: dict, params: list[str]
           ) -> subprocess.Popen:
    args = ["--ros-args", "-r", f"__node:={name}", "--params-file",
            str(REPO / "config" / "blinktrack.yaml"), *params]
    for r in remaps:
        args += ["-r", r]
    return subprocess.Popen([sys.executable, str(REPO / "scripts" / executable), *args],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _image(gray: np.ndarray, t_ns: int) -> Image:
    h, w = gray.shape
    msg = Image(height=h, width=w, encoding="mono8", step=w, data=gray.tobytes())
    msg.header.frame_id = "cam0"
    convert.set_stamp(msg.header.stamp, t_ns)
    return msg


def test_three_processes_at_real_speed(rng, tmp_path, ros_domain) -> None:
    import torch

    from blinktrack_ros.events.dvs import serialize_dvs_event_array
    from blinktrack_ros.models.event_config import EventNetConfig
    from blinktrack_ros.models.event_net import EventNet, save_event_net
    from blinktrack_ros.synth.config import preset
    from blinktrack_ros.synth.sequence import generate_sequence
    from blinktrack_ros.tracking.offline import EventInput, interleave

    torch.manual_seed(0)
    weights = tmp_path / "event_untrained.pt"  # the wiring is checked, not the network
    save_event_net(weights, EventNet(EventNetConfig.lite3()))  # the cheapest step
    seq = generate_sequence(preset("slow", duration_s=1.0), seed=5)
    domain = ros_domain
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
               OMP_NUM_THREADS="1")
    params = ["-p", "pipeline.mode:=e-klt", "-p", f"seeding.target_count:={TARGET}",
              "-p", f"node.event_weights:={weights}", "-p", "node.camera_info_wait_s:=0.2",
              "-p", "node.fusion_wait_ms:=300.0"]  # as the launch file sets it (split mode)
    tracks_topic = "tracks:=/blinktrack/tracks"
    children = [
        _start("event_node", "blinktrack_event",
               ["events:=/cam/events", "image:=/cam/image", tracks_topic], env, params),
        _start("image_node", "blinktrack_image", ["image:=/cam/image", tracks_topic], env,
               params),
        _start("fusion_node", "blinktrack",
               ["image_observations:=/blinktrack_image/observations",
                "event_observations:=/blinktrack_event/observations", "image:=/cam/image"],
               env, params),
    ]
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=domain)
    try:
        from dvs_msgs.msg import EventArray

        node = rclpy.create_node("split_live_driver", context=ctx)
        ex = SingleThreadedExecutor(context=ctx)
        ex.add_node(node)
        tracks: list = []
        event_obs: list = []
        diagnostics: dict[str, dict[str, str]] = {}
        node.create_subscription(bt_msg.TrackArray, "/blinktrack/tracks", tracks.append, 1000)
        node.create_subscription(bt_msg.ObservationArray, "/blinktrack_event/observations",
                                 event_obs.append, 1000)
        node.create_subscription(DiagnosticArray, "/diagnostics", lambda m: diagnostics.update(
            {s.name: {kv.key: kv.value for kv in s.values} for s in m.status}), 100)
        img_pub = node.create_publisher(Image, "/cam/image", 10)
        ev_pub = node.create_publisher(EventArray, "/cam/events", 1000)
        assert spin_until(ex, lambda: img_pub.get_subscription_count() >= 3
                          and ev_pub.get_subscription_count() >= 1
                          and node.count_subscribers("/blinktrack/tracks") >= 3
                          and node.count_publishers("/blinktrack_event/observations") >= 1,
                          90.0), "nodes not up"
        frames = (np.clip(seq.frames, 0, 1) * 255).astype(np.uint8)
        shift = 2_000_000_000  # room for the warm-up frames before the sequence
        # warm-up: the first frame repeated until its tracks come back (the chain is matched)
        t_warm = shift + int(seq.frame_times_ns[0]) - 1_000_000_000
        while not tracks:
            img_pub.publish(_image(frames[0], t_warm))
            t_warm += 20_000_000
            assert t_warm < shift + int(seq.frame_times_ns[0]), "no tracks came back"
            spin_until(ex, lambda: bool(tracks), 0.5)
        events = dataclasses.replace(seq.events, t=seq.events.t + shift)
        # 5 ms event packets (drivers let you set it; about the window, README)
        items = list(interleave(frames, seq.frame_times_ns + shift, events, 5_000_000))
        def data_time(item) -> int:  # a packet is due when its last event happened
            return int(item.batch.t[-1]) if isinstance(item, EventInput) else item.t_ns

        t_data0, t_wall0 = data_time(items[0]), time.monotonic()
        for item in items:  # at real-time pace: each message when its data time is due
            due = t_wall0 + (data_time(item) - t_data0) * 1e-9
            while time.monotonic() < due:
                ex.spin_once(timeout_sec=max(0.0, due - time.monotonic()))
            if isinstance(item, EventInput):
                ev_pub.publish(serialize_dvs_event_array(item.batch, int(item.batch.t[0])))
            else:
                img_pub.publish(_image(item.gray, item.t_ns))
        t_last = shift + int(seq.frame_times_ns[-1])
        spin_until(ex, lambda: any(convert.stamp_to_ns(m.header.stamp) >= t_last
                                   for m in tracks), 10.0)
        # done when the image node has taken every sequence frame (and the warm-up frame that
        # answered; earlier warm-up frames may predate the match) or counted it lost, and its
        # worker is idle: a condition, not a fixed wait, for a loaded machine
        image_diag = "blinktrack_ros: blinktrack_image"

        def image_counts() -> dict[str, int]:
            d = diagnostics.get(image_diag, {})
            keys = ("image received", "image dropped", "inbox waiting",
                    "frames skipped (backlog)")
            return {k: int(d[k]) for k in keys} if all(k in d for k in keys) else {}

        def image_idle() -> bool:
            c = image_counts()
            return bool(c) and c["inbox waiting"] == 0 and \
                c["image received"] + c["image dropped"] >= len(frames) + 1

        event_diag = "blinktrack_ros: blinktrack_event"
        diagnostics.clear()  # from here on, reports made after the last input was sent

        def event_idle() -> bool:
            return diagnostics.get(event_diag, {}).get("inbox waiting") == "0"

        spin_until(ex, lambda: image_idle() and event_idle(), 60.0)
        in_sequence = [m for m in tracks if convert.stamp_to_ns(m.header.stamp) >= shift]
        # a TrackArray per frame (51 frames at 50 Hz; more than 30 required), except for the
        # frames the image node did not run: skipped behind real time or lost, and counted
        counts = image_counts()
        assert counts, diagnostics.keys()
        unused = counts["frames skipped (backlog)"] + counts["image dropped"]
        assert len(in_sequence) + unused > 30, (len(in_sequence), counts)
        stamps = [convert.stamp_to_ns(m.header.stamp) for m in tracks]
        assert stamps == sorted(stamps), "TrackArray stamps went back"
        assert all(m.header.frame_id == "cam0" for m in tracks + event_obs)
        alive = [int(np.sum(np.asarray(m.status) != 2)) for m in tracks]
        assert max(alive) <= TARGET, max(alive)
        event_fused = [m for m in in_sequence if np.any(np.asarray(m.last_source) == 0)]
        values = diagnostics[event_diag]
        # about 100 windows of 10 ms: each an array, or merged into the next one when the node
        # runs behind real time (a loaded machine), and counted
        not_run = int(values["event module windows_merged"]) + \
            int(values["event module windows_skipped"])
        assert len(event_obs) + not_run >= 10, (len(event_obs), not_run)
        # the event observations are fused (issue 20: none were at 1x): at least half of the
        # event arrays give a TrackArray with an event update, whatever the load (on the
        # 2-core VM the event node, behind real time with three processes and this driver,
        # ran 3-37 arrays in CI and local runs, merging the other windows; 1-34 fused)
        assert len(event_fused) >= max(1, len(event_obs) // 2), (len(event_obs),
                                                                 len(event_fused))
        print(f"split at 1x: {len(in_sequence)} TrackArrays, {len(event_obs)} event arrays "
              f"({not_run} windows merged), {len(event_fused)} TrackArrays with an event "
              f"update, max alive {max(alive)}, {counts}")
        assert values["decode type"] == "dvs_msgs/EventArray"  # detected (auto)
        assert values["event module births_frame_lost"] == "0"
    finally:
        rclpy.shutdown(context=ctx)
        for child in children:
            child.terminate()
        outputs, hung = [], []
        for child in children:
            try:
                outputs.append(child.communicate(timeout=20)[0])
            except subprocess.TimeoutExpired:  # kill it to get its log into the failure
                child.kill()
                outputs.append(child.communicate(timeout=10)[0])
                hung.append(child.args[1])
    assert not hung, f"no exit within 20 s of SIGTERM: {hung}; logs: " + " | ".join(
        out[-2000:] for out in outputs)
    for child, out in zip(children, outputs):
        assert child.returncode in (0, -15), out[-3000:]
