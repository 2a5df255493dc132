"""dvs_msgs/EventArray (ROS 2 port): decode message objects or serialized CDR, and serialize.

Message: std_msgs/Header header, uint32 height, uint32 width, dvs_msgs/Event[] events, with
Event = uint16 x, uint16 y, builtin_interfaces/Time ts (int32 sec, uint32 nanosec), bool
polarity. Event times are already ROS times: t = ts.sec * 1e9 + ts.nanosec (int64 ns).

CDR layout: after the 4-byte encapsulation header (byte 1: 1 = little endian, 0 = big endian),
every primitive is aligned to its size relative to the payload start. The event sequence starts
4-aligned, so event 0 occupies 14 bytes (x 0, y 2, sec 4, nsec 8, polarity 12, pad 1) and every
later one starts at 2 mod 4 and occupies 16 (x 0, y 2, pad 2, sec 6, nsec 10, polarity 14, pad 1).
`event_layout` derives this from the alignment rules rather than assuming it.
Validation as in `events.decode`: out-of-sensor events dropped and counted, backwards times
counted and the batch sorted, truncated buffers raise an error naming the offset.
"""

from __future__ import annotations

from functools import lru_cache
import struct

import numpy as np

from blinktrack_ros.events.batch import EventBatch
from blinktrack_ros.events.errors import TruncatedPacketError

ENCAPSULATION_BYTES = 4
_FIELDS = (("x", 2, "u2"), ("y", 2, "u2"), ("sec", 4, "i4"), ("nsec", 4, "u4"), ("p", 1, "u1"))


def _align(pos: int, n: int) -> int:
    return (pos + n - 1) // n * n


def event_layout(start: int) -> tuple[dict[str, int], int]:
    """Field offsets (relative to the event) of an Event starting at payload offset `start`.

    Returns the offsets and the payload offset where the next event starts.
    """
    pos, offsets = start, {}
    for name, size, _ in _FIELDS:
        pos = _align(pos, size)
        offsets[name] = pos - start
        pos += size
    return offsets, _align(pos, 2)  # the next event begins with a uint16


@lru_cache(maxsize=16)
def _view_dtype(start_mod8: int, endian: str) -> np.dtype:
    """dtype of an Event starting at payload offset = start_mod8 (mod 8; alignments are <= 4,
    so the layout repeats): built once per layout instead of once per message."""
    return _event_dtype(event_layout(start_mod8)[0], endian)


def _event_dtype(offsets: dict[str, int], endian: str) -> np.dtype:
    return np.dtype({"names": [f[0] for f in _FIELDS],
                     "formats": [endian + f[2] for f in _FIELDS],
                     "offsets": [offsets[f[0]] for f in _FIELDS],
                     "itemsize": offsets["p"] + 1})


class DvsTruncatedError(TruncatedPacketError):
    """A serialized dvs EventArray ends early; `offset` is where the missing data begins."""

    def __init__(self, what: str, offset: int, size: int) -> None:
        super().__init__(f"dvs_msgs/EventArray ({what})", offset, size)


def _header(buf: memoryview, endian: str) -> tuple[int, str, int, int, int, int]:
    """Parse stamp, frame_id, height, width, event count; return them and the events offset."""
    base, size = ENCAPSULATION_BYTES, len(buf)

    def need(what: str, end: int) -> None:
        if base + end > size:
            raise DvsTruncatedError(what, base + end, size)

    need("header", 12)
    sec, nsec, n_id = struct.unpack_from(endian + "iII", buf, base)
    need("frame_id", 12 + n_id)
    frame_id = bytes(buf[base + 12:base + 12 + max(n_id - 1, 0)]).decode("utf-8", "replace")
    pos = _align(12 + n_id, 4)
    need("height/width/count", pos + 12)
    height, width, n = struct.unpack_from(endian + "III", buf, base + pos)
    return sec * 1_000_000_000 + nsec, frame_id, height, width, n, pos + 12


@lru_cache(maxsize=16)
def _plan(start_mod8: int, endian: str) -> tuple[dict[str, int] | None, int, np.dtype, int, int]:
    """How the events of a message whose sequence starts at payload offset = start_mod8
    (mod 8) lie: (field offsets of a first event with its own layout, or None; payload offset
    of the periodic part from the start; its dtype; its stride; offset of its last byte)."""
    off0, nxt = event_layout(start_mod8)
    off1, nxt2 = event_layout(nxt)
    if off0 == off1:  # periodic from the first event on
        return None, 0, _view_dtype(start_mod8, endian), nxt - start_mod8, off0["p"]
    return off0, nxt - start_mod8, _view_dtype(nxt % 8, endian), nxt2 - nxt, off1["p"]


def _event_views(buf, endian: str, start: int, n: int
                 ) -> tuple[dict[str, int] | None, np.ndarray | None, int]:
    """Where the n events at payload offset `start` lie in buf: the field offsets of a first
    event with its own layout (None: there is none; it starts at payload offset `start`), a
    structured view (no copy) over the periodic rest (None: empty), and the payload offset
    just after the last event's last byte.

    Raises:
        DvsTruncatedError: buf ends before the last event does.
    """
    size = len(buf)
    first, rel, dtype, stride, last = _plan(start % 8, endian)
    head = 1 if n and first is not None else 0
    base = end = ENCAPSULATION_BYTES + start  # buffer offsets
    if head:
        end = base + first["p"] + 1
        if end > size:
            raise DvsTruncatedError("event 0", end, size)
        base += rel
    view = None
    if n > head:
        end = base + (n - head - 1) * stride + last + 1
        if end > size:
            raise DvsTruncatedError(f"event {n - 1}", end, size)
        view = np.ndarray((n - head,), dtype, buf, base, (stride,))
    return (first if head else None), view, end - ENCAPSULATION_BYTES


