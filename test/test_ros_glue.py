"""Node glue with real rclpy in one process: event inputs (raw dvs CDR, EventPacket), resets on
time going backwards, malformed input, and the single-process wiring of blinktrack_node.

The networks are replaced by small recording modules that implement the module interfaces of
nodes.base (the glue is under test here; fusion is the real EngineFusion).
"""

from __future__ import annotations

import os
import time
from types import SimpleNamespace

import numpy as np
import pytest

pytestmark = pytest.mark.ros

rclpy = pytest.importorskip("rclpy", reason="rclpy missing: run bash tools/build_msgs.sh .venv")
bt_msg = pytest.importorskip(
    "blinktrack_ros.msg", reason="messages not built: run bash tools/build_msgs.sh .venv")
from dvs_msgs.msg import Event, EventArray  # noqa: E402
from event_camera_msgs.msg import EventPacket  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.serialization import serialize_message  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image, PointCloud  # noqa: E402

from blinktrack_ros.nodes.blinktrack import BlinktrackNodes  # noqa: E402
from blinktrack_ros.nodes.event import EventNode  # noqa: E402
from blinktrack_ros.tracking.observation import Observations, Source  # noqa: E402


class RecordingEventModule:
    """Records its inputs; one observation per batch for each known track, at the batch end."""

    def __init__(self) -> None:
        self.batches, self.tracks, self.images, self.resets = [], [], [], 0

    def on_events(self, batch):
        self.batches.append(batch)
        ids = self.tracks[-1].ids if self.tracks else np.array([7], np.uint32)
        n = len(ids)
        if len(batch) == 0:
            return []
        pos = np.tile([[float(batch.x.mean()), float(batch.y.mean())]], (n, 1))
        return [Observations(Source.EVENT, int(batch.t[-1]), ids, pos,
                             np.repeat(np.eye(2)[None], n, 0), np.ones(n))]

    def on_image(self, t_ns, gray):
        self.images.append((t_ns, gray.shape))

    def on_tracks(self, snap):
        self.tracks.append(snap)

    def reset(self):
        self.resets += 1


class SeedingImageModule:
    """Seeds three features on the first frame, then nothing."""

    def __init__(self) -> None:
        self.frames, self.tracks = 0, []

    def on_image(self, t_ns, gray):
        self.frames += 1
        pos = np.array([[5.0, 5.0], [10.0, 20.0], [25.0, 8.0]])
        cov = np.repeat(np.eye(2)[None], 3, 0)
        if self.frames == 1:
            return [Observations(Source.SEED, t_ns, np.zeros(3, np.uint32), pos, cov,
                                 np.ones(3))]
        return [Observations(Source.IMAGE, t_ns, self.tracks[-1].ids, pos + 1.0, cov,
                             np.ones(3))]

    def on_tracks(self, snap):
        self.tracks.append(snap)

    def reset(self):
        pass


@pytest.fixture
def ctx():
    c = rclpy.Context()
    rclpy.init(context=c, domain_id=20 + (os.getpid() + 61) % 80)
    yield c
    rclpy.shutdown(context=c)


def _spin_until(executor, predicate, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not predicate() and time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.05)
    return bool(predicate())


def _overrides(msg_type: str) -> list[Parameter]:
    return [Parameter("node.event_msg_type", value=msg_type),
            Parameter("node.input_reliability", value="reliable")]


def _dvs_msg(x, y, t_ns, p) -> EventArray:
    msg = EventArray(width=64, height=48, events=[
        Event(x=int(a), y=int(b), polarity=bool(c)) for a, b, c in zip(x, y, p)])
    for ev, t in zip(msg.events, t_ns):
        ev.ts.sec, ev.ts.nanosec = divmod(int(t), 10**9)
    msg.header.stamp = msg.events[0].ts
    return msg


def test_event_node_raw_dvs_and_reset(ctx, rng) -> None:
    """dvs EventArrays arrive raw and decode to the events sent; a jump back resets."""
    module = RecordingEventModule()
    node = EventNode(module, context=ctx, parameter_overrides=_overrides("dvs_msgs/EventArray"))
    driver = rclpy.create_node("driver", context=ctx)
    pub = driver.create_publisher(EventArray, "events", 10)
    got: list = []
    driver.create_subscription(bt_msg.ObservationArray, "/blinktrack_event/observations",
                               got.append, 10)
    ex = SingleThreadedExecutor(context=ctx)
    for n in (node, driver):
        ex.add_node(n)
    assert _spin_until(ex, lambda: pub.get_subscription_count() > 0)
    x, y, p = rng.integers(0, 64, 40), rng.integers(0, 48, 40), rng.integers(0, 2, 40)
    t = 5 * 10**9 + np.sort(rng.integers(0, 5_000_000, 40))
    pub.publish(_dvs_msg(x, y, t, p))
    assert _spin_until(ex, lambda: len(got) == 1)
    b = module.batches[0]
    np.testing.assert_array_equal(b.x, x)
    np.testing.assert_array_equal(b.t, t)
    np.testing.assert_array_equal(b.p, p)
    assert got[0].header.stamp.sec == 5 and list(got[0].ids) == [7]
    pub.publish(_dvs_msg(x, y, t - 2 * 10**9, p))  # a looped bag
    assert _spin_until(ex, lambda: len(module.batches) == 2)
    assert module.resets == 1 and node.resets == 1
    whole = serialize_message(_dvs_msg(x, y, t, p))
    pub.publish(whole[:-20])  # serialized bytes cut inside the events: counted, node lives
    assert _spin_until(ex, lambda: node.inputs["events"].malformed == 1)
    pub.publish(whole)
    assert _spin_until(ex, lambda: len(module.batches) == 3)
    ex.shutdown()


