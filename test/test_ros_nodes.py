"""fusion_node as a separate process with the params file: tracks, malformed input, parameters.

A test process publishes a synthetic sequence (seeds, then event and image observations of
points moving at constant velocity, with noise) and receives the fused TrackArrays. Every wait
is on a condition with a timeout (no sleeps as synchronisation).
"""

from __future__ import annotations

import os
from pathlib import Path
import subprocess
import sys

import numpy as np
import pytest

pytestmark = pytest.mark.ros

rclpy = pytest.importorskip("rclpy", reason="rclpy missing: run bash tools/build_msgs.sh .venv")
bt_msg = pytest.importorskip(
    "blinktrack_ros.msg", reason="messages not built: run bash tools/build_msgs.sh .venv")
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rcl_interfaces.srv import SetParameters  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rosutil import private_domain, round_trip, spin_until, texture, translated  # noqa: E402

from blinktrack_ros.nodes import convert  # noqa: E402
from blinktrack_ros.tracking.observation import Observations, Source  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
T0 = 1_000_000_000_000  # 1000 s


class Harness:
    """The fusion_node child process and a test node talking to it on a private domain."""

    def __init__(self, extra_params: list[str], executable: str = "fusion_node") -> None:
        self._domain = private_domain(37)
        self.domain = self._domain.__enter__()
        env = dict(os.environ, ROS_DOMAIN_ID=str(self.domain),
                   ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
        args = ["--ros-args", "--params-file", str(REPO / "config" / "blinktrack.yaml"),
                "-p", "node.input_reliability:=reliable", "-p", "node.diagnostics_period_s:=0.2"]
        for p in extra_params:
            args += ["-p", p]
        self.child = subprocess.Popen([sys.executable, str(REPO / "scripts" / executable),
                                       *args], env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True)
        self.ctx = rclpy.Context()
        rclpy.init(context=self.ctx, domain_id=self.domain)
        self.node = rclpy.create_node("test_driver", context=self.ctx)
        self.ex = SingleThreadedExecutor(context=self.ctx)
        self.ex.add_node(self.node)
        self.tracks: list = []
        self.diag: list = []
        self.node.create_subscription(bt_msg.TrackArray, "/blinktrack/tracks",
                                      self.tracks.append, 100)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self.diag.append, 10)
        self.pubs = {s: self.node.create_publisher(bt_msg.ObservationArray, f"/{name}", 100)
                     for s, name in ((Source.EVENT, "event_observations"),
                                     (Source.IMAGE, "image_observations"))}

    def probe(self, source: Source, first_ns: int, timeout_s: float = 60.0) -> None:
        """Empty arrays on `source`'s topic until one comes back fused (an empty TrackArray):
        the node is up and both directions are matched (see rosutil.round_trip)."""
        def publish(t_ns: int) -> None:
            empty = _obs(source, t_ns, [], np.zeros((0, 2)), 1.0)
            self.pubs[source].publish(convert.observations_to_msg(empty, "cam0"))

        round_trip(self.ex, publish, self.tracks, first_ns, timeout_s)

    def send(self, obs: Observations, source: Source | None = None) -> bt_msg.TrackArray:
        """Publish and wait for the TrackArray stamped with this observation time."""
        n = len(self.tracks)
        self.pubs[source or obs.source].publish(convert.observations_to_msg(obs, "cam0"))
        ok = spin_until(self.ex, lambda: any(convert.stamp_to_ns(m.header.stamp) == obs.t_ns
                                        for m in self.tracks[n:]), 10.0)
        assert ok, f"no TrackArray for t={obs.t_ns}"
        return self.tracks[-1]

    def close(self) -> str:
        rclpy.shutdown(context=self.ctx)
        if self.child.poll() is None:
            self.child.terminate()
        try:
            out, _ = self.child.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.child.kill()
            out, _ = self.child.communicate(timeout=10)
        finally:
            self._domain.__exit__(None, None, None)
        return out


@pytest.fixture
def harness():
    # the observations below are synthetic with known noise: fuse them with their own
    # covariances (not the R calibrated for, or carried by, the shipped network weights)
    h = Harness(["fusion.lost_after_s:=5.0", "fusion.calibrated_noise:=false"])
    h.probe(Source.EVENT, T0 - 3_000_000_000)  # stamps before the tests' (time goes forward)
    h.probe(Source.IMAGE, T0 - 2_000_000_000)
    yield h
    h.close()


def _obs(source: Source, t_ns: int, ids, pos, r: float) -> Observations:
    n = len(ids)
    cov = np.repeat((r * np.eye(2))[None], n, axis=0)
    return Observations(source, t_ns, np.asarray(ids, np.uint32), np.asarray(pos, float), cov,
                        np.ones(n))


