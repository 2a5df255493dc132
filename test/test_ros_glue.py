"""Node glue with real rclpy in one process: event inputs (raw dvs CDR, EventPacket), resets on
time going backwards, malformed input (event_node with a recording module that implements
nodes.base.EventModule), and blinktrack_node around the core's real Pipeline, whose live output
must equal the offline replay of the same inputs.
"""

from __future__ import annotations

import time

import cv2
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

from blinktrack_ros.events.batch import EventBatch  # noqa: E402
from blinktrack_ros.events.dvs import serialize_dvs_event_array  # noqa: E402
from blinktrack_ros.nodes import convert  # noqa: E402
from blinktrack_ros.nodes.blinktrack import PipelineNode  # noqa: E402
from blinktrack_ros.nodes.event import EventNode  # noqa: E402
from blinktrack_ros.tracking.build import build_pipeline  # noqa: E402
from blinktrack_ros.tracking.observation import Observations, Source  # noqa: E402
from blinktrack_ros.tracking.offline import FrameInput, interleave, run_offline  # noqa: E402
from blinktrack_ros.tracking.pipeline import Mode, PipelineConfig  # noqa: E402
from blinktrack_ros.tracking.seeding import SeedConfig  # noqa: E402


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


def _spin_until(executor, predicate, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not predicate() and time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.05)
    return bool(predicate())


def _overrides(msg_type: str, refined: bool = False) -> list[Parameter]:
    return [Parameter("node.event_msg_type", value=msg_type),
            Parameter("node.input_reliability", value="reliable"),
            Parameter("node.publish_refined", value=refined)]


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
    # evt3 through rclpy's own payload type: time 0x001002 us, row 9, one ON event at x 5
    evt3 = EventPacket(encoding="evt3", width=64, height=48,
                       events=np.array([0x8001, 0x6002, 0x0009, 0x2805], "<u2").tobytes())
    evt3.header.stamp.sec = 7
    pub.publish(evt3)
    assert _spin_until(ex, lambda: len(module.batches) == 2)
    b = module.batches[1]
    assert (int(b.x[0]), int(b.y[0]), int(b.p[0]), int(b.t[0])) == (5, 9, 1, 7 * 10**9)
    assert node.events.stats()["evt3 decoder"] == "numba"  # the compiled one, in diagnostics
    ex.shutdown()


