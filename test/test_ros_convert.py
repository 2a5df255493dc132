"""Node conversions with real rclpy message objects (blinktrack_ros.nodes.convert / camera)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

pytestmark = pytest.mark.ros

pytest.importorskip("rclpy", reason="rclpy missing: run bash tools/build_msgs.sh .venv")
bt_msg = pytest.importorskip(
    "blinktrack_ros.msg", reason="messages not built: run bash tools/build_msgs.sh .venv")
from rclpy.serialization import deserialize_message, serialize_message  # noqa: E402
from rosbags.typesys import Stores, get_types_from_msg, get_typestore  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402

from blinktrack_ros.images import image_msg_to_gray  # noqa: E402
from blinktrack_ros.nodes import camera, convert  # noqa: E402
from blinktrack_ros.tracking.fusion_types import TrackSnapshot  # noqa: E402
from blinktrack_ros.tracking.observation import Observations, Source  # noqa: E402
from blinktrack_ros.tracking.tracks import TrackStatus  # noqa: E402

# The .msg files of the source tree beside this test (not beside the imported Python package:
# in a colcon install that is <prefix>/lib/pythonX.Y/site-packages, without msg/).
MSG_DIR = Path(__file__).resolve().parent.parent / "msg"


def _spd(rng: np.random.Generator, n: int) -> np.ndarray:
    a = rng.normal(0, 2, (n, 2, 2))
    return a @ a.transpose(0, 2, 1) + 0.1 * np.eye(2)


def _snapshot(rng: np.random.Generator, n: int = 6) -> TrackSnapshot:
    return TrackSnapshot(
        t_ns=1_700_000_000_123_456_789, ids=np.arange(10, 10 + n, dtype=np.uint32),
        positions_px=rng.uniform(20, 300, (n, 2)), velocities_px_s=rng.normal(0, 50, (n, 2)),
        covariances=_spd(rng, n), status=np.array([0, 1, 2, 0, 0, 1][:n], np.uint8),
        last_source=rng.integers(0, 4, n).astype(np.uint8), age_s=rng.uniform(0, 3, n))


@pytest.mark.parametrize("t_ns", [0, 1, 999_999_999, 1_700_000_000_123_456_789, -1,
                                  -1_500_000_000])
def test_stamp_roundtrip(t_ns: int) -> None:
    """set_stamp/stamp_to_ns are inverse, nanosec always in [0, 1e9)."""
    msg = bt_msg.TrackArray()
    convert.set_stamp(msg.header.stamp, t_ns)
    assert 0 <= msg.header.stamp.nanosec < 10**9
    assert convert.stamp_to_ns(msg.header.stamp) == t_ns


def test_observations_roundtrip_through_cdr(rng) -> None:
    """Observations -> msg -> CDR -> msg -> Observations keeps every value (float32)."""
    n = 7
    obs = Observations(Source.IMAGE, 5_000_000_123, rng.integers(0, 2**32, n, dtype=np.uint32),
                       rng.uniform(0, 640, (n, 2)), _spd(rng, n), rng.uniform(0, 1, n))
    msg = convert.observations_to_msg(obs, "cam0")
    back = convert.msg_to_observations(
        deserialize_message(serialize_message(msg), bt_msg.ObservationArray))
    assert back.source == Source.IMAGE and back.t_ns == obs.t_ns
    np.testing.assert_array_equal(back.ids, obs.ids)
    np.testing.assert_allclose(back.positions_px, obs.positions_px, rtol=1e-6)
    np.testing.assert_allclose(back.covariances, obs.covariances, rtol=1e-6)
    np.testing.assert_allclose(back.visibility, obs.visibility, rtol=1e-6)
    empty = convert.msg_to_observations(convert.observations_to_msg(Observations.empty(
        Source.EVENT, 3), ""))
    assert len(empty) == 0 and empty.positions_px.shape == (0, 2)


@pytest.mark.parametrize("field,values", [("positions", [1.0, 2.0, 3.0]),
                                          ("covariances", [1.0] * 5), ("visibility", [])])
def test_malformed_observations_rejected(field: str, values: list) -> None:
    """Arrays whose lengths do not match ids raise MalformedMessageError naming the field."""
    msg = bt_msg.ObservationArray(ids=[1, 2], positions=[0.0] * 4, covariances=[1.0] * 6,
                                  visibility=[1.0, 1.0])
    setattr(msg, field, values)
    with pytest.raises(convert.MalformedMessageError, match=field):
        convert.msg_to_observations(msg)
    msg = bt_msg.ObservationArray(source=9)
    with pytest.raises(convert.MalformedMessageError, match="source"):
        convert.msg_to_observations(msg)


def test_snapshot_to_msg_read_back_by_rosbags(rng) -> None:
    """TrackArray fields land where an independent CDR reader (rosbags) finds them."""
    snap = _snapshot(rng)
    und = rng.normal(0, 0.3, (len(snap), 2))
    data = serialize_message(convert.snapshot_to_msg(snap, "cam0", und))
    store = get_typestore(Stores.ROS2_JAZZY)
    with open(MSG_DIR / "TrackArray.msg") as f:
        store.register(get_types_from_msg(f.read(), "blinktrack_ros/msg/TrackArray"))
    m = store.deserialize_cdr(data, "blinktrack_ros/msg/TrackArray")
    assert m.header.stamp.sec * 10**9 + m.header.stamp.nanosec == snap.t_ns
    np.testing.assert_array_equal(m.ids, snap.ids)
    np.testing.assert_allclose(m.positions.reshape(-1, 2), snap.positions_px, rtol=1e-6)
    np.testing.assert_allclose(m.velocities.reshape(-1, 2), snap.velocities_px_s, rtol=1e-6)
    cov = snap.covariances
    np.testing.assert_allclose(m.covariances.reshape(-1, 3)[:, 1], cov[:, 0, 1], rtol=1e-6)
    np.testing.assert_array_equal(m.status, snap.status)
    np.testing.assert_allclose(m.undistorted.reshape(-1, 2), und, rtol=1e-6)
    back = convert.msg_to_snapshot(deserialize_message(data, bt_msg.TrackArray))
    np.testing.assert_allclose(back.covariances, cov, rtol=1e-6)
    np.testing.assert_array_equal(back.last_source, snap.last_source)
    bad = bt_msg.TrackArray(ids=[1], positions=[1.0, 2.0], velocities=[0.0], covariances=[1.0] * 3)
    with pytest.raises(convert.MalformedMessageError, match="velocities"):
        convert.msg_to_snapshot(bad)


def _camera_info(model: str, d: list[float]) -> CameraInfo:
    return CameraInfo(width=640, height=480, distortion_model=model, d=d,
                      k=[400.0, 0, 320.5, 0, 410.0, 240.5, 0, 0, 1])


@pytest.mark.parametrize("model,d", [("plumb_bob", [-0.28, 0.07, 1e-4, -2e-4, 0.0]),
                                     ("equidistant", [-0.01, 0.02, -0.003, 0.001])])
def test_undistort_inverts_opencv_projection(model: str, d: list[float], rng) -> None:
    """Normalised points, distorted by OpenCV's forward model, come back through undistort."""
    cam = camera.camera_model_from_info(_camera_info(model, d))
    xy = rng.uniform(-0.5, 0.5, (20, 2))
    obj = np.concatenate([xy, np.ones((20, 1))], 1).reshape(-1, 1, 3)
    if model == "equidistant":
        px = cv2.fisheye.distortPoints(xy.reshape(-1, 1, 2), cam.K, cam.D)
    else:
        px, _ = cv2.projectPoints(obj, np.zeros(3), np.zeros(3), cam.K, cam.D)
    np.testing.assert_allclose(camera.undistort_normalised(cam, px.reshape(-1, 2)), xy,
                               atol=1e-5)


