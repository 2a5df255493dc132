"""Decoders on real rclpy messages and rclpy-serialized buffers (what a raw subscription gets)."""

from __future__ import annotations

import array

import numpy as np
import pytest

pytestmark = pytest.mark.ros
rclpy_ser = pytest.importorskip("rclpy.serialization",
                                reason="rclpy missing: run bash tools/build_msgs.sh .venv")
ecm = pytest.importorskip("event_camera_msgs.msg",
                          reason="event messages not built: run bash tools/build_msgs.sh .venv")
dvs = pytest.importorskip("dvs_msgs.msg",
                          reason="event messages not built: run bash tools/build_msgs.sh .venv")

from test_events_dvs import assert_same, batch_of  # noqa: E402

from blinktrack_ros.events.decode import (  # noqa: E402
    decode_dvs_cdr,
    decode_dvs_message,
    decode_packet,
)
from blinktrack_ros.events.encode import make_event_packets  # noqa: E402


def rclpy_packet(fields) -> object:
    msg = ecm.EventPacket()
    msg.header.stamp.sec, msg.header.stamp.nanosec = fields.header.stamp.sec, \
        fields.header.stamp.nanosec
    msg.header.frame_id = "cam"
    msg.height, msg.width, msg.seq = fields.height, fields.width, fields.seq
    msg.time_base, msg.encoding = fields.time_base, fields.encoding
    msg.is_bigendian = fields.is_bigendian
    msg.events = array.array("B", fields.events)
    return msg


@pytest.mark.parametrize("encoding", ["evt3", "mono"])
def test_event_packet_from_rclpy(rng, encoding):
    src = batch_of(rng, 3000, width=640, height=480)
    fields = make_event_packets(src, encoding, 500_000_000)
    ours = [decode_packet(f) for f in fields]
    state = None
    for f, (expect, _) in zip(fields, ours):
        msg = rclpy_packet(f)
        again = rclpy_ser.deserialize_message(rclpy_ser.serialize_message(msg), ecm.EventPacket)
        got, state = decode_packet(again, state)
        np.testing.assert_array_equal(got.x, expect.x)
        np.testing.assert_array_equal(got.t - got.t[0], expect.t - expect.t[0])


def test_dvs_from_rclpy_objects_and_raw_buffers(rng):
    src = batch_of(rng, 500)
    msg = dvs.EventArray()
    msg.header.stamp.sec, msg.header.frame_id = 7, "dvs"
    msg.height, msg.width = src.height, src.width
    events = []
    for x, y, t, p in zip(src.x.tolist(), src.y.tolist(), src.t.tolist(), src.p.tolist()):
        e = dvs.Event(x=x, y=y, polarity=bool(p))
        e.ts.sec, e.ts.nanosec = divmod(t, 1_000_000_000)
        events.append(e)
    msg.events = events
    raw = rclpy_ser.serialize_message(msg)  # padding bytes may hold garbage: must be ignored
    assert_same(decode_dvs_cdr(raw), src)
    assert_same(decode_dvs_message(msg), src)
