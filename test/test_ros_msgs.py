"""Generated ROS 2 messages: rclpy round trips, rosbags CDR/RIHS01 agreement, two-process pub/sub.

Needs the messages built by `bash tools/build_msgs.sh VENV` (tools/test.sh does it); skipped
otherwise. The CDR bytes and type hashes are checked against rosbags, an independent
implementation that parses the same .msg files.
"""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

pytestmark = pytest.mark.ros

rclpy = pytest.importorskip("rclpy", reason="rclpy missing: run bash tools/build_msgs.sh .venv")
bt_msg = pytest.importorskip(
    "blinktrack_ros.msg", reason="messages not built: run bash tools/build_msgs.sh .venv")
from rclpy.serialization import deserialize_message, serialize_message  # noqa: E402
from rosbags.typesys import Stores, get_types_from_msg, get_typestore  # noqa: E402
from rosutil import spin_until  # noqa: E402

from blinktrack_ros.tracking.observation import Source  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
MSGDEFS = REPO / "blinktrack_ros" / "bag" / "msgdefs"


def _share(pkg: str) -> Path:
    """<prefix>/share/<pkg> of a built message package (its msg module is in the prefix's
    lib/pythonX.Y/site-packages/<pkg>/msg/)."""
    module = importlib.import_module(f"{pkg}.msg")
    return Path(module.__file__).resolve().parents[5] / "share" / pkg


def _msg_files() -> dict[str, Path]:
    """ROS type name -> .msg file, for our messages and the event-camera ones we generate."""
    files = {f"blinktrack_ros/msg/{p.stem}": p for p in sorted((REPO / "msg").glob("*.msg"))}
    for pkg in ("event_camera_msgs", "dvs_msgs"):
        files.update({f"{pkg}/msg/{p.stem}": p for p in sorted((MSGDEFS / pkg).glob("*.msg"))})
    return files


@pytest.fixture(scope="module")
def store():
    """A rosbags Jazzy typestore with every .msg file of _msg_files() registered."""
    typestore = get_typestore(Stores.ROS2_JAZZY)
    types = {}
    for name, path in _msg_files().items():
        types.update(get_types_from_msg(path.read_text(), name))
    typestore.register(types)
    return typestore


def _stamp(store, sec: int, nanosec: int, frame: str):
    Header = store.types["std_msgs/msg/Header"]
    Time = store.types["builtin_interfaces/msg/Time"]
    return Header(stamp=Time(sec=sec, nanosec=nanosec), frame_id=frame)


def _assert_same_cdr(store, typename: str, ros_msg, rclpy_bytes: bytes, bag_bytes: bytes) -> None:
    """rclpy's and rosbags' CDR agree on every data byte and each parses the other's bytes.

    Only alignment padding may differ: Fast-CDR (under rclpy) leaves padding bytes uninitialised
    (seen here: 0x7f, 0x2e, 0x41 after strings and uint8 arrays), rosbags writes zeros.
    """
    assert len(rclpy_bytes) == len(bag_bytes)
    a, b = np.frombuffer(rclpy_bytes, np.uint8), np.frombuffer(bag_bytes, np.uint8)
    differ = np.nonzero(a != b)[0]
    assert np.all(b[differ] == 0), f"data bytes differ at {differ[b[differ] != 0]}"
    # The differing bytes carry no data: rosbags re-serializes rclpy's bytes to its own.
    reparsed = store.deserialize_cdr(rclpy_bytes, typename)
    assert bytes(store.serialize_cdr(reparsed, typename)) == bag_bytes
    assert deserialize_message(bag_bytes, type(ros_msg)) == ros_msg