def test_fusion_node_tracks_a_synthetic_sequence(harness, rng) -> None:
    """Seeded tracks keep their ids and follow the true motion from noisy observations."""
    p0 = rng.uniform(50, 300, (5, 2))
    v = rng.uniform(-80, 80, (5, 2))  # px/s
    first = harness.send(_obs(Source.SEED, T0, np.zeros(5), p0, 1.0), Source.IMAGE)
    ids = np.asarray(first.ids)
    assert len(ids) == 5 and len(set(ids.tolist())) == 5
    for k in range(1, 61):  # 0.3 s: events every 5 ms, frames every 30 ms
        t = T0 + k * 5_000_000
        truth = p0 + v * (k * 5e-3)
        src = Source.IMAGE if k % 6 == 0 else Source.EVENT
        r = 1.0 if src == Source.IMAGE else 0.25
        msg = harness.send(_obs(src, t, ids, truth + rng.normal(0, np.sqrt(r), truth.shape), r))
        np.testing.assert_array_equal(np.asarray(msg.ids), ids)  # stable ids
    pos = np.asarray(msg.positions).reshape(-1, 2)
    vel = np.asarray(msg.velocities).reshape(-1, 2)
    assert np.abs(pos - truth).max() < 1.0
    assert np.abs(vel - v).max() < 25.0
    assert list(msg.status) == [bt_msg.TrackArray.TRACKED] * 5


def test_malformed_input_counted_node_alive(harness) -> None:
    """A malformed array is counted in /diagnostics and the node keeps fusing."""
    seeded = harness.send(_obs(Source.SEED, T0, [0], [[10.0, 10.0]], 1.0), Source.IMAGE)
    bad = bt_msg.ObservationArray(ids=[1, 2], positions=[1.0])
    harness.pubs[Source.EVENT].publish(bad)
    key = "event_observations malformed"
    assert spin_until(harness.ex, lambda: any(
        kv.key == key and kv.value == "1" for d in harness.diag for s in d.status
        for kv in s.values), 10.0)
    msg = harness.send(_obs(Source.EVENT, T0 + 5_000_000, seeded.ids, [[11.0, 10.0]], 0.5))
    assert list(msg.ids) == list(seeded.ids)


def test_parameters_rejected_at_runtime_and_startup(harness) -> None:
    """set_parameters with out-of-range / invalid values is refused with a reason."""
    client = harness.node.create_client(SetParameters, "/blinktrack/set_parameters")
    assert client.wait_for_service(timeout_sec=10.0)
    req = SetParameters.Request(parameters=[
        Parameter("fusion.q", value=-5.0).to_parameter_msg(),
        Parameter("fusion.visibility_ema_alpha", value=0.0).to_parameter_msg(),
        Parameter("fusion.lost_after_s", value=2.0).to_parameter_msg()])
    future = client.call_async(req)
    assert spin_until(harness.ex, future.done, 10.0)
    results = future.result().results
    assert [r.successful for r in results] == [False, False, True]
    assert all(r.reason for r in results[:2])
    bad = Harness(["fusion.visibility_ema_alpha:=0.0"])
    try:
        assert bad.child.wait(timeout=120) == 2  # start-up takes ~20 s on 2 busy cores
    finally:
        out = bad.close()
    assert "visibility_ema_alpha" in out


def test_blinktrack_node_process_klt(rng) -> None:
    """blinktrack_node (KLT mode: no weights) follows a translating texture with stable ids;
    a frame stamped back in time resets the tracks (counted in /diagnostics)."""
    from sensor_msgs.msg import Image

    h = Harness(["pipeline.mode:=klt", "seeding.target_count:=10"], "blinktrack_node")
    try:
        pub = h.node.create_publisher(Image, "/image", 10)

        def blank(t_ns: int) -> None:  # no corners: an empty TrackArray comes back
            probe = Image(height=72, width=96, encoding="mono8", step=96, data=bytes(96 * 72))
            convert.set_stamp(probe.header.stamp, t_ns)
            pub.publish(probe)

        round_trip(h.ex, blank, h.tracks, T0 - 2_000_000_000, 90.0)
        tex = texture(rng)
        v = np.array([-45.0, -21.0])  # image motion in px/s
        for k in range(6):
            t_ns = T0 + k * 33_333_333
            frame = translated(tex, v * (t_ns - T0) * 1e-9)
            msg = Image(height=72, width=96, encoding="mono8", step=96, data=frame.tobytes())
            convert.set_stamp(msg.header.stamp, t_ns)
            n = len(h.tracks)
            pub.publish(msg)
            assert spin_until(h.ex, lambda n=n: len(h.tracks) > n, 20.0), \
                f"no tracks for frame {k}"
            if k == 0:
                first = h.tracks[-1]
        last = h.tracks[-1]
        ids0 = list(first.ids)
        assert len(ids0) >= 5 and set(ids0) <= set(last.ids)  # ids stable
        p0 = np.asarray(first.positions).reshape(-1, 2)
        p1 = np.asarray(last.positions).reshape(-1, 2)[[list(last.ids).index(i) for i in ids0]]
        d = v * 5 * 33_333_333e-9
        assert np.median(np.abs(p1 - p0 - d)) < 0.5
        convert.set_stamp(msg.header.stamp, T0 - 10**9)  # a looped bag
        pub.publish(msg)
        assert spin_until(h.ex, lambda: any(kv.key == "pipeline time_resets" and kv.value == "1"
                                       for dd in h.diag for st in dd.status
                                       for kv in st.values), 20.0)
    finally:
        h.close()


