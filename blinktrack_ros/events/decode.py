"""Decoders of event messages into EventBatch: pure functions of message fields.

Inputs are any objects with the fields of `event_camera_msgs/EventPacket` (or the legacy
`event_array_msgs/EventArray`, same fields): header, height, width, seq, time_base, encoding,
is_bigendian, events. `events` may be bytes, bytearray, memoryview, array.array (rclpy), a numpy
uint8 array (rosbags) or a list of ints. dvs_msgs/EventArray decoders live in `events.dvs`
and are re-exported here.

Time semantics (facts from the event_camera_msgs / event_camera_codecs / event_camera_py docs)
----------------------------------------------------------------------------------------------
A packet carries three clocks: the bag recording time, `header.stamp` (the host ROS time when
the driver received the first SDK buffer of this message) and the sensor time inside the
payload. Our output `t` is int64 ns in the ROS header clock, so events line up with image stamps:

- `mono`: each 64-bit word holds dt (bits 0-31, ns), x (32-47), y (48-62), polarity (63).
  Sensor time is `time_base + dt`; the ROS time estimate is `header.stamp + dt`. We return the
  latter. Words follow `is_bigendian`.
- `evt3`: `time_base` is unused (undefined). Sensor time (us, 24-bit with wraps, see
  `events.evt3`) must be decoded from the payload. We map it to ROS time with one offset fixed
  at the first packet that yields events: `offset = header.stamp - sensor time of its first
  event`, carried in the decoder state (the naive sensor-to-host mapping event_camera_py
  describes; clock drift is not corrected). The 16-bit words follow `is_bigendian` (sensors
  send little-endian by default).

evt3 backends: "numba" (`events.evt3_jit`: decoding and every check below in one compiled pass;
the default when numba imports), "pypi" (the PyPI `evt3` package, Rust, then the checks in
numpy; the default without numba) and "numpy" (`events.evt3`, vectorised, about 10x slower;
the independent check of the others). numba and numpy share their semantics and their state
(`Evt3State`), so a stream may move between them; all three give the same events on the real
recordings in the tests. `decode_packets` joins the payloads of consecutive packets and
decodes them in one call (the fast offline path).

Validation (counted in DecodeStats, never silent)
--------------------------------------------------
- Events outside width x height are dropped (`dropped_out_of_bounds`); a packet with width or
  height 0 is not bounds-checked.
- Timestamps going back inside a packet: the pairs are counted (`backwards_timestamps`) and the
  batch is stably sorted by time (no event is dropped). A packet starting before the previous
  packet's last event is counted in `backwards_across_packets` (its events are kept).
- An empty payload gives an empty batch (`empty_packets`).
- A payload that is not a whole number of words (2 bytes evt3, 8 bytes mono) raises
  TruncatedPacketError naming the byte offset of the partial word (`truncated_packets` is
  counted first); the state passed in stays valid for the next packet.
- Other encodings (`libcaer_cmp`, `libcaer`, `trigger`, ...) raise UnsupportedEncodingError.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import NamedTuple

import numpy as np

from blinktrack_ros.events import evt3_jit
from blinktrack_ros.events.batch import EventBatch
from blinktrack_ros.events.dvs import decode_dvs_cdr, decode_dvs_message
from blinktrack_ros.events.errors import (
    SUPPORTED_ENCODINGS,
    TruncatedPacketError,
    UnsupportedEncodingError,
)
from blinktrack_ros.events.evt3 import (
    Evt3State,
    PypiEvt3Stream,
    StaleStateError,
    decode_evt3_words,
)

__all__ = [
    "DecodeStats", "DecoderState", "StaleStateError", "TruncatedPacketError",
    "UnsupportedEncodingError",
    "decode_dvs_cdr", "decode_dvs_message", "decode_packet", "prepare_evt3_backend",
    "SUPPORTED_ENCODINGS",
]

EVT3_BACKENDS = ("auto", "numba", "numpy", "pypi")


@dataclass
class DecodeStats:
    """Counters over decoded packets (decoders add to them in place)."""

    packets: int = 0
    decoded: int = 0
    on: int = 0
    off: int = 0
    dropped_out_of_bounds: int = 0
    backwards_timestamps: int = 0
    backwards_across_packets: int = 0
    empty_packets: int = 0
    truncated_packets: int = 0
    trigger_events: int = 0
    unknown_words: int = 0

    def merge(self, other: DecodeStats) -> DecodeStats:
        """Add other's counters to self; return self (so `a = a.merge(b)` works too)."""
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
        return self

    def as_dict(self) -> dict[str, int]:
        """Counters by name."""
        return asdict(self)


