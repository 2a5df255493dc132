"""Bag types, reader and writer: real recordings with known counts, round trips, rosbags itself."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from blinktrack_ros.bag.reader import BagError, bag_summary, iter_messages, storage_paths
from blinktrack_ros.bag.types import (
    DVS_EVENT_ARRAY,
    EVENT_PACKET,
    IMAGE,
    LEGACY_EVENT_ARRAY,
    OBSERVATION_ARRAY,
    TRACK_ARRAY,
    msg_text,
    typestore,
)
from blinktrack_ros.resources import find_share_file

# name -> (message count, type), from each bag's metadata.yaml and ../shared/data/SOURCES.md
BAGS = {
    "test_events_1": (517, EVENT_PACKET),
    "test_events_2": (100, EVENT_PACKET),
    "test_data_evt3_trigger": (105, EVENT_PACKET),
    "test_data_mono_cd": (2, LEGACY_EVENT_ARRAY),
}
TOPIC = "/event_camera/events"


def assert_msg_equal(a, b, where="msg"):
    """Field-by-field equality of rosbags messages (numpy arrays compared by value)."""
    if dataclasses.is_dataclass(a):
        assert type(a).__name__ == type(b).__name__, where
        for f in dataclasses.fields(a):
            assert_msg_equal(getattr(a, f.name), getattr(b, f.name), f"{where}.{f.name}")
    elif isinstance(a, np.ndarray):
        assert a.dtype == np.asarray(b).dtype, where
        np.testing.assert_array_equal(a, b, err_msg=where)
    elif isinstance(a, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_msg_equal(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def _stamp(store, t_ns):
    Header, Time = store.types["std_msgs/msg/Header"], store.types["builtin_interfaces/msg/Time"]
    return Header(Time(*divmod(t_ns, 1_000_000_000)), "cam")


def sample_messages(rng, t_ns=1_700_000_000_123_456_789):
    """One message of each type we write: (topic, msgtype, msg)."""
    s = typestore()
    T = s.types
    n = 4
    f32 = lambda k: rng.normal(size=k).astype(np.float32)  # noqa: E731
    obs = T[OBSERVATION_ARRAY](_stamp(s, t_ns), 1, np.arange(n, dtype=np.uint32), f32(2 * n),
                               f32(3 * n), rng.random(n).astype(np.float32))
    tracks = T[TRACK_ARRAY](_stamp(s, t_ns), np.arange(n, dtype=np.uint32), f32(2 * n),
                            f32(2 * n), f32(3 * n), np.array([0, 1, 2, 0], np.uint8),
                            np.array([0, 1, 1, 3], np.uint8), f32(n), np.zeros(0, np.float32))
    image = T[IMAGE](_stamp(s, t_ns), 3, 4, "mono8", 0, 4,
                     rng.integers(0, 256, 12).astype(np.uint8))
    Event, Time = T["dvs_msgs/msg/Event"], T["builtin_interfaces/msg/Time"]
    events = [Event(int(x), int(y), Time(1, int(ns)), bool(p)) for x, y, ns, p in
              zip(rng.integers(0, 240, 5), rng.integers(0, 180, 5), np.sort(
                  rng.integers(0, 10**9, 5)), rng.integers(0, 2, 5))]
    dvs = T[DVS_EVENT_ARRAY](_stamp(s, t_ns), 180, 240, events)
    packet = T[EVENT_PACKET](_stamp(s, t_ns), 480, 640, 7, 0, "evt3", False,
                             rng.integers(0, 256, 64).astype(np.uint8))
    return [("/obs", OBSERVATION_ARRAY, obs), ("/tracks", TRACK_ARRAY, tracks),
            ("/image", IMAGE, image), ("/dvs/events", DVS_EVENT_ARRAY, dvs),
            ("/events", EVENT_PACKET, packet)]


# ---- types -----------------------------------------------------------------------------------

def test_own_messages_registered_from_msg_files():
    store = typestore()
    assert store is typestore()  # cached
    for msgtype in (OBSERVATION_ARRAY, TRACK_ARRAY):
        name = msgtype.split("/")[-1]
        assert msg_text(msgtype) == find_share_file(f"msg/{name}.msg").read_text()
    assert store.types[TRACK_ARRAY].LOST == 2  # constants come through
    assert store.types[OBSERVATION_ARRAY].SOURCE_IMAGE == 1
    assert msg_text(IMAGE).startswith("std_msgs/Header header")
    full = msg_text(DVS_EVENT_ARRAY, full=True)
    assert "\nMSG: dvs_msgs/Event\n" in full and "\nMSG: builtin_interfaces/Time\n" in full
    with pytest.raises(KeyError):
        msg_text("nope_msgs/msg/Nothing")


def test_event_packet_hash_matches_recorded_bag(shared_data):
    # The driver recorded the hash of its own definition (metadata.yaml type_description_hash).
    bag = shared_data / "event_bags" / "test_events_1"
    assert f"type_description_hash: {typestore().hash_rihs01(EVENT_PACKET)}" in \
        (bag / "metadata.yaml").read_text()


def test_event_packet_fields_match_driver_idl_schema(shared_data):
    # test_events_2 stores the driver's rosidl-generated IDL: same fields, same types.
    from rosbags.rosbag2 import Reader
    from rosbags.typesys import get_types_from_idl

    from blinktrack_ros.bag.reader import _strip_preprocessor

    with Reader(shared_data / "event_bags" / "test_events_2" / "test_events_2_0.mcap") as r:
        schema = r.connections[0].msgdef.data
    section = schema.split("=" * 80 + "\n")[1].split("\n", 1)[1]
    theirs = get_types_from_idl(_strip_preprocessor(section))[EVENT_PACKET]
    assert theirs == typestore().fielddefs[EVENT_PACKET]
    # The legacy EventArray has the very same fields.
    assert typestore().fielddefs[LEGACY_EVENT_ARRAY][1] == theirs[1]


def test_dvs_event_is_16_bytes_in_cdr():
    # ARCHITECTURE.md: 16 bytes per dvs_msgs/Event in CDR (the raw decoder relies on it).
    s = typestore()
    msgs = sample_messages(np.random.default_rng(0))
    dvs = next(m for _, t, m in msgs if t == DVS_EVENT_ARRAY)
    sizes = [len(s.serialize_cdr(dataclasses.replace(dvs, events=dvs.events[:k]),
                                 DVS_EVENT_ARRAY)) for k in (1, 2, 3, 4)]
    assert np.diff(sizes).tolist() == [16, 16, 16]


# ---- reader on the real recordings -------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(BAGS))
def test_real_bags_counts_order_types(shared_data, name):
    count, msgtype = BAGS[name]
    path = shared_data / "event_bags" / name
    summary = bag_summary(path)
    assert summary["message_count"] == count
    assert summary["topics"] == {TOPIC: {"type": msgtype, "count": count}}
    t = [m.t_ns for m in iter_messages(path, topics=[TOPIC])]
    assert len(t) == count and t == sorted(t)
    assert (t[0], t[-1]) == (summary["start_ns"], summary["end_ns"])
    first = next(iter_messages(path))
    assert first.msgtype == msgtype and first.msg.events.dtype == np.uint8


def test_driver_mcap_with_empty_storage_identifier(shared_data):
    path = shared_data / "event_bags" / "test_events_2"
    assert [p.name for p in storage_paths(path)] == ["test_events_2_0.mcap"]
    msg = next(iter_messages(path)).msg
    assert (msg.encoding, msg.width, msg.height) == ("libcaer_cmp", 346, 260)


def test_raw_mode_gives_cdr_of_the_same_message(shared_data):
    path = shared_data / "event_bags" / "test_data_evt3_trigger"
    objs = list(iter_messages(path))
    raws = list(iter_messages(path, raw=True))
    assert [m.t_ns for m in objs] == [m.t_ns for m in raws]
    for o, r in zip(objs[:5], raws[:5]):
        assert r.msg is None and o.rawdata is None
        assert_msg_equal(o.msg, typestore().deserialize_cdr(r.rawdata, EVENT_PACKET))


def test_selection_errors(shared_data, tmp_path):
    path = shared_data / "event_bags" / "test_data_mono_cd"
    with pytest.raises(BagError, match=r"available: /event_camera/events"):
        list(iter_messages(path, topics=["/nope"]))
    with pytest.raises(BagError, match="nothing matches"):
        list(iter_messages(path, types=[EVENT_PACKET]))
    assert len(list(iter_messages(path, types=[LEGACY_EVENT_ARRAY]))) == 2
    with pytest.raises(FileNotFoundError):
        bag_summary(tmp_path / "missing")
    (tmp_path / "notes.txt").write_text("not a bag")
    with pytest.raises(BagError, match="not a bag"):
        bag_summary(tmp_path / "notes.txt")
    with pytest.raises(BagError, match="holds no bag"):
        bag_summary(tmp_path)