def _diag_value(h: Harness, key: str) -> int | None:
    """The newest value of a /diagnostics key (None before the node reported it)."""
    for d in reversed(h.diag):
        for st in d.status:
            for kv in st.values:
                if kv.key == key:
                    return int(kv.value)
    return None


def test_non_finite_observations_counted_track_kept(harness) -> None:
    """NaN / Inf positions from a network (split deployment: event_node -> fusion_node) are
    counted as invalid, never fused (published positions stay finite), and the node lives."""
    seeded = harness.send(_obs(Source.SEED, T0, [0, 0], [[10.0, 10.0], [30.0, 30.0]], 1.0),
                          Source.IMAGE)
    msg = harness.send(_obs(Source.EVENT, T0 + 5_000_000, seeded.ids,
                            [[np.nan, 10.0], [np.inf, 30.0]], 0.5))
    assert np.isfinite(np.asarray(msg.positions)).all()
    assert list(msg.ids) == list(seeded.ids)
    assert spin_until(harness.ex, lambda: (_diag_value(harness, "fusion invalid") or 0) >= 2,
                      10.0)
    msg = harness.send(_obs(Source.EVENT, T0 + 10_000_000, seeded.ids,
                            [[11.0, 10.0], [31.0, 30.0]], 0.5))
    assert np.abs(np.asarray(msg.positions).reshape(-1, 2)[:, 0] - [11.0, 31.0]).max() < 1.0


def test_blinktrack_node_malformed_inputs_counted_node_alive() -> None:
    """Each malformed input class of blinktrack_node is a counted drop in /diagnostics and the
    node keeps tracking: a truncated dvs_msgs/EventArray (raw CDR), an Image shorter than its
    size, an Image of an unsupported encoding, an uncalibrated CameraInfo, a CameraInfo whose
    size is not the frames' size."""
    from dvs_msgs.msg import EventArray
    from sensor_msgs.msg import CameraInfo, Image

    from blinktrack_ros.events.batch import EventBatch
    from blinktrack_ros.events.dvs import serialize_dvs_event_array

    h = Harness(["pipeline.mode:=klt", "seeding.target_count:=10",
                 "node.event_msg_type:=dvs_msgs/EventArray"], "blinktrack_node")
    try:
        img_pub = h.node.create_publisher(Image, "/image", 10)
        ev_pub = h.node.create_publisher(EventArray, "/events", 10)
        info_pub = h.node.create_publisher(CameraInfo, "/camera_info", 10)

        def frame(t_ns: int, data: bytes = bytes(96 * 72), encoding: str = "mono8") -> None:
            msg = Image(height=72, width=96, encoding=encoding, step=96, data=data)
            convert.set_stamp(msg.header.stamp, t_ns)
            img_pub.publish(msg)

        round_trip(h.ex, frame, h.tracks, T0 - 2_000_000_000, 90.0)
        assert spin_until(h.ex, lambda: ev_pub.get_subscription_count() > 0
                          and info_pub.get_subscription_count() > 0, 30.0)
        one = EventBatch(np.array([3], np.uint16), np.array([4], np.uint16),
                         np.array([T0], np.int64), np.array([1], np.uint8), 96, 72)
        ev_pub.publish(serialize_dvs_event_array(one, T0)[:-6])  # cut inside the event
        frame(T0, bytes(100))  # 100 bytes for 96 x 72
        frame(T0 + 1_000_000, bytes(96 * 72), "yuv422")
        info_pub.publish(CameraInfo(width=96, height=72))  # k all zero: uncalibrated
        want = {"events malformed": 1, "image malformed": 2, "camera_info malformed": 1}
        assert spin_until(h.ex, lambda: all(_diag_value(h, k) == v for k, v in want.items()),
                          20.0), {k: _diag_value(h, k) for k in want}
        n = len(h.tracks)
        frame(T0 + 33_000_000)
        assert spin_until(h.ex, lambda: any(convert.stamp_to_ns(m.header.stamp)
                                            == T0 + 33_000_000 for m in h.tracks[n:]), 20.0)
        # a calibrated CameraInfo of another size than the frames: counted per frame, its
        # intrinsics not used (no ~/feature cloud from them), tracking goes on
        info = CameraInfo(width=640, height=480, k=[300.0, 0, 320, 0, 300.0, 240, 0, 0, 1])
        convert.set_stamp(info.header.stamp, T0 + 60_000_000)
        info_pub.publish(info)
        t = T0 + 66_000_000
        for _ in range(20):
            frame(t)
            if spin_until(h.ex, lambda: (_diag_value(h, "camera_info size mismatch frames")
                                         or 0) >= 1, 2.0):
                break
            t += 33_000_000
        assert (_diag_value(h, "camera_info size mismatch frames") or 0) >= 1
        assert h.child.poll() is None
    finally:
        h.close()
