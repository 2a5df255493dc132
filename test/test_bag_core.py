"""iter_core: bag topics as EventBatch / GrayFrame in log-time order, against ground truth."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from blinktrack_ros.bag.core import GrayFrame, iter_core
from blinktrack_ros.bag.reader import BagError, iter_messages
from blinktrack_ros.bag.types import DVS_EVENT_ARRAY, IMAGE, typestore
from blinktrack_ros.bag.writer import BagWriter
from blinktrack_ros.events.batch import EventBatch

T0 = 1_700_000_000_000_000_000


def _dvs_msg(store, rng, n, t_start_ns):
    T = store.types
    Event, Time, Header = (T[t] for t in ("dvs_msgs/msg/Event", "builtin_interfaces/msg/Time",
                                          "std_msgs/msg/Header"))
    truth = dict(x=rng.integers(0, 240, n), y=rng.integers(0, 180, n),
                 t=t_start_ns + np.sort(rng.integers(0, 10**7, n)), p=rng.integers(0, 2, n))
    events = [Event(int(x), int(y), Time(*divmod(int(t), 10**9)), bool(p))
              for x, y, t, p in zip(truth["x"], truth["y"], truth["t"], truth["p"])]
    return T[DVS_EVENT_ARRAY](Header(Time(*divmod(t_start_ns, 10**9)), "dvs"), 180, 240,
                              events), truth


def test_mixed_bag_in_order_as_core_types(shared_data, tmp_path, rng):
    import evt3

    store = typestore()
    T = store.types
    packets = list(iter_messages(shared_data / "event_bags" / "test_events_1"))[:4]
    pixels = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    Header, Time = T["std_msgs/msg/Header"], T["builtin_interfaces/msg/Time"]
    image = T[IMAGE](Header(Time(1, 500), "cam"), 6, 8, "bgr8", 0, 24, pixels.reshape(-1))
    truths = []
    with BagWriter(tmp_path / "mixed") as bag:
        for k, pkt in enumerate(packets):
            bag.write("/events", pkt.msgtype, T0 + 10 * k, pkt.msg)
            dvs, truth = _dvs_msg(store, rng, 20 + k, T0 + 10 * k)
            bag.write("/dvs", DVS_EVENT_ARRAY, T0 + 10 * k + 3, dvs)
            truths.append(truth)
            bag.write("/image", IMAGE, T0 + 10 * k + 5, image)
    stats: dict = {}
    got = list(iter_core(tmp_path / "mixed", stats=stats))
    assert [m.t_ns for m in got] == sorted(m.t_ns for m in got) and len(got) == 12
    dvs_batches = [m.value for m in got if m.topic == "/dvs"]
    for batch, truth in zip(dvs_batches, truths):
        assert isinstance(batch, EventBatch) and (batch.width, batch.height) == (240, 180)
        for field in "xytp":
            np.testing.assert_array_equal(getattr(batch, field), truth[field])
    frames = [m.value for m in got if m.topic == "/image"]
    assert all(isinstance(f, GrayFrame) for f in frames)
    assert (frames[0].t_ns, frames[0].frame_id) == (1_000_000_500, "cam")
    ref = cv2.cvtColor(pixels.astype(np.float32) / 255, cv2.COLOR_BGR2GRAY)
    np.testing.assert_allclose(frames[0].gray, ref, atol=1e-6)
    # evt3 packets: counts as the PyPI evt3 decoder gives for the same payloads
    decoder = evt3.Decoder(sensor_width=640, sensor_height=480)
    ref_counts = [len(decoder.feed(p.msg.events.tobytes())) for p in packets]
    assert [len(m.value) for m in got if m.topic == "/events"] == ref_counts
    assert stats["/events"].decoded == sum(ref_counts)
    assert stats["/dvs"].decoded == sum(len(t["t"]) for t in truths)


def test_topic_choice_and_unsupported_encoding(shared_data, tmp_path, rng):
    store = typestore()
    with BagWriter(tmp_path / "dvs") as bag:
        for k in range(2):
            bag.write("/dvs", DVS_EVENT_ARRAY, T0 + k, _dvs_msg(store, rng, 5, T0)[0])
    assert [m.topic for m in iter_core(tmp_path / "dvs", topics=["/dvs"])] == ["/dvs"] * 2
    with pytest.raises(BagError, match="libcaer_cmp"):
        list(iter_core(shared_data / "event_bags" / "test_events_2"))


def test_joined_evt3_runs_equal_packet_by_packet(shared_data, tmp_path):
    """join_packets decodes runs of consecutive evt3 packets as one: the same events (against
    the per-packet path and the PyPI decoder's count), the same counters, runs broken by
    another topic, by the run limit and by a truncated packet (counted, skipped)."""
    import dataclasses

    import evt3

    store = typestore()
    T = store.types
    packets = list(iter_messages(shared_data / "event_bags" / "test_events_1"))[:40]
    Header, Time = T["std_msgs/msg/Header"], T["builtin_interfaces/msg/Time"]
    image = T[IMAGE](Header(Time(1, 0), "cam"), 2, 2, "mono8", 0, 2,
                     np.zeros(4, np.uint8))
    with BagWriter(tmp_path / "evt3") as bag:
        for k, pkt in enumerate(packets):
            msg = pkt.msg
            if k == 23:  # a truncated packet inside a run
                msg = dataclasses.replace(msg, events=msg.events[:-1])
            bag.write("/events", pkt.msgtype, T0 + 10 * k, msg)
            if k in (5, 6, 30):
                bag.write("/image", IMAGE, T0 + 10 * k + 5, image)
    one_stats: dict = {}
    joined_stats: dict = {}
    one = list(iter_core(tmp_path / "evt3", stats=one_stats))
    joined = list(iter_core(tmp_path / "evt3", stats=joined_stats, join_packets=8))
    assert len(one) == 39 + 3 and sum(m.count for m in one) == 42
    assert sum(m.count for m in joined) == 42 and len(joined) < 20
    assert [m.topic for m in joined if m.count > 1] and max(m.count for m in joined) == 8
    assert [m.t_ns for m in joined] == sorted(m.t_ns for m in joined)
    # frames stay between the same events
    def split(msgs):
        out, cur = [], []
        for m in msgs:
            if m.topic == "/image":
                out.append(EventBatch.concatenate(cur) if cur else None)
                cur = []
            else:
                cur.append(m.value)
        return out + [EventBatch.concatenate(cur)]
    for a, b in zip(split(one), split(joined), strict=True):
        for f in "xytp":
            np.testing.assert_array_equal(getattr(a, f), getattr(b, f))
    assert one_stats["/events"].as_dict() == joined_stats["/events"].as_dict()
    assert joined_stats["/events"].truncated_packets == 1
    decoder = evt3.Decoder(sensor_width=640, sensor_height=480)
    ref = sum(len(decoder.feed(p.msg.events.tobytes())) for k, p in enumerate(packets)
              if k != 23)
    assert joined_stats["/events"].decoded == ref
    with pytest.raises(ValueError, match="join_packets"):
        list(iter_core(tmp_path / "evt3", join_packets=0))