class DecoderState(NamedTuple):
    """What an EventPacket stream decoder carries between packets (immutable).

    Attributes:
        evt3: evt3 registers (time-high with wraps, time-low, row, vector base), or the
            PyPI decoder of the `pypi` backend.
        offset_ns: ROS time minus sensor time (evt3), fixed at the first valid packet.
        last_t_ns: last event time returned (to count backwards steps across packets).
    """

    evt3: Evt3State | PypiEvt3Stream = Evt3State()
    offset_ns: int | None = None
    last_t_ns: int | None = None


def payload_bytes(events: object) -> np.ndarray:
    """(N,) uint8 view (or copy for lists) of a message's `events` field."""
    if type(events) is np.ndarray and events.dtype == np.uint8 and events.ndim == 1 \
            and events.flags.c_contiguous:  # what rosbags gives: as is (the common case)
        return events
    if isinstance(events, np.ndarray):
        arr = events if events.dtype == np.uint8 else events.astype(np.uint8)
        return np.ascontiguousarray(arr).reshape(-1)
    if isinstance(events, (list, tuple)):
        return np.asarray(events, dtype=np.uint8)
    return np.frombuffer(events, dtype=np.uint8)  # bytes, bytearray, memoryview, array.array


def stamp_ns(header: object) -> int:
    """header.stamp as int ns."""
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


_multiply, _add = np.multiply, np.add
_max = np.maximum.reduce  # (bound once: the per-packet path is mostly call overhead)
_count_nonzero = np.count_nonzero


def _finish(x, y, t, p, width: int, height: int, state_last: int | None,
            stats: DecodeStats) -> EventBatch:
    """Bounds check, backwards counting and sorting; update stats."""
    n = t.size
    if width > 0 and height > 0 and n and (_max(x) >= width or _max(y) >= height):
        keep = (x < width) & (y < height)
        stats.dropped_out_of_bounds += int(keep.size - np.count_nonzero(keep))
        x, y, t, p = x[keep], y[keep], t[keep], p[keep]
        n = t.size
    if n > 1:
        n_back = _count_nonzero(t[1:] < t[:-1])
        if n_back:
            stats.backwards_timestamps += n_back
            order = np.argsort(t, kind="stable")
            x, y, t, p = x[order], y[order], t[order], p[order]
    if n and state_last is not None and t[0] < state_last:
        stats.backwards_across_packets += 1
    n_on = _count_nonzero(p)
    stats.decoded += n
    stats.on += n_on
    stats.off += n - n_on
    return EventBatch(x, y, t, p, int(width), int(height))


def _decode_mono(buf: np.ndarray, msg: object, stats: DecodeStats):
    if buf.size % 8:
        stats.truncated_packets += 1
        raise TruncatedPacketError("mono payload (partial 64-bit word)",
                                   buf.size - buf.size % 8, buf.size)
    e = ">" if msg.is_bigendian else "<"
    offs = [4, 2, 0] if msg.is_bigendian else [0, 4, 6]
    rec = buf.view(np.dtype({"names": ["dt", "x", "yp"], "formats": [e + "u4", e + "u2", e + "u2"],
                             "offsets": offs, "itemsize": 8}))
    yp = rec["yp"]
    t = rec["dt"].astype(np.int64)
    t += stamp_ns(msg.header)
    return rec["x"].astype(np.uint16), yp & np.uint16(0x7FFF), t, (yp >> 15).astype(np.uint8)


_RESOLVED: dict[str, str] = {}
_KERNEL: list = [None]  # (capacity, decode) kernels, once a stream resolved to "numba"


