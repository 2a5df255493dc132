"""Encoders: EventBatch to evt3 / mono payloads and EventPacket fields, dvs CDR (for the
synthetic-data generator, tests and benchmarks).

`make_event_packets` cuts a batch into packets whose fields decode back (with
`events.decode.decode_packet`) to the same events: for mono exactly; for evt3 at microsecond
resolution relative to the first event (evt3 carries microseconds).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from blinktrack_ros.events.batch import EventBatch
from blinktrack_ros.events.dvs import serialize_dvs_event_array
from blinktrack_ros.events.evt3 import ADDR_X, ADDR_Y, TIME_HIGH, TIME_LOW

__all__ = ["EventPacketFields", "Header", "Time", "encode_evt3", "encode_mono",
           "make_event_packets", "serialize_dvs_event_array"]

MAX_GAP_US = 1 << 23  # half the 24-bit wrap period: larger gaps make the wrap ambiguous


@dataclass(frozen=True)
class Time:
    """builtin_interfaces/Time."""

    sec: int = 0
    nanosec: int = 0

    @staticmethod
    def from_ns(t_ns: int) -> Time:
        """Split int ns into sec, nanosec."""
        sec, nsec = divmod(int(t_ns), 1_000_000_000)
        return Time(sec, nsec)


@dataclass(frozen=True)
class Header:
    """std_msgs/Header."""

    stamp: Time = field(default_factory=Time)
    frame_id: str = ""


@dataclass(frozen=True)
class EventPacketFields:
    """The fields of event_camera_msgs/EventPacket; decode_packet accepts it directly."""

    header: Header
    height: int
    width: int
    seq: int
    time_base: int
    encoding: str
    is_bigendian: bool
    events: bytes

    def as_dict(self) -> dict:
        """Plain fields (header as a dict of stamp sec/nanosec and frame_id)."""
        return {"header": {"stamp": {"sec": self.header.stamp.sec,
                                     "nanosec": self.header.stamp.nanosec},
                           "frame_id": self.header.frame_id},
                "height": self.height, "width": self.width, "seq": self.seq,
                "time_base": self.time_base, "encoding": self.encoding,
                "is_bigendian": self.is_bigendian, "events": self.events}


def encode_evt3(batch: EventBatch, origin_ns: int) -> bytes:
    """Encode a time-sorted batch as little-endian EVT 3.0 words (ADDR_X events only).

    Sensor time is `(t - origin_ns) // 1000` microseconds (24-bit, wrapping). Every packet
    starts with TIME_HIGH, TIME_LOW and ADDR_Y words, so it can be decoded on its own.

    Raises:
        ValueError: events before origin_ns, unsorted, or a gap >= 2**23 us (ambiguous wrap).
    """
    n = len(batch)
    if n == 0:
        return b""
    us = (batch.t.astype(np.int64) - int(origin_ns)) // 1000
    if us[0] < 0 or np.any(np.diff(us) < 0):
        raise ValueError("encode_evt3 needs time-sorted events at or after origin_ns")
    if n > 1 and int(np.max(np.diff(us))) >= MAX_GAP_US:
        raise ValueError(f"gap of >= {MAX_GAP_US} us between events: evt3 wrap is ambiguous")
    high = us >> 12
    prev = np.r_[-1, us[:-1]]
    new_high = np.r_[True, high[1:] != high[:-1]]
    new_low = us != prev
    y = batch.y.astype(np.int64)
    new_y = np.r_[True, y[1:] != y[:-1]] | new_high | new_low
    counts = new_high.astype(np.int64) + new_low + new_y + 1
    end = np.cumsum(counts)
    words = np.empty(int(end[-1]), np.uint16)
    x_pos = end - 1
    y_pos = x_pos - 1
    low_pos = y_pos - new_y
    high_pos = low_pos - new_low
    words[x_pos] = (ADDR_X << 12) | ((batch.p.astype(np.int64) & 1) << 11) | batch.x
    words[y_pos[new_y]] = (ADDR_Y << 12) | y[new_y]
    words[low_pos[new_low]] = (TIME_LOW << 12) | (us[new_low] & 0xFFF)
    words[high_pos[new_high]] = (TIME_HIGH << 12) | (high[new_high] & 0xFFF)
    return words.astype("<u2").tobytes()


def encode_mono(batch: EventBatch, stamp_ns: int) -> bytes:
    """Encode a batch as mono words (little endian): dt = t - stamp_ns (0 <= dt < 2**32 ns)."""
    dt = batch.t.astype(np.int64) - int(stamp_ns)
    if dt.size and (dt.min() < 0 or dt.max() >= 1 << 32):
        raise ValueError("mono needs 0 <= t - stamp_ns < 2**32 ns for every event")
    if np.any(batch.y >= 1 << 15):
        raise ValueError("mono holds y in 15 bits")
    w = (dt.astype(np.uint64) | (batch.x.astype(np.uint64) << np.uint64(32))
         | (batch.y.astype(np.uint64) << np.uint64(48))
         | (batch.p.astype(np.uint64) << np.uint64(63)))
    return w.astype("<u8").tobytes()


def make_event_packets(batch: EventBatch, encoding: str, packet_ns: int,
                       frame_id: str = "", first_seq: int = 0) -> list[EventPacketFields]:
    """Cut a batch into consecutive EventPacket field sets of `packet_ns` each.

    Stamps: a packet's header.stamp is its first event's time (as a driver stamps the first
    event's arrival), so decode_packet reproduces the event times. Packets without events
    are not emitted.
    """
    if encoding not in ("evt3", "mono"):
        raise ValueError(f"cannot encode {encoding!r} (evt3, mono)")
    if len(batch) == 0:
        return []
    t0 = int(batch.t[0])
    edges = np.arange(t0, int(batch.t[-1]) + packet_ns + 1, packet_ns)
    cuts = np.searchsorted(batch.t, edges[1:], side="left")
    start, packets = 0, []
    for stop in cuts:
        if stop > start:
            part = EventBatch(batch.x[start:stop], batch.y[start:stop], batch.t[start:stop],
                              batch.p[start:stop], batch.width, batch.height)
            stamp = int(part.t[0])
            payload = (encode_evt3(part, origin_ns=t0) if encoding == "evt3"
                       else encode_mono(part, stamp))
            packets.append(EventPacketFields(
                Header(Time.from_ns(stamp if encoding == "mono" else
                                    t0 + (stamp - t0) // 1000 * 1000), frame_id),
                batch.height, batch.width, first_seq + len(packets),
                stamp if encoding == "mono" else 0, encoding, False, payload))
        start = stop
    return packets
