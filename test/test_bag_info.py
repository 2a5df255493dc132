"""`blinktrack info` on every real bag (known counts) and on a generated dvs bag."""

from __future__ import annotations

import json

import numpy as np
import pytest

from blinktrack_ros.bag.reader import iter_messages
from blinktrack_ros.bag.types import DVS_EVENT_ARRAY, typestore
from blinktrack_ros.bag.writer import BagWriter
from blinktrack_ros.cli import main

# name -> (messages, type, storage), from each bag's metadata.yaml and ../shared/data/SOURCES.md
BAGS = {
    "test_events_1": (517, "event_camera_msgs/msg/EventPacket", "sqlite3"),
    "test_events_2": (100, "event_camera_msgs/msg/EventPacket", "mcap"),
    "test_data_evt3_trigger": (105, "event_camera_msgs/msg/EventPacket", "sqlite3"),
    "test_data_mono_cd": (2, "event_array_msgs/msg/EventArray", "sqlite3"),
}
TOPIC = "/event_camera/events"


def run(capsys, *argv):
    code = main(["info", *[str(a) for a in argv]])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def reference_counts(path):
    """(events, ON) of a bag by an independent reader: the PyPI evt3 decoder, or the mono layout
    of event_camera_msgs' README (one 64-bit word per event, polarity in bit 63)."""
    import evt3
    from rosbags.highlevel import AnyReader

    with AnyReader([path], default_typestore=typestore()) as reader:
        msgs = [reader.deserialize(raw, c.msgtype) for c, _, raw in reader.messages()]
    if msgs[0].encoding == "mono":
        words = np.concatenate([m.events for m in msgs]).view("<u8")
        return words.size, int(np.count_nonzero(words >> np.uint64(63)))
    decoder = evt3.Decoder(sensor_width=msgs[0].width, sensor_height=msgs[0].height)
    batches = [decoder.feed(m.events.tobytes()) for m in msgs]
    return sum(len(b) for b in batches), sum(int(b.polarity.sum()) for b in batches)


@pytest.mark.parametrize("name", sorted(BAGS))
def test_info_real_bags(shared_data, capsys, name):
    count, msgtype, storage = BAGS[name]
    path = shared_data / "event_bags" / name
    code, out, _ = run(capsys, path)
    assert code == 0
    assert f"messages:  {count}" in out and msgtype in out and f"({storage})" in out
    code, out, _ = run(capsys, path, "--json")
    info = json.loads(out)
    assert code == 0 and info["message_count"] == count and info["storage"] == storage
    assert info["topics"] == {TOPIC: {"type": msgtype, "count": count}}
    assert 0 < info["duration_s"] < 3


@pytest.mark.parametrize("name", ["test_events_1", "test_data_evt3_trigger", "test_data_mono_cd"])
def test_info_events_match_reference_decoder(shared_data, capsys, name):
    path = shared_data / "event_bags" / name
    n_ref, on_ref = reference_counts(path)
    code, out, err = run(capsys, path, "--events", "--json")
    assert code == 0, err
    ev = json.loads(out)["events"][TOPIC]
    assert (ev["events"], ev["on"], ev["off"]) == (n_ref, on_ref, n_ref - on_ref)
    assert ev["decoded_messages"] == ev["messages"] == BAGS[name][0]
    assert ev["decode_mev_per_s"] > 0
    code, out, _ = run(capsys, path, "--events")
    assert f"events:      {n_ref}  (ON {on_ref}, OFF {n_ref - on_ref})" in out
    assert "decode speed:" in out and "Mev/s" in out


def test_info_events_unsupported_encoding(shared_data, capsys):
    path = shared_data / "event_bags" / "test_events_2"
    code, out, err = run(capsys, path, "--events")
    assert code == 1
    assert "events: unsupported encoding 'libcaer_cmp' on /event_camera/events: 100 of 100" in err
    assert "messages:  100" in out and "sensor size: 346 x 260" in out  # the rest is reported
    code, out, _ = run(capsys, path, "--events", "--json")
    info = json.loads(out)
    assert info["events"][TOPIC]["unsupported_encodings"] == {"libcaer_cmp": 100}
    assert any("libcaer_cmp" in e for e in info["errors"])


