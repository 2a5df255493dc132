"""dvs_msgs/EventArray: our CDR serializer and raw decoder against rosbags (independent)."""

from __future__ import annotations

import numpy as np
import pytest
from test_events_decode import typestore

from blinktrack_ros.events.batch import EventBatch
from blinktrack_ros.events.decode import (
    DecodeStats,
    TruncatedPacketError,
    decode_dvs_cdr,
    decode_dvs_message,
)
from blinktrack_ros.events.dvs import event_layout
from blinktrack_ros.events.encode import serialize_dvs_event_array

DVS = "dvs_msgs/msg/EventArray"


@pytest.fixture(scope="module")
def store():
    return typestore()


def rosbags_message(store, batch: EventBatch, stamp_ns: int, frame_id: str):
    """The same message built from rosbags' own classes."""
    T = store.types
    Time, Header = T["builtin_interfaces/msg/Time"], T["std_msgs/msg/Header"]
    Event, Array = T["dvs_msgs/msg/Event"], T[DVS]
    events = [Event(x=int(x), y=int(y), ts=Time(sec=int(t) // 10**9, nanosec=int(t) % 10**9),
                    polarity=bool(p)) for x, y, t, p in zip(batch.x, batch.y, batch.t, batch.p)]
    sec, nsec = divmod(stamp_ns, 10**9)
    return Array(header=Header(stamp=Time(sec=sec, nanosec=nsec), frame_id=frame_id),
                 height=batch.height, width=batch.width, events=events)


def batch_of(rng, n, width=346, height=260):
    t = np.sort(rng.integers(1_600_000_000 * 10**9, 1_600_000_002 * 10**9, n)).astype(np.int64)
    return EventBatch(rng.integers(0, width, n).astype(np.uint16),
                      rng.integers(0, height, n).astype(np.uint16), t,
                      rng.integers(0, 2, n).astype(np.uint8), width, height)


def assert_same(a: EventBatch, b: EventBatch) -> None:
    for key in ("x", "y", "t", "p"):
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key))
        assert getattr(a, key).dtype == getattr(b, key).dtype
    assert (a.width, a.height) == (b.width, b.height)


def test_layout_derived_from_alignment():
    first, nxt = event_layout(40)  # sequence data starts 4-aligned
    assert first == {"x": 0, "y": 2, "sec": 4, "nsec": 8, "p": 12} and nxt == 54
    later, nxt2 = event_layout(nxt)
    assert later == {"x": 0, "y": 2, "sec": 6, "nsec": 10, "p": 14} and nxt2 - nxt == 16


@pytest.mark.parametrize("n", [0, 1, 2, 7, 300])
@pytest.mark.parametrize("frame_id", ["", "cam", "dvs_frame"])
def test_serialize_matches_rosbags_and_both_decoders_agree(store, rng, n, frame_id):
    batch = batch_of(rng, n)
    ours = serialize_dvs_event_array(batch, 1_600_000_000_123_456_789, frame_id)
    msg = rosbags_message(store, batch, 1_600_000_000_123_456_789, frame_id)
    theirs = bytes(store.serialize_cdr(msg, DVS))
    assert ours == theirs
    from_cdr = decode_dvs_cdr(theirs)
    from_msg = decode_dvs_message(store.deserialize_cdr(theirs, DVS))
    assert_same(from_cdr, from_msg)
    assert_same(from_cdr, batch)


def test_big_endian_buffer(store, rng):
    batch = batch_of(rng, 20)
    msg = rosbags_message(store, batch, 5, "f")
    big = bytes(store.serialize_cdr(msg, DVS, little_endian=False))
    assert big[1] == 0
    assert_same(decode_dvs_cdr(big), batch)


def test_raw_inputs_validation(store, rng):
    batch = batch_of(rng, 50, width=400)
    buf = serialize_dvs_event_array(batch, 0, "x")
    small = EventBatch(batch.x, batch.y, batch.t, batch.p, 346, 260)  # claims a smaller sensor
    stats = DecodeStats()
    got = decode_dvs_cdr(serialize_dvs_event_array(small, 0, "x"), stats)
    assert stats.dropped_out_of_bounds == int(np.count_nonzero(batch.x >= 346))
    assert len(got) == 50 - stats.dropped_out_of_bounds
    for cut in (3, 10, 30, len(buf) - 1):
        with pytest.raises(TruncatedPacketError, match="offset"):
            decode_dvs_cdr(buf[:cut])
    assert_same(decode_dvs_cdr(np.frombuffer(buf, np.uint8)), decode_dvs_cdr(bytearray(buf)))
    shuffled = EventBatch(batch.x[::-1], batch.y[::-1], batch.t[::-1], batch.p[::-1], 400, 260)
    stats = DecodeStats()
    got = decode_dvs_cdr(serialize_dvs_event_array(shuffled, 0), stats)
    assert stats.backwards_timestamps == 49 and np.all(np.diff(got.t) >= 0)
    empty = DecodeStats()
    assert len(decode_dvs_cdr(serialize_dvs_event_array(batch_of(rng, 0), 0), empty)) == 0
    assert empty.empty_packets == 1


def test_bool_byte_other_than_one_is_on(rng):
    """CDR bools are one byte; a writer may put any nonzero value there: it decodes as ON."""
    batch = batch_of(rng, 5)
    buf = bytearray(serialize_dvs_event_array(batch, 7))
    n_head = len(buf) - (14 + 16 * 3 + 15)  # events: 14 bytes, then 16 each, the last 15
    # polarity bytes: event 0 at +12 of its start, later events at +14 of theirs
    starts = [n_head] + [n_head + 14 + 16 * k for k in range(4)]
    offs = [starts[0] + 12] + [s + 14 for s in starts[1:]]
    for k, off in enumerate(offs):
        assert buf[off] == batch.p[k]
        buf[off] = 0 if batch.p[k] == 0 else 7
    np.testing.assert_array_equal(decode_dvs_cdr(bytes(buf)).p, batch.p)