@lru_cache(maxsize=16)
def _one_event(start_mod8: int, endian: str) -> struct.Struct:
    """struct of one Event at payload offset = start_mod8 (mod 8): x, y, sec, nsec, p at their
    aligned offsets, padding skipped (for the first event of a sequence, which has its own
    layout: one call instead of a numpy view per field)."""
    codes = {"u1": "B", "u2": "H", "i4": "i", "u4": "I"}
    offsets, fmt, pos = event_layout(start_mod8)[0], endian, 0
    for name, size, code in _FIELDS:  # in offset order
        fmt += "x" * (offsets[name] - pos) + codes[code]
        pos = offsets[name] + size
    return struct.Struct(fmt)


def _to_batch(x, y, t, p, width: int, height: int, stats) -> EventBatch:
    from blinktrack_ros.events.decode import DecodeStats, _finish

    stats = DecodeStats() if stats is None else stats
    stats.packets += 1
    if t.size == 0:
        stats.empty_packets += 1
        return EventBatch.empty(width, height)
    return _finish(x, y, t, p, width, height, None, stats)


def decode_dvs_cdr(buffer: bytes | bytearray | memoryview | np.ndarray, stats=None) -> EventBatch:
    """Decode a serialized dvs_msgs/EventArray (CDR with its 4-byte header) into a batch.

    Args:
        buffer: the serialized message, e.g. from a `raw=True` subscription or rosbags.
        stats: optional DecodeStats to add counters to.

    Raises:
        DvsTruncatedError: (a TruncatedPacketError) the buffer ends early; counted first.
    """
    buf = memoryview(np.frombuffer(buffer, np.uint8) if not isinstance(buffer, np.ndarray)
                     else np.ascontiguousarray(buffer, np.uint8).reshape(-1))
    size = len(buf)
    try:
        if size < ENCAPSULATION_BYTES:
            raise DvsTruncatedError("encapsulation header", ENCAPSULATION_BYTES, size)
        endian = "<" if buf[1] & 1 else ">"
        _, _, height, width, n, start = _header(buf, endian)
        first, v, _ = _event_views(buf, endian, start, n)
    except DvsTruncatedError:
        if stats is not None:
            stats.truncated_packets += 1  # counted first, like decode_packet
        raise
    x, y = np.empty(n, np.uint16), np.empty(n, np.uint16)
    t, p = np.empty(n, np.int64), np.empty(n, np.uint8)
    head = 0
    if first is not None:  # the first event of a 4-aligned sequence: read it field by field
        head = 1
        x[0], y[0], sec, nsec, pol = _one_event(start % 8, endian).unpack_from(
            buf, ENCAPSULATION_BYTES + start)
        t[0], p[0] = sec * 1_000_000_000 + nsec, pol != 0
    if v is not None:  # one strided view, one copy per field
        x[head:], y[head:] = v["x"], v["y"]
        np.not_equal(v["p"], 0, out=p[head:].view(bool))  # a CDR bool byte: nonzero is true
        ts = t[head:]
        ts[...] = v["sec"]  # widen first: numpy 1.x would multiply in int32 and overflow
        ts *= 1_000_000_000
        ts += v["nsec"]
    return _to_batch(x, y, t, p, int(width), int(height), stats)


def decode_dvs_message(msg: object, stats=None) -> EventBatch:
    """Decode a dvs_msgs/EventArray message object (rclpy or rosbags) into a batch."""
    evs = list(msg.events)
    n = len(evs)
    x = np.fromiter((e.x for e in evs), np.uint16, n)
    y = np.fromiter((e.y for e in evs), np.uint16, n)
    t = np.fromiter((int(e.ts.sec) * 1_000_000_000 + int(e.ts.nanosec) for e in evs),
                    np.int64, n)
    p = np.fromiter((bool(e.polarity) for e in evs), np.uint8, n)
    return _to_batch(x, y, t, p, int(msg.width), int(msg.height), stats)


def serialize_dvs_event_array(batch: EventBatch, stamp_ns: int, frame_id: str = "") -> bytes:
    """Serialize a batch as a little-endian CDR dvs_msgs/EventArray (4-byte header included).

    The bytes equal what rosbags' `serialize_cdr` gives for the same message.
    """
    fid = frame_id.encode("utf-8") + b"\x00"
    sec, nsec = divmod(int(stamp_ns), 1_000_000_000)
    head = struct.pack("<iII", sec, nsec, len(fid)) + fid
    head += b"\x00" * (_align(len(head), 4) - len(head))
    head += struct.pack("<III", batch.height, batch.width, len(batch))
    n = len(batch)
    body_start = len(head)
    out = bytearray(ENCAPSULATION_BYTES + body_start + (16 * n if n else 0))
    out[1] = 1  # CDR_LE
    out[ENCAPSULATION_BYTES:ENCAPSULATION_BYTES + body_start] = head
    end = body_start
    if n:
        first, v, end = _event_views(memoryview(out), "<", body_start, n)
        sec_e, nsec_e = np.divmod(batch.t.astype(np.int64), 1_000_000_000)
        head = 0
        if first is not None:
            head = 1
            _one_event(body_start % 8, "<").pack_into(
                out, ENCAPSULATION_BYTES + body_start, int(batch.x[0]), int(batch.y[0]),
                int(sec_e[0]), int(nsec_e[0]), int(batch.p[0] != 0))
        if v is not None:
            v["x"], v["y"], v["p"] = batch.x[head:], batch.y[head:], batch.p[head:] != 0
            v["sec"], v["nsec"] = sec_e[head:], nsec_e[head:]
    return bytes(out[:ENCAPSULATION_BYTES + end])