def test_info_events_dvs_bag(tmp_path, capsys, rng):
    # Generator ground truth: a dvs_msgs/EventArray bag written from rosbags message objects.
    store = typestore()
    T = store.types
    Event, Time, Header = (T[t] for t in ("dvs_msgs/msg/Event", "builtin_interfaces/msg/Time",
                                          "std_msgs/msg/Header"))
    n_on = n_all = 0
    with BagWriter(tmp_path / "dvs") as bag:
        for k in range(3):
            n = 50 + 10 * k
            t = np.sort(rng.integers(0, 10**8, n)) + k * 10**8
            p = rng.integers(0, 2, n)
            events = [Event(int(x), int(y), Time(*divmod(int(ti), 10**9)), bool(pi)) for
                      x, y, ti, pi in zip(rng.integers(0, 240, n), rng.integers(0, 180, n), t, p)]
            bag.write("/dvs/events", DVS_EVENT_ARRAY, 10**9 + k,
                      T[DVS_EVENT_ARRAY](Header(Time(1, k), "dvs"), 180, 240, events))
            n_on, n_all = n_on + int(p.sum()), n_all + n
    code, out, err = run(capsys, tmp_path / "dvs", "--events", "--json")
    assert code == 0, err
    ev = json.loads(out)["events"]["/dvs/events"]
    assert (ev["events"], ev["on"], ev["off"]) == (n_all, n_on, n_all - n_on)
    assert (ev["width_px"], ev["height_px"], ev["messages"]) == (240, 180, 3)


def test_info_usage_errors(tmp_path, capsys):
    code, _, err = run(capsys, tmp_path / "missing_bag")
    assert code == 2 and "bag not found" in err and "ROS 2 bag directory" in err
    (tmp_path / "notes.txt").write_text("x")
    code, _, err = run(capsys, tmp_path / "notes.txt")
    assert code == 2 and "not a bag" in err


def test_info_events_without_event_topics(tmp_path, capsys, rng):
    from test_bag import sample_messages

    topic, msgtype, msg = sample_messages(rng)[1]
    with BagWriter(tmp_path / "tracks") as bag:
        bag.write(topic, msgtype, 1, msg)
    code, out, err = run(capsys, tmp_path / "tracks", "--events")
    assert code == 1 and "no event topic" in err and "messages:  1" in out


def test_info_events_truncated_packet_counted(shared_data, tmp_path, capsys):
    # Three real evt3 packets; the middle one loses its last byte: counted, the rest decoded.
    src = list(iter_messages(shared_data / "event_bags" / "test_events_1"))[:3]
    with BagWriter(tmp_path / "cut") as bag:
        for k, m in enumerate(src):
            msg = m.msg if k != 1 else type(m.msg)(**{**vars(m.msg), "events": m.msg.events[:-1]})
            bag.write(m.topic, m.msgtype, m.t_ns, msg)
    code, out, err = run(capsys, tmp_path / "cut", "--events", "--json")
    ev = json.loads(out)["events"][TOPIC]
    assert code == 1 and "1 truncated messages on /event_camera/events" in err
    assert (ev["messages"], ev["decoded_messages"], ev["truncated_messages"]) == (3, 2, 1)
    assert ev["events"] > 0


def test_info_events_corrupt_message_counted(shared_data, tmp_path, capsys):
    # A message whose CDR does not parse is counted and skipped; the others are decoded.
    src = list(iter_messages(shared_data / "event_bags" / "test_events_1"))[:2]
    with BagWriter(tmp_path / "corrupt") as bag:
        bag.write(src[0].topic, src[0].msgtype, src[0].t_ns, src[0].msg)
        bag.write(src[0].topic, src[0].msgtype, src[0].t_ns + 1, b"\x00\x01\x00\x00\xff\xff")
        bag.write(src[1].topic, src[1].msgtype, src[1].t_ns, src[1].msg)
    code, out, err = run(capsys, tmp_path / "corrupt", "--events", "--json")
    ev = json.loads(out)["events"][TOPIC]
    assert code == 1 and "1 messages on /event_camera/events do not deserialize" in err
    assert (ev["messages"], ev["decoded_messages"], ev["undecodable_messages"]) == (3, 2, 1)