def prepare_evt3_backend(backend: str = "auto") -> str:
    """The evt3 backend a name stands for ("auto": numba, else pypi, else numpy, by what
    imports), resolved once; for numba that compiles the kernel (about 2 s, 0.1-0.5 s from
    numba's disk cache): call it at start so that a node's first packet does not wait.

    Returns:
        "numba", "pypi" or "numpy".
    """
    got = _RESOLVED.get(backend)
    if got is not None:
        return got
    if backend not in EVT3_BACKENDS:
        raise ValueError(f"unknown evt3 backend {backend!r} (choose from {EVT3_BACKENDS})")
    if backend == "numba" and not evt3_jit.available():
        raise ValueError(f"evt3 backend 'numba' needs numba ({evt3_jit.error()})")
    got = backend
    if backend == "auto":
        got = "numba" if evt3_jit.available() else "pypi"
        if got == "pypi":
            try:
                import evt3  # noqa: F401
            except ImportError:
                got = "numpy"
    if got == "numba":
        _KERNEL[0] = evt3_jit.kernels()
    _RESOLVED[backend] = got
    return got


def _decode_evt3_numba(buf: np.ndarray, msg: object, state: DecoderState, stats: DecodeStats,
                       width: int, height: int) -> tuple[EventBatch, DecoderState]:
    """One evt3 payload through the compiled kernels (decode + checks + ns times)."""
    if buf.size & 1:
        stats.truncated_packets += 1
        raise TruncatedPacketError("evt3 payload (partial 16-bit word)", buf.size - 1, buf.size)
    capacity, kernel = _KERNEL[0]
    big = msg.is_bigendian
    cap = capacity(buf, big)
    x, y, t, p = evt3_jit.columns(cap)
    offset, last = state.offset_ns, state.last_t_ns
    stamp = msg.header.stamp
    (n, dropped, backwards, across, n_on, triggers, unknown, has_offset, offset,
     valid, time_high, time_low, row, base_x, polarity, has_last, last) = kernel(
        buf, big, width, height, *state.evt3, stamp.sec, stamp.nanosec,
        offset is not None, offset or 0, last is not None, last or 0, x, y, t, p)
    if n < cap:
        x, y, t, p = x[:n], y[:n], t[:n], p[:n]
    if backwards:
        order = np.argsort(t, kind="stable")
        x, y, t, p = x[order], y[order], t[order], p[order]
    if dropped or backwards or across or triggers or unknown:
        stats.dropped_out_of_bounds += dropped
        stats.backwards_timestamps += backwards
        stats.backwards_across_packets += across
        stats.trigger_events += triggers
        stats.unknown_words += unknown
    stats.decoded += n
    stats.on += n_on
    stats.off += n - n_on
    return (EventBatch.trusted(x, y, t, p, width, height),
            DecoderState(Evt3State(valid, time_high, time_low, row, base_x, polarity),
                         offset if has_offset else None, last if has_last else None))


def _evt3_events(buf: np.ndarray, msg: object, state: DecoderState, backend: str,
                 stats: DecodeStats):
    """(x, y, p, t_us) of one evt3 payload and the backend state after it."""
    prev = state.evt3
    if isinstance(prev, PypiEvt3Stream) or (
            prev == Evt3State() and prepare_evt3_backend(backend) == "pypi"):
        if isinstance(prev, PypiEvt3Stream):
            prev.check_latest()
        else:
            prev = PypiEvt3Stream()
        if msg.is_bigendian:
            data = buf.view(">u2").astype("<u2").tobytes()
        else:
            data = msg.events if isinstance(msg.events, bytes) else buf.tobytes()
        ev = prev.decoder.feed(data)
        stream = PypiEvt3Stream(prev.decoder, prev._latest)  # now the newest state
        return (ev.x, ev.y, ev.p, ev.t.view(np.int64)), stream  # t: us, < 2**63
    words = buf.view(">u2" if msg.is_bigendian else "<u2")
    raw, evt3_state = decode_evt3_words(words, prev)
    stats.trigger_events += raw.triggers
    stats.unknown_words += raw.unknown_words
    return (raw.x, raw.y, raw.p, raw.t_us), evt3_state


def _decode_evt3(buf: np.ndarray, msg: object, state: DecoderState, backend: str,
                 stats: DecodeStats):
    if buf.size % 2:
        stats.truncated_packets += 1
        raise TruncatedPacketError("evt3 payload (partial 16-bit word)", buf.size - 1, buf.size)
    (x, y, p, t), evt3_state = _evt3_events(buf, msg, state, backend, stats)
    offset = state.offset_ns
    if offset is None and t.size:
        offset = stamp_ns(msg.header) - int(t[0]) * 1000
    t = _multiply(t, 1000)  # a new array: never write into the decoder's buffers
    if offset is not None:
        _add(t, offset, out=t)
    return (x, y, t, p), evt3_state, offset