def test_camera_info_rejected() -> None:
    """Uncalibrated (K = 0) or unknown models raise MalformedMessageError."""
    with pytest.raises(convert.MalformedMessageError, match="focal"):
        camera.camera_model_from_info(CameraInfo())
    with pytest.raises(convert.MalformedMessageError, match="model"):
        camera.camera_model_from_info(_camera_info("kannala_brandt_9", [0.0] * 9))


def test_feature_cloud_vins_layout(rng) -> None:
    """9 channels: id, camera id, u, v, normalised velocity, 3 zeros; TRACKED points only."""
    snap = _snapshot(rng)
    cam = camera.camera_model_from_info(_camera_info("plumb_bob", []))
    cloud = camera.feature_cloud(snap, cam, camera_id=1, frame_id="cam0")
    keep = snap.status == TrackStatus.TRACKED
    assert [c.name for c in cloud.channels] == list(camera.FEATURE_CHANNELS)
    ch = [np.asarray(c.values) for c in cloud.channels]
    np.testing.assert_array_equal(ch[0], snap.ids[keep])
    assert np.all(ch[1] == 1) and all(np.all(c == 0) for c in ch[6:])
    np.testing.assert_allclose(np.stack([ch[2], ch[3]], 1), snap.positions_px[keep], rtol=1e-6)
    # No distortion: normalised = (u - cx) / fx, velocity = v_px / fx (independent formula).
    pts = np.array([[p.x, p.y, p.z] for p in cloud.points])
    np.testing.assert_allclose(pts[:, 0], (snap.positions_px[keep, 0] - 320.5) / 400.0,
                               atol=1e-6)
    np.testing.assert_allclose(pts[:, 1], (snap.positions_px[keep, 1] - 240.5) / 410.0,
                               atol=1e-6)
    assert np.all(pts[:, 2] == 1)
    np.testing.assert_allclose(ch[4], snap.velocities_px_s[keep, 0] / 400.0, rtol=1e-4)
    np.testing.assert_allclose(ch[5], snap.velocities_px_s[keep, 1] / 410.0, rtol=1e-4)
    deserialize_message(serialize_message(cloud), type(cloud))  # a valid message


