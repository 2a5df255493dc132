"""BagWriter round trips (read back by our reader and by rosbags' own AnyReader), ROS 1 bags."""

from __future__ import annotations

import numpy as np
import pytest
from test_bag import assert_msg_equal, sample_messages

from blinktrack_ros.bag.reader import bag_summary, iter_messages
from blinktrack_ros.bag.types import IMAGE, TRACK_ARRAY, typestore
from blinktrack_ros.bag.writer import BagWriter

T0 = 1_700_000_000_000_000_000


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_round_trip_every_type(tmp_path, rng, storage):
    samples = sample_messages(rng)
    path = tmp_path / "bag"
    written = []
    with BagWriter(path, storage=storage) as bag:
        for i in range(3):
            for k, (topic, msgtype, msg) in enumerate(samples):
                t_ns = T0 + i * 1000 + k
                data = typestore().serialize_cdr(msg, msgtype) if i == 1 else msg  # bytes path
                bag.write(topic, msgtype, t_ns, data)
                written.append((topic, msgtype, t_ns, msg))
    assert bag.counts == {topic: 3 for topic, _, _ in samples}
    back = list(iter_messages(path))
    assert [(m.topic, m.msgtype, m.t_ns) for m in back] == [w[:3] for w in written]
    for m, (_, _, _, msg) in zip(back, written):
        assert_msg_equal(m.msg, msg)
    summary = bag_summary(path)
    assert summary["storage"] == storage and summary["message_count"] == len(written)
    assert (summary["start_ns"], summary["end_ns"]) == (written[0][2], written[-1][2])


def test_definitions_stored_for_other_tools(tmp_path, rng):
    # rosbags' AnyReader without a default typestore only reads bags that carry definitions.
    from rosbags.highlevel import AnyReader

    samples = sample_messages(rng)
    path = tmp_path / "bag"
    with BagWriter(path) as bag:
        for k, (topic, msgtype, msg) in enumerate(samples):
            bag.write(topic, msgtype, T0 + k, msg)
    with AnyReader([path]) as reader:
        got = {c.topic: reader.deserialize(raw, c.msgtype)
               for c, _, raw in reader.messages()}
    for topic, _, msg in samples:
        assert_msg_equal(got[topic], msg)


def test_multiple_bags_merge_in_time_order(tmp_path, rng):
    _, _, tracks = sample_messages(rng)[1]
    times = {"a": [T0 + 5, T0 + 10, T0 + 30], "b": [T0 + 1, T0 + 10, T0 + 20]}
    for name, ts in times.items():
        with BagWriter(tmp_path / name) as bag:
            for t in ts:
                bag.write(f"/{name}", TRACK_ARRAY, t, tracks)
    got = [(m.topic, m.t_ns) for m in iter_messages([tmp_path / "a", tmp_path / "b"])]
    # sorted by time; the tie at T0 + 10 keeps the order of the bags as given
    assert got == [("/b", T0 + 1), ("/a", T0 + 5), ("/a", T0 + 10), ("/b", T0 + 10),
                   ("/b", T0 + 20), ("/a", T0 + 30)]


def test_writer_errors(tmp_path, rng):
    samples = sample_messages(rng)
    _, _, tracks = samples[1]
    with pytest.raises(ValueError, match="unknown bag storage"):
        BagWriter(tmp_path / "x", storage="zip")
    with BagWriter(tmp_path / "bag") as bag:
        bag.write("/tracks", TRACK_ARRAY, T0, tracks)
        with pytest.raises(ValueError, match="carries blinktrack_ros/msg/TrackArray"):
            bag.write("/tracks", IMAGE, T0, samples[2][2])
        with pytest.raises(KeyError, match="unknown message type"):
            bag.write("/other", "nope_msgs/msg/Nothing", T0, b"")
        with pytest.raises(ValueError, match="negative"):
            bag.write("/tracks", TRACK_ARRAY, -1, tracks)
    with pytest.raises(RuntimeError, match="not open"):
        bag.write("/tracks", TRACK_ARRAY, T0, tracks)
    with pytest.raises(FileExistsError, match="exists already"):
        BagWriter(tmp_path / "bag")
    assert bag_summary(tmp_path / "bag")["message_count"] == 1


def test_closed_after_exception_stays_readable(tmp_path, rng):
    _, _, tracks = sample_messages(rng)[1]
    with pytest.raises(ZeroDivisionError), BagWriter(tmp_path / "bag") as bag:
        bag.write("/tracks", TRACK_ARRAY, T0, tracks)
        _ = 1 / 0
    assert [m.t_ns for m in iter_messages(tmp_path / "bag")] == [T0]


def test_ros1_bag(tmp_path, rng):
    # A ROS 1 bag written by rosbags with the Noetic types: read, and raw converted to CDR.
    from rosbags.rosbag1 import Writer
    from rosbags.typesys import Stores, get_typestore

    noetic = get_typestore(Stores.ROS1_NOETIC)
    T = noetic.types
    pixels = rng.integers(0, 256, 12).astype(np.uint8)
    msg = T[IMAGE](T["std_msgs/msg/Header"](3, T["builtin_interfaces/msg/Time"](5, 6), "cam"),
                   3, 4, "mono8", 0, 4, pixels)
    path = tmp_path / "old.bag"
    with Writer(path) as writer:
        conn = writer.add_connection("/cam/image", IMAGE, typestore=noetic)
        for k in range(3):
            writer.write(conn, T0 + k, noetic.serialize_ros1(msg, IMAGE))
    summary = bag_summary(path)
    assert summary["topics"] == {"/cam/image": {"type": IMAGE, "count": 3}}
    assert summary["storage"] == "ros1" and summary["end_ns"] == T0 + 2
    objs = list(iter_messages(path))
    assert [m.t_ns for m in objs] == [T0, T0 + 1, T0 + 2]
    np.testing.assert_array_equal(objs[0].msg.data, pixels)
    assert objs[0].msg.header.seq == 3  # ROS 1 header
    raw = next(iter_messages(path, raw=True)).rawdata
    ros2 = typestore().deserialize_cdr(raw, IMAGE)  # ROS 2 Image: no seq, same pixels
    np.testing.assert_array_equal(ros2.data, pixels)
    assert (ros2.header.stamp.sec, ros2.encoding, ros2.step) == (5, "mono8", 4)