def _texture(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    tex = cv2.GaussianBlur(rng.uniform(0, 1, (h, w)).astype(np.float32), (0, 0), 2.0)
    return (tex - tex.min()) / (tex.max() - tex.min())


def _sequence(rng: np.random.Generator, n_frames: int = 4):
    """Frames of a texture translating at (45, 21) px/s at 30 Hz, and random events."""
    w, h, t0 = 96, 72, 5 * 10**9
    big = _texture(rng, w + 40, h + 40)
    times = t0 + np.arange(n_frames) * 33_333_333
    frames = []
    for t in times:
        dx, dy = 45.0 * (t - t0) * 1e-9, 21.0 * (t - t0) * 1e-9
        m = np.float32([[1, 0, 20 - dx], [0, 1, 20 - dy]])
        frames.append(cv2.warpAffine(big, m, (w, h), flags=cv2.INTER_LINEAR))
    n = 4000
    t = np.sort(rng.integers(t0, int(times[-1]) + 5_000_000, n)).astype(np.int64)
    events = EventBatch(rng.integers(0, w, n).astype(np.uint16),
                        rng.integers(0, h, n).astype(np.uint16), t,
                        rng.integers(0, 2, n).astype(np.uint8), w, h)
    return np.stack(frames), times, events


def _rows(tracks: list) -> np.ndarray:
    """(M, 5) id, t s, x, y, status of non-LOST entries, sorted like TrackLog.as_rows."""
    out = []
    for m in tracks:
        st = np.asarray(m.status)
        pos = np.asarray(m.positions).reshape(-1, 2)
        t_s = convert.stamp_to_ns(m.header.stamp) * 1e-9
        for i, tid in enumerate(m.ids):
            if st[i] != 2:
                out.append([tid, t_s, pos[i, 0], pos[i, 1], st[i]])
    rows = np.array(out)
    return rows[np.lexsort((rows[:, 1], rows[:, 0]))]


class _Driver:
    """A driver node beside a PipelineNode: publishes the inputs one at a time (each run by the
    node before the next) and collects what the node publishes."""

    def __init__(self, ctx, node: PipelineNode, name: str) -> None:
        self.node, self.driver = node, rclpy.create_node(name, context=ctx)
        pub, sub = self.driver.create_publisher, self.driver.create_subscription
        self.ev_pub, self.img_pub = pub(EventArray, "events", 10), pub(Image, "image", 10)
        self.info_pub = pub(CameraInfo, "camera_info", 10)
        self.tracks, self.obs, self.clouds, self.debug, self.refined = [], [], [], [], []
        sub(bt_msg.TrackArray, "/blinktrack/tracks", self.tracks.append, 100)
        sub(bt_msg.TrackArray, "/blinktrack/tracks_refined", self.refined.append, 100)
        sub(bt_msg.ObservationArray, "/blinktrack/event_observations", self.obs.append, 100)
        sub(PointCloud, "/blinktrack/feature", self.clouds.append, 10)
        sub(Image, "/blinktrack/debug_image", self.debug.append, 10)
        self.ex = SingleThreadedExecutor(context=ctx)
        for n in (node, self.driver):
            self.ex.add_node(n)
        assert _spin_until(self.ex, lambda: all(p.get_subscription_count() > 0 for p in (
            self.ev_pub, self.img_pub, self.info_pub)))
        self.info_pub.publish(CameraInfo(width=96, height=72, distortion_model="plumb_bob",
                                         k=[80.0, 0, 48, 0, 80.0, 36, 0, 0, 1], d=[0.0] * 5))
        assert _spin_until(self.ex, lambda: node.cam is not None)

    def feed(self, inputs: list) -> None:
        node = self.node
        for item in inputs:  # one at a time, in the offline order
            if isinstance(item, FrameInput):
                topic, before = "image", node.inputs["image"].received
                gray = np.clip(item.gray * 255 + 0.5, 0, 255).astype(np.uint8)
                msg = Image(height=72, width=96, encoding="mono8", step=96, data=gray.tobytes())
                convert.set_stamp(msg.header.stamp, item.t_ns)
                self.img_pub.publish(msg)
            else:
                topic, before = "events", node.inputs["events"].received
                self.ev_pub.publish(serialize_dvs_event_array(item.batch, int(item.batch.t[0])))
            assert _spin_until(self.ex, lambda t=topic, b=before: node.inputs[t].received ==
                               b + 1 and node.worker.idle())


@pytest.mark.parametrize("mode", ["e-klt"])
def test_blinktrack_node_live_equals_offline_replay(ctx, rng, mode: str) -> None:
    """The node around the real Pipeline (untrained lite event net + KLT) publishes the tracks
    an offline replay of the same inputs logs; plus observations, feature cloud, debug image."""
    cfg = PipelineConfig(mode=Mode(mode), event_window_ms=10.0)
    seeding = SeedConfig(target_count=12)
    frames, times, events = _sequence(rng)
    inputs = list(interleave(frames, times, events, packet_ns=2_000_000))
    offline_pipe = build_pipeline(cfg, seeding=seeding, untrained=True)
    offline = run_offline(offline_pipe, inputs, keep_state=True)
    node = PipelineNode(build_pipeline(cfg, seeding=seeding, untrained=True), context=ctx,
                        parameter_overrides=_overrides("dvs_msgs/EventArray", refined=True))
    d = _Driver(ctx, node, "driver")
    d.feed(inputs)
    tracks, obs, clouds = d.tracks, d.obs, d.clouds
    n_updates = sum(len(b) for b in offline.rows)
    assert _spin_until(d.ex, lambda: sum(len(m.ids) for m in tracks) >= n_updates
                       and len(obs) == node.pipeline.stats.event_windows
                       and len(clouds) == len(frames))
    live, ref = _rows(tracks), offline.as_rows()
    assert live.shape == ref.shape and len(ref) > 50
    np.testing.assert_array_equal(live[:, [0, 4]], ref[:, [0, 4]])
    np.testing.assert_allclose(live[:, 1:4], ref[:, 1:4], atol=2e-3)
    assert obs and len(clouds) == len(frames) and d.debug
    assert node.pipeline.stats.event_windows == len(obs)
    # node.publish_refined: the windows between frames, smoothed with the next frame, are
    # the offline fixed-lag smoothing of the same log (rows before the last frame, not at a
    # frame time: those stay the filtered ones and are not re-published)
    smoothed = offline.as_rows(smooth=offline_pipe.engine.config,
                               smooth_until_ns=times.astype(np.float64))
    between = (smoothed[:, 1] < times[-1] * 1e-9 - 1e-9) & ~np.isin(
        np.round(smoothed[:, 1] * 1e9).astype(np.int64), times)
    expected = smoothed[between]
    assert _spin_until(d.ex, lambda: sum(len(m.ids) for m in d.refined) >= len(expected))
    refined = _rows(d.refined)
    assert refined.shape == expected.shape and len(expected) > 20
    np.testing.assert_array_equal(refined[:, 0], expected[:, 0])
    np.testing.assert_allclose(refined[:, 1:4], expected[:, 1:4], atol=2e-3)
    filtered = ref[np.isin(ref[:, 1], expected[:, 1])]
    assert np.abs(filtered[:, 2:4] - expected[:, 2:4]).max() > 1e-2  # smoothing moved them
    assert node.smoother.dropped == 0
    assert node.extra_diagnostics()["network event step"] == "torch trace"
    from blinktrack_ros.tracking import fusion_jit

    assert node.extra_diagnostics()["fusion kernel"] == (
        "numba" if fusion_jit.KERNEL.available() else "numpy")
    # the node warmed its pipeline up at start (node.warm_up_s default) and its tracks are
    # still those of the cold offline replay (compared above)
    assert node.warm_up_s > 0
    d.ex.shutdown()


def test_blinktrack_node_frame_join_publishes_windows_at_once(ctx, rng) -> None:
    """node.frame_join_ms: frames run beside the event windows, which go out at once with
    provisional tracks; the published stamps never go back, each window's observations go out
    once, and each joined frame still gets its feature cloud (stamped with the frame)."""
    cfg = PipelineConfig(mode=Mode.E_KLT, event_window_ms=10.0)
    frames, times, events = _sequence(rng, n_frames=5)
    inputs = list(interleave(frames, times, events, packet_ns=2_000_000))
    pipe = build_pipeline(cfg, seeding=SeedConfig(target_count=12), untrained=True,
                          frame_join_ms=20.0, provisional=True)
    node = PipelineNode(pipe, context=ctx,
                        parameter_overrides=_overrides("dvs_msgs/EventArray", refined=True))
    d = _Driver(ctx, node, "driver_join")
    d.feed(inputs)
    tracks, obs, clouds = d.tracks, d.obs, d.clouds
    windows = node.pipeline.stats.event_windows
    # the last frame is still in flight (no data past its join): the others are joined
    assert _spin_until(d.ex, lambda: len(obs) == windows and len(clouds) >= len(frames) - 2)
    stamps = [convert.stamp_to_ns(m.header.stamp) for m in tracks]
    assert stamps == sorted(stamps) and windows > 5
    window_stamps = [convert.stamp_to_ns(m.header.stamp) for m in obs]
    assert len(set(window_stamps)) == len(window_stamps) == windows
    cloud_stamps = [convert.stamp_to_ns(m.header.stamp) for m in clouds]
    assert cloud_stamps == sorted(cloud_stamps) and set(cloud_stamps) <= set(int(t) for t in times)
    assert node.held_back.get("/blinktrack/tracks", 0) == 0  # late frames are not "held back"
    # every window has its track array; each joined frame its cloud, in frame order
    assert set(window_stamps) <= set(stamps)
    assert cloud_stamps == [int(t) for t in times[:len(cloud_stamps)]]
    # ~/tracks_refined with the frame join: the windows that went out before their frame are
    # refined from their refit (the filter of the plain frame join), none dropped
    plain = build_pipeline(cfg, seeding=SeedConfig(target_count=12), untrained=True,
                           frame_join_ms=20.0)
    offline = run_offline(plain, inputs, keep_state=True)
    expected = offline.as_rows(smooth=plain.engine.config,
                               smooth_until_ns=times.astype(np.float64))
    assert _spin_until(d.ex, lambda: sum(len(m.ids) for m in d.refined) > 20)
    refined = _rows(d.refined)
    key = {(int(r[0]), round(r[1], 6)): r[2:4] for r in expected}
    for r in refined:
        np.testing.assert_allclose(r[2:4], key[(int(r[0]), round(r[1], 6))], atol=2e-3)
    assert node.smoother.dropped == 0
    # among them windows that went out provisionally (within the 20 ms join after a frame)
    after = [t - times[times < t].max() for t in np.unique(refined[:, 1] * 1e9) if t > times[0]]
    assert min(after) <= 20_000_000
    d.ex.shutdown()


def test_split_nodes_built_from_parameters_warm_up_and_forget_it(ctx) -> None:
    """event_node and image_node built from their parameters warm their networks up at start
    (node.warm_up_s, the size given) and start with no track, no window and zero counters;
    node.warm_up_s 0 turns it off."""
    from blinktrack_ros.nodes.image import ImageNode

    size = [Parameter("node.warm_up_width", value=96), Parameter("node.warm_up_height", value=72)]
    event = EventNode(context=ctx, parameter_overrides=[
        Parameter("pipeline.mode", value="e"), *size])
    image = ImageNode(context=ctx, parameter_overrides=[
        Parameter("pipeline.mode", value="i"), *size])
    cold = EventNode(name="cold", context=ctx, parameter_overrides=[
        Parameter("pipeline.mode", value="e"), Parameter("node.warm_up_s", value=0.0)])
    try:
        assert event.warm_up_s > 0 and image.warm_up_s > 0 and cold.warm_up_s == 0.0
        assert event.module.source.track_ids.size == 0 and not event.module.has_grid
        assert event.module.counts["windows"] == 0
        assert image.module.image_source.track_ids.size == 0
        assert image.module.counts["frames"] == 0
        traced = image.module.image_source.model._traced  # traced for the warm-up size
        assert any(key[1][-2:] == (72, 96) for key in traced)
        assert not any(event.module.source.stats.values())
    finally:
        for node in (event, image, cold):
            node.destroy_node()


def test_a_failing_warm_up_leaves_the_node_starting_cold(ctx) -> None:
    """A warm-up that raises (say a runtime that fails on its first call) is logged and the
    node starts all the same, without it."""
    pipe = build_pipeline(PipelineConfig(mode=Mode.E_KLT), untrained=True)

    def broken(*args, **kwargs):
        raise OSError("no device (test)")

    pipe.warm_up = broken
    node = PipelineNode(pipe, context=ctx, parameter_overrides=_overrides("dvs_msgs/EventArray"))
    try:
        assert node.warm_up_s == 0.0 and node.pipeline is pipe
    finally:
        node.destroy_node()