def test_event_input_decodes_rclpy_messages(rng) -> None:
    """EventPacket (mono) objects and serialized dvs EventArrays decode to the events sent."""
    from dvs_msgs.msg import Event, EventArray
    from event_camera_msgs.msg import EventPacket

    n = 50
    x, y = rng.integers(0, 346, n), rng.integers(0, 260, n)
    p = rng.integers(0, 2, n)
    dt = np.sort(rng.integers(0, 5_000_000, n))
    # mono: 64-bit words, dt ns in bits 0-31, x 32-47, y 48-62, polarity bit 63
    words = (dt.astype(np.uint64) | (x.astype(np.uint64) << 32) | (y.astype(np.uint64) << 48)
             | (p.astype(np.uint64) << 63))
    pkt = EventPacket(encoding="mono", width=346, height=260, events=words.astype("<u8").tobytes())
    pkt.header.stamp.sec = 10
    ev_in = convert.EventInput(convert.EVENT_PACKET)
    batch = ev_in.decode(pkt)
    np.testing.assert_array_equal(batch.x, x)
    np.testing.assert_array_equal(batch.t, 10 * 10**9 + dt)
    np.testing.assert_array_equal(batch.p, p)
    arr = EventArray(width=346, height=260, events=[
        Event(x=int(a), y=int(b), polarity=bool(c)) for a, b, c in zip(x, y, p)])
    for ev, d in zip(arr.events, dt):
        ev.ts.sec, ev.ts.nanosec = 3, int(d)
    dvs = convert.EventInput(convert.DVS_EVENT_ARRAY).decode(serialize_message(arr))
    np.testing.assert_array_equal(dvs.y, y)
    np.testing.assert_array_equal(dvs.t, 3 * 10**9 + dt)
    with pytest.raises(ValueError, match="libcaer"):
        ev_in.decode(EventPacket(encoding="libcaer_cmp", events=b"\x00" * 8))
    with pytest.raises(ValueError, match="not one of"):
        convert.EventInput("sensor_msgs/Image")


def test_image_and_debug_image(rng) -> None:
    """A padded rclpy mono8 Image converts to gray; the debug image marks tracked points."""
    gray8 = rng.integers(0, 256, (12, 10), dtype=np.uint8)
    padded = np.zeros((12, 16), np.uint8)
    padded[:, :10] = gray8
    img = Image(height=12, width=10, encoding="mono8", step=16, data=padded.tobytes())
    np.testing.assert_allclose(image_msg_to_gray(img), gray8 / 255.0, atol=1e-6)
    snap = _snapshot(rng, 1)
    snap = TrackSnapshot(snap.t_ns, snap.ids, np.array([[30.0, 20.0]]), np.zeros((1, 2)),
                         snap.covariances, np.array([0], np.uint8), snap.last_source, snap.age_s)
    bgr = camera.draw_tracks(np.zeros((48, 64), np.float32), snap)
    assert bgr.shape == (48, 64, 3) and bgr[0, 0].max() == 0
    b, g, r = bgr[20, 34]  # on the circle (radius 4) around (30, 20): green
    assert g > 150 and b == 0 and r == 0
    msg = camera.bgr_image_msg(bgr, snap.t_ns, "cam0")
    np.testing.assert_array_equal(np.frombuffer(bytes(msg.data), np.uint8).reshape(48, 64, 3),
                                  bgr)