def test_event_node_packet_malformed_counted(ctx) -> None:
    """An unsupported encoding is counted as malformed; the next packet is decoded."""
    module = RecordingEventModule()
    node = EventNode(module, context=ctx,
                     parameter_overrides=_overrides("event_camera_msgs/EventPacket"))
    driver = rclpy.create_node("driver", context=ctx)
    pub = driver.create_publisher(EventPacket, "events", 10)
    ex = SingleThreadedExecutor(context=ctx)
    for n in (node, driver):
        ex.add_node(n)
    assert _spin_until(ex, lambda: pub.get_subscription_count() > 0)
    pub.publish(EventPacket(encoding="trigger", width=64, height=48, events=b"\x00" * 8))
    word = (3 << 32) | (4 << 48) | 1000  # mono: x 3, y 4, dt 1 us
    good = EventPacket(encoding="mono", width=64, height=48,
                       events=np.array([word], "<u8").tobytes())
    pub.publish(good)
    assert _spin_until(ex, lambda: len(module.batches) == 1)
    assert node.inputs["events"].malformed == 1 and node.inputs["events"].received == 2
    assert int(module.batches[0].x[0]) == 3 and int(module.batches[0].t[0]) == 1000
    ex.shutdown()


def test_single_process_wiring(ctx) -> None:
    """Image seeds -> fusion -> tracks back to the event module -> event observations fused."""
    event, image = RecordingEventModule(), SeedingImageModule()
    nodes = BlinktrackNodes(SimpleNamespace(event=event, image=image), context=ctx,
                            parameter_overrides=_overrides("dvs_msgs/EventArray"))
    driver = rclpy.create_node("driver", context=ctx)
    img_pub = driver.create_publisher(Image, "image", 10)
    ev_pub = driver.create_publisher(EventArray, "events", 10)
    info_pub = driver.create_publisher(CameraInfo, "camera_info", 10)
    tracks, clouds, debug = [], [], []
    driver.create_subscription(bt_msg.TrackArray, "/blinktrack/tracks", tracks.append, 10)
    driver.create_subscription(PointCloud, "/blinktrack/feature", clouds.append, 10)
    driver.create_subscription(Image, "/blinktrack/debug_image", debug.append, 10)
    ex = SingleThreadedExecutor(context=ctx)
    for n in [*nodes.nodes, driver]:
        ex.add_node(n)
    assert _spin_until(ex, lambda: img_pub.get_subscription_count() >= 2
                       and ev_pub.get_subscription_count() >= 1
                       and info_pub.get_subscription_count() >= 1)
    info_pub.publish(CameraInfo(width=64, height=48, distortion_model="plumb_bob",
                                k=[50.0, 0, 32, 0, 50.0, 24, 0, 0, 1], d=[0.0] * 5))
    assert _spin_until(ex, lambda: nodes.fusion.cam is not None)
    frame = Image(height=48, width=64, encoding="mono8", step=64, data=bytes(64 * 48))
    frame.header.stamp.sec = 5
    img_pub.publish(frame)
    assert _spin_until(ex, lambda: len(tracks) == 1)
    ids = list(tracks[0].ids)
    assert len(ids) == 3 and list(tracks[0].last_source) == [Source.SEED] * 3
    ev_pub.publish(_dvs_msg([10, 12], [9, 11], [5 * 10**9 + 10**6, 5 * 10**9 + 2 * 10**6],
                            [1, 0]))
    assert _spin_until(ex, lambda: len(tracks) == 2)
    assert list(event.tracks[-1].ids) == ids  # the snapshot reached the event module first
    assert list(tracks[1].ids) == ids and list(tracks[1].last_source) == [Source.EVENT] * 3
    assert event.images and event.images[0][1] == (48, 64)
    frame.header.stamp.nanosec = 33_000_000
    img_pub.publish(frame)  # an IMAGE update: tracks, then the VINS feature cloud
    assert _spin_until(ex, lambda: len(tracks) == 3 and len(clouds) == 1 and len(debug) >= 1)
    assert list(tracks[2].last_source) == [Source.IMAGE] * 3 and len(tracks[2].undistorted) == 6
    assert len(clouds[0].channels) == 9 and list(clouds[0].channels[0].values) == ids
    assert debug[0].encoding == "bgr8" and debug[0].width == 64
    ex.shutdown()
    nodes.destroy_node()
