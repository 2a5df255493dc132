"""EVT 3.0 decoding: our vectorised decoder (explicit state in and out), and the state holder
of the PyPI `evt3` decoder used as the fast backend of `events.decode`.

EVT 3.0 (Prophesee) is a stream of 16-bit words; the 4 most significant bits give the type and
the 12 others the payload. The word types used here (facts from the Prophesee format spec):

    0x0 EVT_ADDR_Y     y = bits 0-10 (bit 11: system type), sets the current row
    0x2 EVT_ADDR_X     one event: x = bits 0-10, polarity = bit 11
    0x3 VECT_BASE_X    base x = bits 0-10, polarity = bit 11 for the next vector words
    0x4 VECT_12        12 validity bits: events at base x + i; then base x += 12
    0x5 VECT_8         8 validity bits: events at base x + i; then base x += 8
    0x6 EVT_TIME_LOW   low 12 bits of the 24-bit microsecond time
    0x8 EVT_TIME_HIGH  high 12 bits of the 24-bit microsecond time
    0xA EXT_TRIGGER    external trigger (counted, not returned)
    0x7, 0xE, 0xF      CONTINUED_4, OTHERS, CONTINUED_12 (ignored)

Time is `(high << 12 | low)` microseconds and wraps every 2**24 us (16.8 s). A wrap is declared
when a time-high value is smaller than the previous one by more than 10 units (smaller steps
back are sensor bit noise, as in event_camera_codecs). Events are emitted only after the first
valid time: a TIME_HIGH followed by a TIME_LOW; words before that, other than time words, are
ignored (event_camera_codecs semantics). The PyPI `evt3` decoder (the other backend of
`events.decode`) differs only for events between a TIME_HIGH and the next TIME_LOW: it emits
them from the first TIME_HIGH on, with the low time bits zeroed; sensors send TIME_LOW right
after TIME_HIGH, and both decoders agree on every event of the real recordings in the tests.
All of this runs on whole numpy arrays: each forward-filled quantity (row, time-high,
time-low, vector base) is found per event word with one `searchsorted` on the sorted word
indices of its setter type.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

ADDR_Y, ADDR_X, VECT_BASE_X, VECT_12, VECT_8, TIME_LOW, TIME_HIGH, EXT_TRIGGER = (
    0x0, 0x2, 0x3, 0x4, 0x5, 0x6, 0x8, 0xA)
KNOWN_CODES = frozenset({0x0, 0x2, 0x3, 0x4, 0x5, 0x6, 0x7, 0x8, 0xA, 0xE, 0xF})
WRAP_MIN_STEP = 10  # time-high steps back by at most this much are noise, not a wrap
_BITS12 = np.arange(12, dtype=np.uint16)


class Evt3State(NamedTuple):
    """Decoder registers carried from one packet to the next (immutable; a NamedTuple because
    the per-packet path builds one per packet: a third of a frozen dataclass's cost).

    Attributes:
        valid: a TIME_HIGH then a TIME_LOW have been seen (events are emitted from then on).
        time_high: high time bits already shifted (`high << 12`) plus wraps (`n << 24`), us.
        time_low: last low 12 time bits, us.
        y: current row; base_x, polarity: current vector base.
    """

    valid: bool = False
    time_high: int = 0
    time_low: int = 0
    y: int = 0
    base_x: int = 0
    polarity: int = 0


@dataclass(frozen=True)
class Evt3Raw:
    """Events of one packet before bounds checks: x, y, p and sensor time t_us (int64)."""

    x: np.ndarray
    y: np.ndarray
    p: np.ndarray
    t_us: np.ndarray
    triggers: int
    unknown_words: int


_UNKNOWN = np.ones(16, bool)
_UNKNOWN[list(KNOWN_CODES)] = False


def _fill(setter_idx: np.ndarray, setter_val: np.ndarray, at_idx: np.ndarray, default: int):
    """Value of the last setter word before each at_idx word (default when there is none)."""
    vals = np.empty(setter_val.size + 1, np.int64)
    vals[0] = default
    vals[1:] = setter_val
    return vals[np.searchsorted(setter_idx, at_idx)]


def _setters(code: np.ndarray, words: np.ndarray, kind: int, mask: int, count: int, start: int):
    """Word indices (>= start) of words of one kind and their payloads (& mask) as int64."""
    if count == 0:
        return np.zeros(0, np.intp), np.zeros(0, np.int64)
    idx = np.flatnonzero(code[start:] == kind)
    if start:
        idx += start
    return idx, (words[idx] & mask).astype(np.int64)


def _time_high(hv: np.ndarray, state: Evt3State) -> np.ndarray:
    """Full time-high values (shifted, plus 2**24 per detected wrap) of TIME_HIGH payloads."""
    prev = np.empty_like(hv)
    if hv.size:
        prev[0] = (state.time_high >> 12) & 0xFFF
        prev[1:] = hv[:-1]
    wraps = np.cumsum((prev - hv) > WRAP_MIN_STEP)
    return ((state.time_high >> 24) + wraps) << 24 | (hv << 12)


def _valid_start(code: np.ndarray, hidx: np.ndarray, state: Evt3State) -> int | None:
    """First word index from which events count (None: no valid time in this packet)."""
    if state.valid:
        return 0
    if hidx.size == 0:
        return None
    after = np.flatnonzero(code[hidx[0] + 1:] == TIME_LOW)
    return None if after.size == 0 else int(hidx[0] + 1 + after[0] + 1)


def _vectors(code, eidx, bidx, bval, state: Evt3State):
    """x base and polarity per event word, and the (base_x, polarity) state at the end."""
    ecode = code[eidx]
    inc = np.where(ecode == VECT_12, 12, np.where(ecode == VECT_8, 8, 0))
    cum = np.zeros(inc.size + 1, np.int64)  # increments of vector words before each event word
    np.cumsum(inc, out=cum[1:])
    # base in force at an event word = last base value + increments since that base word
    base = _fill(bidx, (bval & 0x7FF) - cum[np.searchsorted(eidx, bidx)], eidx, state.base_x)
    base += cum[:-1]
    pol = _fill(bidx, bval >> 11, eidx, state.polarity)
    if bidx.size:
        k = np.searchsorted(eidx, bidx[-1])
        end = (int((bval[-1] & 0x7FF) + cum[-1] - cum[k]), int(bval[-1] >> 11))
    else:
        end = (state.base_x + int(cum[-1]), state.polarity)
    return base, pol, end


def decode_evt3_words(words: np.ndarray, state: Evt3State) -> tuple[Evt3Raw, Evt3State]:
    """Decode (N,) uint16 EVT 3.0 words; return the raw events and the state after them."""
    code = words >> 12
    counts = np.bincount(code, minlength=16)
    unknown = int(counts[_UNKNOWN].sum())
    hidx, hv = _setters(code, words, TIME_HIGH, 0xFFF, counts[TIME_HIGH], 0)
    hfull = _time_high(hv, state)
    lidx, lv = _setters(code, words, TIME_LOW, 0xFFF, counts[TIME_LOW], 0)
    start = _valid_start(code, hidx, state)
    end_time = dict(time_high=int(hfull[-1]) if hfull.size else state.time_high,
                    time_low=int(lv[-1]) if lv.size else state.time_low)
    if start is None:
        e = np.zeros(0, np.uint16)
        return (Evt3Raw(e, e, e.astype(np.uint8), e.astype(np.int64), 0, unknown),
                Evt3State(False, y=state.y, base_x=state.base_x, polarity=state.polarity,
                          **end_time))
    sub = code[start:] if start else code
    triggers = int(counts[EXT_TRIGGER]) if not start else int(np.count_nonzero(
        sub == EXT_TRIGGER))
    yidx, yval = _setters(code, words, ADDR_Y, 0x7FF, counts[ADDR_Y], start)
    bidx, bval = _setters(code, words, VECT_BASE_X, 0xFFF, counts[VECT_BASE_X], start)
    has_vect = counts[VECT_12] + counts[VECT_8] > 0
    is_event = (sub == ADDR_X) | ((sub >> 1) == 2) if has_vect else sub == ADDR_X
    eidx = np.flatnonzero(is_event)
    if start:
        eidx += start
    ew = words[eidx]
    t_us = _fill(hidx, hfull, eidx, state.time_high) | _fill(lidx, lv, eidx, state.time_low)
    ey = _fill(yidx, yval, eidx, state.y)
    end_y = int(yval[-1]) if yval.size else state.y
    if not has_vect:
        end_base = (int(bval[-1] & 0x7FF), int(bval[-1] >> 11)) if bval.size else (
            state.base_x, state.polarity)
        raw = Evt3Raw((ew & 0x7FF).astype(np.uint16), ey.astype(np.uint16),
                      ((ew >> 11) & 1).astype(np.uint8), t_us, triggers, unknown)
        return raw, Evt3State(True, y=end_y, base_x=end_base[0], polarity=end_base[1],
                              **end_time)
    base, bpol, end_base = _vectors(code, eidx, bidx, bval, state)
    is_x = code[eidx] == ADDR_X
    valid = np.where(is_x, 1, ew & np.where(code[eidx] == VECT_12, 0xFFF, 0xFF))
    xbase = np.where(is_x, ew & 0x7FF, base)
    pol = np.where(is_x, (ew >> 11) & 1, bpol)
    bits = ((valid.astype(np.uint16)[:, None] >> _BITS12) & 1).astype(bool)  # M 12
    row, col = np.nonzero(bits)
    raw = Evt3Raw((xbase[row] + col).astype(np.uint16), ey[row].astype(np.uint16),
                  pol[row].astype(np.uint8), t_us[row], triggers, unknown)
    return raw, Evt3State(True, y=end_y, base_x=end_base[0], polarity=end_base[1], **end_time)


class PypiEvt3Stream:
    """State of the `pypi` evt3 backend: the PyPI `evt3` incremental decoder (Rust).

    Its registers live inside that decoder and advance with each packet. Each call returns a
    new PypiEvt3Stream sharing the decoder; only the newest one may be passed on (an older one
    raises StaleStateError instead of silently decoding with advanced registers).
    """

    def __init__(self, decoder: object | None = None, latest: list | None = None) -> None:
        if decoder is None:
            try:  # the compiled decoder itself: the public wrapper adds ~5 us per packet
                from evt3._evt3 import Decoder
            except ImportError:  # pragma: no cover - layout of other evt3 versions
                from evt3 import Decoder
            decoder = Decoder(sensor_width=2048, sensor_height=2048)  # we check bounds
        self.decoder = decoder
        self._latest = [None] if latest is None else latest  # shared by all states of a stream
        self._latest[0] = self

    def check_latest(self) -> None:
        """Raise StaleStateError unless self is the newest state of its stream."""
        if self._latest[0] is not self:
            raise StaleStateError("this evt3 decoder state was already used: pass the state "
                                  "returned by the previous decode call")


class StaleStateError(ValueError):
    """A `pypi`-backend decoder state was passed a second time."""