def decode_packet(msg: object, state: DecoderState | None = None,
                  stats: DecodeStats | None = None,
                  evt3_backend: str = "auto") -> tuple[EventBatch, DecoderState]:
    """Decode one EventPacket (or legacy EventArray) message.

    Args:
        msg: object with the EventPacket fields (rclpy or rosbags message, or our own).
        state: the state returned for the previous packet of the same stream (None at start).
        stats: counters to add to in place (optional).
        evt3_backend: "numpy" (ours, vectorised), "pypi" (the PyPI `evt3` package, faster;
            `trigger_events`/`unknown_words` are not counted) or "auto" (pypi when installed).
            Chosen when a stream starts; later packets follow their state's backend.

    Returns:
        The time-sorted batch (t int64 ns, ROS header clock; see the module docstring) and the
        state to pass with the next packet of this stream.

    Raises:
        UnsupportedEncodingError: encoding other than evt3/mono.
        TruncatedPacketError: payload ends inside a word.
    """
    state = DecoderState() if state is None else state
    stats = DecodeStats() if stats is None else stats
    encoding = str(msg.encoding)
    if encoding not in SUPPORTED_ENCODINGS:
        raise UnsupportedEncodingError(encoding)
    buf = payload_bytes(msg.events)
    width, height = int(msg.width), int(msg.height)
    stats.packets += 1
    if buf.size == 0:
        stats.empty_packets += 1
        return EventBatch.empty(width, height), state
    if encoding == "evt3" and type(state.evt3) is Evt3State and (
            _RESOLVED.get(evt3_backend) or prepare_evt3_backend(evt3_backend)) == "numba":
        return _decode_evt3_numba(buf, msg, state, stats, width, height)
    if encoding == "mono":
        cols, evt3_state, offset = _decode_mono(buf, msg, stats), state.evt3, state.offset_ns
    else:
        cols, evt3_state, offset = _decode_evt3(buf, msg, state, evt3_backend, stats)
    batch = _finish(*cols, width, height, state.last_t_ns, stats)
    last = int(batch.t[-1]) if len(batch) else state.last_t_ns
    return batch, DecoderState(evt3_state, offset, last)


def decode_packets(msgs: list, state: DecoderState | None = None,
                   stats: DecodeStats | None = None,
                   evt3_backend: str = "auto") -> tuple[EventBatch, DecoderState]:
    """Decode consecutive packets of one stream into one batch (the fast offline path).

    evt3 payloads are one continuous word stream, so they are joined and decoded in one call
    (same events, times and state as packet by packet); mono packets are decoded one by one.
    Empty packets are counted; a truncated packet raises before anything is decoded.
    """
    state = DecoderState() if state is None else state
    stats = DecodeStats() if stats is None else stats
    if not msgs:
        raise ValueError("decode_packets needs at least one message")
    encodings = {str(m.encoding) for m in msgs}
    if encodings - set(SUPPORTED_ENCODINGS):
        raise UnsupportedEncodingError(sorted(encodings - set(SUPPORTED_ENCODINGS))[0])
    if encodings != {"evt3"} or len({bool(m.is_bigendian) for m in msgs}) > 1:
        batches = []
        for m in msgs:
            b, state = decode_packet(m, state, stats, evt3_backend)
            batches.append(b)
        return EventBatch.concatenate(batches), state
    bufs = [payload_bytes(m.events) for m in msgs]
    for b in bufs:
        if b.size % 2:
            stats.truncated_packets += 1
            raise TruncatedPacketError("evt3 payload (partial 16-bit word)", b.size - 1, b.size)
    stats.empty_packets += sum(1 for b in bufs if b.size == 0)
    first = next((m for m, b in zip(msgs, bufs) if b.size), msgs[0])
    joined = _Joined(first, np.concatenate(bufs))
    if joined.events.size == 0:
        stats.packets += len(msgs)
        return EventBatch.empty(int(first.width), int(first.height)), state
    stats.packets += len(msgs) - 1  # decode_packet counts the joined one
    return decode_packet(joined, state, stats, evt3_backend)


@dataclass(frozen=True)
class _Joined:
    """The fields decode_packet reads, for a joined evt3 payload."""

    template: object
    events: np.ndarray

    def __getattr__(self, name: str):
        return getattr(self.template, name)