def _random_pair(store, name: str, rng: np.random.Generator):
    """The same random content as an rclpy message and as a rosbags message of type `name`."""
    n = int(rng.integers(1, 9))
    ids = rng.integers(0, 2**32, n, dtype=np.uint32)
    pos = rng.uniform(-50, 700, 2 * n).astype(np.float32)
    cov = rng.uniform(0, 30, 3 * n).astype(np.float32)
    sec, nsec = int(rng.integers(0, 2**31)), int(rng.integers(0, 10**9))
    if name == "ObservationArray":
        vis = rng.uniform(0, 1, n).astype(np.float32)
        fields = dict(source=1, ids=ids, positions=pos, covariances=cov, visibility=vis)
    else:
        fields = dict(ids=ids, positions=pos, velocities=rng.normal(0, 90, 2 * n).astype(
            np.float32), covariances=cov, status=rng.integers(0, 3, n, dtype=np.uint8),
            last_source=rng.integers(0, 4, n, dtype=np.uint8),
            age=rng.uniform(0, 9, n).astype(np.float32),
            undistorted=rng.normal(0, 0.5, 2 * n).astype(np.float32))
    cls = getattr(bt_msg, name)
    ros_msg = cls(**{k: np.asarray(v).tolist() for k, v in fields.items()})
    ros_msg.header.stamp.sec, ros_msg.header.stamp.nanosec = sec, nsec
    ros_msg.header.frame_id = "cam0"
    bag_msg = store.types[f"blinktrack_ros/msg/{name}"](
        header=_stamp(store, sec, nsec, "cam0"), **fields)
    return ros_msg, bag_msg


def test_generated_types_and_constants() -> None:
    """Generated classes exist with the documented fields; constants equal the core's enum."""
    obs, tracks = bt_msg.ObservationArray(), bt_msg.TrackArray()
    assert set(obs.get_fields_and_field_types()) == {
        "header", "source", "ids", "positions", "covariances", "visibility"}
    assert "undistorted" in tracks.get_fields_and_field_types()
    for member in Source:
        assert getattr(bt_msg.ObservationArray, f"SOURCE_{member.name}") == member.value
    assert (bt_msg.TrackArray.TRACKED, bt_msg.TrackArray.OCCLUDED, bt_msg.TrackArray.LOST) == (
        0, 1, 2)


@pytest.mark.parametrize("name", ["ObservationArray", "TrackArray"])
def test_rclpy_roundtrip_and_rosbags_cdr_identical(store, name: str, rng) -> None:
    """rclpy serialize/deserialize is lossless, and rosbags writes the very same CDR bytes."""
    for _ in range(5):
        ros_msg, bag_msg = _random_pair(store, name, rng)
        data = serialize_message(ros_msg)
        assert deserialize_message(data, type(ros_msg)) == ros_msg
        typename = f"blinktrack_ros/msg/{name}"
        bag_bytes = bytes(store.serialize_cdr(bag_msg, typename))
        _assert_same_cdr(store, typename, ros_msg, data, bag_bytes)
        back = store.deserialize_cdr(data, typename)
        np.testing.assert_array_equal(back.ids, np.asarray(ros_msg.ids, np.uint32))
        np.testing.assert_array_equal(back.positions, np.asarray(ros_msg.positions, np.float32))


def test_event_message_cdr_identical(store, rng) -> None:
    """The generated event_camera_msgs/dvs_msgs types serialize like rosbags' parse of the defs."""
    from dvs_msgs.msg import Event, EventArray
    from event_camera_msgs.msg import EventPacket

    payload = rng.integers(0, 256, 37, dtype=np.uint8)
    pkt = EventPacket(height=480, width=640, seq=7, time_base=123456789, encoding="evt3",
                      is_bigendian=False, events=payload.tobytes())
    bag_pkt = store.types["event_camera_msgs/msg/EventPacket"](
        header=_stamp(store, 0, 0, ""), height=480, width=640, seq=7, time_base=123456789,
        encoding="evt3", is_bigendian=False, events=payload)
    typename = "event_camera_msgs/msg/EventPacket"
    _assert_same_cdr(store, typename, pkt, serialize_message(pkt),
                     bytes(store.serialize_cdr(bag_pkt, typename)))
    xs, ys = rng.integers(0, 346, 5), rng.integers(0, 260, 5)
    arr = EventArray(height=260, width=346, events=[
        Event(x=int(x), y=int(y), polarity=bool(i % 2)) for i, (x, y) in enumerate(zip(xs, ys))])
    for i, ev in enumerate(arr.events):
        ev.ts.sec, ev.ts.nanosec = 5, 1000 * i
    BagEvent = store.types["dvs_msgs/msg/Event"]
    Time = store.types["builtin_interfaces/msg/Time"]
    bag_arr = store.types["dvs_msgs/msg/EventArray"](
        header=_stamp(store, 0, 0, ""), height=260, width=346, events=[
            BagEvent(x=int(x), y=int(y), ts=Time(sec=5, nanosec=1000 * i), polarity=bool(i % 2))
            for i, (x, y) in enumerate(zip(xs, ys))])
    data = serialize_message(arr)
    typename = "dvs_msgs/msg/EventArray"
    _assert_same_cdr(store, typename, arr, data, bytes(store.serialize_cdr(bag_arr, typename)))


@pytest.mark.parametrize("name", sorted(_msg_files()))
def test_rihs01_hash_matches_rosbags(store, name: str) -> None:
    """The RIHS01 type hash rosidl wrote at build time equals rosbags' hash of the .msg text."""
    pkg, _, stem = name.split("/")
    desc = _share(pkg) / "msg" / f"{stem}.json"
    assert desc.exists(), f"{desc} missing: rebuild with bash tools/build_msgs.sh .venv"
    listed = json.loads(desc.read_text())["type_hashes"]
    hashes = {h["type_name"]: h["hash_string"] for h in listed}
    assert hashes[name].startswith("RIHS01_")
    assert store.hash_rihs01(name) == hashes[name]


ECHO_CHILD = textwrap.dedent("""
    import rclpy
    from rclpy.executors import ExternalShutdownException
    from blinktrack_ros.msg import ObservationArray, TrackArray

    rclpy.init()
    node = rclpy.create_node("echo_child")
    pub = node.create_publisher(TrackArray, "out", 10)

    def on_obs(msg):
        out = TrackArray(header=msg.header, ids=msg.ids, positions=msg.positions)
        pub.publish(out)

    node.create_subscription(ObservationArray, "in", on_obs, 10)
    print("ready", flush=True)
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
""")


def test_two_process_pubsub(monkeypatch, ros_domain) -> None:
    """A child process echoes ObservationArray -> TrackArray; the parent gets its ids back."""
    from rclpy.executors import SingleThreadedExecutor

    domain = ros_domain  # separate from parallel test runs by other users
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    child = subprocess.Popen([sys.executable, "-c", ECHO_CHILD], env=env, text=True,
                             stdout=subprocess.PIPE)
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=domain)
    try:
        node = rclpy.create_node("parent", context=ctx)
        executor = SingleThreadedExecutor(context=ctx)
        executor.add_node(node)
        got: list = []
        node.create_subscription(bt_msg.TrackArray, "out", got.append, 10)
        pub = node.create_publisher(bt_msg.ObservationArray, "in", 10)
        assert child.stdout.readline().strip() == "ready"
        assert spin_until(executor, lambda: pub.get_subscription_count() > 0, 20.0)
        msg = bt_msg.ObservationArray(ids=[3, 1, 4], positions=[1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
        msg.header.stamp.sec = 42
        # Publish until the echo arrives: the child's publisher may still be matching ours.
        deadline = time.monotonic() + 20.0
        while not got and time.monotonic() < deadline:
            pub.publish(msg)
            spin_until(executor, lambda: bool(got), 0.5)
        assert got, "no TrackArray came back from the child process"
        assert list(got[0].ids) == [3, 1, 4] and got[0].header.stamp.sec == 42
        np.testing.assert_allclose(got[0].positions, [1, 2, 3, 4, 5, 6])
    finally:
        rclpy.shutdown(context=ctx)
        child.terminate()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(timeout=10)
